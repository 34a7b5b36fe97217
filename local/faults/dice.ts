/**
 * Keyed, seeded randomness that does not depend on the order of events: how fault injection
 * decides reproducibly (the chaos run's fault mix and its plan use it).
 *
 * A sequential generator gives a different fault to a request as soon as two concurrent
 * requests arrive in another order. Here every decision is a pure function of the seed, a
 * stream name and a key (for example `UpdateItem|job-0042|3`, the third UpdateItem of that
 * job), so a job meets the same faults on every run with the same seed, whatever else runs
 * beside it.
 */
import { deriveSeed, mulberry32, type RandomSource } from '../simulator/prng';

export class Dice {
  readonly #counts = new Map<string, number>();

  constructor(readonly seed: number) {}

  /** A number in [0, 1) that depends only on the seed, `stream` and `key`. */
  roll(stream: string, key: string): number {
    return mulberry32(deriveSeed(deriveSeed(this.seed, stream), key))();
  }

  /**
   * Numbers the occurrences of `key`: 1 for its first call, 2 for the second, ... (so the
   * n-th request for the same job and operation gets its own, reproducible roll).
   */
  occurrence(key: string): number {
    const next = (this.#counts.get(key) ?? 0) + 1;
    this.#counts.set(key, next);
    return next;
  }

  /** A sequential generator of its own for `stream` (for building the plan, in order). */
  stream(stream: string): RandomSource {
    return mulberry32(deriveSeed(this.seed, stream));
  }
}

/** An integer in [min, max] from `random`. */
export function intBetween(random: RandomSource, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** One of `items`, from `random`. */
export function pick<T>(random: RandomSource, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new RangeError('pick from an empty list');
  return item;
}
