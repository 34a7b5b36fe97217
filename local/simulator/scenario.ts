import { z } from 'zod';
import { WATERFLAI_STATUS, type WaterflaiStatus } from '../../lambdas/contract/constants';

/**
 * How one simulated execution behaves. A producer chooses it per job with
 * `input_data.simulate` (same field names); `SimulatorOptions.defaults` fills the rest.
 * Every duration is in milliseconds of scenario time and is multiplied by the simulator's
 * `timeScale`.
 */
export interface Scenario {
  /** Time spent RUNNING (from `started_at` to the natural end). @default 2000 */
  duration_ms: number;
  /** Number of workflow nodes, named `node-1` ... `node-N`. @default 4 */
  nodes: number;
  /**
   * What happens at the natural end: `completed` (final_output set), `failed`
   * (error_message set, the last node never completes) or `cancelled` (cancelled remotely
   * while the last node runs). @default 'completed'
   */
  outcome: ScenarioOutcome;
  /** Time spent PENDING before `started_at`. @default 200 */
  queue_ms: number;
  /**
   * How node durations are spread, i.e. the shape of the progress curve:
   * `linear` (equal nodes), `front_loaded` (early nodes short: progress rises fast, then
   * slows), `back_loaded` (early nodes long: slow start, fast finish), `stall` (the middle
   * node takes 80% of the time: progress sits still), `none` (same timing as linear but
   * `progress`, `completed_nodes` and `total_nodes` are null and no progress_update is sent).
   * @default 'linear'
   */
  progress: ProgressShape;
  /** Size in bytes of the generated `final_output` JSON (about; exact above ~80 bytes). */
  output_bytes?: number;
  /** Remote cancellation this long after creation (if before the natural end). */
  cancel_after_ms?: number;
  /** `final_output` verbatim (instead of the generated one). */
  output?: Record<string, unknown>;
  /** `error_message` of a failed execution. @default 'Simulated failure in node-N' */
  error_message?: string;
  /**
   * How long a finished execution is kept before it is cleaned up (GET, DELETE and the
   * stream then answer 404). @default the simulator's `retentionMs` (24 h)
   */
  retention_ms?: number;
}

export const SCENARIO_OUTCOMES = ['completed', 'failed', 'cancelled'] as const;
export type ScenarioOutcome = (typeof SCENARIO_OUTCOMES)[number];
export const PROGRESS_SHAPES = ['linear', 'front_loaded', 'back_loaded', 'stall', 'none'] as const;
export type ProgressShape = (typeof PROGRESS_SHAPES)[number];

/** Built-in defaults, overridden by `SimulatorOptions.defaults`, then by `input_data.simulate`. */
export const DEFAULT_SCENARIO: Readonly<Scenario> = Object.freeze({
  duration_ms: 2000,
  nodes: 4,
  outcome: 'completed',
  queue_ms: 200,
  progress: 'linear',
});

const MAX_SCENARIO_MS = 7 * 24 * 3600 * 1000;
const MAX_OUTPUT_BYTES = 10 * 1024 * 1024;
export const MAX_NODES = 1000;

const milliseconds = z.number().min(0).max(MAX_SCENARIO_MS);

/** Schema of `input_data.simulate` and of `SimulatorOptions.defaults` (all fields optional, no others). */
export const scenarioSchema = z
  .strictObject({
    duration_ms: milliseconds,
    nodes: z.number().int().min(1).max(MAX_NODES),
    outcome: z.enum(SCENARIO_OUTCOMES),
    queue_ms: milliseconds,
    progress: z.enum(PROGRESS_SHAPES),
    output_bytes: z.number().int().min(0).max(MAX_OUTPUT_BYTES),
    cancel_after_ms: milliseconds,
    output: z.record(z.string(), z.unknown()),
    error_message: z.string().min(1).max(10_000),
    retention_ms: milliseconds,
  })
  .partial()
  .refine((s) => s.output === undefined || s.output_bytes === undefined, {
    message: 'give either output or output_bytes, not both',
  });

/** Thrown for an invalid scenario; `message` names the offending field(s). */
export class ScenarioValidationError extends Error {
  override readonly name = 'ScenarioValidationError';
}

/**
 * Validates a partial scenario. `where` prefixes field paths in the error message, e.g.
 * `input_data.simulate`.
 * @throws ScenarioValidationError
 */
