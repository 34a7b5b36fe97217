import { ERROR_CODE, JOB_STATUS, UPSTREAM_CANCEL } from '../contract/constants';
import type { JobStore } from '../aws/job-store';
import type { AppLogger } from '../platform/logger';
import { announceOutcome } from '../lifecycle/announce';
import type { OutcomePublisher } from '../aws/outcome-publisher';
import { describeCaughtError } from '../domain/caught-error';
import type { FinishInput, FinishOutput } from '../domain/workflow';

export { describeCaughtError };

export interface FinisherDeps {
  readonly store: JobStore;
  readonly publisher: OutcomePublisher;
  readonly logger: AppLogger;
  readonly now?: () => number;
}

/**
 * The state machine's finishing step. On the normal path the poll Lambda has already
 * settled the job; this step announces the recorded outcome. On the failure path
 * (`input.error` set by the state machine's Catch, after the give-up step failed too) it
 * first settles the job FAILED with `POLL_FAILED` and `upstream_cancel: unconfirmed`,
 * noting the execution for the sweeper to cancel, unless the job is already terminal. Idempotent: the event carries a stable id
 * and is published until the record says it was.
 */
export class JobFinisher {
  private readonly now: () => number;

  constructor(private readonly deps: FinisherDeps) {
    this.now = deps.now ?? Date.now;
  }

  async finish(input: FinishInput): Promise<FinishOutput> {
    const { store, publisher, logger } = this.deps;
    if (input.error !== undefined) {
      const at = new Date(this.now()).toISOString();
      const result = await store.applyStatus(input.job_id, {
        status: JOB_STATUS.FAILED,
        fields: {
          error_code: ERROR_CODE.POLL_FAILED,
          error_message: describeCaughtError(input.error),
          finished_at: at,
          polls: input.poll_count,
          upstream_cancel: UPSTREAM_CANCEL.UNCONFIRMED,
        },
        // This function cannot reach Waterflai (no API key): the sweeper cancels the execution.
        pendingCancels: [input.execution_id],
        now: at,
      });
      logger.warn('polling failed and the give-up step too; job settled as failed, its execution left to the sweeper', {
        job_id: input.job_id,
        error: input.error.Error,
        applied: result.applied,
      });
    }

    const record = await store.get(input.job_id);
    if (record === undefined) throw new Error(`job ${input.job_id} has no record`);

    const eventId = await announceOutcome(store, publisher, record, this.now);
    logger.info('outcome announced', { job_id: record.job_id, status: record.status, event_id: eventId });
    return { job_id: record.job_id, status: record.status, event_id: eventId };
  }
}
