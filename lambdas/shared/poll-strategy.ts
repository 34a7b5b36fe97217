/**
 * Decides how long to wait before the next status poll. Pure: no AWS imports, no clock,
 * no randomness of its own, so the poll Lambda, the tests and the benchmark run the same
 * code.
 */

/** Settings of the fixed-interval strategy. */
export interface FixedIntervalSettings {
  /** Seconds between polls. */
  readonly intervalSeconds: number;
  /** Never wait less than this. */
  readonly minSeconds: number;
  /** Never wait more than this, except to honour a server's Retry-After. */
  readonly maxSeconds: number;
}

/** What the poll just learned. */
export interface PollObservation {
  /** Seconds the server asked us to wait (HTTP Retry-After), when it did. */
  readonly retryAfterSeconds?: number;
}

/** The longest Retry-After honoured (a misbehaving server cannot park a job for days). */
export const MAX_RETRY_AFTER_SECONDS = 3600;

export const DEFAULT_POLL_SETTINGS: FixedIntervalSettings = {
  intervalSeconds: 10,
  minSeconds: 1,
  maxSeconds: 300,
};

/** Checks settings once (at cold start or synth time) and says what is wrong. */
export function validatePollSettings(settings: FixedIntervalSettings): FixedIntervalSettings {
  const { intervalSeconds, minSeconds, maxSeconds } = settings;
  for (const [name, value] of Object.entries({ intervalSeconds, minSeconds, maxSeconds })) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`poll setting ${name} must be a positive integer, got ${value}`);
  }
  if (minSeconds > maxSeconds) throw new RangeError(`poll minSeconds (${minSeconds}) must not exceed maxSeconds (${maxSeconds})`);
  return settings;
}

/**
 * Seconds to wait before the next poll: the fixed interval clamped to [min, max], raised
 * to the server's Retry-After (itself capped at {@link MAX_RETRY_AFTER_SECONDS}).
 * Always a whole number of seconds, at least 1 (Step Functions' Wait takes integers).
 */
export function nextPollSeconds(settings: FixedIntervalSettings, observation: PollObservation = {}): number {
  const base = Math.ceil(Math.min(Math.max(settings.intervalSeconds, settings.minSeconds), settings.maxSeconds));
  const requested = observation.retryAfterSeconds;
  const retryAfter = requested === undefined || Number.isNaN(requested) ? 0 : Math.min(Math.ceil(requested), MAX_RETRY_AFTER_SECONDS);
  return Math.max(1, Number.isFinite(base) ? base : 1, retryAfter);
}
