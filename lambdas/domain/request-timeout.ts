/**
 * Request deadlines that fit a Lambda invocation: a request never outlives the time left.
 */

/** Default per-request deadline (connect + headers + body), in milliseconds. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Default safety margin kept free of Waterflai requests at the end of a Lambda invocation. */
export const DEFAULT_REQUEST_MARGIN_MS = 3_000;

/** Settings of {@link requestTimeoutFor}. */
export interface RequestTimeoutSettings {
  /**
   * Time kept free at the end of the invocation (to record the outcome and return).
   * @default 3_000
   */
  readonly marginMs?: number;
  /**
   * Upper bound of the result.
   * @default 10_000
   */
  readonly maxMs?: number;
}

/**
 * Per-request timeout for a Lambda: `min(maxMs, remainingMs - marginMs)`, rounded down,
 * and at least 1 ms (a request that cannot fit then times out at once rather than
 * outliving the invocation). Typical use:
 * `client.getExecution(id, { timeoutMs: requestTimeoutFor(context.getRemainingTimeInMillis()) })`.
 *
 * @param remainingMs time left in the invocation (`+Infinity` gives `maxMs`)
 * @throws RangeError when `remainingMs` is NaN or a setting is negative / not finite
 */
export function requestTimeoutFor(remainingMs: number, settings: RequestTimeoutSettings = {}): number {
  const marginMs = settings.marginMs ?? DEFAULT_REQUEST_MARGIN_MS;
  const maxMs = settings.maxMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (Number.isNaN(remainingMs)) throw new RangeError('remainingMs must be a number');
  if (!Number.isFinite(marginMs) || marginMs < 0) throw new RangeError(`marginMs must be a finite number >= 0, got ${marginMs}`);
  if (!Number.isFinite(maxMs) || maxMs < 1) throw new RangeError(`maxMs must be a finite number >= 1, got ${maxMs}`);
  const available = remainingMs - marginMs;
  return Math.max(1, Math.floor(Math.min(maxMs, available)));
}
