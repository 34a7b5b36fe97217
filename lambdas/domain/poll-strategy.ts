/**
 * Decides how long to wait before the next status poll, and when a poll should listen on
 * the execution's event stream instead of going back to sleep. Pure: no AWS imports, no
 * clock, no randomness of its own (a random source is passed in), so the poll Lambda, the
 * tests and the benchmark (`npm run bench`) run exactly the same code.
 *
 * Three strategies share one interface ({@link PollStrategy}); the bench compares four settings of them:
 * - {@link fixedIntervalStrategy} 10 s and 30 s: the common "poll every N seconds";
 * - {@link exponentialStrategy}: 5 s first, x1.5, capped at 300 s, full jitter;
 * - {@link adaptiveStrategy} (the shipped default, "ours"): estimates the time to
 *   completion from the progress Waterflai reports, sleeps while the end is far, and
 *   listens on the SSE stream when the end may be near (see its TSDoc for the formulae).
 *
 * Times are seconds since the job was accepted (`accepted_at`), on the caller's clock.
 */

import { DEFAULT_POLL_SETTINGS, MAX_RETRY_AFTER_SECONDS, validatePollSettings, type FixedIntervalSettings } from '../contract/settings';

// ---------------------------------------------------------------------------------------
// Fixed interval (the original API, still used for the first wait and by the config)
// ---------------------------------------------------------------------------------------

/** What the poll just learned. */
export interface PollObservation {
  /** Seconds the server asked us to wait (HTTP Retry-After), when it did. */
  readonly retryAfterSeconds?: number;
}

/**
 * Seconds to wait before the next poll: the fixed interval clamped to [min, max], raised
 * to the server's Retry-After (itself capped at {@link MAX_RETRY_AFTER_SECONDS}).
 * Always a whole number of seconds, at least 1 (Step Functions' Wait takes integers).
 */
export function nextPollSeconds(settings: FixedIntervalSettings, observation: PollObservation = {}): number {
  const base = Math.ceil(Math.min(Math.max(settings.intervalSeconds, settings.minSeconds), settings.maxSeconds));
  return honourRetryAfter(Number.isFinite(base) ? base : 1, observation.retryAfterSeconds);
}

/** `wait` raised to a (capped, sanitised) Retry-After; a whole number of at least 1. */
export function honourRetryAfter(wait: number, retryAfterSeconds: number | undefined): number {
  const retryAfter =
    retryAfterSeconds === undefined || Number.isNaN(retryAfterSeconds)
      ? 0
      : Math.min(Math.ceil(retryAfterSeconds), MAX_RETRY_AFTER_SECONDS);
  const whole = Number.isFinite(wait) ? Math.ceil(wait) : 1;
  return Math.max(1, whole, retryAfter);
}

// ---------------------------------------------------------------------------------------
// The strategy interface
// ---------------------------------------------------------------------------------------

/**
 * What the poller learned about the execution at one moment: from a status read (GET) or
 * from an event on the stream. Unknown values are `null`.
 */
export interface JobObservation {
  /** Seconds since the job was accepted. */
  readonly at: number;
  /** The job status (PENDING, RUNNING, UNKNOWN, or terminal), or null when the source has none. */
  readonly status: string | null;
  /** Percent (0-100), or null when Waterflai reports none. */
  readonly progress: number | null;
  readonly completedNodes: number | null;
  readonly totalNodes: number | null;
  /** Seconds since acceptance when Waterflai started running the job (`started_at`), or null. */
  readonly startedAt?: number | null;
  /** The node running now (`current_node`, or a stream `node_started` event's node), when known. */
  readonly currentNode?: string | null;
  /**
   * True when the observation was made the moment it happened (a stream event); false or
   * absent for a status read, whose changes are dated at the previous observation.
   */
  readonly exact?: boolean;
}

/**
 * What a strategy remembers between polls. It travels in the state machine's state (every
 * history event carries it), so it is a handful of short numeric fields; see
 * {@link adaptiveStrategy} for the meaning of each.
 */
