import { ERROR_CODE, isTerminalStatus, JOB_STATUS, type JobStatus } from '../shared/constants';
import { ConfigurationError, describeError, isRetryable, isTransientAwsError, TransientPollError, WaterflaiHttpError } from '../shared/errors';
import { executionNameForGeneration } from '../shared/identifiers';
import { isSettled, type JobStore, type StatusFields, type UpdateResult } from '../shared/job-store';
import type { AppLogger } from '../shared/logger';
import type { OutputStore } from '../shared/output-store';
import { DEFAULT_STREAM_RESERVE_MS, listenBudgetSeconds, type ListenOutcome, type ListenResult, type StreamProgress } from '../shared/execution-stream';
import { fixedIntervalStrategy, MAX_RETRY_AFTER_SECONDS, type FixedIntervalSettings, type JobObservation, type PollStrategy, type StrategyMemory, type StreamState } from '../shared/poll-strategy';
import { mapExecutionStatus } from '../shared/status-mapping';
import { requestTimeoutFor, type ExecutionStatus, type RequestOptions } from '../shared/waterflai-client';
import type { PollState } from '../shared/workflow';

export interface WaterflaiStatusReader {
  getExecution(executionId: string, options?: RequestOptions): Promise<ExecutionStatus>;
  cancelExecution(executionId: string, options?: RequestOptions): Promise<unknown>;
}

/** Listens on an execution's event stream (see `listenToExecution`); never throws for server or network trouble. */
export interface ExecutionStreamListener {
  listen(
    executionId: string,
    options: {
      readonly windowMs: number;
      readonly onEvent: (event: StreamProgress) => void;
      readonly keepListening: () => boolean;
      readonly checkIntervalMs: number;
    },
  ): Promise<ListenResult>;
}

/** Starts the successor execution of a job's poll loop (continue-as-new); returns its ARN. */
export interface SuccessorStarter {
  start(name: string, input: PollState): Promise<string>;
}

export interface PollerDeps {
  readonly store: JobStore;
  readonly waterflai: WaterflaiStatusReader;
  readonly logger: AppLogger;
  readonly pollSettings: FixedIntervalSettings;
  /** Largest `final_output` (JSON bytes) carried inline in records and events. */
  readonly maxInlineOutputBytes: number;
  /** Where larger outputs go. Without it, a larger output fails the job with OUTPUT_TOO_LARGE. */
  readonly outputs?: OutputStore;
  /** Largest output stored in S3 (bytes). @default 64 MiB */
  readonly maxOutputBytes?: number;
  /**
   * Polls one execution makes before handing the job over to a successor, well inside
   * Step Functions' 25,000-event history. Without a successor starter there is no hand-over.
   */
  readonly maxPollsPerExecution?: number;
  readonly successor?: SuccessorStarter;
  readonly now?: () => number;
  /**
   * Decides the waits and when to listen on the stream.
   * @default fixedIntervalStrategy(pollSettings)
   */
  readonly strategy?: PollStrategy;
  /** The execution's event stream. Without it the strategy never listens. */
  readonly stream?: ExecutionStreamListener;
  /** Random numbers for the strategy's jitter. @default Math.random */
  readonly random?: () => number;
  /**
   * Time kept free at the end of the invocation after a listen, for the status read and
   * the records that follow. @default DEFAULT_STREAM_RESERVE_MS (20 s)
   */
  readonly streamReserveMs?: number;
  /**
   * Local runtime only: the factor its waits are scaled by (0.1 = ten times faster). The
   * strategy reasons in job time, so clock durations are divided by it and listen windows
   * multiplied by it. @default 1
   */
  readonly timeScale?: number;
}

/**
 * Local runtime only: the variable giving the factor the runtime scales waits by (0.1 =
 * ten times faster), so the poll strategy can reason in job time. Unset (1) on AWS.
 */
export const LOCAL_TIME_SCALE_ENV = 'LOCAL_TIME_SCALE';

