import { announceOutcome } from './announce';
import type { JobStatus } from './constants';
import { describeError, isRetryable, WaterflaiHttpError } from './errors';
import { isSettled, type JobRecord, type JobStore, type StatusFields } from './job-store';
import type { AppLogger } from './logger';
import type { OutcomePublisher } from './outcome-event';

export interface OutsideSettlerDeps {
  readonly store: JobStore;
  readonly publisher: OutcomePublisher;
  readonly waterflai: { cancelExecution(executionId: string, options?: { timeoutMs?: number }): Promise<unknown> };
  readonly logger: AppLogger;
  readonly now?: () => number;
}

/**
 * Settles a job from outside its poll loop (the reconciler, the sweeper): cancel the
 * Waterflai execution if it may still run, record the terminal status unless the job is
 * already terminal, and announce the outcome unless it was already announced.
 *
 * A transient failure to cancel upstream throws before anything is recorded, so the
 * caller's retry tries again; a 404 or 409 (nothing left to cancel) does not stop it.
 *
 * @returns the record as it ends up, or undefined when the job has no record
 */
export async function settleFromOutside(
  deps: OutsideSettlerDeps,
  jobId: string,
  status: JobStatus,
  fields: StatusFields,
): Promise<JobRecord | undefined> {
  const { store, publisher, waterflai, logger } = deps;
  const now = deps.now ?? Date.now;
  const record = await store.get(jobId);
  if (record === undefined) return undefined;
  if (!isSettled(record)) {
    const cancel = async (executionId: string, strict: boolean): Promise<void> => {
      try {
        await waterflai.cancelExecution(executionId);
      } catch (error) {
        if (strict && isRetryable(error)) throw error;
        const nothingToCancel = error instanceof WaterflaiHttpError && (error.status === 404 || error.status === 409);
        if (!nothingToCancel) logger.error('could not cancel the execution in Waterflai', { job_id: jobId, error: describeError(error) });
      }
    };
    if (record.execution_id !== undefined) await cancel(record.execution_id, true);
    const at = new Date(now()).toISOString();
    const result = await store.applyStatus(jobId, { status, fields: { ...fields, finished_at: at }, now: at });
    logger.warn('job settled from outside its poll loop', { job_id: jobId, status: result.record?.status, applied: result.applied });
    if (result.record === undefined) return undefined;
    if (result.applied && result.record.execution_id !== undefined && result.record.execution_id !== record.execution_id) {
      // A start saved its execution id between our read and our write: that execution must stop too.
      await cancel(result.record.execution_id, false);
    }
    if (!isSettled(result.record)) return result.record;
    await announceOutcome(store, publisher, result.record, now);
    return result.record;
  }
  await announceOutcome(store, publisher, record, now);
  return record;
}