export interface StrategyMemory {
  /** Seconds since acceptance when the job started running. */
  s?: number;
  /** Total nodes, when reported. */
  n?: number;
  /**
   * The previous progress change: [earliest it can have happened, percent, latest it can
   * have happened] (seconds since acceptance; earliest = latest for a stream event).
   */
  a?: [number, number, number];
  /** The latest progress change, like `a`. */
  b?: [number, number, number];
  /** Pace of the step before the latest one (from `a` back to the change before it), in seconds per percent. */
  g?: number;
  /** When the job was last observed (seconds since acceptance). */
  w?: number;
  /** Node changes seen without progress information: [when the latest happened, how many]. */
  c?: [number, number];
  /** Hash of the current node's name (to notice changes). */
  h?: number;
  /** The stream is not used before this time (seconds since acceptance): it failed recently. */
  x?: number;
  /** Number of consecutive stream failures. */
  e?: number;
  /** Tokens left in the history budget, and when they were counted (seconds since acceptance). */
  k?: [number, number];
}

/**
 * The stream's situation when a strategy plans: `available` (this poll may listen),
 * `listened` (the second plan of a poll that just listened: the poll is already counted,
 * and whether the stream worked is in the memory through {@link PollStrategy.streamWorked}
 * or {@link PollStrategy.streamFailed}), `off` (no stream: not configured, or it failed
 * recently).
 */
export type StreamState = 'available' | 'listened' | 'off';

/** The situation a strategy plans in. */
export interface PlanContext {
  /** Seconds since acceptance. */
  readonly now: number;
  /** Polls made so far for this job, this one included (1 on the first poll). */
  readonly pollCount: number;
  readonly stream: StreamState;
  /** Longest listen that fits in this invocation, in seconds (0 when none fits). */
  readonly maxListenSeconds: number;
  /** Seconds the server asked us to wait (429 Retry-After), when it did. */
  readonly retryAfterSeconds?: number;
  /** Uniform random numbers in [0, 1) for jitter (the caller's source; seeded in the benchmark). */
  readonly random: () => number;
}

/** A strategy's decision after a poll. */
export interface PollPlan {
  /** The memory to keep (the strategy may have counted this poll in it). */
  readonly memory: StrategyMemory;
  /** Seconds to listen on the stream now, before returning (0: do not listen). */
  readonly listenSeconds: number;
  /** Whole seconds the Wait state waits before the next poll (at least 1). */
  readonly waitSeconds: number;
}

/** A polling strategy. Implementations are pure functions of their arguments. */
export interface PollStrategy {
  readonly name: string;
  /** Whole seconds to wait before the first poll (at least 1). */
  firstWaitSeconds(random: () => number): number;
  /** Folds one observation into the memory (returns a new memory; the input is not changed). */
  observe(memory: StrategyMemory | undefined, observation: JobObservation): StrategyMemory;
  /** Plans the rest of this poll (listen or not) and the wait before the next one. */
  plan(memory: StrategyMemory | undefined, context: PlanContext): PollPlan;
  /**
   * While listening: whether listening is still worth it at `now` (seconds since
   * acceptance) given what the stream has shown so far. The listener asks after each event
   * and every few seconds; `false` ends the listen early.
   */
  keepListening(memory: StrategyMemory | undefined, now: number): boolean;
  /** Records that a listen on the stream failed (unavailable, reset, silent) at `at`. */
  streamFailed(memory: StrategyMemory | undefined, at: number): StrategyMemory;
  /** Records that a listen on the stream worked (delivered events or a clean end). */
  streamWorked(memory: StrategyMemory | undefined): StrategyMemory;
}

/** Clamps a wait to [min, max] whole seconds (NaN-safe) and honours Retry-After. */
function boundedWait(seconds: number, settings: FixedIntervalSettings, retryAfterSeconds?: number): number {
  const safe = Number.isFinite(seconds) ? seconds : settings.maxSeconds;
  const clamped = Math.min(Math.max(Math.round(safe), settings.minSeconds), settings.maxSeconds);
  return honourRetryAfter(clamped, retryAfterSeconds);
}

