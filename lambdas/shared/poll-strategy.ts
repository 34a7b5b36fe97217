/**
 * Decides how long to wait before the next status poll, and when a poll should listen on
 * the execution's event stream instead of going back to sleep. Pure: no AWS imports, no
 * clock, no randomness of its own (a random source is passed in), so the poll Lambda, the
 * tests and the benchmark (`npm run bench`) run exactly the same code.
 *
 * Four strategies share one interface ({@link PollStrategy}):
 * - {@link fixedIntervalStrategy} 10 s and 30 s: the common "poll every N seconds";
 * - {@link exponentialStrategy}: 5 s first, x1.5, capped at 300 s, full jitter;
 * - {@link adaptiveStrategy} (the shipped default, "ours"): estimates the time to
 *   completion from the progress Waterflai reports, sleeps while the end is far, and
 *   listens on the SSE stream when the end may be near (see its TSDoc for the formulae).
 *
 * Times are seconds since the job was accepted (`accepted_at`), on the caller's clock.
 */

// ---------------------------------------------------------------------------------------
// Fixed interval (the original API, still used for the first wait and by the config)
// ---------------------------------------------------------------------------------------

/** Settings of the fixed-interval strategy, and the floor/cap of every strategy. */
export interface FixedIntervalSettings {
  /** Seconds between polls (fixed strategy); the wait before the first poll (every strategy). */
  readonly intervalSeconds: number;
  /** Never wait less than this. */
  readonly minSeconds: number;
  /** Never wait more than this, except to honour a server's Retry-After. */
  readonly maxSeconds: number;
}

/** What the poll just learned. */
export interface PollObservation {
  /** Seconds the server asked us to wait (HTTP Retry-After), when it did. */
  readonly retryAfterSeconds?: number;
}

/** The longest Retry-After honoured (a misbehaving server cannot park a job for days). */
export const MAX_RETRY_AFTER_SECONDS = 3600;

export const DEFAULT_POLL_SETTINGS: FixedIntervalSettings = {
  intervalSeconds: 10,
  minSeconds: 1,
  maxSeconds: 300,
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
    retryAfterSeconds === undefined || Number.isNaN(retryAfterSeconds) ? 0 : Math.min(Math.ceil(retryAfterSeconds), MAX_RETRY_AFTER_SECONDS);
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
  /** The previous progress change: [seconds since acceptance, percent]. */
  a?: [number, number];
  /** The latest progress change: [seconds since acceptance, percent]. */
  b?: [number, number];
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
 * `listened` (this poll just listened and the stream worked: the next poll may listen
 * again), `off` (no stream: not configured, or it failed recently).
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
    plan: (memory, context) => ({ memory: { ...memory }, listenSeconds: 0, waitSeconds: nextPollSeconds(settings, { retryAfterSeconds: context.retryAfterSeconds }) }),
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
    plan: (memory, context) => ({ memory: { ...memory }, listenSeconds: 0, waitSeconds: honourRetryAfter(draw(context.pollCount, context.random), context.retryAfterSeconds) }),
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
   * sustained. When a poll would come sooner, the poll before it listens longer instead
   * (or, without a stream, waits longer within `maxSeconds`).
   */
  readonly budgetPerHour: number;
  readonly budgetBurst: number;
}

export const DEFAULT_ADAPTIVE_SETTINGS: AdaptiveSettings = {
  ...DEFAULT_POLL_SETTINGS,
  spread: 1.0,
  trend: 0.5,
  nodeSafety: 0.8,
  fraction: 0.8,
  listenLeadSeconds: 60,
  minListenSeconds: 10,
  pollOnlyFraction: 0.2,
  blindListenSeconds: 3600,
  blindFraction: 0.25,
  streamBackoffSeconds: 60,
  budgetPerHour: 20,
  budgetBurst: 10,
};

/** Checks adaptive settings once and says what is wrong. */
export function validateAdaptiveSettings(settings: AdaptiveSettings): AdaptiveSettings {
  validatePollSettings(settings);
  const positive: Array<keyof AdaptiveSettings> = ['spread', 'nodeSafety', 'fraction', 'listenLeadSeconds', 'minListenSeconds', 'pollOnlyFraction', 'blindFraction', 'streamBackoffSeconds', 'budgetPerHour', 'budgetBurst'];
  for (const name of positive) {
    const value = settings[name];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new RangeError(`adaptive setting ${name} must be a positive number, got ${String(value)}`);
  }
  for (const name of ['trend', 'blindListenSeconds'] as const) {
    const value = settings[name];
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`adaptive setting ${name} must be a number >= 0, got ${String(value)}`);
  }
  for (const name of ['nodeSafety', 'fraction', 'pollOnlyFraction'] as const) {
    if (settings[name] > 1) throw new RangeError(`adaptive setting ${name} must not exceed 1, got ${settings[name]}`);
  }
  if (settings.budgetBurst < 1) throw new RangeError(`adaptive setting budgetBurst must be at least 1, got ${settings.budgetBurst}`);
  return settings;
}

