/**
 * How the poll loop tells time. `now` is the wall clock; job time (what the poll strategy,
 * the history budget, the auth grace period and the deadline window reason in) runs at the
 * same speed in AWS. A host that runs the functions faster than real time (the local
 * runtime) injects a clock whose job time runs faster; product code never knows why.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Seconds of job time that pass in `clockMs` milliseconds of this clock. */
  jobSeconds(clockMs: number): number;
  /** Milliseconds of this clock in which `jobSeconds` of job time pass. */
  clockMs(jobSeconds: number): number;
}

/** The wall clock, job time at real speed: what every deployment uses. */
export const systemClock: Clock = {
  now: () => Date.now(),
  jobSeconds: (clockMs) => clockMs / 1000,
  clockMs: (jobSeconds) => jobSeconds * 1000,
};

/** A clock with `now` from elsewhere and job time at real speed (tests). */
export function clockAt(now: () => number): Clock {
  return { ...systemClock, now };
}