function withoutStreamFailure(memory: StrategyMemory | undefined): StrategyMemory {
  const { x: _x, e: _e, ...rest } = memory ?? {};
  return rest;
}

// ---------------------------------------------------------------------------------------
// Anchors: fixed interval, exponential backoff
// ---------------------------------------------------------------------------------------

/** Polls every `intervalSeconds` (clamped to [min, max]); never listens on the stream. */
export function fixedIntervalStrategy(settings: FixedIntervalSettings, name = `fixed ${settings.intervalSeconds} s`): PollStrategy {
  return {
    name,
    firstWaitSeconds: () => nextPollSeconds(settings),
    observe: (memory) => ({ ...memory }),
    plan: (memory, context) => ({
      memory: { ...memory },
      listenSeconds: 0,
      waitSeconds: nextPollSeconds(settings, { retryAfterSeconds: context.retryAfterSeconds }),
    }),
    keepListening: () => false,
    streamFailed: (memory) => ({ ...memory }),
    streamWorked: (memory) => ({ ...memory }),
  };
}

/** Settings of {@link exponentialStrategy}. */
export interface ExponentialSettings {
  /** First (un-jittered) wait. @default 5 */
  readonly firstSeconds: number;
  /** Growth per poll. @default 1.5 */
  readonly factor: number;
  /** Largest (un-jittered) wait. @default 300 */
  readonly capSeconds: number;
}

export const DEFAULT_EXPONENTIAL_SETTINGS: ExponentialSettings = { firstSeconds: 5, factor: 1.5, capSeconds: 300 };

/**
 * Exponential backoff with full jitter: the n-th wait (n = 0 before the first poll) is
 * drawn uniformly from (0, min(cap, first x factor^n)], rounded up to whole seconds (at
 * least 1). Never listens on the stream.
 */
export function exponentialStrategy(settings: ExponentialSettings = DEFAULT_EXPONENTIAL_SETTINGS, name = 'exponential'): PollStrategy {
  const draw = (n: number, random: () => number): number => {
    const ceiling = Math.min(settings.capSeconds, settings.firstSeconds * settings.factor ** Math.max(0, n));
    return Math.max(1, Math.ceil(clampUnit(random()) * ceiling));
  };
  return {
    name,
    firstWaitSeconds: (random) => draw(0, random),
    observe: (memory) => ({ ...memory }),
    plan: (memory, context) => ({
      memory: { ...memory },
      listenSeconds: 0,
      waitSeconds: honourRetryAfter(draw(context.pollCount, context.random), context.retryAfterSeconds),
    }),
    keepListening: () => false,
    streamFailed: (memory) => ({ ...memory }),
    streamWorked: (memory) => ({ ...memory }),
  };
}

function clampUnit(value: number): number {
  return Number.isFinite(value) ? Math.min(Math.max(value, 0), 1) : 0.5;
}

// ---------------------------------------------------------------------------------------
// Ours: the adaptive strategy
// ---------------------------------------------------------------------------------------

