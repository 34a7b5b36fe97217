/**
 * Bursts: a fault that lasts for several attempts in a row of the same request (the same job
 * and operation), enough to exhaust a client's retries (the SDK's `maxAttempts`, the outcome
 * publisher's attempts), so the callers' own retry paths run too.
 */
export class Bursts<E extends string = string> {
  readonly #running = new Map<string, { remaining: number; error: E }>();

  /** Starts a burst for `key` lasting `attempts` attempts, the one that starts it included. */
  start(key: string, attempts: number, error: E): void {
    this.#running.set(key, { remaining: attempts - 1, error });
  }

  /** Continues a running burst for `key`: its error (one attempt used), or undefined when none runs. */
  next(key: string): E | undefined {
    const burst = this.#running.get(key);
    if (burst === undefined) return undefined;
    burst.remaining -= 1;
    if (burst.remaining <= 0) this.#running.delete(key);
    return burst.error;
  }
}
