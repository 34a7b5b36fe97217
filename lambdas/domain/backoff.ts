/** Settings of {@link backoffSeconds}. */
export interface BackoffSettings {
  /** The first wait. */
  readonly baseSeconds: number;
  /** No wait is longer (jitter included). */
  readonly capSeconds: number;
  /** Random numbers in [0, 1) for the jitter. @default Math.random */
  readonly random?: () => number;
}

/**
 * The wait before retry number `attempt` (1 for the first retry): exponential from
 * `baseSeconds`, doubled per attempt, never above `capSeconds`, with "equal jitter" (half
 * of the wait fixed, half random) so that many jobs hit by the same incident do not come
 * back in step. Whole seconds, at least 1.
 */
export function backoffSeconds(attempt: number, settings: BackoffSettings): number {
  const random = settings.random ?? Math.random;
  const cap = Math.max(1, settings.capSeconds);
  const exponent = Math.min(Math.max(0, Math.floor(attempt) - 1), 30);
  const wait = Math.min(cap, settings.baseSeconds * 2 ** exponent);
  const jittered = wait / 2 + (wait / 2) * Math.min(Math.max(random(), 0), 1);
  return Math.max(1, Math.min(cap, Math.ceil(jittered)));
}