/** Parameters of {@link adaptiveStrategy} (see its TSDoc for the formulae). */
export interface AdaptiveSettings extends FixedIntervalSettings {
  /**
   * Spread of step durations: `k` steps still to run are assumed to take at least
   * `exp(-spread / sqrt(k))` of their length at the fast pace (one step: 37% at 1.0).
   */
  readonly spread: number;
  /** Exponent of the acceleration extrapolated from the last two steps (0: none). */
  readonly trend: number;
  /**
   * Before the first progress change: each of the other steps is assumed to take at least
   * this share of the time the first one has taken so far (0.5 covers progress that
   * speeds up linearly, like the simulator's back_loaded shape).
   */
  readonly firstStepShare: number;
  /** Without progress information: the current node lasts at least this share of the average node. */
  readonly nodeSafety: number;
  /** Share of the earliest plausible end slept before looking again. */
  readonly fraction: number;
  /**
   * Listen when the sleep before the next look would be shorter than this: below it, a
   * loop iteration costs more than listening (at 128 MB one iteration, 3 transitions,
   * costs as much as ~45 s of listening).
   */
  readonly listenLeadSeconds: number;
  /** Shortest listen worth starting, in seconds. */
  readonly minListenSeconds: number;
  /** Without a stream, near the end: sleep this share of the central estimate. */
  readonly pollOnlyFraction: number;
  /**
   * No progress and no node change seen yet: listen while the job has run less than
   * this, then sleep `blindFraction` x its running time.
   */
  readonly blindListenSeconds: number;
  readonly blindFraction: number;
  /** After a stream failure the stream is not used for this long (doubling per failure, up to 32x). */
  readonly streamBackoffSeconds: number;
  /**
   * History budget (a token bucket): bursts of `budgetBurst` polls, `budgetPerHour`
   * sustained. A window of T seconds holds at most `budgetBurst + budgetPerHour x T / 3600`
   * polls, so with a sum below 11 no hour holds more than 10: 90 history events, plus the
   * start and finish events, under 100. When a poll would come sooner, the poll before it
   * listens until then instead; without a stream it waits, even beyond `maxSeconds`.
   */
  readonly budgetPerHour: number;
  readonly budgetBurst: number;
  /**
   * A step with others after it that has been silent for `silence` seconds is assumed to
   * go on for at least `stallShare x silence` more (a node that has run for an hour seldom
   * ends in the next minute). Not applied to the last step, whose end is the job's end.
   */
  readonly stallShare: number;
}

export const DEFAULT_ADAPTIVE_SETTINGS: AdaptiveSettings = {
  ...DEFAULT_POLL_SETTINGS,
  spread: 1.0,
  trend: 0.5,
  firstStepShare: 0.5,
  nodeSafety: 0.8,
  fraction: 0.6,
  listenLeadSeconds: 60,
  minListenSeconds: 10,
  pollOnlyFraction: 0.2,
  blindListenSeconds: 300,
  blindFraction: 0.25,
  streamBackoffSeconds: 60,
  budgetPerHour: 6.9,
  budgetBurst: 4,
  stallShare: 0.05,
};

/** Checks adaptive settings once and says what is wrong. */
export function validateAdaptiveSettings(settings: AdaptiveSettings): AdaptiveSettings {
  validatePollSettings(settings);
  const positive: Array<keyof AdaptiveSettings> = [
    'spread',
    'firstStepShare',
    'nodeSafety',
    'fraction',
    'listenLeadSeconds',
    'minListenSeconds',
    'pollOnlyFraction',
    'blindFraction',
    'streamBackoffSeconds',
    'budgetPerHour',
    'budgetBurst',
  ];
  for (const name of positive) {
    const value = settings[name];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
      throw new RangeError(`adaptive setting ${name} must be a positive number, got ${String(value)}`);
  }
  for (const name of ['trend', 'blindListenSeconds', 'stallShare'] as const) {
    const value = settings[name];
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`adaptive setting ${name} must be a number >= 0, got ${String(value)}`);
  }
  for (const name of ['firstStepShare', 'nodeSafety', 'fraction', 'pollOnlyFraction'] as const) {
    if (settings[name] > 1) throw new RangeError(`adaptive setting ${name} must not exceed 1, got ${settings[name]}`);
  }
  if (settings.budgetBurst < 1) throw new RangeError(`adaptive setting budgetBurst must be at least 1, got ${settings.budgetBurst}`);
  return settings;
}

/** Times beyond this (seconds since acceptance, ~31 years) are treated as invalid. */
const MAX_JOB_SECONDS = 1e9;

function isJobTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= MAX_JOB_SECONDS;
}

/** Rounded for the memory (`+ 0` turns -0 into 0, which JSON cannot keep apart). */
const round1 = (value: number): number => Math.round(value * 10) / 10 + 0;
const round3 = (value: number): number => Number(value.toPrecision(3)) + 0;

