/**
 * Step Functions execution names: no (job id, generation) pair takes another pair's name,
 * names fit Step Functions (at most 80 characters of `[A-Za-z0-9_-]`), stay readable and
 * are deterministic. Property runs are seeded (see fc-seeds.ts: `FC_SEED=<seed>` replays).
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EXECUTION_NAME_BASE_MAX_LENGTH,
  EXECUTION_NAME_MAX_LENGTH,
  executionNameForGeneration,
  executionNameForJob,
  MAX_EXECUTION_GENERATION,
  parseExecutionName,
} from '../../lambdas/contract/identifiers';
import { assertSeeded } from './fc-seeds';

const NAME_CHARS = /^[A-Za-z0-9_-]+$/;
const PLAIN_ID = /^[A-Za-z0-9-]+$/;

/** The hashed name the previous scheme gave `a.b`: `a_b-` and 24 hex digits of SHA-256 (UTF-8). */
function previousSchemeName(jobId: string): string {
  return `${jobId.replace(/[^A-Za-z0-9_-]/g, '_')}-${createHash('sha256').update(jobId).digest('hex').slice(0, 24)}`;
}

describe('execution names: the collisions of the previous scheme', () => {
  it.each([
    ['report', 1, 'report-g1'],
    ['report', 1, 'report_g1'],
    ['report', 12, 'report_g12'],
    ['a', 2, 'a_g2'],
  ])("job %j's generation %i is not the name of job %j", (jobId, generation, other) => {
    // Act
    const successor = executionNameForGeneration(jobId, generation);

    // Assess
    expect(successor).toBe(`${jobId}_g${generation}`);
    expect(executionNameForJob(other)).not.toBe(successor);
    expect(executionNameForGeneration(other, 0)).not.toBe(successor);
  });

  it('a job id shaped like the hashed name of another id does not take that name', () => {
    // Prepare: `a_b-<hex>` was the previous name of `a.b`; `a-b_h<hex>` is its name now
    const lookalikes = [previousSchemeName('a.b'), executionNameForJob('a.b'), `${executionNameForJob('a.b')}_g1`];

    // Act / Assess
    for (const jobId of lookalikes) {
      expect(executionNameForJob(jobId)).not.toBe(executionNameForJob('a.b'));
      expect(executionNameForGeneration(jobId, 1)).not.toBe(executionNameForGeneration('a.b', 1));
    }
    expect(executionNameForJob(executionNameForJob('a.b'))).toMatch(/^a-b-h[0-9a-f]{24}_h[0-9a-f]{24}$/);
  });

  it('ids that differ only in the characters the prefix replaces get different names', () => {
    const ids = ['a.b', 'a:b', 'a_b', 'a-b', 'a..b'];
    const names = ids.map(executionNameForJob);
    expect(new Set(names).size).toBe(ids.length);
    expect(names.slice(0, 3).map((name) => name.slice(0, 5))).toEqual(['a-b_h', 'a-b_h', 'a-b_h']);
  });

  it('ids that differ only in lone surrogates (equal in UTF-8) get different names', () => {
    expect(executionNameForJob('x\uD800')).not.toBe(executionNameForJob('x\uD801'));
  });
});

describe('execution names: format', () => {
  it.each([
    ['a plain id', 'orders-42', 'orders-42'],
    ['a plain id of 72 characters', 'a'.repeat(72), 'a'.repeat(72)],
  ])('keeps %s as the name', (_what, jobId, expected) => {
    expect(executionNameForJob(jobId)).toBe(expected);
    expect(executionNameForGeneration(jobId, 0)).toBe(expected);
    expect(executionNameForGeneration(jobId, 7)).toBe(`${expected}_g7`);
  });

  it.each([
    ['a colon', 'orders:42', 'orders-42'],
    ['a dot', 'orders.42', 'orders-42'],
    ['an underscore', 'orders_42', 'orders-42'],
    ['73 characters', 'a'.repeat(73), 'a'.repeat(46)],
    ['128 characters', `job.${'b'.repeat(124)}`, `job-${'b'.repeat(42)}`],
  ])('hashes an id with %s behind a readable prefix', (_what, jobId, prefix) => {
    const name = executionNameForJob(jobId);
    expect(name).toMatch(new RegExp(`^${prefix}_h[0-9a-f]{24}$`));
    expect(name.length).toBeLessThanOrEqual(EXECUTION_NAME_BASE_MAX_LENGTH);
  });

  it('names generation 999,999 of the longest base in 80 characters', () => {
    const name = executionNameForGeneration(`x:${'y'.repeat(126)}`, MAX_EXECUTION_GENERATION);
    expect(name).toMatch(/_g999999$/);
    expect(name).toHaveLength(EXECUTION_NAME_MAX_LENGTH);
    expect(executionNameForGeneration('z'.repeat(72), MAX_EXECUTION_GENERATION)).toHaveLength(EXECUTION_NAME_MAX_LENGTH);
  });

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, MAX_EXECUTION_GENERATION + 1])('refuses generation %d', (generation) => {
    expect(() => executionNameForGeneration('job-1', generation)).toThrow(RangeError);
  });

  it.each(['', 'x_g01', 'x_g0', 'x_g1000000', 'x_h123', 'x_y', `${'a'.repeat(73)}`, `x_h${'A'.repeat(24)}`])(
    'parseExecutionName refuses %j',
    (name) => {
      expect(parseExecutionName(name)).toBeUndefined();
    },
  );
});

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/** Characters that make names interesting: separators, the suffix letters, hex digits. */
const ID_CHARS = ['a', 'b', 'g', 'h', 'Z', '0', '1', '9', 'f', '-', '_', '.', ':'] as const;
const idOf = (minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.constantFrom('a', 'b', 'g', 'h', 'Z', '0', '1', 'f'),
      fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: Math.max(0, minLength - 1), maxLength: maxLength - 1 }),
    )
    .map(([head, tail]) => head + tail);

