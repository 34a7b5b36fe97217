import { z } from 'zod';
import type { RandomSource } from './prng';

/** The simulator's routes, as named in stats and fault settings. */
export const ROUTE_NAMES = ['start', 'get', 'cancel', 'stream'] as const;
/** `start` = POST .../async, `get` = GET status, `cancel` = DELETE, `stream` = GET .../stream. */
export type RouteName = (typeof ROUTE_NAMES)[number];

export const FAULT_KINDS = [
  'error5xx',
  'rateLimit',
  'reset',
  'slow',
  'hang',
  'malformedJson',
  'unknownStatus',
  'statusRegression',
  'acceptThenFail',
  'refuseCancel',
] as const;
/**
 * - `error5xx`: 500, 502 or 503 with a JSON `detail`.
 * - `rateLimit`: 429 with `Retry-After`.
 * - `reset`: the socket is destroyed without an answer.
 * - `slow`: the request is handled normally after `slowMs`.
 * - `hang`: no answer until the client gives up (or the simulator closes).
 * - `malformedJson`: 200 with a truncated JSON body (`stream`: one truncated event, then the end).
 * - `unknownStatus` (`get` only): the real body with `status` replaced by `unknownStatusValue`.
 * - `statusRegression` (`get` only): a stale snapshot with an earlier status than the real one.
 * - `acceptThenFail` (`start` only): the execution IS created, then the answer is a 500 or a reset.
 * - `refuseCancel` (`cancel` only): a DELETE of a PENDING or RUNNING execution is answered
 *   200 `{"cancelled": false, "previous_status": ...}` and the execution goes on.
 *
 * Every kind except `acceptThenFail` strikes before the request is processed: nothing is
 * created or cancelled. `unknownStatus` and `statusRegression` only strike a GET of an existing
 * execution (and `statusRegression` only when an earlier status exists), `refuseCancel` only a
 * DELETE of an unfinished execution; otherwise the request is answered normally and nothing is
 * counted.
 */
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Which routes each fault kind can strike. */
export const FAULT_ROUTES: Readonly<Record<FaultKind, readonly RouteName[]>> = {
  error5xx: ROUTE_NAMES,
  rateLimit: ROUTE_NAMES,
  reset: ROUTE_NAMES,
  slow: ROUTE_NAMES,
  hang: ROUTE_NAMES,
  malformedJson: ROUTE_NAMES,
  unknownStatus: ['get'],
  statusRegression: ['get'],
  acceptThenFail: ['start'],
  refuseCancel: ['cancel'],
};

/**
 * How a request fails during an outage window: `error5xx` (503 with a JSON `detail`), `reset`
 * (the socket is destroyed) or `hang` (no answer until the client gives up: a timeout).
 */
export const OUTAGE_ANSWERS = ['error5xx', 'reset', 'hang'] as const;
export type OutageAnswer = (typeof OUTAGE_ANSWERS)[number];

/**
 * A window of time during which every request to some routes fails (Waterflai is down or
 * unreachable). Times are real milliseconds (not scaled by `timeScale`).
 */
export interface OutageWindow {
  /**
   * When the outage begins, in ms after the settings take effect (`startSimulator`,
   * `Simulator.setFaults`) or, for `Simulator.scheduleOutage`, after the call. @default 0
   */
  startMs?: number;
  /** How long it lasts, in ms. */
  durationMs: number;
  /** The routes that fail. @default every route */
  routes?: readonly RouteName[];
  /**
   * Relative weights of the ways a request fails, drawn per request from the seeded
   * generator (a stream of its own; a request an outage answers draws no fault).
   * @default { error5xx: 1 } (every request answered 503)
   */
  answers?: Partial<Record<OutageAnswer, number>>;
}

/** An outage window with absolute times (epoch ms). */
export interface ScheduledOutage {
  readonly from: number;
  readonly until: number;
  readonly routes: readonly RouteName[];
  readonly answers: Readonly<Partial<Record<OutageAnswer, number>>>;
}

/**
 * The answer to a DELETE of an execution that already finished (COMPLETED, FAILED or
 * CANCELLED). The contract only says such executions "cannot be cancelled again":
 * - `409`: 409 Conflict `{"execution_id", "cancelled": false, "message", "previous_status"}`;
 * - `400`: 400 Bad Request `{"detail": "... cannot be cancelled"}`;
 * - `404`: 404 Not Found `{"detail": "... not found or not cancellable"}`;
 * - `200`: 200 `{"execution_id", "cancelled": false, "message", "previous_status": <the terminal status>}`.
 */
