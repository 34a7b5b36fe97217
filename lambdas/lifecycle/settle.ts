import { announceOutcome } from './announce';
import { JOB_STATUS, UPSTREAM_CANCEL, type JobStatus } from '../contract/constants';
import { describeError } from '../contract/errors';
import { isSettled, type JobRecord, type StatusFields } from '../contract/job-record';
import type { JobStore } from '../aws/job-store';
import type { AppLogger } from '../platform/logger';
import type { OutcomePublisher } from '../aws/outcome-publisher';
import { acceptedOutputBytes, placeOutput, type OutputPlacement } from '../aws/output-store';
import { mapExecutionStatus } from '../domain/status-mapping';
import { cancelAndConfirm, type CancelAndConfirmOptions, type CancelOutcome, type UpstreamExecutions } from '../domain/upstream-cancel';
import { SETTING_DEFAULTS } from '../contract/settings';

export interface OutsideSettlerDeps {
  readonly store: JobStore;
  readonly publisher: OutcomePublisher;
  readonly waterflai: UpstreamExecutions;
  readonly logger: AppLogger;
  readonly now?: () => number;
  /**
   * Where an output found when settling goes (a job whose execution had completed is
   * recorded COMPLETED with its output). @default inline only, 64 KiB
   */
  readonly outputPlacement?: OutputPlacement;
  /** Retry waits of the cancel confirmation (tests shorten them). @default CANCEL_RETRY_DELAYS_MS */
  readonly cancelRetryDelaysMs?: CancelAndConfirmOptions['delaysMs'];
  /** Time left in the invocation. @default DEFAULT_CANCEL_BUDGET_MS from the start of each cancel */
  readonly remainingMs?: () => number;
}

const DEFAULT_PLACEMENT: OutputPlacement = { maxInlineOutputBytes: SETTING_DEFAULTS.maxInlineOutputBytes };

/**
 * Settles a job from outside its poll loop (the reconciler, the sweeper), keeping the rule
 * that an outcome is true upstream or the orchestrator did all it could to make it true:
 * its Waterflai execution is cancelled and the cancel confirmed (see `cancelAndConfirm`).
 * - confirmed (or Waterflai no longer knows it): the job gets `status` and `fields`, with
 *   `upstream_cancel: confirmed`;
 * - found COMPLETED or FAILED: the job gets what really happened (a finished result is never
 *   thrown away);
 * - unconfirmed: the job gets `status` with `upstream_cancel: unconfirmed`, and the
 *   execution is noted for the sweeper, which keeps trying.
 * A job already terminal only gets its outcome announced if it was not yet.
 *
 * @returns the record as it ends up, or undefined when the job has no record
 */
export async function settleFromOutside(
  deps: OutsideSettlerDeps,
  jobId: string,
  status: JobStatus,
  fields: StatusFields,
): Promise<JobRecord | undefined> {
  const { store, publisher, logger } = deps;
  const now = deps.now ?? Date.now;
  const record = await store.get(jobId);
  if (record === undefined) return undefined;
  if (isSettled(record)) {
    await announceOutcome(store, publisher, record, now);
    return record;
  }
  let update: { status: JobStatus; fields: StatusFields; pendingCancels?: readonly string[] } = { status, fields };
  if (record.execution_id !== undefined) {
    const outcome = await cancelUpstream(deps, record.execution_id);
    update = await settlement(deps, record, record.execution_id, outcome, status, fields);
  }
  const at = new Date(now()).toISOString();
  const result = await store.applyStatus(jobId, { ...update, fields: { finished_at: at, ...update.fields }, now: at });
  logger.warn('job settled from outside its poll loop', {
    job_id: jobId,
    status: result.record?.status,
    applied: result.applied,
    upstream_cancel: update.fields.upstream_cancel,
  });
  if (result.record === undefined) return undefined;
  const started = result.record.execution_id;
  if (result.applied && started !== undefined && started !== record.execution_id) {
    // A start saved its execution id between our read and our write: that execution must stop too.
    const outcome = await cancelUpstream(deps, started);
    if (outcome.kind === 'unconfirmed') await store.addPendingCancels(jobId, [started], outcome.reason, at);
  }
  if (!isSettled(result.record)) return result.record;
  await announceOutcome(store, publisher, result.record, now);
  return result.record;
}

/** Time one cancel confirmation may take when the caller gives no remaining time (fits a 60 s function). */
export const DEFAULT_CANCEL_BUDGET_MS = 45_000;

/** Cancels and confirms one execution with the deps' settings. */
export function cancelUpstream(deps: OutsideSettlerDeps, executionId: string): Promise<CancelOutcome> {
  const now = deps.now ?? Date.now;
  const end = now() + DEFAULT_CANCEL_BUDGET_MS;
  return cancelAndConfirm(deps.waterflai, executionId, {
    remainingMs: deps.remainingMs ?? (() => end - now()),
    ...(deps.cancelRetryDelaysMs === undefined ? {} : { delaysMs: deps.cancelRetryDelaysMs }),
  });
}

/** What to record for a job ended from outside, given what its cancel found. */
async function settlement(
  deps: OutsideSettlerDeps,
  record: JobRecord,
  executionId: string,
  outcome: CancelOutcome,
  status: JobStatus,
  fields: StatusFields,
): Promise<{ status: JobStatus; fields: StatusFields; pendingCancels?: readonly string[] }> {
  if (outcome.kind === 'unconfirmed') {
    deps.logger.error('could not confirm the cancellation of the execution; the sweeper keeps trying', {
      job_id: record.job_id,
      execution_id: executionId,
      reason: outcome.reason,
    });
    return { status, fields: { ...fields, upstream_cancel: UPSTREAM_CANCEL.UNCONFIRMED }, pendingCancels: [executionId] };
  }
  if (outcome.kind === 'finished' && outcome.execution.known_status !== 'CANCELLED') {
    const at = new Date((deps.now ?? Date.now)()).toISOString();
    const placement = deps.outputPlacement ?? DEFAULT_PLACEMENT;
    const mapped = mapExecutionStatus(outcome.execution, at, acceptedOutputBytes(placement));
    if (mapped.status === JOB_STATUS.COMPLETED || mapped.status === JOB_STATUS.FAILED) {
      deps.logger.info('the execution had finished: recording what happened upstream', { job_id: record.job_id, status: mapped.status });
      try {
        return {
          status: mapped.status,
          fields: await placeOutput(
            placement,
            { job_id: record.job_id, execution_id: executionId },
            mapped.status,
            mapped.fields,
            mapped.outputBytes,
          ),
        };
      } catch (error) {
        deps.logger.error('could not store the output of a finished execution', { job_id: record.job_id, error: describeError(error) });
        throw error;
      }
    }
  }
  return { status, fields: { ...fields, upstream_cancel: UPSTREAM_CANCEL.CONFIRMED } };
}