/** Reads {@link LOCAL_TIME_SCALE_ENV}: a number from 0.001 to 100, default 1. */
export function readTimeScale(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env[LOCAL_TIME_SCALE_ENV];
  if (raw === undefined || raw.trim() === '') return 1;
  const value = /^\s*\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= 0.001 && value <= 100)) throw new ConfigurationError(`environment variable ${LOCAL_TIME_SCALE_ENV} must be a number from 0.001 to 100, got "${raw}"`);
  return value;
}

/** How often a listening poll asks the strategy whether listening is still worth it (job time). */
const LISTEN_CHECK_MS = 5_000;

/** What one status read of a poll led to. */
type ReadResult =
  /** The poll is over: a terminal or settled state, or the expired-output failure. */
  | { readonly kind: 'done'; readonly state: PollState }
  /** Waterflai answered 429: wait as asked. */
  | { readonly kind: 'rate-limited'; readonly retryAfterSeconds: number | undefined }
  /** A non-terminal status, recorded if it changed. */
  | { readonly kind: 'running'; readonly next: PollState; readonly execution: ExecutionStatus; readonly atMs: number }
  /** CANCELLED, not recorded (asked for by `deferCancelled`). */
  | { readonly kind: 'cancel-deferred' };

const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/**
 * One iteration of the poll loop: ask Waterflai for the execution's status, record it when
 * something changed (status, progress or current node) with a conditional, monotonic
 * write, and return the next loop state with the wait before the next poll.
 *
 * - Past the job's deadline it cancels the execution in Waterflai and settles the job
 *   FAILED with `TIMED_OUT`, without asking for the status first.
 * - Transient Waterflai failures throw {@link TransientPollError} for the state machine's
 *   Retry; a 429 is not an error but a request to wait, honoured through
 *   `next_poll_seconds`; permanent failures (401, 404, ...) propagate to the Catch, except a
 *   404 after the result's `cleanup_after`, which settles FAILED with `OUTPUT_EXPIRED`.
 * - A COMPLETED output too large to carry inline is stored in S3 and recorded as a location.
 * - When this execution has made its budget of polls, the job is handed over to a successor
 *   execution (continue-as-new) and this one ends.
 */
export class JobPoller {
  private readonly now: () => number;
  private readonly fixed: PollStrategy;

  constructor(private readonly deps: PollerDeps) {
    this.now = deps.now ?? Date.now;
    this.fixed = fixedIntervalStrategy(deps.pollSettings);
  }