export const FINISHED_CANCEL_ANSWERS = [409, 400, 404, 200] as const;
export type FinishedCancelAnswer = (typeof FINISHED_CANCEL_ANSWERS)[number];

/** A probability (0..1) per request, optionally limited to some routes. */
export type FaultRate = number | { probability: number; routes?: readonly RouteName[] };

/** A deterministic fault for the next matching request(s). */
export interface ScheduledFault {
  kind: FaultKind;
  /** Only requests to this route take it. @default any route the kind applies to */
  route?: RouteName;
  /** How many matching requests it strikes. @default 1 */
  count?: number;
  /** `error5xx`: the status to answer (500-599). @default drawn from 500/502/503 */
  status?: number;
  /** `acceptThenFail`: answer a 500 (`error`) or reset the socket (`reset`). @default drawn */
  mode?: 'error' | 'reset';
}

export interface FaultSettings {
  error5xx?: FaultRate;
  rateLimit?: FaultRate;
  reset?: FaultRate;
  slow?: FaultRate;
  hang?: FaultRate;
  malformedJson?: FaultRate;
  unknownStatus?: FaultRate;
  statusRegression?: FaultRate;
  acceptThenFail?: FaultRate;
  refuseCancel?: FaultRate;
  /** Limits the probabilistic faults to these routes (a kind's own `routes` wins). @default all routes */
  routes?: readonly RouteName[];
  /** `Retry-After` of 429 answers, in seconds. @default 1 */
  retryAfterSeconds?: number;
  /** `seconds` (`Retry-After: 1`) or `http-date` (`Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`). @default 'seconds' */
  retryAfterFormat?: 'seconds' | 'http-date';
  /** Delay of `slow` (real milliseconds, not scaled by `timeScale`). @default 2000 */
  slowMs?: number;
  /** Status reported by `unknownStatus`. @default 'QUEUED_FOR_REVIEW' */
  unknownStatusValue?: string;
  /** Deterministic faults, taken in order by the next matching requests, before any random one. */
  failNext?: readonly ScheduledFault[];
  /** Outage windows (every request to their routes fails while they last). @default none */
  outages?: readonly OutageWindow[];
  /**
   * The answer to a DELETE of a finished execution; a list means one of them, drawn per
   * request from the seeded generator (the outage stream). @default 409
   */
  finishedCancelAnswer?: FinishedCancelAnswer | readonly FinishedCancelAnswer[];
}

const routeName = z.enum(ROUTE_NAMES);
const probability = z.number().min(0).max(1);
const faultRate = z.union([probability, z.strictObject({ probability, routes: z.array(routeName).optional() })]);

const outageWindow = z.strictObject({
  startMs: z.number().min(0).optional(),
  durationMs: z.number().min(0),
  routes: z.array(routeName).optional(),
  answers: z
    .strictObject({ error5xx: z.number().min(0).optional(), reset: z.number().min(0).optional(), hang: z.number().min(0).optional() })
    .refine((answers) => Object.values(answers).some((weight) => weight !== undefined && weight > 0), {
      message: 'at least one answer needs a positive weight',
    })
    .optional(),
});
const finishedCancelAnswer = z.union([z.literal(409), z.literal(400), z.literal(404), z.literal(200)]);

const scheduledFault = z
  .strictObject({
    kind: z.enum(FAULT_KINDS),
    route: routeName.optional(),
    count: z.number().int().min(1).optional(),
    status: z.number().int().min(500).max(599).optional(),
    mode: z.enum(['error', 'reset']).optional(),
  })
  .refine((f) => f.route === undefined || FAULT_ROUTES[f.kind].includes(f.route), {
    message: 'this fault kind cannot strike that route',
  });

const faultSettingsSchema = z.strictObject({
  error5xx: faultRate.optional(),
  rateLimit: faultRate.optional(),
  reset: faultRate.optional(),
  slow: faultRate.optional(),
  hang: faultRate.optional(),
  malformedJson: faultRate.optional(),
  unknownStatus: faultRate.optional(),
  statusRegression: faultRate.optional(),
  acceptThenFail: faultRate.optional(),
  refuseCancel: faultRate.optional(),
  routes: z.array(routeName).optional(),
  retryAfterSeconds: z.number().int().min(0).optional(),
  retryAfterFormat: z.enum(['seconds', 'http-date']).optional(),
  slowMs: z.number().min(0).optional(),
  unknownStatusValue: z.string().min(1).optional(),
  failNext: z.array(scheduledFault).optional(),
  outages: z.array(outageWindow).optional(),
  finishedCancelAnswer: z.union([finishedCancelAnswer, z.array(finishedCancelAnswer).min(1)]).optional(),
});