/**
 * Ours, the shipped default. It remembers ({@link StrategyMemory}: a few numbers in the
 * loop state) when the job started running `s`, the last two progress changes
 * `a` and `b` (each `[earliest, percent, latest]`: a status read only shows that a change
 * happened since the previous observation; a stream event dates it exactly), the pace of
 * the step before the last one `g`, and, for jobs that report no progress, node changes
 * `c = [when, count]` seen through `current_node` / `node_started`.
 *
 * With `p` the progress of `b`, `q = 100 - p` the percent still to do, `d` the size of one
 * step (100 / total nodes, else the last step), `mid(x)` the middle of a change's interval,
 * `silence = now - earliest(b)` and `safety(k) = exp(-spread / sqrt(k))`:
 *
 * - paces (seconds per percent): `last = (mid(b) - mid(a)) / (p - p_a)`,
 *   `avg = (mid(b) - s) / p`, `g` the step before; `fast = min(last, g) x min(1, last / g)^trend`
 *   (speeding up is extrapolated, slowing down is not: after a stalled step the pace of
 *   the steps before it is used); with only one change seen there is no trend yet, and
 *   `fast = last x firstStepShare` allows for the same speed-up as before the first change;
 * - earliest plausible end:
 *   `lo = max(0, safety(1) x d x fast - silence, stallShare x silence) + rest`,
 *   `rest = safety(k) x (q - d) x fast`, `k = (q - d) / d` (the `stallShare` term only when
 *   `rest > 0`: a step silent for long goes on a while, unless it is the last);
 *   before the first change: `lo = safety(n - 1) x firstStepShare x (n - 1) x running` (the
 *   first of `n` steps has taken `running` so far);
 *   no progress at all but node changes: `lo = max(0, nodeSafety x node - silence)`,
 *   `node = (t_c - s) / count` (a job can only end when a node ends);
 * - central estimate: `mid = max(lo, max(0, d x avg - silence) + (q - d) x avg)`.
 *
 * Plan: `sleep = max(fraction x lo, lo - listenLead)`. When `sleep < listenLead` the end
 * may be near and another loop iteration would cost more than listening: the poll listens
 * on the stream for as long as the invocation allows, asking {@link PollStrategy.keepListening}
 * after each event and every few seconds, and stops as soon as `sleep` grows past
 * `listenLead` again; the next poll then comes after `minSeconds`. Otherwise the Wait
 * state sleeps `sleep`. Without any estimate (no progress, no node change yet) it listens
 * while the job is younger than `blindListenSeconds`, then sleeps `blindFraction x running`.
 * Every wait is a whole number within [minSeconds, maxSeconds] (the deployment's
 * pollMinSeconds/pollMaxSeconds), raised to a Retry-After (and no listen then). A failing
 * stream is left alone for `streamBackoffSeconds` (doubling per failure), polling
 * `pollOnlyFraction x mid` near the end. A token bucket (`budgetBurst` polls,
 * `budgetPerHour` sustained; at most 10 polls in any hour with the defaults) bounds the
 * polls, and so the history events, per hour: when a poll would come too soon, the poll
 * before it listens, as long as its invocation allows, until only the sleep is left
 * before the budget allows the next one; without a stream it waits that long, even
 * beyond maxSeconds (by at most one refill, {@link budgetRefillSeconds}).
 */
export function adaptiveStrategy(settings: AdaptiveSettings = DEFAULT_ADAPTIVE_SETTINGS, name = 'ours (adaptive + stream)'): PollStrategy {
  validateAdaptiveSettings(settings);
  return {
    name,
    firstWaitSeconds: () => nextPollSeconds(settings),
    observe: (memory, observation) => observeJob(memory ?? {}, observation),
    plan: (memory, context) => planAdaptive(settings, memory ?? {}, context),
    keepListening: (memory, now) => keepListeningAdaptive(settings, memory ?? {}, now),
    streamFailed: (memory, at) => {
      const failures = Math.min((memory?.e ?? 0) + 1, 6);
      if (!isJobTime(at)) return { ...memory, e: failures };
      return { ...memory, e: failures, x: round1(at + settings.streamBackoffSeconds * 2 ** (failures - 1)) };
    },
    streamWorked: (memory) => withoutStreamFailure(memory),
  };
}

