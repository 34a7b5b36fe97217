import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  adaptiveStrategy,
  DEFAULT_ADAPTIVE_SETTINGS,
  DEFAULT_EXPONENTIAL_SETTINGS,
  exponentialStrategy,
  fixedIntervalStrategy,
  budgetRefillSeconds,
  remainingEstimate,
  validateAdaptiveSettings,
  type AdaptiveSettings,
  type JobObservation,
  type PlanContext,
  type PollStrategy,
  type StrategyMemory,
  type StreamState,
} from '../../lambdas/domain/poll-strategy';
import { MAX_RETRY_AFTER_SECONDS } from '../../lambdas/contract/settings';

const FIXED = { intervalSeconds: 10, minSeconds: 1, maxSeconds: 300 };
const ours = adaptiveStrategy();

function context(overrides: Partial<PlanContext> = {}): PlanContext {
  return { now: 100, pollCount: 1, stream: 'available', maxListenSeconds: 580, random: () => 0.5, ...overrides };
}

function observation(at: number, overrides: Partial<JobObservation> = {}): JobObservation {
  return { at, status: 'RUNNING', progress: null, completedNodes: null, totalNodes: null, startedAt: 0, ...overrides };
}

/** Folds observations of `completed` of `total` nodes at the given times into a memory. */
function progressed(strategy: PollStrategy, steps: Array<[at: number, completed: number]>, total: number, exact = true): StrategyMemory {
  let memory: StrategyMemory | undefined;
  for (const [at, completed] of steps) {
    memory = strategy.observe(
      memory,
      observation(at, { completedNodes: completed, totalNodes: total, progress: (completed / total) * 100, exact }),
    );
  }
  return memory ?? {};
}

const anyNumber = fc.oneof(fc.double(), fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -1, 0, 1e12));
const anyObservation = fc.record({
  at: fc.oneof(fc.double({ min: 0, max: 1e6, noNaN: true }), anyNumber),
  status: fc.constantFrom('PENDING', 'RUNNING', 'UNKNOWN', null),
  progress: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 100, noNaN: true }), anyNumber),
  completedNodes: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 50 }), anyNumber),
  totalNodes: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 50 }), anyNumber),
  startedAt: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 1e5, noNaN: true }), anyNumber),
  currentNode: fc.oneof(fc.constant(null), fc.constantFrom('retrieve', 'summarise', 'node-3', '')),
  exact: fc.boolean(),
});
const anyContext = fc.record({
  now: fc.oneof(fc.double({ min: 0, max: 1e6, noNaN: true }), anyNumber),
  pollCount: fc.integer({ min: 1, max: 5000 }),
  stream: fc.constantFrom('available' as const, 'listened' as const, 'off' as const),
  maxListenSeconds: fc.oneof(fc.integer({ min: 0, max: 900 }), anyNumber),
  retryAfterSeconds: fc.option(fc.oneof(fc.integer({ min: 0, max: 10_000 }), anyNumber), { nil: undefined }),
  random: fc.constantFrom(
    () => 0,
    () => 0.999_999,
    () => Number.NaN,
    () => 2,
  ),
});

describe('fixedIntervalStrategy', () => {
  it('waits the interval before the first poll and after every poll, and never listens', () => {
    // Prepare
    const fixed = fixedIntervalStrategy(FIXED);

    // Act
    const first = fixed.firstWaitSeconds(() => 0.5);
    const plan = fixed.plan(undefined, context());

    // Assess
    expect(first).toBe(10);
    expect(plan).toEqual({ memory: {}, listenSeconds: 0, waitSeconds: 10 });
    expect(fixed.keepListening({}, 10)).toBe(false);
  });

  it('honours Retry-After', () => {
    expect(fixedIntervalStrategy(FIXED).plan(undefined, context({ retryAfterSeconds: 45 })).waitSeconds).toBe(45);
  });
});

