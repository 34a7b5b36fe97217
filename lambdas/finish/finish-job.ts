import { ERROR_CODE, JOB_STATUS } from '../shared/constants';
import type { JobStore } from '../shared/job-store';
import type { AppLogger } from '../shared/logger';
import { announceOutcome } from '../shared/announce';
import type { OutcomePublisher } from '../shared/outcome-event';
import { MAX_ERROR_MESSAGE_CHARS } from '../shared/status-mapping';
import type { CaughtError, FinishInput, FinishOutput } from '../shared/workflow';

export interface FinisherDeps {
  readonly store: JobStore;
  readonly publisher: OutcomePublisher;
  readonly logger: AppLogger;
  readonly now?: () => number;
}

/**
 * The state machine's finishing step. On the normal path the poll Lambda has already
 * settled the job; this step announces the recorded outcome. On the failure path
 * (`input.error` set by the state machine's Catch) it first settles the job FAILED with
 * `POLL_FAILED`, unless it is already terminal. Idempotent: the event carries a stable id
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
        fields: { error_code: ERROR_CODE.POLL_FAILED, error_message: describeCaughtError(input.error), finished_at: at, polls: input.poll_count },
        now: at,
      });
      logger.warn('polling failed; job settled as failed', { job_id: input.job_id, error: input.error.Error, applied: result.applied });
    }

    const record = await store.get(input.job_id);
    if (record === undefined) throw new Error(`job ${input.job_id} has no record`);

    const eventId = await announceOutcome(store, publisher, record, this.now);
    logger.info('outcome announced', { job_id: record.job_id, status: record.status, event_id: eventId });
    return { job_id: record.job_id, status: record.status, event_id: eventId };
  }
}

/**
 * A readable message from a Step Functions caught error. A Lambda error's `Cause` is JSON
 * (`{"errorType", "errorMessage", "trace"}`): only type and message are kept, never the trace.
 */
export function describeCaughtError(error: CaughtError): string {
  let detail = error.Cause ?? '';
  try {
    const cause: unknown = JSON.parse(detail);
    if (typeof cause === 'object' && cause !== null) {
      // A JSON Cause may carry a stack trace: keep only its message (or type), never the rest.
      const { errorMessage, errorType } = cause as { errorMessage?: unknown; errorType?: unknown };
      detail = typeof errorMessage === 'string' ? errorMessage : typeof errorType === 'string' ? errorType : '';
    }
  } catch {
    // Not JSON: a States.* error's Cause is plain text.
  }
  const text = detail ? `${error.Error}: ${detail}` : error.Error;
  return text.slice(0, MAX_ERROR_MESSAGE_CHARS);
}