/** Percent of progress an observation shows, from `progress` or from the node counts. */
export function progressPercent(observation: Pick<JobObservation, 'progress' | 'completedNodes' | 'totalNodes'>): number | null {
  const { progress, completedNodes, totalNodes } = observation;
  if (progress !== null && Number.isFinite(progress)) return Math.min(100, Math.max(0, progress));
  if (completedNodes !== null && totalNodes !== null && Number.isFinite(completedNodes) && Number.isFinite(totalNodes) && totalNodes > 0) {
    return Math.min(100, Math.max(0, (completedNodes / totalNodes) * 100));
  }
  return null;
}

/** 32-bit FNV-1a hash of a string (the memory keeps node names as hashes). */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

function observeJob(memory: StrategyMemory, observation: JobObservation): StrategyMemory {
  const next: StrategyMemory = { ...memory };
  const at = observation.at;
  if (!isJobTime(at)) return next;
  // A change a status read shows happened after the previous observation: date it at the
  // earliest moment it can have happened (the conservative choice: faster pace, longer
  // silence). A stream event is dated when it arrived.
  const changedAt = observation.exact === true ? at : memory.w !== undefined && memory.w < at ? memory.w : at;
  next.w = round1(Math.max(at, memory.w ?? 0));
  const started = observation.startedAt;
  if (next.s === undefined) {
    if (isJobTime(started) && started <= at) next.s = round1(started);
    else if (observation.status === 'RUNNING') next.s = round1(changedAt);
  }
  const total = observation.totalNodes;
  if (typeof total === 'number' && Number.isSafeInteger(total) && total > 0 && total <= 100_000) next.n = total;
  const node = observation.currentNode;
  if (typeof node === 'string' && node.length > 0) {
    const hash = fnv1a(node);
    if (next.h !== undefined && hash !== next.h && next.s !== undefined)
      next.c = [round1(Math.max(changedAt, next.s)), Math.min((next.c?.[1] ?? 0) + 1, 1_000_000)];
    next.h = hash;
  }
  const percent = progressPercent(observation);
  if (percent === null) return next;
  if (next.s === undefined && percent > 0) next.s = round1(changedAt);
  const earliest = round1(Math.max(changedAt, next.s ?? changedAt));
  const latest = round1(Math.max(at, earliest));
  const rounded = round3(percent);
  const last = next.b;
  if (last === undefined) {
    // The first progress seen counts as a change only when there is some progress.
    if (rounded > 0) next.b = [earliest, rounded, latest];
    return next;
  }
  if (rounded <= last[1]) return next;
  // The pace of the step that ends at `last` (from the run start for the first change).
  const pace =
    next.a !== undefined ? (middle(last) - middle(next.a)) / (last[1] - next.a[1]) : (middle(last) - (next.s ?? middle(last))) / last[1];
  if (Number.isFinite(pace) && pace > 0) next.g = round3(pace);
  next.a = last;
  next.b = [Math.max(earliest, last[0]), rounded, latest];
  return next;
}

/** The middle of the interval in which a change happened. */
function middle(change: readonly [number, number, number] | readonly number[]): number {
  const earliest = change[0] ?? 0;
  const latest = change[2] ?? earliest;
  return (earliest + latest) / 2;
}

/** `safety(k) = exp(-spread / sqrt(k))`: the least share of their fast-paced length `k` steps take. */
function safetyFor(settings: Pick<AdaptiveSettings, 'spread'>, steps: number): number {
  return Math.exp(-settings.spread / Math.sqrt(Math.max(1, steps)));
}