export function parseScenario(value: unknown, where: string): Partial<Scenario> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ScenarioValidationError(`${where} must be a JSON object`);
  }
  const result = scenarioSchema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const path = [where, ...issue.path.map(String)].join('.');
      return `${path}: ${issue.message}`;
    });
    throw new ScenarioValidationError(`Invalid ${where}: ${problems.join('; ')}`);
  }
  return result.data;
}

/**
 * Merges defaults and a job's own choices. Choosing `output` or `output_bytes` in the job
 * replaces whichever of the two the defaults set.
 */
export function resolveScenario(defaults: Partial<Scenario>, job: Partial<Scenario>): Scenario {
  const merged: Scenario = { ...DEFAULT_SCENARIO, ...defaults, ...job };
  if (job.output !== undefined) delete merged.output_bytes;
  if (job.output_bytes !== undefined) delete merged.output;
  return merged;
}

/** A status body exactly as `GET /v1/executions/{execution_id}` answers it. */
export interface ExecutionStatusBody {
  execution_id: string;
  status: WaterflaiStatus;
  progress: number | null;
  current_node: string | null;
  completed_nodes: number | null;
  total_nodes: number | null;
  final_output: Record<string, unknown> | null;
  error_message: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  retry_count: number;
  execution_source: 'CHATBOT';
  is_temporary: boolean;
  cleanup_after: string;
}

/** Who cancelled an execution: a DELETE (`api`), `cancelRemotely()` or the scenario (`remote`). */
export type CancelledBy = 'api' | 'remote';

/** What `Simulator.execution()` returns: the status body plus simulator internals. */
export interface SimulatedExecutionView extends ExecutionStatusBody {
  chatbot_id: string;
  input_data: Record<string, unknown>;
  /** The resolved scenario (unscaled). */
  scenario: Scenario;
  cancelled_by: CancelledBy | null;
  /**
   * Whether the POST that created it was answered 202 with its id: false for the crash
   * window (`acceptThenFail`), or when the client was gone before the answer went out. An
   * execution whose start was not acknowledged is one nobody outside can know the id of.
   */
  start_acknowledged: boolean;
}

/** One step of an execution's timeline (absolute epoch milliseconds). */
export interface TimelineEvent {
  at: number;
  type: 'node_started' | 'node_completed' | 'progress_update';
  /** 0-based node index. */
  node: number;
  /** Nodes completed once this event has happened. */
  completed: number;
}

/** Terminal statuses an execution can end in. */
type EndStatus = typeof WATERFLAI_STATUS.COMPLETED | typeof WATERFLAI_STATUS.FAILED | typeof WATERFLAI_STATUS.CANCELLED;

const OUTCOME_STATUS: Record<ScenarioOutcome, EndStatus> = {
  completed: WATERFLAI_STATUS.COMPLETED,
  failed: WATERFLAI_STATUS.FAILED,
  cancelled: WATERFLAI_STATUS.CANCELLED,
};

function nodeWeights(nodes: number, shape: ProgressShape): number[] {
  const weights: number[] = [];
  const stallNode = Math.floor((nodes - 1) / 2);
  for (let i = 0; i < nodes; i += 1) {
    switch (shape) {
      case 'front_loaded':
        weights.push(i + 1);
        break;
      case 'back_loaded':
        weights.push(nodes - i);
        break;
      case 'stall':
        // The stalled node takes 80% of the time, the others share 20%.
        weights.push(nodes === 1 ? 1 : i === stallNode ? 0.8 : 0.2 / (nodes - 1));
        break;
      case 'linear':
      case 'none':
        weights.push(1);
        break;
    }
  }
  return weights;
}

export function nodeName(index: number): string {
  return `node-${index + 1}`;
}

function percent(completed: number, total: number): number {
  return Math.round((completed / total) * 10_000) / 100;
}

/** The timestamps `SimulatedExecution` is built from, already scaled to wall-clock ms. */
export interface ExecutionTiming {
  createdAt: number;
  queueMs: number;
  durationMs: number;
  cancelAfterMs?: number;
}

/**
 * One simulated execution. Its state is a pure function of the clock: the natural timeline
 * is computed once at creation, and a cancellation only moves the end earlier.
 */
export class SimulatedExecution {
  readonly startAt: number;
  readonly naturalEndAt: number;
  readonly scheduledCancelAt: number | undefined;
  private explicitCancelAt: number | undefined;
  /** Set once the POST's 202 with the id went out (see `SimulatedExecutionView.start_acknowledged`). */
  startAcknowledged = false;
  private cancelledByCaller: CancelledBy | undefined;
  private readonly timeline: TimelineEvent[];
  private readonly subscribers = new Set<() => void>();