/** Job ids: short ones, ones around the 72-character limit, long ones up to 128. */
const baseJobId: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: idOf(1, 8), weight: 4 },
  { arbitrary: idOf(68, 76), weight: 2 },
  { arbitrary: idOf(72, 128), weight: 2 },
  { arbitrary: fc.string({ unit: fc.constantFrom('a', '_', '-', '\uD800', '\uD801', 'é'), maxLength: 6 }), weight: 1 },
);

const generation: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(0, 1, 2, 9, 10, 11, 99, 100, MAX_EXECUTION_GENERATION),
  fc.integer({ min: 0, max: MAX_EXECUTION_GENERATION }),
);

/** Shapes of ids built to look like the name of an id `x` (or of one of its successors). */
const LOOKALIKES: ReadonlyArray<(x: string, gen: number) => string> = [
  (x, gen) => `${x}-g${gen}`,
  (x, gen) => `${x}_g${gen}`,
  (x) => `${x}_h${createHash('sha256').update(x, 'utf16le').digest('hex').slice(0, 24)}`,
  (x) => `${x.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 46)}_h${createHash('sha256').update(x, 'utf16le').digest('hex').slice(0, 24)}`,
  (x) => `${x.replace(/[^A-Za-z0-9-]/g, '_')}-${createHash('sha256').update(x).digest('hex').slice(0, 24)}`,
  (x) => executionNameForJob(x),
  (x, gen) => executionNameForGeneration(x, gen),
  (x) => x.replace(/[^A-Za-z0-9]/g, '-'),
  (x) => x.replace(/[^A-Za-z0-9]/g, '_'),
  (x) => x.replace(/[^A-Za-z0-9]/g, '.'),
];

/**
 * A family of (job id, generation) pairs around one random id `x`: `x` in a random and in
 * the first generations, and every lookalike of `x` in generations 0, 1 and a random one.
 */
const family: fc.Arbitrary<ReadonlyArray<readonly [string, number]>> = fc
  .tuple(baseJobId, generation, generation)
  .map(([x, gen, other]) => {
    const pairs: Array<readonly [string, number]> = [
      [x, gen],
      [x, 0],
      [x, 1],
    ];
    for (const lookalike of LOOKALIKES) {
      const id = lookalike(x, gen);
      pairs.push([id, 0], [id, 1], [id, other]);
    }
    return pairs;
  });

describe('execution names: properties', () => {
  it('no two (job id, generation) pairs share a name, and every name has the format', () => {
    // Names seen across all runs of the property, with the pair that produced each.
    const seen = new Map<string, string>();
    assertSeeded(
      fc.property(fc.array(family, { minLength: 1, maxLength: 2 }), (families) => {
        for (const [id, gen] of families.flat()) {
          const name = executionNameForGeneration(id, gen);
          const pair = JSON.stringify([id, gen]);

          // Injective over everything seen so far.
          const owner = seen.get(name);
          if (owner !== undefined) expect(owner).toBe(pair);
          seen.set(name, pair);

          // Format and determinism.
          expect(name.length).toBeLessThanOrEqual(EXECUTION_NAME_MAX_LENGTH);
          expect(name).toMatch(NAME_CHARS);
          expect(executionNameForGeneration(id, gen)).toBe(name);

          // Decodable: the generation and the base come back from the name alone.
          const base = executionNameForJob(id);
          expect(base.length).toBeLessThanOrEqual(EXECUTION_NAME_BASE_MAX_LENGTH);
          expect(parseExecutionName(name)).toEqual({ base, generation: gen, kind: base === id ? 'plain' : 'hashed' });

          // Readable: a simple id is its own base; any other id shows in the prefix.
          if (PLAIN_ID.test(id) && id.length <= EXECUTION_NAME_BASE_MAX_LENGTH) expect(base).toBe(id);
          else expect(base.slice(0, base.length - 26)).toBe(id.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 46));
        }
      }),
      { seed: 20_240_610, numRuns: 150 },
    );
    expect(seen.size).toBeGreaterThan(2_000);
  });

  it('a pair and any lookalike pair (or any other pair) get different names', () => {
    const lookalikePairs = fc
      .tuple(baseJobId, generation, fc.nat({ max: LOOKALIKES.length - 1 }), fc.oneof(fc.constantFrom(0, 1), generation))
      .map(([x, gen, shape, other]): [readonly [string, number], readonly [string, number]] => [
        [x, gen],
        [LOOKALIKES[shape]!(x, gen), other],
      ]);
    const independentPairs = fc.tuple(fc.tuple(baseJobId, generation), fc.tuple(baseJobId, generation));
    assertSeeded(
      fc.property(fc.oneof(lookalikePairs, independentPairs), ([[a, genA], [b, genB]]) => {
        fc.pre(a !== b || genA !== genB);
        expect(executionNameForGeneration(a, genA)).not.toBe(executionNameForGeneration(b, genB));
      }),
      { seed: 20_240_611, numRuns: 2_000 },
    );
  });
});