  async poll(state: PollState, remainingMs: () => number): Promise<PollState> {
    const pollCount = state.poll_count + 1;
    const executionPolls = (state.execution_polls ?? 0) + 1;
    const nowMs = this.now();
    const observedAt = new Date(nowMs).toISOString();

    if (nowMs >= Date.parse(state.deadline_at)) return this.timeOut(state, pollCount, observedAt, remainingMs);

    const counted: PollState = { ...state, poll_count: pollCount, execution_polls: executionPolls };
    const first = await this.read(state, counted, remainingMs, nowMs);
    if (first.kind === 'done') return first.state;
    if (first.kind === 'rate-limited') return this.rateLimited(counted, state.poll_memo, first.retryAfterSeconds, 'available');
    if (first.kind === 'cancel-deferred') throw new Error('a first status read never defers a cancel');

    // Ask the strategy; maybe listen on the stream until the end (or until it is not worth it).
    let memory = this.strategy.observe(state.poll_memo, this.observation(state, first.execution, first.atMs));
    let plan = this.strategy.plan(memory, {
      now: this.jobSeconds(state, this.now()),
      pollCount,
      stream: this.deps.stream === undefined ? 'off' : 'available',
      maxListenSeconds: this.deps.stream === undefined ? 0 : this.listenBudget(state, remainingMs),
      random: this.random,
    });
    memory = plan.memory;
    let next = first.next;
    if (plan.listenSeconds > 0 && this.deps.stream !== undefined) {
      const heard = await this.listen(state, memory, plan.listenSeconds, remainingMs);
      memory = heard.memory;
      // Whatever the stream said, the status read decides (and records) the outcome.
      const second = await this.read(first.next, first.next, remainingMs, this.now(), { deferCancelled: true });
      if (second.kind === 'cancel-deferred') {
        // A Lambda invocation outlives a StopExecution: if an operator stopped this execution
        // while it listened, the CANCELLED it heard is the reconciler's upstream cancel, which
        // the reconciler records as `stopped`. The next poll (there is none after a stop)
        // records a genuine remote cancel.
        this.deps.logger.info('execution cancelled while listening; the next poll records it', { job_id: state.job_id });
        return this.continueLoop(withMemory({ ...first.next, next_poll_seconds: 1 }, memory));
      }
      if (second.kind === 'done') return second.state;
      if (second.kind === 'rate-limited') return this.rateLimited(first.next, memory, second.retryAfterSeconds, 'listened');
      memory = this.strategy.observe(memory, this.observation(state, second.execution, second.atMs));
      // A stream that closed although the job goes on is not trusted for a while.
      const failed = isStreamFailure(heard.outcome) || heard.outcome === 'closed';
      memory = failed ? this.strategy.streamFailed(memory, this.jobSeconds(state, this.now())) : this.strategy.streamWorked(memory);
      next = second.next;
      // The plan after a listen (the poll is counted once; a failed stream is in the memory).
      plan = this.strategy.plan(memory, {
        now: this.jobSeconds(state, this.now()),
        pollCount,
        stream: 'listened',
        maxListenSeconds: 0,
        random: this.random,
      });
      memory = plan.memory;
    }
    const wait = this.capAtDeadline(state, plan.waitSeconds);
    this.deps.logger.debug('next poll planned', { job_id: state.job_id, poll_count: pollCount, wait_seconds: wait, poll_memo: memory });
    return this.continueLoop(withMemory({ ...next, next_poll_seconds: wait }, memory));
  }

  /**
   * The wait, shortened so that the first poll after the job's deadline comes right after
   * it (that poll cancels the execution upstream). `atLeast` is a wait the server asked for.
   */
  private capAtDeadline(state: PollState, waitSeconds: number, atLeast = 1): number {
    const untilDeadline = Math.ceil((Date.parse(state.deadline_at) - this.now()) / 1000 / this.timeScale);
    if (!Number.isFinite(untilDeadline)) return waitSeconds;
    return Math.max(1, Math.ceil(atLeast), Math.min(waitSeconds, Math.max(1, untilDeadline)));
  }

  private get strategy(): PollStrategy {
    return this.deps.strategy ?? this.fixed;
  }

  private get random(): () => number {
    return this.deps.random ?? Math.random;
  }

  private get timeScale(): number {
    const scale = this.deps.timeScale ?? 1;
    return Number.isFinite(scale) && scale > 0 ? scale : 1;
  }

  private get streamReserveMs(): number {
    return this.deps.streamReserveMs ?? DEFAULT_STREAM_RESERVE_MS;
  }

  /**
   * Seconds of job time this invocation can listen: what is left before the Lambda's
   * timeout (and the job's deadline), minus the reserve. The limits hold in clock time and
   * also in job time, so a time-scaled local run listens as long, in job time, as it would
   * on AWS (where the scale is 1 and both are the same).
   */
  private listenBudget(state: PollState, remainingMs: () => number): number {
    const budgetMs = Math.min(remainingMs(), Date.parse(state.deadline_at) - this.now() + this.streamReserveMs);
    return Math.min(listenBudgetSeconds(budgetMs, this.streamReserveMs), listenBudgetSeconds(budgetMs, this.streamReserveMs, this.timeScale));
  }

  /** Job time (seconds since acceptance, divided by the time scale) of a clock reading. */
  private jobSeconds(state: PollState, ms: number): number {
    return (ms - Date.parse(state.accepted_at)) / 1000 / this.timeScale;
  }