/**
 * Earliest plausible end (`lo`) and central estimate (`mid`) of the seconds left at `now`,
 * or undefined when there is nothing to estimate from.
 */
export function remainingEstimate(
  settings: Pick<AdaptiveSettings, 'spread' | 'trend' | 'nodeSafety' | 'firstStepShare' | 'stallShare'>,
  memory: StrategyMemory,
  now: number,
): { lo: number; mid: number } | undefined {
  const start = memory.s;
  if (start === undefined || !isJobTime(now)) return undefined;
  const running = Math.max(0, now - start);
  const last = memory.b;
  if (last === undefined && memory.c !== undefined && memory.n === undefined) {
    // No progress, but node changes: the job can only end when a node ends.
    const [changedAt, changes] = memory.c;
    const node = (changedAt - start) / Math.max(1, changes);
    if (!Number.isFinite(node) || node <= 0) return undefined;
    const silence = Math.max(0, now - changedAt);
    const lo = Math.max(0, settings.nodeSafety * node - silence);
    return { lo, mid: Math.max(lo, node - silence) };
  }
  const step = memory.n !== undefined ? 100 / memory.n : last !== undefined && memory.a !== undefined ? last[1] - memory.a[1] : undefined;
  if (last === undefined) {
    // No progress yet: the first step has taken `running` so far.
    if (step === undefined || step <= 0 || step >= 100) return undefined;
    const after = 100 / step - 1;
    const lo = safetyFor(settings, after) * settings.firstStepShare * after * running;
    return { lo, mid: Math.max(lo, after * running) };
  }
  const [changedAt, percent] = last;
  const remaining = Math.max(0, 100 - percent);
  // Paces (seconds per percent) from the middles of the change intervals; silence from the earliest.
  const average = (middle(last) - start) / Math.max(percent, 1e-9);
  if (!Number.isFinite(average) || average <= 0) return undefined;
  const stepPace = memory.a === undefined ? Number.NaN : (middle(last) - middle(memory.a)) / Math.max(percent - memory.a[1], 1e-9);
  const lastPace = Number.isFinite(stepPace) && stepPace > 0 ? stepPace : average;
  const previousPace = memory.g ?? lastPace;
  const trend = Math.min(1, lastPace / previousPace) ** settings.trend;
  // One change seen: no trend yet, so the steps after it may speed up as before the first change.
  const speedUp = memory.a === undefined ? settings.firstStepShare : Number.isFinite(trend) && trend > 0 ? trend : 1;
  const fast = Math.min(lastPace, previousPace) * speedUp;
  const d = Math.min(step ?? 0, remaining);
  const silence = Math.max(0, now - changedAt);
  const after = d > 0 ? Math.max(1, Math.round((remaining - d) / d)) : 1;
  const rest = safetyFor(settings, after) * (remaining - d) * fast;
  // A step silent for long is likely to go on a while (only for a step with others after it).
  const lo = Math.max(0, safetyFor(settings, 1) * d * fast - silence, rest > 0 ? settings.stallShare * silence : 0) + rest;
  const mid = Math.max(lo, Math.max(0, d * average - silence) + (remaining - d) * average);
  return Number.isFinite(lo) && Number.isFinite(mid) ? { lo, mid } : undefined;
}

/** The sleep far from the end, and whether the end may be near enough to listen instead. */
function farWait(settings: AdaptiveSettings, memory: StrategyMemory, now: number): { sleep: number; listen: boolean; mid?: number } {
  const estimate = remainingEstimate(settings, memory, now);
  if (estimate === undefined) {
    const running = Math.max(0, now - (memory.s ?? 0));
    return { sleep: settings.blindFraction * running, listen: running < settings.blindListenSeconds };
  }
  const sleep = Math.max(settings.fraction * estimate.lo, estimate.lo - settings.listenLeadSeconds);
  return { sleep, listen: sleep < settings.listenLeadSeconds, mid: estimate.mid };
}

/** Seconds the history budget takes to refill one poll: the longest it holds a poll back. */
export function budgetRefillSeconds(settings: Pick<AdaptiveSettings, 'budgetPerHour'>): number {
  return 3600 / settings.budgetPerHour;
}