  constructor(
    readonly id: string,
    readonly chatbotId: string,
    readonly inputData: Record<string, unknown>,
    readonly scenario: Scenario,
    readonly createdAt: number,
    timing: ExecutionTiming,
    readonly finalOutput: Record<string, unknown>,
    private readonly retentionMs: number,
  ) {
    this.startAt = createdAt + timing.queueMs;
    this.naturalEndAt = this.startAt + timing.durationMs;
    this.scheduledCancelAt = timing.cancelAfterMs === undefined ? undefined : createdAt + timing.cancelAfterMs;
    this.timeline = [];
    const weights = nodeWeights(scenario.nodes, scenario.progress);
    const totalWeight = weights.reduce((a, b) => a + b, 0);
    let cumulative = 0;
    for (let i = 0; i < scenario.nodes; i += 1) {
      const begin = this.startAt + (cumulative / totalWeight) * timing.durationMs;
      cumulative += weights[i] ?? 0;
      const end = i === scenario.nodes - 1 ? this.naturalEndAt : this.startAt + (cumulative / totalWeight) * timing.durationMs;
      this.timeline.push({ at: begin, type: 'node_started', node: i, completed: i });
      this.timeline.push({ at: end, type: 'node_completed', node: i, completed: i + 1 });
      if (scenario.progress !== 'none') this.timeline.push({ at: end, type: 'progress_update', node: i, completed: i + 1 });
    }
  }

  /** When the execution ends (natural end, scheduled or explicit cancellation, whichever first). */
  endAt(): number {
    return Math.min(this.naturalEndAt, this.scheduledCancelAt ?? Infinity, this.explicitCancelAt ?? Infinity);
  }

  /** The status it ends in. */
  endStatus(): EndStatus {
    return this.endAt() < this.naturalEndAt ? WATERFLAI_STATUS.CANCELLED : OUTCOME_STATUS[this.scenario.outcome];
  }

  cancelledBy(): CancelledBy | null {
    if (this.endStatus() !== WATERFLAI_STATUS.CANCELLED) return null;
    return this.cancelledByCaller ?? 'remote';
  }

  isTerminalAt(t: number): boolean {
    return t >= this.endAt();
  }

  statusAt(t: number): WaterflaiStatus {
    if (this.isTerminalAt(t)) return this.endStatus();
    return t >= this.startAt ? WATERFLAI_STATUS.RUNNING : WATERFLAI_STATUS.PENDING;
  }

  /**
   * The timeline as it really happens: events after the end are dropped; events at the very
   * end are kept when the execution completes or is cancelled (the cancel comes "after" them),
   * and dropped when it fails or ends cancelled at its natural end (the last node never completes).
   */
  effectiveEvents(): TimelineEvent[] {
    const end = this.endAt();
    const keepEndEvents = end < this.naturalEndAt || this.endStatus() === WATERFLAI_STATUS.COMPLETED;
    return this.timeline.filter((e) => e.at < end || (keepEndEvents && e.at === end));
  }

  /** The first moment after `t` when something observable happens, if any. */
  nextChangeAfter(t: number): number | undefined {
    const end = this.endAt();
    let next = end > t ? end : undefined;
    for (const e of this.effectiveEvents()) {
      if (e.at > t && (next === undefined || e.at < next)) next = e.at;
    }
    return next;
  }

  /**
   * Cancels it at `now` if it is still PENDING or RUNNING.
   * @returns the status before cancelling, and whether it was cancelled.
   */
  cancel(now: number, by: CancelledBy): { cancelled: boolean; previousStatus: WaterflaiStatus } {
    const previousStatus = this.statusAt(now);
    if (this.isTerminalAt(now)) return { cancelled: false, previousStatus };
    this.explicitCancelAt = now;
    this.cancelledByCaller = by;
    for (const wake of [...this.subscribers]) wake();
    return { cancelled: true, previousStatus };
  }

  /** Registers a callback run when the execution is cancelled; returns an unsubscribe function. */
  subscribe(wake: () => void): () => void {
    this.subscribers.add(wake);
    return () => this.subscribers.delete(wake);
  }

  /** True once the execution has ended and its retention (`cleanup_after`) has passed: it is gone. */
  isCleanedUpAt(t: number): boolean {
    return this.isTerminalAt(t) && t > this.endAt() + this.retentionMs;
  }