  private observation(state: PollState, execution: ExecutionStatus, atMs: number): JobObservation {
    const startedMs = execution.started_at === null ? Number.NaN : Date.parse(execution.started_at);
    return {
      at: this.jobSeconds(state, atMs),
      status: execution.known_status ?? execution.status,
      progress: execution.progress,
      completedNodes: execution.completed_nodes,
      totalNodes: execution.total_nodes,
      startedAt: Number.isFinite(startedMs) ? this.jobSeconds(state, startedMs) : null,
      currentNode: execution.current_node,
    };
  }

  /** A 429: no listen, wait at least as long as asked. */
  private rateLimited(counted: PollState, memory: StrategyMemory | undefined, retryAfterSeconds: number | undefined, stream: StreamState): Promise<PollState> {
    this.deps.logger.info('Waterflai asked us to slow down', { job_id: counted.job_id, retry_after_seconds: retryAfterSeconds });
    const plan = this.strategy.plan(memory, {
      now: this.jobSeconds(counted, this.now()),
      pollCount: counted.poll_count,
      stream: stream === 'available' ? 'off' : stream,
      maxListenSeconds: 0,
      random: this.random,
      ...(retryAfterSeconds === undefined ? { retryAfterSeconds: 0 } : { retryAfterSeconds }),
    });
    const wait = this.capAtDeadline(counted, plan.waitSeconds, Math.min(retryAfterSeconds ?? 0, MAX_RETRY_AFTER_SECONDS));
    return this.continueLoop(withMemory({ ...counted, next_poll_seconds: wait }, plan.memory));
  }

  /** Listens on the stream for up to `seconds` of job time, folding its events into the memory. */
  private async listen(state: PollState, start: StrategyMemory, seconds: number, remainingMs: () => number): Promise<{ memory: StrategyMemory; outcome: ListenOutcome }> {
    const stream = this.deps.stream!;
    let memory = start;
    const windowMs = Math.min(seconds * 1000 * this.timeScale, remainingMs() - this.streamReserveMs, Date.parse(state.deadline_at) - this.now());
    if (!(windowMs >= 1)) return { memory, outcome: 'window' };
    const result = await stream.listen(state.execution_id, {
      windowMs,
      checkIntervalMs: Math.max(10, LISTEN_CHECK_MS * this.timeScale),
      onEvent: (event) => {
        memory = this.strategy.observe(memory, {
          at: this.jobSeconds(state, event.receivedAtMs),
          exact: true,
          status: event.status,
          progress: event.progress,
          completedNodes: event.completedNodes,
          totalNodes: event.totalNodes,
          currentNode: event.type === 'node_started' ? event.nodeId : null,
        });
      },
      keepListening: () => this.strategy.keepListening(memory, this.jobSeconds(state, this.now())),
    });
    this.deps.logger.info('listened on the execution stream', {
      job_id: state.job_id,
      outcome: result.outcome,
      events: result.events,
      malformed: result.malformed,
      listened_ms: result.elapsedMs,
      ...(result.reason === undefined ? {} : { reason: result.reason }),
    });
    return { memory, outcome: result.outcome };
  }

