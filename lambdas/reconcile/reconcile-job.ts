import { CANCEL_REASON, ERROR_CODE, JOB_STATUS, RECONCILED_EXECUTION_STATUSES } from '../contract/constants';
import { isSettled } from '../contract/job-record';
import type { AppLogger } from '../platform/logger';
import { settleFromOutside, type OutsideSettlerDeps } from '../lifecycle/settle';
import type { PollState } from '../domain/workflow';

/** The detail of a Step Functions "Execution Status Change" event. */
export interface ExecutionStatusChange {
  readonly executionArn: string;
  readonly stateMachineArn?: string;
  readonly name?: string;
  readonly status: string;
  /** The execution input, as a JSON string (null when Step Functions did not include it). */
  readonly input?: string | null;
  readonly error?: string | null;
  readonly cause?: string | null;
}

export type ReconcileResult = 'settled' | 'already-settled' | 'superseded' | 'unknown-job' | 'ignored';

/**
 * Settles a job whose state machine execution ended from outside the poll loop: stopped by
 * an operator (CANCELLED, reason `stopped`), timed out (FAILED, `TIMED_OUT`) or failed
 * (FAILED, `ORCHESTRATION_FAILED`). A job already terminal only gets its outcome announced
 * if it was not yet; an execution that handed over to a successor is ignored.
 */
export class ExecutionReconciler {
  constructor(private readonly deps: OutsideSettlerDeps & { readonly logger: AppLogger }) {}

  async reconcile(change: ExecutionStatusChange): Promise<ReconcileResult> {
    const { logger, store } = this.deps;
    if (!(RECONCILED_EXECUTION_STATUSES as readonly string[]).includes(change.status)) return 'ignored';
    const jobId = jobIdOf(change.input);
    if (jobId === undefined) {
      logger.error('execution status change without a readable job id', { execution_arn: change.executionArn, status: change.status });
      return 'unknown-job';
    }
    const record = await store.get(jobId);
    if (record === undefined) return 'unknown-job';
    const wasSettled = isSettled(record);
    if (!wasSettled && record.state_machine_execution_arn !== undefined && record.state_machine_execution_arn !== change.executionArn) {
      logger.info('status change of a superseded execution; the job continues in its successor', {
        job_id: jobId,
        execution_arn: change.executionArn,
      });
      return 'superseded';
    }
    const detail = [change.error, change.cause]
      .filter((part) => typeof part === 'string' && part !== '')
      .join(': ')
      .slice(0, 1024);
    if (change.status === 'ABORTED') {
      await settleFromOutside(this.deps, jobId, JOB_STATUS.CANCELLED, { cancel_reason: CANCEL_REASON.STOPPED });
    } else if (change.status === 'TIMED_OUT') {
      await settleFromOutside(this.deps, jobId, JOB_STATUS.FAILED, {
        error_code: ERROR_CODE.TIMED_OUT,
        error_message: 'the state machine execution timed out (maximum job duration); the execution was cancelled',
      });
    } else {
      await settleFromOutside(this.deps, jobId, JOB_STATUS.FAILED, {
        error_code: ERROR_CODE.ORCHESTRATION_FAILED,
        error_message: `the state machine execution failed${detail ? `: ${detail}` : ''}`,
      });
    }
    return wasSettled ? 'already-settled' : 'settled';
  }
}

function jobIdOf(input: string | null | undefined): string | undefined {
  if (typeof input !== 'string') return undefined;
  try {
    const state = JSON.parse(input) as Partial<PollState>;
    return typeof state.job_id === 'string' ? state.job_id : undefined;
  } catch {
    return undefined;
  }
}