/**
 * Validates one outage window.
 * @throws Error naming the offending field(s)
 */
export function parseOutageWindow(value: unknown): OutageWindow {
  const result = outageWindow.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${['outage', ...i.path.map(String)].join('.')}: ${i.message}`);
    throw new Error(`Invalid outage window: ${problems.join('; ')}`);
  }
  return result.data;
}

/**
 * Validates fault settings.
 * @throws Error naming the offending field(s)
 */
export function parseFaultSettings(value: unknown): FaultSettings {
  const result = faultSettingsSchema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${['faults', ...i.path.map(String)].join('.')}: ${i.message}`);
    throw new Error(`Invalid fault settings: ${problems.join('; ')}`);
  }
  return result.data;
}

/** A fault chosen for one request. */
export interface FaultDecision {
  kind: FaultKind;
  source: 'scheduled' | 'random';
  /** `error5xx` (500-599) and `acceptThenFail` in `error` mode (500). */
  status?: number;
  /** `acceptThenFail` only. */
  mode?: 'error' | 'reset';
  /**
   * Records that the fault really struck (counts it and uses up a scheduled entry). Call it
   * exactly once, and only when the fault was applied.
   */
  commit(): void;
}

interface QueuedFault {
  fault: ScheduledFault;
  remaining: number;
}

const SERVER_ERRORS = [500, 502, 503] as const;

/** Extra sources of {@link FaultInjector}. */
export interface FaultInjectorSources {
  /**
   * The generator of outage answers and finished-cancel variants (kept apart from the fault
   * draws, so turning them on does not change which requests the other faults strike).
   * @default the fault generator
   */
  readonly behaviourRandom?: RandomSource;
  /** The clock of outage windows. @default Date.now */
  readonly now?: () => number;
}

/** Decides, per request, which fault (if any) strikes it. */
export class FaultInjector {
  private settings: FaultSettings = {};
  private queue: QueuedFault[] = [];
  private windows: ScheduledOutage[] = [];
  private readonly behaviourRandom: RandomSource;
  private readonly now: () => number;

  constructor(
    private readonly random: RandomSource,
    private readonly onInjected: (kind: FaultKind) => void,
    settings: FaultSettings = {},
    sources: FaultInjectorSources = {},
  ) {
    this.behaviourRandom = sources.behaviourRandom ?? random;
    this.now = sources.now ?? Date.now;
    this.set(settings);
  }

  /** Replaces the settings (the `failNext` queue and the outage windows too); the random sequences go on. */
  set(settings: FaultSettings): void {
    const parsed = parseFaultSettings(settings);
    this.settings = parsed;
    this.queue = (parsed.failNext ?? []).map((fault) => ({ fault, remaining: fault.count ?? 1 }));
    const at = this.now();
    this.windows = (parsed.outages ?? []).map((window) => absoluteOutage(window, at));
  }

  /**
   * Adds an outage window beginning `window.startMs` after now (kept until the next `set`).
   * @returns the window with absolute times
   * @throws Error on an invalid window
   */
  scheduleOutage(window: OutageWindow): ScheduledOutage {
    const scheduled = absoluteOutage(parseOutageWindow(window), this.now());
    this.windows.push(scheduled);
    return scheduled;
  }

  /** Every outage window (absolute times), in the order they were added. */
  outages(): readonly ScheduledOutage[] {
    return [...this.windows];
  }

  /**
   * How a request to `route` fails now because of an outage, or undefined when no window
   * covers it. Draws one number from the behaviour generator when the window has more than
   * one possible answer.
   */
  outageAt(route: RouteName, t: number = this.now()): OutageAnswer | undefined {
    const window = this.windows.find((candidate) => candidate.from <= t && t < candidate.until && candidate.routes.includes(route));
    if (window === undefined) return undefined;
    const weighted = OUTAGE_ANSWERS.flatMap((answer) => {
      const weight = window.answers[answer] ?? 0;
      return weight > 0 ? [{ answer, weight }] : [];
    });
    if (weighted.length === 1) return weighted[0]!.answer;
    const total = weighted.reduce((sum, item) => sum + item.weight, 0);
    let r = this.behaviourRandom() * total;
    for (const item of weighted) {
      if (r < item.weight) return item.answer;
      r -= item.weight;
    }
    return weighted.at(-1)?.answer ?? 'error5xx';
  }