const round1 = (value: number): number => Math.round(value * 10) / 10;
const round3 = (value: number): number => Number(value.toPrecision(3));

/**
 * Ours, the shipped default. It remembers (in {@link StrategyMemory}, a few numbers) when
 * the job started running `s`, the last two progress changes `a = (t_a, p_a)` and
 * `b = (t_b, p_b)`, the pace of the step before them `g`, and, for jobs that report no
 * progress, node changes `c = (t_c, count)`. A change seen by a status read is dated at
 * the previous observation (the earliest it can have happened); one seen on the stream at
 * the moment it arrived. With `q = 100 - p_b` the percent still to do, `d` the size of one
 * step (100 / total nodes, else the last step), `silence = now - t_b` and
 * `safety(k) = exp(-spread / sqrt(k))`:
 *
 * - pace (seconds per percent): `last = (t_b - t_a) / (p_b - p_a)`, `avg = (t_b - s) / p_b`,
 *   `fast = min(last, g) x min(1, last / g)^trend` (accelerating progress extrapolated,
 *   slowing progress not, so a stall cannot make it optimistic);
 * - earliest plausible end:
 *   `lo = max(0, safety(1) x d x fast - silence) + safety(k) x (q - d) x fast`, `k = (q - d) / d`;
 *   before the first change: `lo = safety(n - 1) x (n - 1) x running` (the first of `n`
 *   steps has taken `running` so far, the others are assumed no faster);
 *   no progress but node changes: `lo = max(0, nodeSafety x node - silence)` with
 *   `node = (t_c - s) / count` (the job can only end when a node ends);
 * - central estimate: `mid = max(lo, max(0, d x avg - silence) + (q - d) x avg)`.
 *
 * Plan: `sleep = max(fraction x lo, lo - listenLead)`. When `sleep < listenLead` the end
 * may be near and a loop iteration would cost more than listening: the poll listens on the
 * stream (as long as the invocation allows, re-checking after each event and every few
 * seconds, and stopping as soon as `sleep` grows past `listenLead` again); after a listen
 * the next poll comes after `minSeconds`. Otherwise it sleeps `sleep`. Without any
 * estimate (no progress, no node change yet) it listens while the job is younger than
 * `blindListenSeconds`, then sleeps `blindFraction x running`. Every wait is a whole
 * number within [minSeconds, maxSeconds], raised to Retry-After (no listen then). A
 * failing stream is left alone for `streamBackoffSeconds` (doubling), polls only, sleeping
 * `pollOnlyFraction x mid` near the end. A token bucket (`budgetBurst`, `budgetPerHour`)
 * bounds the polls per hour, and so the history events.
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
  if (typeof at !== 'number' || !Number.isFinite(at) || at < 0) return next;
  // A change a status read shows happened after the previous observation: date it at the
  // earliest moment it can have happened (the conservative choice: faster pace, longer
  // silence). A stream event is dated when it arrived.
  const changedAt = observation.exact === true ? at : memory.w !== undefined && memory.w < at ? memory.w : at;
  next.w = round1(Math.max(at, memory.w ?? 0));
  const started = observation.startedAt;
  if (next.s === undefined) {
    if (typeof started === 'number' && Number.isFinite(started) && started >= 0 && started <= at) next.s = round1(started);
    else if (observation.status === 'RUNNING') next.s = round1(changedAt);
  }
  const total = observation.totalNodes;
  if (typeof total === 'number' && Number.isSafeInteger(total) && total > 0 && total <= 100_000) next.n = total;
  const node = observation.currentNode;
  if (typeof node === 'string' && node.length > 0) {
    const hash = fnv1a(node);
    if (next.h !== undefined && hash !== next.h && next.s !== undefined) next.c = [round1(Math.max(changedAt, next.s)), Math.min((next.c?.[1] ?? 0) + 1, 1_000_000)];
    next.h = hash;
  }
  const percent = progressPercent(observation);
  if (percent === null) return next;
  if (next.s === undefined && percent > 0) next.s = round1(changedAt);
  const at1 = round1(Math.max(changedAt, next.s ?? changedAt));
  const rounded = round3(percent);
  const last = next.b;
  if (last === undefined) {
    // The first progress seen counts as a change only when there is some progress.
    if (rounded > 0) next.b = [at1, rounded];
    return next;
  }
  if (rounded <= last[1] || at1 <= last[0]) return next;
  if (next.a !== undefined) {
    const pace = (last[0] - next.a[0]) / (last[1] - next.a[1]);
    if (Number.isFinite(pace) && pace > 0) next.g = round3(pace);
  }
  next.a = last;
  next.b = [at1, rounded];
  return next;
}

/** `safety(k) = exp(-spread / sqrt(k))`: the least share of their fast-paced length `k` steps take. */
function safetyFor(settings: Pick<AdaptiveSettings, 'spread'>, steps: number): number {
  return Math.exp(-settings.spread / Math.sqrt(Math.max(1, steps)));
}