  /**
   * One status read: records a change (status, progress or current node) with a
   * conditional, monotonic write. `compare` is the state the change is judged against;
   * `counted` carries the poll counts of this poll.
   */
  private async read(compare: PollState, counted: PollState, remainingMs: () => number, nowMs: number = this.now(), options: { deferCancelled?: boolean } = {}): Promise<ReadResult> {
    const { waterflai, logger } = this.deps;
    const pollCount = counted.poll_count;
    const observedAt = new Date(nowMs).toISOString();
    let execution: ExecutionStatus;
    try {
      execution = await waterflai.getExecution(compare.execution_id, { timeoutMs: requestTimeoutFor(remainingMs()) });
    } catch (error) {
      if (error instanceof WaterflaiHttpError && error.status === 429) return { kind: 'rate-limited', retryAfterSeconds: error.retryAfterSeconds };
      if (error instanceof WaterflaiHttpError && error.status === 404 && isPast(compare.cleanup_after, nowMs)) {
        return {
          kind: 'done',
          state: await this.settle(counted, JOB_STATUS.FAILED, {
            finished_at: observedAt,
            error_code: ERROR_CODE.OUTPUT_EXPIRED,
            error_message: `Waterflai no longer knows the execution: its result was cleaned up at ${compare.cleanup_after}`,
          }, observedAt),
        };
      }
      if (isRetryable(error)) throw new TransientPollError(describeError(error), { cause: error });
      throw error;
    }

    const mapped = mapExecutionStatus(execution, observedAt, this.deps.outputs ? (this.deps.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES) : this.deps.maxInlineOutputBytes);
    if (options.deferCancelled === true && mapped.status === JOB_STATUS.CANCELLED) return { kind: 'cancel-deferred' };
    const fields = await this.placeOutput(compare, mapped.status, mapped.fields, mapped.outputBytes);
    const progress = fields.progress ?? null;
    const currentNode = fields.current_node ?? null;
    const next: PollState = {
      ...counted,
      status: mapped.status,
      progress,
      current_node: currentNode,
      cleanup_after: execution.cleanup_after,
    };
    const changed = mapped.status !== compare.status || progress !== compare.progress || currentNode !== compare.current_node;
    if (!changed && !isTerminalStatus(mapped.status)) return { kind: 'running', next, execution, atMs: nowMs };

    const result = await this.record(compare.job_id, mapped.status, { ...fields, polls: pollCount }, observedAt);
    if (result.applied) {
      return isTerminalStatus(mapped.status) ? { kind: 'done', state: withoutNextPoll(next, counted) } : { kind: 'running', next, execution, atMs: nowMs };
    }

    const current = result.record;
    if (current && isSettled(current)) {
      // Someone settled the job first (a cancel request, the sweeper): finish with their outcome.
      logger.info('job already settled; finishing with the recorded outcome', { job_id: compare.job_id, status: current.status });
      return { kind: 'done', state: { ...withoutNextPoll(next, counted), status: current.status } };
    }
    // A stale or backwards observation (e.g. RUNNING after a recorded later status): keep the recorded state.
    logger.warn('status update refused as stale', { job_id: compare.job_id, observed: mapped.status, recorded: current?.status });
    return { kind: 'running', next: { ...compare, poll_count: counted.poll_count, execution_polls: counted.execution_polls, ...(current ? { status: current.status } : {}) }, execution, atMs: nowMs };
  }

  /** A COMPLETED output over the inline limit goes to S3; the record keeps its location. */
  private async placeOutput(state: PollState, status: JobStatus, fields: StatusFields, outputBytes: number | undefined): Promise<StatusFields> {
    const { outputs, maxInlineOutputBytes } = this.deps;
    if (status !== JOB_STATUS.COMPLETED || outputs === undefined || outputBytes === undefined || outputBytes <= maxInlineOutputBytes) return fields;
    const { final_output: output, ...rest } = fields;
    let location;
    try {
      location = await outputs.put(state.job_id, state.execution_id, JSON.stringify(output ?? null));
    } catch (error) {
      if (isTransientAwsError(error)) throw new TransientPollError(`storing the output failed: ${describeError(error)}`, { cause: error });
      throw error;
    }
    this.deps.logger.info('large output stored in S3', { job_id: state.job_id, bytes: location.size, key: location.key });
    return { ...rest, output_location: location };
  }