describe('exponentialStrategy', () => {
  it('draws from 5 s first, x1.5 per poll, capped at 300 s (full jitter: the top of the range with random ~1)', () => {
    // Prepare
    const exponential = exponentialStrategy(DEFAULT_EXPONENTIAL_SETTINGS);
    const top = () => 0.999_999_999;

    // Act
    const waits = [
      exponential.firstWaitSeconds(top),
      ...[1, 2, 3, 4, 10, 11, 12, 40].map((pollCount) => exponential.plan(undefined, context({ pollCount, random: top })).waitSeconds),
    ];

    // Assess: 5, 7.5, 11.25, 16.9, 25.3, 288.3, 432 -> 300 (cap)
    expect(waits).toEqual([5, 8, 12, 17, 26, 289, 300, 300, 300]);
  });

  it('waits at least 1 s when the draw is 0 (Step Functions waits whole seconds)', () => {
    expect(exponentialStrategy().plan(undefined, context({ pollCount: 9, random: () => 0 })).waitSeconds).toBe(1);
  });

  it('always waits a whole number within [1, 300], or the Retry-After, whatever the random source gives', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000 }),
        anyNumber,
        fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: undefined }),
        (pollCount, draw, retryAfterSeconds) => {
          const wait = exponentialStrategy().plan(
            undefined,
            context({ pollCount, random: () => draw, ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }) }),
          ).waitSeconds;
          expect(Number.isInteger(wait)).toBe(true);
          const ceiling = Math.max(300, Math.min(retryAfterSeconds ?? 0, MAX_RETRY_AFTER_SECONDS));
          expect(wait).toBeGreaterThanOrEqual(Math.max(1, Math.min(retryAfterSeconds ?? 0, MAX_RETRY_AFTER_SECONDS)));
          expect(wait).toBeLessThanOrEqual(ceiling);
        },
      ),
    );
  });
});

