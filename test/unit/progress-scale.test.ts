/**
 * Progress as a fraction (0..1) or a percent (0..100): the scale is decided from the data,
 * never taking 1 % for 100 %; status mapping and the stream report percents either way.
 * Property runs are seeded (see fc-seeds.ts: `FC_SEED=<seed>` replays).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WATERFLAI_STATUS, type WaterflaiStatus } from '../../lambdas/contract/constants';
import { listenToExecution, parseStreamEvent, type SseEvent, type StreamProgress } from '../../lambdas/waterflai/stream';
import {
  inferProgressScale,
  progressSampleOf,
  readProgress,
  toPercent,
  type ProgressSample,
  type ProgressScale,
} from '../../lambdas/domain/progress-scale';
import { mapExecutionStatus } from '../../lambdas/domain/status-mapping';
import type { ExecutionStatus } from '../../lambdas/contract/waterflai-api';
import { assertSeeded } from './fc-seeds';

const sample = (progress: number | null, nodes?: readonly [number | null, number | null], status?: string): ProgressSample => ({
  progress,
  completedNodes: nodes?.[0] ?? null,
  totalNodes: nodes?.[1] ?? null,
  ...(status === undefined ? {} : { status }),
});

/** The scale after a series of samples, starting undecided. */
const inferAll = (samples: readonly ProgressSample[], start?: ProgressScale): ProgressScale | undefined =>
  samples.reduce<ProgressScale | undefined>((scale, next) => inferProgressScale(scale, next), start);

describe('inferProgressScale', () => {
  describe('decides from one value', () => {
    it.each<[string, ProgressSample, ProgressScale | undefined]>([
      ['37: above 1, a percent', sample(37), 'percent'],
      ['1.5: above 1, a percent', sample(1.5), 'percent'],
      ['100: a percent', sample(100), 'percent'],
      ['0.37 without node counts: a fraction', sample(0.37), 'fraction'],
      ['0.999 without node counts: a fraction', sample(0.999), 'fraction'],
      ['0: nothing', sample(0), undefined],
      ['exactly 1: nothing (1 % or 100 %)', sample(1), undefined],
      ['1 plus float noise (7 * 0.1 / 0.7): nothing', sample((7 * 0.1) / 0.7), undefined],
      ['no progress: nothing', sample(null, [3, 10]), undefined],
      ['a negative value: nothing', sample(-0.5), undefined],
      ['NaN: nothing', sample(Number.NaN), undefined],
    ])('%s', (_rule, given, expected) => {
      expect(inferProgressScale(undefined, given)).toBe(expected);
    });
  });

  describe('node counts, when usable, decide between the readings', () => {
    it.each<[string, ProgressSample, ProgressScale | undefined]>([
      ['1 with 1 of 100 nodes: 1 %, a percent', sample(1, [1, 100]), 'percent'],
      ['1 with 100 of 100 nodes: 100 %, a fraction', sample(1, [100, 100]), 'fraction'],
      ['0.9 with 9 of 10 nodes: a fraction', sample(0.9, [9, 10]), 'fraction'],
      ['0.5 with 0 of 10 nodes: 0.5 %, a percent', sample(0.5, [0, 10]), 'percent'],
      ['0.5 with 1 of 2 nodes: fits both, nothing', sample(0.5, [1, 2]), undefined],
      ['0.37 with 1 of 3 nodes: fits both, nothing (and no fallback to fraction)', sample(0.37, [1, 3]), undefined],
      ['0.4 with 0 of 3 nodes: the fraction misses by under two nodes, nothing', sample(0.4, [0, 3]), undefined],
      ['0.9 with 1 of 3 nodes (a long first node?): nothing', sample(0.9, [1, 3]), undefined],
      ['0.37 with 5 of 3 nodes: counts unusable, a fraction by the value', sample(0.37, [5, 3]), 'fraction'],
      ['0.37 with 0 of 0 nodes: counts unusable, a fraction by the value', sample(0.37, [0, 0]), 'fraction'],
      ['0.37 with only a total: counts unusable, a fraction by the value', sample(0.37, [null, 10]), 'fraction'],
      ['60 with 1 of 100 nodes: above 1 wins', sample(60, [1, 100]), 'percent'],
    ])('%s', (_rule, given, expected) => {
      expect(inferProgressScale(undefined, given)).toBe(expected);
    });
  });

  describe('COMPLETED', () => {
    it.each<[string, ProgressSample, ProgressScale | undefined]>([
      ['with exactly 1: a fraction', sample(1, undefined, 'COMPLETED'), 'fraction'],
      ['with 1 and 1 of 100 nodes (skipped branches): a fraction', sample(1, [1, 100], 'COMPLETED'), 'fraction'],
      ['with 100: a percent', sample(100, undefined, 'COMPLETED'), 'percent'],
      ['with 0: nothing', sample(0, undefined, 'COMPLETED'), undefined],
      ['RUNNING with exactly 1: nothing', sample(1, undefined, 'RUNNING'), undefined],
    ])('%s', (_rule, given, expected) => {
      expect(inferProgressScale(undefined, given)).toBe(expected);
    });
  });

  describe('a decision sticks unless a value above 1 contradicts it', () => {
    it.each<[string, ProgressScale, ProgressSample, ProgressScale]>([
      ['fraction, then 0.2', 'fraction', sample(0.2), 'fraction'],
      ['fraction, then 1 with 1 of 100 nodes', 'fraction', sample(1, [1, 100]), 'fraction'],
      ['fraction, then no progress', 'fraction', sample(null), 'fraction'],
      ['fraction, then 60: a percent after all', 'fraction', sample(60), 'percent'],
      ['percent, then 0.5', 'percent', sample(0.5), 'percent'],
      ['percent, then 1 with 100 of 100 nodes', 'percent', sample(1, [100, 100]), 'percent'],
      ['percent, then COMPLETED with 1', 'percent', sample(1, undefined, 'COMPLETED'), 'percent'],
    ])('%s', (_rule, previous, given, expected) => {
      expect(inferProgressScale(previous, given)).toBe(expected);
    });
  });

  it.each<[string, readonly ProgressSample[], ProgressScale | undefined]>([
    ['0.5 then 60', [sample(0.5), sample(60)], 'percent'],
    ['0 then 1 then 1', [sample(0), sample(1), sample(1)], undefined],
    ['0 then 0.25 then 0.5', [sample(0), sample(0.25), sample(0.5)], 'fraction'],
    ['0 then 1 then COMPLETED 1', [sample(0), sample(1), sample(1, undefined, 'COMPLETED')], 'fraction'],
    ['0.4 with 0/3, then 0.7 with 1/3, then 0.9 with 2/3', [sample(0.4, [0, 3]), sample(0.7, [1, 3]), sample(0.9, [2, 3])], 'fraction'],
    ['1 with 1/100, then 0.5 (a percent sticks)', [sample(1, [1, 100]), sample(0.5)], 'percent'],
  ])('series %s', (_name, samples, expected) => {
    expect(inferAll(samples)).toBe(expected);
  });
});