  /** Past the deadline: cancel upstream (best effort) and settle FAILED with TIMED_OUT. */
  private async timeOut(state: PollState, pollCount: number, at: string, remainingMs: () => number): Promise<PollState> {
    try {
      await this.deps.waterflai.cancelExecution(state.execution_id, { timeoutMs: requestTimeoutFor(remainingMs()) });
    } catch (error) {
      // The job ends either way; an execution we could not cancel is logged for the operator.
      this.deps.logger.error('could not cancel a timed-out execution in Waterflai', { job_id: state.job_id, error: describeError(error) });
    }
    this.deps.logger.warn('job passed its deadline; cancelled', { job_id: state.job_id, deadline_at: state.deadline_at });
    return this.settle({ ...state, poll_count: pollCount, execution_polls: (state.execution_polls ?? 0) + 1 }, JOB_STATUS.FAILED, {
      finished_at: at,
      error_code: ERROR_CODE.TIMED_OUT,
      error_message: `the job did not finish by its deadline ${state.deadline_at}; the execution was cancelled`,
    }, at);
  }

  /** Settles the job (unless someone else did first) and returns the terminal loop state. `counted` carries this poll's counts. */
  private async settle(counted: PollState, status: JobStatus, fields: StatusFields, at: string): Promise<PollState> {
    const result = await this.record(counted.job_id, status, { ...fields, polls: counted.poll_count }, at);
    const settledStatus = result.record && isSettled(result.record) ? result.record.status : status;
    return { ...counted, status: settledStatus };
  }

  private async record(jobId: string, status: JobStatus, fields: StatusFields, at: string): Promise<UpdateResult> {
    try {
      return await this.deps.store.applyStatus(jobId, { status, fields, observedAt: at, now: at });
    } catch (error) {
      // DynamoDB throttling or a 5xx that outlasted the SDK's own retries: let the state machine retry.
      if (isTransientAwsError(error)) throw new TransientPollError(`recording the status failed: ${describeError(error)}`, { cause: error });
      throw error;
    }
  }

  /**
   * Returns the next state, or hands the job over to a successor execution when this one
   * has used its budget of polls (the successor gets the same state with the budget reset).
   */
  private async continueLoop(next: PollState): Promise<PollState> {
    const { successor, maxPollsPerExecution, store, logger } = this.deps;
    if (successor === undefined || maxPollsPerExecution === undefined || isTerminalStatus(next.status)) return next;
    if ((next.execution_polls ?? 0) < maxPollsPerExecution) return next;
    const generation = (next.generation ?? 0) + 1;
    const successorState: PollState = { ...next, generation, execution_polls: 0 };
    try {
      const arn = await successor.start(executionNameForGeneration(next.job_id, generation), successorState);
      await store.recordHandOver(next.job_id, generation, arn, new Date(this.now()).toISOString());
      logger.info('handed the job over to a successor execution', { job_id: next.job_id, generation, execution_arn: arn });
    } catch (error) {
      // Throttling or a 5xx: retrying this poll starts (or finds) the same successor by name.
      if (isTransientAwsError(error)) throw new TransientPollError(`handing over to a successor failed: ${describeError(error)}`, { cause: error });
      throw error;
    }
    return { ...next, handed_over: true };
  }
}

function isStreamFailure(outcome: ListenOutcome): boolean {
  return outcome === 'unavailable' || outcome === 'failed' || outcome === 'silent';
}

/** The state with the strategy's memory, left out while it is empty (the fixed strategy keeps none). */
function withMemory(state: PollState, memory: StrategyMemory | undefined): PollState {
  if (memory === undefined || Object.keys(memory).length === 0) {
    const { poll_memo: _memo, ...rest } = state;
    return rest;
  }
  return { ...state, poll_memo: memory };
}

/** A terminal state keeps the wait it came in with (the loop does not wait again). */
function withoutNextPoll(next: PollState, counted: PollState): PollState {
  return { ...next, next_poll_seconds: counted.next_poll_seconds };
}

function isPast(isoTime: string | null | undefined, nowMs: number): boolean {
  if (isoTime === null || isoTime === undefined) return false;
  const ms = Date.parse(isoTime);
  return Number.isFinite(ms) && ms <= nowMs;
}
