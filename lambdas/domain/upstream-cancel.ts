import { WATERFLAI_STATUS } from '../contract/constants';
import { describeError, isRetryable, WaterflaiHttpError } from '../contract/errors';
import { DEFAULT_REQUEST_TIMEOUT_MS, requestTimeoutFor } from './request-timeout';
import type { CancelResult, ExecutionStatus, RequestOptions } from '../contract/waterflai-api';

/** What {@link cancelAndConfirm} needs of the Waterflai client. */
export interface UpstreamExecutions {
  getExecution(executionId: string, options?: RequestOptions): Promise<ExecutionStatus>;
  cancelExecution(executionId: string, options?: RequestOptions): Promise<CancelResult>;
}

/**
 * What became of an execution the orchestrator asked Waterflai to cancel:
 * - `cancelled`: Waterflai said this request cancelled it (`cancelled: true`);
 * - `finished`: it had already ended (or ended meanwhile): `execution` is its final state,
 *   read after the DELETE was refused. The caller records what really happened;
 * - `gone`: Waterflai no longer knows it (404 on the status read): nothing runs;
 * - `unconfirmed`: every attempt failed or was refused while the execution still ran.
 */
export type CancelOutcome =
  | { readonly kind: 'cancelled' }
  | { readonly kind: 'finished'; readonly execution: ExecutionStatus }
  | { readonly kind: 'gone' }
  | { readonly kind: 'unconfirmed'; readonly reason: string };

export interface CancelAndConfirmOptions {
  /** Time left in the invocation; no attempt starts that could not finish in it. */
  readonly remainingMs: () => number;
  /**
   * Waits between attempts (their count + 1 is the number of attempts).
   * @default [500, 1000, 2000]
   */
  readonly delaysMs?: readonly number[];
  /** @default setTimeout */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Waits between two cancel attempts: four attempts within about 4 s plus the requests. */
export const CANCEL_RETRY_DELAYS_MS = [500, 1_000, 2_000] as const;

const FINISHED_STATUSES: ReadonlySet<string> = new Set([WATERFLAI_STATUS.COMPLETED, WATERFLAI_STATUS.FAILED, WATERFLAI_STATUS.CANCELLED]);

/**
 * Cancels a Waterflai execution and makes sure of the result, because the contract leaves
 * the answers open: `cancelled: false` is not success, and a DELETE refused for an execution
 * that already finished may come as 409, 400, 404 or 200 `cancelled: false`. So:
 *
 * 1. DELETE. `cancelled: true` is confirmation.
 * 2. Any other answer (refused, 409, another 4xx, 404) is followed by a status read: a
 *    finished execution (COMPLETED, FAILED, CANCELLED) is returned for the caller to record
 *    (a finished result is never thrown away); a 404 on the read means it is gone; a
 *    PENDING/RUNNING one is asked again.
 * 3. Transient failures (5xx, 408, 429, timeouts, resets) are retried with the delays.
 *
 * Never throws for Waterflai trouble: after the last attempt the outcome is `unconfirmed`
 * with the last reason, and the caller makes sure someone keeps trying (the sweeper).
 */
export async function cancelAndConfirm(
  waterflai: UpstreamExecutions,
  executionId: string,
  options: CancelAndConfirmOptions,
): Promise<CancelOutcome> {
  const delays = options.delaysMs ?? CANCEL_RETRY_DELAYS_MS;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const timeout = (): { timeoutMs: number } => ({ timeoutMs: requestTimeoutFor(options.remainingMs()) });
  let reason = 'no attempt could be made in the time left';
  for (let attempt = 0; attempt <= delays.length; attempt += 1) {
    if (attempt > 0) {
      const delay = delays[attempt - 1] ?? 0;
      // Room for the wait, the DELETE and the status read.
      if (options.remainingMs() < delay + 2 * DEFAULT_REQUEST_TIMEOUT_MS) break;
      await sleep(delay);
    }
    try {
      const result = await waterflai.cancelExecution(executionId, timeout());
      if (result.cancelled) return { kind: 'cancelled' };
      reason = `Waterflai did not cancel the execution${result.previous_status ? ` (previous status ${result.previous_status})` : ''}`;
    } catch (error) {
      reason = describeError(error);
      if (isRetryable(error)) continue;
      // A refusal (409, 400, 404, 401/403 after a fresh key...): the status read tells more.
    }
    try {
      const execution = await waterflai.getExecution(executionId, timeout());
      if (FINISHED_STATUSES.has(execution.status)) return { kind: 'finished', execution };
      reason = `${reason}; the execution is still ${execution.status}`;
    } catch (error) {
      if (error instanceof WaterflaiHttpError && error.status === 404) return { kind: 'gone' };
      reason = `${reason}; reading its status failed: ${describeError(error)}`;
    }
  }
  return { kind: 'unconfirmed', reason };
}