describe('toPercent', () => {
  it.each<[number | null, ProgressScale | undefined, number | null]>([
    [null, 'fraction', null],
    [Number.NaN, 'percent', null],
    [0.5, 'fraction', 50],
    [1, 'fraction', 100],
    [(7 * 0.1) / 0.7, 'fraction', 100],
    [0.5, 'percent', 0.5],
    [0.5, undefined, 0.5],
    [1, undefined, 1],
    [37, undefined, 37],
    [150, 'percent', 100],
    [-1, 'percent', 0],
  ])('%s read as %s is %s %', (progress, scale, expected) => {
    expect(toPercent(progress, scale)).toBe(expected);
  });

  it('readProgress infers, then converts with the new scale', () => {
    expect(readProgress(undefined, sample(0.37))).toEqual({ scale: 'fraction', percent: 37 });
    expect(readProgress(undefined, sample(1))).toEqual({ scale: undefined, percent: 1 });
    expect(readProgress(undefined, sample(1, undefined, 'COMPLETED'))).toEqual({ scale: 'fraction', percent: 100 });
    expect(readProgress('fraction', sample(null))).toEqual({ scale: 'fraction', percent: null });
  });
});

// ---------------------------------------------------------------------------------------
// Properties: series consistent with a true scale are never read in the wrong one
// ---------------------------------------------------------------------------------------

interface Series {
  readonly scale: ProgressScale;
  readonly samples: readonly ProgressSample[];
  /** The true completion (0..1) of each sample. */
  readonly truth: readonly (number | null)[];
}

/** True completion values: any double, hundredths, and the edges. */
const completion = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }),
  fc.integer({ min: 0, max: 100 }).map((n) => n / 100),
  fc.constantFrom(0, 0.01, 1e-6, 0.5, 0.99, 1),
);

/**
 * A monotone series of true completions in a true scale. With `counts`, every sample
 * carries node counts within one node of the completion (`|f - completed/total| <=
 * 1/total`, completed nondecreasing); some samples carry no progress (node events); the
 * series may end with COMPLETED at 100 % with every node done.
 */