/**
 * Earliest plausible end (`lo`) and central estimate (`mid`) of the seconds left at `now`,
 * or undefined when there is nothing to estimate from.
 */
export function remainingEstimate(settings: Pick<AdaptiveSettings, 'spread' | 'trend' | 'nodeSafety'>, memory: StrategyMemory, now: number): { lo: number; mid: number } | undefined {
  const start = memory.s;
  if (start === undefined || !Number.isFinite(now)) return undefined;
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
    const lo = safetyFor(settings, after) * after * running;
    return { lo, mid: Math.max(lo, after * running) };
  }
  const [changedAt, percent] = last;
  const remaining = Math.max(0, 100 - percent);
  const average = (changedAt - start) / Math.max(percent, 1e-9);
  if (!Number.isFinite(average) || average <= 0) return undefined;
  const lastPace = memory.a === undefined ? average : (changedAt - memory.a[0]) / Math.max(percent - memory.a[1], 1e-9);
  const previousPace = memory.g ?? lastPace;
  const trend = Math.min(1, lastPace / previousPace) ** settings.trend;
  const fast = Math.min(lastPace, previousPace) * (Number.isFinite(trend) && trend > 0 ? trend : 1);
  const d = Math.min(step ?? 0, remaining);
  const silence = Math.max(0, now - changedAt);
  const after = d > 0 ? Math.max(1, Math.round((remaining - d) / d)) : 1;
  const lo = Math.max(0, safetyFor(settings, 1) * d * fast - silence) + safetyFor(settings, after) * (remaining - d) * fast;
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

/** When the history budget lets the next poll start. */
function nextPollAllowedAt(settings: AdaptiveSettings, memory: StrategyMemory): number {
  if (memory.k === undefined) return -Infinity;
  const [tokens, at] = memory.k;
  return tokens >= 1 ? at : at + ((1 - tokens) * 3600) / settings.budgetPerHour;
}

/** The memory with this poll's token taken from the history budget. */
function spendToken(settings: AdaptiveSettings, memory: StrategyMemory, now: number): StrategyMemory {
  const [tokens, at] = memory.k ?? [settings.budgetBurst, now];
  const refilled = Math.min(settings.budgetBurst, tokens + (settings.budgetPerHour * Math.max(0, now - at)) / 3600);
  return { ...memory, k: [Math.round((refilled - 1) * 1000) / 1000, round1(now)] };
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
  const memory = context.stream === 'listened' ? given : spendToken(settings, given, now);
  const allowedAt = nextPollAllowedAt(settings, memory);
  const streamOff = context.stream === 'off' || (memory.x !== undefined && now < memory.x);
  const maxListen = Number.isFinite(context.maxListenSeconds) ? Math.max(0, Math.floor(context.maxListenSeconds)) : 0;
  const mayListenNow = context.stream === 'available' && !streamOff && retryAfterSeconds === undefined && maxListen >= settings.minListenSeconds;
  const far = farWait(settings, memory, now);
  const sleep = Math.min(far.sleep, settings.maxSeconds);
  if (mayListenNow) {
    const padding = allowedAt - now - sleep;
    if (far.listen || padding >= settings.minListenSeconds) {
      const listenSeconds = far.listen ? maxListen : Math.min(maxListen, Math.ceil(padding));
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
  return { memory, listenSeconds: 0, waitSeconds: boundedWait(Math.max(wait, allowedAt - now), settings, retryAfterSeconds) };
}