  /** The status body as observed at time `t`. */
  bodyAt(t: number): ExecutionStatusBody {
    const status = this.statusAt(t);
    const terminal = this.isTerminalAt(t);
    let completed = 0;
    let current: number | null = null;
    let progress = 0;
    for (const e of this.effectiveEvents()) {
      if (e.at > t) break;
      if (e.type === 'node_started') current = e.node;
      if (e.type === 'node_completed') {
        completed = e.completed;
        if (current === e.node) current = null;
      }
      if (e.type === 'progress_update') progress = percent(e.completed, this.scenario.nodes);
    }
    const end = this.endAt();
    const started = t >= this.startAt && (this.startAt < end || (this.startAt === end && this.endStatus() !== WATERFLAI_STATUS.CANCELLED));
    const reportsProgress = this.scenario.progress !== 'none';
    const completedAt = terminal ? end : undefined;
    return {
      execution_id: this.id,
      status,
      progress: reportsProgress ? progress : null,
      current_node: current === null ? null : nodeName(current),
      completed_nodes: reportsProgress ? completed : null,
      total_nodes: reportsProgress ? this.scenario.nodes : null,
      final_output: status === WATERFLAI_STATUS.COMPLETED ? this.finalOutput : null,
      error_message: status === WATERFLAI_STATUS.FAILED ? this.errorMessage() : null,
      created_at: iso(this.createdAt),
      started_at: started ? iso(this.startAt) : null,
      completed_at: completedAt === undefined ? null : iso(completedAt),
      retry_count: 0,
      execution_source: 'CHATBOT',
      is_temporary: true,
      cleanup_after: iso((completedAt ?? this.createdAt) + this.retentionMs),
    };
  }

  /**
   * A stale but self-consistent body with an earlier status than the real one at `t` (what
   * a lagging replica would answer), or undefined when there is no earlier status.
   */
  staleBodyAt(t: number): ExecutionStatusBody | undefined {
    const status = this.statusAt(t);
    if (status === WATERFLAI_STATUS.PENDING) return undefined;
    const before = status === WATERFLAI_STATUS.RUNNING ? this.startAt : this.endAt();
    // 1 ms before the transition, but never before creation.
    const earlier = Math.max(this.createdAt, before - 1);
    const body = this.bodyAt(earlier);
    if (body.status !== status) return body;
    // Created and transitioned within the same millisecond: answer a fresh PENDING snapshot.
    const reportsProgress = this.scenario.progress !== 'none';
    return {
      ...body,
      status: WATERFLAI_STATUS.PENDING,
      progress: reportsProgress ? 0 : null,
      current_node: null,
      completed_nodes: reportsProgress ? 0 : null,
      final_output: null,
      error_message: null,
      started_at: null,
      completed_at: null,
      cleanup_after: iso(this.createdAt + this.retentionMs),
    };
  }

  errorMessage(): string {
    return this.scenario.error_message ?? `Simulated failure in ${nodeName(this.scenario.nodes - 1)}`;
  }

  /** Full view for tests and tooling. */
  viewAt(t: number): SimulatedExecutionView {
    return {
      ...this.bodyAt(t),
      chatbot_id: this.chatbotId,
      input_data: this.inputData,
      scenario: this.scenario,
      cancelled_by: this.isTerminalAt(t) ? this.cancelledBy() : null,
      start_acknowledged: this.startAcknowledged,
    };
  }
}

export function iso(ms: number): string {
  return new Date(Math.floor(ms)).toISOString();
}

/**
 * The generated `final_output`: an answer plus, when `outputBytes` is set, a padding string
 * so the JSON text is `outputBytes` long (or as close as the fixed fields allow).
 */
export function buildFinalOutput(scenario: Scenario, executionId: string, chatbotId: string): Record<string, unknown> {
  if (scenario.output !== undefined) return scenario.output;
  const base: Record<string, unknown> = {
    answer: `Simulated answer from chatbot ${chatbotId}`,
    execution_id: executionId,
  };
  if (scenario.output_bytes === undefined) return base;
  const withEmptyPadding = JSON.stringify({ ...base, padding: '' }).length;
  if (scenario.output_bytes >= withEmptyPadding) {
    return { ...base, padding: 'x'.repeat(scenario.output_bytes - withEmptyPadding) };
  }
  const paddingOnly = JSON.stringify({ padding: '' }).length;
  return { padding: 'x'.repeat(Math.max(0, scenario.output_bytes - paddingOnly)) };
}
