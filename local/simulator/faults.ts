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
 *
 * Every kind except `acceptThenFail` strikes before the request is processed: nothing is
 * created or cancelled. `unknownStatus` and `statusRegression` only strike a GET of an existing
 * execution (and `statusRegression` only when an earlier status exists); otherwise the request
 * is answered normally and nothing is counted.
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
};

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
}

const routeName = z.enum(ROUTE_NAMES);
const probability = z.number().min(0).max(1);
const faultRate = z.union([probability, z.strictObject({ probability, routes: z.array(routeName).optional() })]);

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
  routes: z.array(routeName).optional(),
  retryAfterSeconds: z.number().int().min(0).optional(),
  retryAfterFormat: z.enum(['seconds', 'http-date']).optional(),
  slowMs: z.number().min(0).optional(),
  unknownStatusValue: z.string().min(1).optional(),
  failNext: z.array(scheduledFault).optional(),
});

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

/** Decides, per request, which fault (if any) strikes it. */
export class FaultInjector {
  private settings: FaultSettings = {};
  private queue: QueuedFault[] = [];

  constructor(
    private readonly random: RandomSource,
    private readonly onInjected: (kind: FaultKind) => void,
    settings: FaultSettings = {},
  ) {
    this.set(settings);
  }

  /** Replaces the settings (and the `failNext` queue); the random sequence goes on. */
  set(settings: FaultSettings): void {
    const parsed = parseFaultSettings(settings);
    this.settings = parsed;
    this.queue = (parsed.failNext ?? []).map((fault) => ({ fault, remaining: fault.count ?? 1 }));
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