describe('adaptiveStrategy (ours): invariants', () => {
  it('plans whole-second waits within [min, max] (or the capped Retry-After), listens within the budget, and never returns NaN', () => {
    fc.assert(
      fc.property(
        fc.array(anyObservation, { maxLength: 12 }),
        fc.array(anyContext, { minLength: 1, maxLength: 4 }),
        (observations, contexts) => {
          let memory: StrategyMemory | undefined;
          for (const next of observations) memory = ours.observe(memory, next);
          for (const ctx of contexts) {
            const plan = ours.plan(memory, ctx);
            memory = plan.memory;
            const retryAfter =
              ctx.retryAfterSeconds === undefined || Number.isNaN(ctx.retryAfterSeconds)
                ? 0
                : Math.min(Math.ceil(ctx.retryAfterSeconds), MAX_RETRY_AFTER_SECONDS);
            expect(Number.isInteger(plan.waitSeconds)).toBe(true);
            expect(plan.waitSeconds).toBeGreaterThanOrEqual(Math.max(DEFAULT_ADAPTIVE_SETTINGS.minSeconds, retryAfter));
            // The history budget may hold a poll back beyond maxSeconds, by at most one refill.
            expect(plan.waitSeconds).toBeLessThanOrEqual(
              Math.max(DEFAULT_ADAPTIVE_SETTINGS.maxSeconds, retryAfter, Math.ceil(budgetRefillSeconds(DEFAULT_ADAPTIVE_SETTINGS))),
            );
            expect(Number.isInteger(plan.listenSeconds)).toBe(true);
            expect(plan.listenSeconds).toBeGreaterThanOrEqual(0);
            if (plan.listenSeconds > 0) {
              expect(ctx.stream).toBe('available');
              expect(ctx.retryAfterSeconds).toBeUndefined();
              expect(plan.listenSeconds).toBeLessThanOrEqual(Math.floor(ctx.maxListenSeconds));
            }
            expect(typeof ours.keepListening(memory, ctx.now)).toBe('boolean');
          }
          // The memory travels in every history event: small, and plain JSON.
          const json = JSON.stringify(memory ?? {});
          expect(json.length).toBeLessThan(320);
          expect(JSON.parse(json)).toEqual(memory ?? {});
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps a memory JSON gives back unchanged at time -0 (found by the property above)', () => {
    const plan = ours.plan(undefined, context({ now: -0 }));

    expect(JSON.parse(JSON.stringify(plan.memory))).toEqual(plan.memory);
  });

  it('honours Retry-After: waits at least as long as asked (capped at an hour) and does not listen', () => {
    // Prepare: a job near its end, which would otherwise listen at once
    const memory = progressed(
      ours,
      [
        [100, 8],
        [200, 9],
      ],
      10,
    );

    // Act
    const asked = ours.plan(memory, context({ now: 250, retryAfterSeconds: 120 }));
    const huge = ours.plan(memory, context({ now: 250, retryAfterSeconds: 1e9 }));

    // Assess
    expect(asked).toMatchObject({ listenSeconds: 0, waitSeconds: 120 });
    expect(huge).toMatchObject({ listenSeconds: 0, waitSeconds: MAX_RETRY_AFTER_SECONDS });
  });

  it('waits before the first poll the deployment interval (pollIntervalSeconds)', () => {
    expect(adaptiveStrategy({ ...DEFAULT_ADAPTIVE_SETTINGS, intervalSeconds: 7 }).firstWaitSeconds(() => 0.5)).toBe(7);
  });

  it.each([
    ['spread', 0],
    ['fraction', 1.5],
    ['budgetBurst', 0.5],
    ['minSeconds', 0],
    ['trend', -1],
    ['nodeSafety', Number.NaN],
  ] as Array<[keyof AdaptiveSettings, number]>)('refuses a setting %s of %s', (name, value) => {
    expect(() => validateAdaptiveSettings({ ...DEFAULT_ADAPTIVE_SETTINGS, [name]: value })).toThrow(RangeError);
    expect(() => adaptiveStrategy({ ...DEFAULT_ADAPTIVE_SETTINGS, [name]: value })).toThrow(name);
  });
});

describe('adaptiveStrategy (ours): decisions', () => {
  it('sleeps while the end is far, within the cap, and short of the earliest plausible end', () => {
    // Prepare: 10 nodes of ~600 s each; 2 done at 1200 s
    const memory = progressed(
      ours,
      [
        [600, 1],
        [1200, 2],
      ],
      10,
    );
    const estimate = remainingEstimate(DEFAULT_ADAPTIVE_SETTINGS, memory, 1200)!;

    // Act
    const plan = ours.plan(memory, context({ now: 1200 }));

    // Assess: ~4,800 s to go; the earliest plausible end is well after the wait
    expect(estimate.lo).toBeGreaterThan(2000);
    expect(estimate.mid).toBeGreaterThan(estimate.lo);
    expect(plan).toMatchObject({ listenSeconds: 0, waitSeconds: DEFAULT_ADAPTIVE_SETTINGS.maxSeconds });
  });

  it('listens as long as the invocation allows when the end may be near, and keeps listening until it is not', () => {
    // Prepare: the last of 10 nodes (~600 s each) has been running for 500 s
    const memory = progressed(ours, Array.from({ length: 10 }, (_, i) => [(i + 1) * 600, i + 1] as [number, number]).slice(0, 9), 10);

    // Act
    const plan = ours.plan(memory, context({ now: 5900, maxListenSeconds: 580 }));

    // Assess
    expect(plan.listenSeconds).toBe(580);
    expect(ours.keepListening(plan.memory, 6000)).toBe(true);
  });

  it('after a listen that did not hear the end, comes back after minSeconds to listen again', () => {
    const memory = progressed(
      ours,
      Array.from({ length: 9 }, (_, i) => [(i + 1) * 600, i + 1] as [number, number]),
      10,
    );
    expect(ours.plan(memory, context({ now: 5900, stream: 'listened', maxListenSeconds: 0 }))).toMatchObject({
      listenSeconds: 0,
      waitSeconds: DEFAULT_ADAPTIVE_SETTINGS.minSeconds,
    });
  });

  it('stops listening when the stream shows the end is far (a step finished much earlier than the rest needs)', () => {
    // Prepare: first of 10 steps, running 30 s: listening (the job might be short)
    let memory = ours.observe(undefined, observation(30, { progress: 0, completedNodes: 0, totalNodes: 10 }));
    expect(ours.keepListening(memory, 31)).toBe(true);

    // Act: the stream says the first step ended at 40 s: nine more of ~40 s each
    memory = ours.observe(memory, observation(40, { progress: 10, completedNodes: 1, totalNodes: 10, exact: true }));

    // Assess
    expect(ours.keepListening(memory, 40)).toBe(false);
    expect(ours.plan(memory, context({ now: 41, stream: 'listened', maxListenSeconds: 0 })).waitSeconds).toBeGreaterThan(60);
  });

  it('after a stalled step, estimates the rest at the pace of the steps before the stall', () => {
    // Prepare: 6 steps; 3 fast (60 s), then the 4th took 3,000 s
    const memory = progressed(
      ours,
      [
        [60, 1],
        [120, 2],
        [180, 3],
        [3180, 4],
      ],
      6,
    );

    // Act
    const estimate = remainingEstimate(DEFAULT_ADAPTIVE_SETTINGS, memory, 3180)!;

    // Assess: two steps left, plausibly ~120 s, not the stall's 6,000 s
    expect(estimate.lo).toBeLessThan(120);
    expect(ours.plan(memory, context({ now: 3180 })).listenSeconds).toBeGreaterThan(0);
  });

  it('during a stall, looks again before the fast steps after it could be done, and further apart as the stall goes on', () => {
    // Prepare: 6 steps of 60 s, the 4th stalled for 1,000 s so far
    const memory = progressed(
      ours,
      [
        [60, 1],
        [120, 2],
        [180, 3],
      ],
      6,
    );

    // Act
    const early = ours.plan(memory, context({ now: 1180 }));
    const later = ours.plan(memory, context({ now: 4180 }));
    const withoutStallShare = adaptiveStrategy({ ...DEFAULT_ADAPTIVE_SETTINGS, stallShare: 0 }).plan(memory, context({ now: 4180 }));

    // Assess: the 2 steps after the stalled one take ~120 s: it looks again sooner, without
    // listening through the stall; a step silent for an hour is given longer
    expect(early).toMatchObject({ listenSeconds: 0 });
    expect(early.waitSeconds).toBeLessThan(120);
    expect(later.listenSeconds).toBe(0);
    expect(later.waitSeconds).toBeGreaterThan(early.waitSeconds);
    expect(withoutStallShare.waitSeconds).toBeLessThan(later.waitSeconds);
  });

  it('dates a change a status read shows at the previous observation, and a stream event when it arrived', () => {
    // Prepare
    const read = progressed(
      ours,
      [
        [100, 0],
        [400, 1],
      ],
      4,
      false,
    );
    const heard = progressed(
      ours,
      [
        [100, 0],
        [400, 1],
      ],
      4,
      true,
    );

    // Assess: [earliest, percent, latest]
    expect(read.b).toEqual([100, 25, 400]);
    expect(heard.b).toEqual([400, 25, 400]);
  });

  describe('jobs that report no progress', () => {
    it('listens while the job is young, then sleeps a share of its age', () => {
      // Prepare
      const young = ours.observe(undefined, observation(60));
      const old = ours.observe(undefined, observation(1000));

      // Act / Assess
      expect(ours.plan(young, context({ now: 60 })).listenSeconds).toBe(580);
      expect(ours.plan(old, context({ now: 1000 }))).toMatchObject({ listenSeconds: 0, waitSeconds: 250 });
    });

    it('learns node durations from node changes: sleeps after a change, listens when the next change is due', () => {
      // Prepare: nodes change every 600 s (node names from the status read or node_started)
      let memory: StrategyMemory | undefined;
      for (const [at, node] of [
        [10, 'a'],
        [600, 'b'],
        [1200, 'c'],
      ] as const)
        memory = ours.observe(memory, observation(at, { currentNode: node, exact: true }));

      // Act
      const rightAfter = ours.plan(memory, context({ now: 1201 }));
      const dueSoon = ours.plan(rightAfter.memory, context({ now: 1700, pollCount: 2 }));

      // Assess
      expect(memory?.c).toEqual([1200, 2]);
      expect(rightAfter.listenSeconds).toBe(0);
      expect(rightAfter.waitSeconds).toBeGreaterThan(60);
      expect(dueSoon.listenSeconds).toBe(580);
    });
  });

  describe('the stream failing', () => {
    it('is left alone for a while (polls only), the pause doubling per failure; a working stream clears it', () => {
      // Prepare: near the end, where it would listen
      const near = progressed(
        ours,
        Array.from({ length: 9 }, (_, i) => [(i + 1) * 600, i + 1] as [number, number]),
        10,
      );

      // Act
      const once = ours.streamFailed(near, 5900);
      const twice = ours.streamFailed(once, 5960);
      const healed = ours.streamWorked(twice);

      // Assess
      expect(once).toMatchObject({ e: 1, x: 5960 });
      expect(twice).toMatchObject({ e: 2, x: 6080 });
      const meanwhile = ours.plan(twice, context({ now: 6000 }));
      expect(meanwhile.listenSeconds).toBe(0);
      expect(meanwhile.waitSeconds).toBeGreaterThanOrEqual(1);
      expect(ours.plan(twice, context({ now: 6100 })).listenSeconds).toBe(580);
      expect(healed.e).toBeUndefined();
      expect(healed.x).toBeUndefined();
    });
  });

  describe('the history budget', () => {
    it('never lets more than 10 polls into any hour, whatever the job does and however the stream behaves', () => {
      fc.assert(
        fc.property(
          fc.array(
            fc.record({
              progress: fc.option(fc.double({ min: 0, max: 100, noNaN: true })),
              node: fc.option(fc.constantFrom('a', 'b', 'c')),
              stream: fc.constantFrom<StreamState>('available', 'off'),
              listened: fc.double({ min: 0, max: 1, noNaN: true }),
              lateBy: fc.double({ min: 0, max: 5, noNaN: true }),
              retryAfterSeconds: fc.option(fc.integer({ min: 1, max: 120 }), { nil: undefined }),
            }),
            { minLength: 1, maxLength: 80 },
          ),
          (polls) => {
            // Act: a poll loop in job time; each poll observes, plans, maybe listens (for a
            // share of its listen window), plans again, and the next comes after the wait
            let memory: StrategyMemory | undefined;
            let now = 10;
            const pollTimes: number[] = [];
            for (const poll of polls) {
              pollTimes.push(now);
              memory = ours.observe(memory, observation(now, { progress: poll.progress, currentNode: poll.node }));
              const base = { now, pollCount: pollTimes.length, random: () => 0.5, retryAfterSeconds: poll.retryAfterSeconds };
              let plan = ours.plan(memory, { ...base, stream: poll.stream, maxListenSeconds: 580 });
              if (plan.listenSeconds > 0) {
                now += plan.listenSeconds * poll.listened;
                plan = ours.plan(plan.memory, { ...base, now, stream: 'listened', maxListenSeconds: 0 });
              }
              memory = plan.memory;
              now += plan.waitSeconds + poll.lateBy;
            }

            // Assess
            for (const [i, start] of pollTimes.entries()) {
              expect(pollTimes.filter((at, j) => j >= i && at - start < 3600).length).toBeLessThanOrEqual(10);
            }
          },
        ),
        { numRuns: 200 },
      );
    });

    it('bounds the polls per hour: once the burst is spent, a poll listens until the next one may come', () => {
      // Prepare: a tight budget (2 polls, then 6 per hour) on a job with nothing to estimate
      const tight = adaptiveStrategy({ ...DEFAULT_ADAPTIVE_SETTINGS, budgetBurst: 2, budgetPerHour: 6, blindListenSeconds: 0 });
      let memory = tight.observe(undefined, observation(400));

      // Act: three polls in quick succession
      const plans = [400, 401, 402].map((now, i) => {
        const plan = tight.plan(memory, context({ now, pollCount: i + 1 }));
        memory = plan.memory;
        return plan;
      });

      // Assess: the third poll may not come before ~600 s after the first: it listens instead of polling sooner
      expect(plans[0]!.listenSeconds).toBe(0);
      expect(plans[2]!.listenSeconds + plans[2]!.waitSeconds).toBeGreaterThanOrEqual(500);
    });
  });
});