/** When the history budget lets the next poll start. */
function nextPollAllowedAt(settings: AdaptiveSettings, memory: StrategyMemory): number {
  if (memory.k === undefined) return -Infinity;
  const [tokens, at] = memory.k;
  return tokens >= 1 ? at : at + ((1 - tokens) * 3600) / settings.budgetPerHour;
}

/** The memory with this poll's token taken from the history budget. */
function spendToken(settings: AdaptiveSettings, memory: StrategyMemory, now: number): StrategyMemory {
  const [tokens, at] =
    memory.k !== undefined && Number.isFinite(memory.k[0]) && isJobTime(memory.k[1]) ? memory.k : [settings.budgetBurst, now];
  const refilled = Math.min(settings.budgetBurst, tokens + (settings.budgetPerHour * Math.max(0, now - at)) / 3600);
  // Rounded towards fewer tokens (count down, date up) so the rounding never adds a poll.
  return { ...memory, k: [Math.floor((refilled - 1) * 1000) / 1000 + 0, Math.ceil(now * 10) / 10 + 0] };
}

function keepListeningAdaptive(settings: AdaptiveSettings, memory: StrategyMemory, now: number): boolean {
  const far = farWait(settings, memory, now);
  if (far.listen) return true;
  // Far from the end, but the budget holds the next poll back: listening until only a
  // normal sleep is left is the better use of the time.
  return now < nextPollAllowedAt(settings, memory) - Math.min(far.sleep, settings.maxSeconds);
}

function planAdaptive(settings: AdaptiveSettings, given: StrategyMemory, context: PlanContext): PollPlan {
  const { now, retryAfterSeconds } = context;
  // Each poll takes one token; the second plan of a poll (after a listen) does not.
  const memory = context.stream === 'listened' || !isJobTime(now) ? given : spendToken(settings, given, now);
  const allowedAt = nextPollAllowedAt(settings, memory);
  const streamOff = context.stream === 'off' || (memory.x !== undefined && now < memory.x);
  const maxListen = Number.isFinite(context.maxListenSeconds) ? Math.max(0, Math.floor(context.maxListenSeconds)) : 0;
  const mayListenNow =
    context.stream === 'available' && !streamOff && retryAfterSeconds === undefined && maxListen >= settings.minListenSeconds;
  const far = farWait(settings, memory, now);
  const sleep = Math.min(far.sleep, settings.maxSeconds);
  if (mayListenNow) {
    const padding = allowedAt - now - sleep;
    if (far.listen || padding >= settings.minListenSeconds) {
      // Held back by the budget: listen until only the sleep is left before the next poll
      // may come (keepListening decides with what the stream shows meanwhile).
      const listenSeconds = far.listen ? maxListen : Math.min(maxListen, Math.ceil(allowedAt - now - settings.minSeconds));
      return { memory, listenSeconds, waitSeconds: boundedWait(sleep, settings, retryAfterSeconds) };
    }
  }
  let wait: number;
  if (far.listen && !streamOff) {
    // Just listened (or no room to listen in this invocation): listen again soon.
    wait = settings.minSeconds;
  } else if (far.listen && far.mid !== undefined) {
    // Near the end without a stream: poll a share of the central estimate.
    wait = settings.pollOnlyFraction * far.mid;
  } else {
    wait = far.sleep;
  }
  const waitSeconds = boundedWait(wait, settings, retryAfterSeconds);
  // The budget wins over maxSeconds. A well-formed bucket holds a poll back by at most one
  // token's refill time; a damaged memory cannot park the job for longer.
  const heldBack = isJobTime(now) ? Math.min(allowedAt - now, budgetRefillSeconds(settings)) : Number.NaN;
  return { memory, listenSeconds: 0, waitSeconds: Number.isFinite(heldBack) ? Math.max(waitSeconds, Math.ceil(heldBack)) : waitSeconds };
}
