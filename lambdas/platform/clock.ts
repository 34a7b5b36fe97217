import { type Clock, systemClock } from '../domain/clock';

let current: Clock = systemClock;

/**
 * The clock the handlers take at cold start: the system clock, unless the host that loads
 * them injected another before loading them (the local runtime's time-scaled clock).
 */
export function hostClock(): Clock {
  return current;
}

/** Injects the clock handlers loaded from now on take (a host's composition root only). */
export function injectHostClock(clock: Clock): void {
  current = clock;
}
