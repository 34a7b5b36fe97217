/**
 * The one backoff rule of the functions: exponential from a base, doubled per attempt,
 * capped, with jitter so that many jobs hit by the same fault do not come back in step.
 * Used by the poll loop's incidents and deadline rounds (whole seconds, equal jitter), the
 * start function's SQS retries (full jitter) and the outcome publisher's PutEvents retries
 * (full jitter, milliseconds). The state machine's Retry policies are Step Functions' own
 * (declared in lib/poll-state-machine.ts) and follow the same shape.
 */

/** Settings of {@link backoffDelay}. */
export interface BackoffDelaySettings {
  /** The first wait, in the caller's unit. */
  readonly base: number;
  /** No wait is longer (jitter included). @default no cap */
  readonly cap?: number;
  /**
   * `full`: anywhere from 0 to the wait; `equal`: half of the wait fixed, half random.
   * @default 'full'
   */
  readonly jitter?: 'full' | 'equal';
  /** Random numbers in [0, 1) for the jitter. @default Math.random */
  readonly random?: () => number;
}

/** The wait before retry number `attempt` (1 for the first retry), in the unit of `base`. */
export function backoffDelay(attempt: number, settings: BackoffDelaySettings): number {
  const random = Math.min(Math.max((settings.random ?? Math.random)(), 0), 1);
  const cap = settings.cap ?? Number.POSITIVE_INFINITY;
  const exponent = Math.min(Math.max(0, Math.floor(attempt) - 1), 30);
  const wait = Math.min(cap, settings.base * 2 ** exponent);
  return settings.jitter === 'equal' ? wait / 2 + (wait / 2) * random : wait * random;
}

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
 * {@link backoffDelay} with equal jitter in whole seconds, at least 1 and never above
 * `capSeconds` (Step Functions' Wait takes whole seconds).
 */
export function backoffSeconds(attempt: number, settings: BackoffSettings): number {
  const cap = Math.max(1, settings.capSeconds);
  const wait = backoffDelay(attempt, {
    base: settings.baseSeconds,
    cap,
    jitter: 'equal',
    ...(settings.random ? { random: settings.random } : {}),
  });
  return Math.max(1, Math.min(cap, Math.ceil(wait)));
}
