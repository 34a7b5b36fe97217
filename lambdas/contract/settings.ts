/**
 * Deploy-time settings shared by the construct (which validates them at synth time) and the
 * functions (which read them from their environment at cold start).
 */

/** Settings of the fixed-interval strategy, and the floor/cap of every strategy. */
export interface FixedIntervalSettings {
  /** Seconds between polls (fixed strategy); the wait before the first poll (every strategy). */
  readonly intervalSeconds: number;
  /** Never wait less than this. */
  readonly minSeconds: number;
  /** Never wait more than this, except to honour a server's Retry-After (or, in the adaptive strategy, its history budget). */
  readonly maxSeconds: number;
}

/** The longest Retry-After honoured (a misbehaving server cannot park a job for days). */
export const MAX_RETRY_AFTER_SECONDS = 3600;

export const DEFAULT_POLL_SETTINGS: FixedIntervalSettings = {
  intervalSeconds: 10,
  minSeconds: 1,
  maxSeconds: 600,
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