const series = (counts: boolean): fc.Arbitrary<Series> =>
  fc
    .record({
      scale: fc.constantFrom<ProgressScale>('fraction', 'percent'),
      total: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 300 })),
      values: fc.array(fc.tuple(completion, fc.nat(), fc.boolean(), fc.nat({ max: 9 })), { minLength: 1, maxLength: 25 }),
      completed: fc.boolean(),
      statusless: fc.boolean(),
    })
    .map(({ scale, total, values, completed, statusless }) => {
      const sorted = [...values].sort((a, b) => a[0] - b[0]);
      const samples: ProgressSample[] = [];
      const truth: (number | null)[] = [];
      let done = 0;
      for (const [f, pick, , silent] of sorted) {
        const lo = Math.max(0, Math.ceil(f * total - 1));
        const hi = Math.min(total, Math.floor(f * total + 1));
        done = Math.max(done, lo + (pick % (hi - lo + 1)));
        const progress = silent === 0 ? null : scale === 'fraction' ? f : f * 100;
        const status: WaterflaiStatus | undefined = statusless ? undefined : WATERFLAI_STATUS.RUNNING;
        samples.push(sample(progress, counts ? [done, total] : undefined, status));
        truth.push(progress === null ? null : f);
      }
      if (completed) {
        samples.push(sample(scale === 'fraction' ? 1 : 100, counts ? [total, total] : undefined, WATERFLAI_STATUS.COMPLETED));
        truth.push(1);
      }
      return { scale, samples, truth };
    });