  /** The answer to a DELETE of a finished execution (drawn when several are configured). */
  finishedCancelAnswer(): FinishedCancelAnswer {
    const setting = this.settings.finishedCancelAnswer ?? 409;
    if (typeof setting === 'number') return setting;
    if (setting.length === 1) return setting[0]!;
    return setting[Math.floor(this.behaviourRandom() * setting.length)] ?? 409;
  }

  get current(): FaultSettings {
    return this.settings;
  }

  retryAfterSeconds(): number {
    return this.settings.retryAfterSeconds ?? 1;
  }

  retryAfterFormat(): 'seconds' | 'http-date' {
    return this.settings.retryAfterFormat ?? 'seconds';
  }

  slowMs(): number {
    return this.settings.slowMs ?? 2000;
  }

  unknownStatusValue(): string {
    return this.settings.unknownStatusValue ?? 'QUEUED_FOR_REVIEW';
  }

  /** Scheduled faults not used up yet. */
  pending(): ScheduledFault[] {
    return this.queue.map((q) => ({ ...q.fault, count: q.remaining }));
  }

  /**
   * Picks the fault for a request to `route`: the first matching scheduled one, else a
   * random draw. Draws exactly one number when some random fault can strike this route (plus
   * one more for the variant of `error5xx` / `acceptThenFail`), none otherwise, so the same
   * seed and the same request sequence always give the same faults.
   */
  decide(route: RouteName): FaultDecision | undefined {
    const queued = this.queue.find(
      (q) => q.remaining > 0 && (q.fault.route ?? route) === route && FAULT_ROUTES[q.fault.kind].includes(route),
    );
    if (queued !== undefined) {
      const { kind } = queued.fault;
      return {
        kind,
        source: 'scheduled',
        ...this.variant(kind, queued.fault),
        commit: () => {
          if (queued.remaining > 0) queued.remaining -= 1;
          this.queue = this.queue.filter((q) => q.remaining > 0);
          this.onInjected(kind);
        },
      };
    }

    const candidates: Array<{ kind: FaultKind; p: number }> = [];
    for (const kind of FAULT_KINDS) {
      const p = this.probabilityFor(kind, route);
      if (p > 0) candidates.push({ kind, p });
    }
    if (candidates.length === 0) return undefined;
    const total = candidates.reduce((sum, c) => sum + c.p, 0);
    // When the probabilities add up to more than 1 they are scaled down to share the whole range.
    const scale = total > 1 ? 1 / total : 1;
    const r = this.random();
    let cumulative = 0;
    for (const { kind, p } of candidates) {
      cumulative += p * scale;
      if (r < cumulative) {
        return { kind, source: 'random', ...this.variant(kind, undefined), commit: () => this.onInjected(kind) };
      }
    }
    return undefined;
  }

  private probabilityFor(kind: FaultKind, route: RouteName): number {
    if (!FAULT_ROUTES[kind].includes(route)) return 0;
    const rate = this.settings[kind];
    if (rate === undefined) return 0;
    // A kind's own routes win over the global ones.
    const routes = (typeof rate === 'number' ? undefined : rate.routes) ?? this.settings.routes;
    if (routes !== undefined && !routes.includes(route)) return 0;
    return typeof rate === 'number' ? rate : rate.probability;
  }

  private variant(kind: FaultKind, scheduled: ScheduledFault | undefined): { status?: number; mode?: 'error' | 'reset' } {
    if (kind === 'error5xx') {
      const status = scheduled?.status ?? SERVER_ERRORS[Math.floor(this.random() * SERVER_ERRORS.length)] ?? 500;
      return { status };
    }
    if (kind === 'acceptThenFail') {
      const mode = scheduled?.mode ?? (this.random() < 0.5 ? 'error' : 'reset');
      return mode === 'error' ? { mode, status: scheduled?.status ?? 500 } : { mode };
    }
    return {};
  }
}

function absoluteOutage(window: OutageWindow, at: number): ScheduledOutage {
  const from = at + (window.startMs ?? 0);
  return { from, until: from + window.durationMs, routes: window.routes ?? ROUTE_NAMES, answers: window.answers ?? { error5xx: 1 } };
}
