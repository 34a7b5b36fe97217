/**
 * Seeded fast-check runs: every property runs once with a fixed seed (the same cases on
 * every run, so a regression shows up at once) and once with a fresh seed (new cases each
 * run). A failure names its seed; `FC_SEED=<seed> npx vitest run <file>` replays it (both
 * runs then use that seed).
 */
import fc from 'fast-check';

/** The seeds a property runs with: `FC_SEED` alone when set, else the fixed one and a fresh one. */
export function propertySeeds(fixedSeed: number): readonly number[] {
  const replay = process.env.FC_SEED;
  if (replay !== undefined && replay.trim() !== '') {
    const seed = Number(replay);
    if (!Number.isSafeInteger(seed)) throw new Error(`FC_SEED must be an integer, got ${JSON.stringify(replay)}`);
    return [seed];
  }
  return [fixedSeed, (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0];
}

/** `fc.assert` with each of {@link propertySeeds}; a failure's message starts with how to replay it. */
export function assertSeeded<Ts>(property: fc.IProperty<Ts>, options: { readonly seed: number; readonly numRuns: number }): void {
  for (const seed of propertySeeds(options.seed)) {
    try {
      fc.assert(property, { seed, numRuns: options.numRuns });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`property failed with seed ${seed}; replay with FC_SEED=${seed}\n${message}`, { cause: error });
    }
  }
}