describe('inferProgressScale properties', () => {
  it('with node counts consistent with the true scale, never infers the wrong scale', () => {
    assertSeeded(
      fc.property(series(true), ({ scale, samples, truth }) => {
        let inferred: ProgressScale | undefined;
        samples.forEach((next, index) => {
          inferred = inferProgressScale(inferred, next);
          expect([undefined, scale]).toContain(inferred);
          // Once decided, the percent read is the truth.
          const f = truth[index];
          if (inferred !== undefined && f !== null && f !== undefined) expect(toPercent(next.progress, inferred)).toBeCloseTo(f * 100, 9);
        });
        if (samples.at(-1)?.status === WATERFLAI_STATUS.COMPLETED) expect(inferred).toBe(scale);
      }),
      { seed: 5_551_212, numRuns: 500 },
    );
  });

  it('without node counts, a fraction is never taken for a percent, and a percent is known from its first value above 1', () => {
    assertSeeded(
      fc.property(series(false), ({ scale, samples }) => {
        let inferred: ProgressScale | undefined;
        let aboveOne = false;
        for (const next of samples) {
          inferred = inferProgressScale(inferred, next);
          aboveOne ||= next.progress !== null && next.progress > 1;
          if (scale === 'fraction') expect(inferred).not.toBe('percent');
          if (aboveOne) expect(inferred).toBe('percent');
        }
        if (samples.at(-1)?.status === WATERFLAI_STATUS.COMPLETED) expect(inferred).toBe(scale);
      }),
      { seed: 5_551_213, numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------
// Wiring: the recorded progress and the stream's progress are percents either way
// ---------------------------------------------------------------------------------------

function execution(overrides: Partial<ExecutionStatus> = {}): ExecutionStatus {
  return {
    execution_id: 'exec-1',
    status: 'RUNNING',
    known_status: 'RUNNING',
    progress: 0.37,
    current_node: 'summarise',
    completed_nodes: null,
    total_nodes: null,
    final_output: undefined,
    error_message: null,
    created_at: null,
    started_at: null,
    completed_at: null,
    retry_count: null,
    execution_source: null,
    is_temporary: null,
    cleanup_after: null,
    ...overrides,
  };
}

describe('mapExecutionStatus with a progress scale', () => {
  const at = '2025-03-01T12:00:00.000Z';

  it.each<[string, Partial<ExecutionStatus>, ProgressScale | undefined, number | null]>([
    ['a fraction', { progress: 0.37 }, 'fraction', 37],
    ['a fraction with float noise, to two decimals', { progress: 0.29 }, 'fraction', 29],
    ['a percent', { progress: 37 }, 'percent', 37],
    ['undecided: as a percent (as before)', { progress: 0.37 }, undefined, 0.37],
    ['no progress', { progress: null }, 'fraction', null],
    [
      'COMPLETED with 1 as a fraction',
      { status: 'COMPLETED', known_status: 'COMPLETED', progress: 1, final_output: { a: 1 } },
      'fraction',
      100,
    ],
  ])('records %s as a percent', (_what, overrides, scale, expected) => {
    expect(mapExecutionStatus(execution(overrides), at, 1024, scale).fields.progress).toBe(expected);
  });

  it('with the scale inferred from the same status, as the poll Lambda calls it', () => {
    const given = execution({
      status: 'COMPLETED',
      known_status: 'COMPLETED',
      progress: 1,
      completed_nodes: 4,
      total_nodes: 4,
      final_output: 'x',
    });
    const scale = inferProgressScale(undefined, progressSampleOf(given));
    expect(scale).toBe('fraction');
    expect(mapExecutionStatus(given, at, 1024, scale).fields.progress).toBe(100);
  });
});

describe('the stream with fractional progress', () => {
  const event = (payload: unknown): SseEvent => ({ event: 'message', data: JSON.stringify(payload), id: '' });

  it.each<[string, unknown, ProgressScale | undefined, number | null, ProgressScale | undefined]>([
    ['the contract example 50.0', { type: 'progress_update', progress: 50.0 }, undefined, 50, 'percent'],
    ['0.5', { type: 'progress_update', progress: 0.5 }, undefined, 50, 'fraction'],
    [
      '0.5 with 1 of 2 nodes: undecided, read as a percent',
      { type: 'progress_update', progress: 0.5, completed_nodes: 1, total_nodes: 2 },
      undefined,
      0.5,
      undefined,
    ],
    [
      '0.5 of a known fraction server',
      { type: 'progress_update', progress: 0.5, completed_nodes: 1, total_nodes: 2 },
      'fraction',
      50,
      'fraction',
    ],
    ['1 of a known fraction server', { type: 'progress_update', progress: 1 }, 'fraction', 100, 'fraction'],
    ['0.5 of a known percent server', { type: 'progress_update', progress: 0.5 }, 'percent', 0.5, 'percent'],
    ['a node event without progress', { type: 'node_started', node_id: 'n' }, 'fraction', null, 'fraction'],
  ])('parseStreamEvent reads %s', (_what, payload, before, progress, after) => {
    const parsed = parseStreamEvent(event(payload), 1_000, before);
    expect(parsed?.progress).toBe(progress);
    expect(parsed?.progressScale).toBe(after);
  });

  /** A fetch answering with the given SSE text. */
  const answering =
    (text: string): typeof fetch =>
    async () =>
      new Response(text, { status: 200, headers: { 'content-type': 'text/event-stream' } });
  const sse = (...payloads: unknown[]): string => payloads.map((payload) => `data: ${JSON.stringify(payload)}\n\n`).join('');

  it('listenToExecution reads a fraction stream as percents and reports the scale it decided', async () => {
    // Prepare
    const seen: StreamProgress[] = [];
    const text = sse(
      { type: 'progress_update', progress: 0 },
      { type: 'progress_update', progress: 0.25 },
      { type: 'node_started', node_id: 'b' },
      { type: 'progress_update', progress: 0.5 },
    );

    // Act
    const result = await listenToExecution({
      url: 'http://waterflai.test/stream',
      apiKey: () => 'k-0123456789',
      windowMs: 2_000,
      fetch: answering(text),
      onEvent: (e) => seen.push(e),
    });

    // Assess
    expect(result.outcome).toBe('closed');
    expect(seen.map((e) => [e.progress, e.progressScale])).toEqual([
      [0, undefined],
      [25, 'fraction'],
      [null, 'fraction'],
      [50, 'fraction'],
    ]);
    expect(result.progressScale).toBe('fraction');
  });

  it('listenToExecution starts from the scale the caller knows', async () => {
    const text = sse({ type: 'progress_update', progress: 1 }, { type: 'execution_completed', status: 'COMPLETED', progress: 1 });
    const seen: StreamProgress[] = [];

    const result = await listenToExecution({
      url: 'http://waterflai.test/stream',
      apiKey: () => 'k-0123456789',
      windowMs: 2_000,
      fetch: answering(text),
      progressScale: 'fraction',
      onEvent: (e) => seen.push(e),
    });

    expect(result.outcome).toBe('completed');
    expect(seen.map((e) => e.progress)).toEqual([100, 100]);
    expect(result.progressScale).toBe('fraction');
  });

  it('listenToExecution leaves a percent stream as it is, and an undecided one undecided', async () => {
    const percent = await listenToExecution({
      url: 'http://waterflai.test/stream',
      apiKey: () => 'k-0123456789',
      windowMs: 2_000,
      fetch: answering(sse({ type: 'progress_update', progress: 50.0 })),
    });
    const undecided = await listenToExecution({
      url: 'http://waterflai.test/stream',
      apiKey: () => 'k-0123456789',
      windowMs: 2_000,
      fetch: answering(sse({ type: 'progress_update', progress: 1 })),
    });

    expect(percent.progress.map((e) => e.progress)).toEqual([50]);
    expect(percent.progressScale).toBe('percent');
    expect(undecided.progress.map((e) => e.progress)).toEqual([1]);
    expect(undecided).not.toHaveProperty('progressScale');
  });
});
