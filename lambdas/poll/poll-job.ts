import { backoffSeconds } from '../domain/backoff';
import { type Clock, clockAt, systemClock } from '../domain/clock';
import { describeCaughtError } from '../domain/caught-error';
import { ERROR_CODE, isTerminalStatus, JOB_STATUS, UPSTREAM_CANCEL, type JobStatus } from '../contract/constants';
import { describeError, isRetryable, isTransientAwsError, TransientPollError, WaterflaiHttpError } from '../contract/errors';
import { executionNameForGeneration } from '../contract/identifiers';
import { isSettled, type StatusFields } from '../contract/job-record';
import type { JobStore, UpdateResult } from '../aws/job-store';
import type { AppLogger } from '../platform/logger';
import { acceptedOutputBytes, placeOutput, type OutputStore } from '../aws/output-store';
import {
  DEFAULT_STREAM_RESERVE_MS,
  listenBudgetSeconds,
  type ListenOutcome,
  type ListenResult,
  type StreamProgress,
} from '../waterflai/stream';
import {
  fixedIntervalStrategy,
  type JobObservation,
  type PollStrategy,
  type StrategyMemory,
  type StreamState,
} from '../domain/poll-strategy';
import {
  DEADLINE_CANCEL_WINDOW_SECONDS,
  DEADLINE_ROUND_MAX_WAIT_SECONDS,
  MAX_RETRY_AFTER_SECONDS,
  SETTING_DEFAULTS,
  type FixedIntervalSettings,
} from '../contract/settings';
import { inferProgressScale, progressSampleOf, toPercent, type ProgressScale } from '../domain/progress-scale';
import { mapExecutionStatus } from '../domain/status-mapping';
import { cancelAndConfirm, type CancelAndConfirmOptions, type CancelOutcome, type UpstreamExecutions } from '../domain/upstream-cancel';
import { requestTimeoutFor } from '../domain/request-timeout';
import type { ExecutionStatus } from '../contract/waterflai-api';
import type { CaughtError, FinishInput, PollState } from '../domain/workflow';
import type { PollIncident } from '../contract/job-record';

/** What the poll loop needs of the Waterflai client: status reads and cancels. */
export type WaterflaiStatusReader = UpstreamExecutions;

/** Listens on an execution's event stream (see `listenToExecution`); never throws for server or network trouble. */
export interface ExecutionStreamListener {
  listen(
    executionId: string,
    options: {
      readonly windowMs: number;
      readonly onEvent: (event: StreamProgress) => void;
      readonly keepListening: () => boolean;
      readonly checkIntervalMs: number;
      /** The progress scale decided so far: the events' progress comes back as percent. */
      readonly progressScale?: ProgressScale;
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
   * The clock: wall time for records, job time for the strategy's reasoning (the same speed in
   * AWS). @default systemClock, or a clock at `now` when only `now` is given
   */
  readonly clock?: Clock;
  /**
   * How long a loop keeps retrying while Waterflai refuses the API key (401/403, after a
   * fresh read of the secret) before it gives up with POLL_FAILED; never past the deadline.
   * @default DEFAULT_AUTH_GRACE_SECONDS (1 hour)
   */
  readonly authGraceSeconds?: number;
  /** Retry waits of the cancel confirmation (tests shorten them). @default CANCEL_RETRY_DELAYS_MS */
  readonly cancelRetryDelaysMs?: CancelAndConfirmOptions['delaysMs'];
}

/** Default of {@link PollerDeps.authGraceSeconds}: a key rotation has an hour to reach every Lambda. */
export const DEFAULT_AUTH_GRACE_SECONDS = SETTING_DEFAULTS.authGraceSeconds;
/** First wait after a failed poll during an incident (job time); doubled per failure up to pollMaxSeconds. */
export const INCIDENT_BACKOFF_BASE_SECONDS = 10;

/** Failed status reads answered 404 before a first successful read, before the execution counts as not found. */
export const NOT_FOUND_BEFORE_FIRST_READ_TOLERANCE = 3;

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
  | { readonly kind: 'cancel-deferred' }
  /** Waterflai could not answer (transient) or refused the key: an incident to ride out. */
  | { readonly kind: 'incident'; readonly incident: 'transient' | 'auth'; readonly error: unknown };

/**
 * One iteration of the poll loop: ask Waterflai for the execution's status, record it when
 * something changed (status, progress or current node) with a conditional, monotonic
 * write, and return the next loop state with the wait before the next poll.
 *
 * The rule it keeps: an outcome is recorded only when it is true upstream, or after the
 * loop has done all it can to make it true.
 * - Transient Waterflai failures (5xx, 408, timeouts, resets, off-contract bodies) never end
 *   the job before its deadline: the loop records the incident and polls again with capped
 *   exponential backoff (never longer than pollMaxSeconds), and resumes normal polling when
 *   Waterflai answers. A 429 is a request to wait, honoured through `next_poll_seconds`.
 * - 401/403 (the client already retried with a freshly read key): the same backoff for the
 *   auth grace period, then the loop gives up (POLL_FAILED, see {@link JobPoller.giveUp}).
 * - Past the deadline it reads the status first (a result that came in time is kept), then
 *   cancels and confirms the cancellation ({@link cancelAndConfirm}); the job ends FAILED
 *   `TIMED_OUT`, or with what really happened when the execution had finished. A cancel that
 *   cannot be confirmed is tried again on the next polls, then left to the sweeper.
 * - A 404 settles FAILED `OUTPUT_EXPIRED` when cleanup is the likely cause, else
 *   `EXECUTION_NOT_FOUND`. Other permanent failures propagate to the state machine's Catch,
 *   which calls {@link JobPoller.giveUp}.
 * - Failures of AWS (DynamoDB, S3, Step Functions) throw {@link TransientPollError} for the
 *   state machine's Retry.
 * - A COMPLETED output too large to carry inline is stored in S3 and recorded as a location.
 * - When this execution has made its budget of polls, the job is handed over to a successor
 *   execution (continue-as-new) and this one ends.
 */
export class JobPoller {
  private readonly now: () => number;
  private readonly fixed: PollStrategy;

  private readonly clock: Clock;

  constructor(private readonly deps: PollerDeps) {
    this.clock = deps.clock ?? (deps.now === undefined ? systemClock : clockAt(deps.now));
    this.now = () => this.clock.now();
    this.fixed = fixedIntervalStrategy(deps.pollSettings);
  }

  /** The state machine's entry: a poll, or (with the Catch's `error`) the give-up step. */
  async handle(input: FinishInput, remainingMs: () => number): Promise<PollState> {
    const { error, ...state } = input;
    return error === undefined ? this.poll(state, remainingMs) : this.giveUp(state, error, remainingMs);
  }

  async poll(input: PollState, remainingMs: () => number): Promise<PollState> {
    const { incident, ...state } = input;
    const pollCount = state.poll_count + 1;
    const executionPolls = (state.execution_polls ?? 0) + 1;
    const nowMs = this.now();
    const counted: PollState = { ...state, poll_count: pollCount, execution_polls: executionPolls };

    if (nowMs >= Date.parse(state.deadline_at)) return this.pastDeadline(counted, remainingMs);

    // The incident goes in `compare` (a 404 before the first read is judged by it), never in the next state.
    const first = await this.read(input, counted, remainingMs, nowMs);
    if (first.kind === 'incident') return this.incident(counted, incident, first, remainingMs);
    if (incident !== undefined) await this.endIncident(state, incident);
    if (first.kind === 'done') return first.state;
    if (first.kind === 'rate-limited') return this.rateLimited(counted, state.poll_memo, first.retryAfterSeconds, 'available');
    if (first.kind === 'cancel-deferred') throw new Error('a first status read never defers a cancel');

    // Ask the strategy; maybe listen on the stream until the end (or until it is not worth it).
    let memory = this.strategy.observe(state.poll_memo, this.observation(state, first.execution, first.atMs, first.next.progress_scale));
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
      const heard = await this.listen(first.next, memory, plan.listenSeconds, remainingMs);
      memory = heard.memory;
      // Whatever the stream said, the status read decides (and records) the outcome.
      const listened: PollState = heard.progressScale === undefined ? first.next : { ...first.next, progress_scale: heard.progressScale };
      const second = await this.read(listened, listened, remainingMs, this.now(), { deferCancelled: true });
      if (second.kind === 'cancel-deferred') {
        // A Lambda invocation outlives a StopExecution: if an operator stopped this execution
        // while it listened, the CANCELLED it heard is the reconciler's upstream cancel, which
        // the reconciler records as `stopped`. The next poll (there is none after a stop)
        // records a genuine remote cancel.
        this.deps.logger.info('execution cancelled while listening; the next poll records it', { job_id: state.job_id });
        return this.continueLoop(withMemory({ ...first.next, next_poll_seconds: 1 }, memory));
      }
      if (second.kind === 'done') return second.state;
      if (second.kind === 'incident') return this.incident(withMemory(first.next, memory), undefined, second, remainingMs);
      if (second.kind === 'rate-limited') return this.rateLimited(first.next, memory, second.retryAfterSeconds, 'listened');
      memory = this.strategy.observe(memory, this.observation(state, second.execution, second.atMs, second.next.progress_scale));
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
    const untilDeadline = Math.ceil(this.clock.jobSeconds(Date.parse(state.deadline_at) - this.now()));
    if (!Number.isFinite(untilDeadline)) return waitSeconds;
    return Math.max(1, Math.ceil(atLeast), Math.min(waitSeconds, Math.max(1, untilDeadline)));
  }

  private get strategy(): PollStrategy {
    return this.deps.strategy ?? this.fixed;
  }

  private get random(): () => number {
    return this.deps.random ?? Math.random;
  }

  /** Clock time per job time (1 in AWS): what the stream's listen budget is divided by. */
  private get timeScale(): number {
    const scale = this.clock.clockMs(1) / 1000;
    return Number.isFinite(scale) && scale > 0 ? scale : 1;
  }

  private get authGraceSeconds(): number {
    return this.deps.authGraceSeconds ?? DEFAULT_AUTH_GRACE_SECONDS;
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
    return Math.min(
      listenBudgetSeconds(budgetMs, this.streamReserveMs),
      listenBudgetSeconds(budgetMs, this.streamReserveMs, this.timeScale),
    );
  }

  /** Job time (seconds since acceptance, divided by the time scale) of a clock reading. */
  private jobSeconds(state: PollState, ms: number): number {
    return this.clock.jobSeconds(ms - Date.parse(state.accepted_at));
  }

  private observation(state: PollState, execution: ExecutionStatus, atMs: number, scale: ProgressScale | undefined): JobObservation {
    const startedMs = execution.started_at === null ? Number.NaN : Date.parse(execution.started_at);
    return {
      at: this.jobSeconds(state, atMs),
      status: execution.known_status ?? execution.status,
      progress: toPercent(execution.progress, scale),
      completedNodes: execution.completed_nodes,
      totalNodes: execution.total_nodes,
      startedAt: Number.isFinite(startedMs) ? this.jobSeconds(state, startedMs) : null,
      currentNode: execution.current_node,
    };
  }

  /** A 429: no listen, wait at least as long as asked. */
  private rateLimited(
    counted: PollState,
    memory: StrategyMemory | undefined,
    retryAfterSeconds: number | undefined,
    stream: StreamState,
  ): Promise<PollState> {
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
  private async listen(
    state: PollState,
    start: StrategyMemory,
    seconds: number,
    remainingMs: () => number,
  ): Promise<{ memory: StrategyMemory; outcome: ListenOutcome; progressScale: ProgressScale | undefined }> {
    const stream = this.deps.stream;
    let memory = start;
    if (stream === undefined) return { memory, outcome: 'unavailable', progressScale: state.progress_scale };
    const windowMs = Math.min(
      this.clock.clockMs(seconds),
      remainingMs() - this.streamReserveMs,
      Date.parse(state.deadline_at) - this.now(),
    );
    if (!(windowMs >= 1)) return { memory, outcome: 'window', progressScale: state.progress_scale };
    const result = await stream.listen(state.execution_id, {
      windowMs,
      ...(state.progress_scale === undefined ? {} : { progressScale: state.progress_scale }),
      checkIntervalMs: Math.max(10, this.clock.clockMs(LISTEN_CHECK_MS / 1000)),
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
    return { memory, outcome: result.outcome, progressScale: result.progressScale ?? state.progress_scale };
  }

  /**
   * One status read: records a change (status, progress or current node) with a
   * conditional, monotonic write. `compare` is the state the change is judged against;
   * `counted` carries the poll counts of this poll.
   */
  private async read(
    compare: PollState,
    counted: PollState,
    remainingMs: () => number,
    nowMs: number = this.now(),
    options: { deferCancelled?: boolean } = {},
  ): Promise<ReadResult> {
    let execution: ExecutionStatus;
    try {
      execution = await this.deps.waterflai.getExecution(compare.execution_id, { timeoutMs: requestTimeoutFor(remainingMs()) });
    } catch (error) {
      return this.readFailed(compare, counted, error, nowMs);
    }
    return this.observe(compare, counted, execution, nowMs, options);
  }

  /** What a failed status read means (see the class comment); permanent failures throw. */
  private async readFailed(compare: PollState, counted: PollState, error: unknown, nowMs: number): Promise<ReadResult> {
    if (!(error instanceof WaterflaiHttpError)) {
      if (isRetryable(error)) return { kind: 'incident', incident: 'transient', error };
      throw error;
    }
    if (error.status === 429) return { kind: 'rate-limited', retryAfterSeconds: error.retryAfterSeconds };
    if (error.status === 401 || error.status === 403) return { kind: 'incident', incident: 'auth', error };
    if (error.status === 404) {
      const observedAt = new Date(nowMs).toISOString();
      if (isPast(compare.cleanup_after, nowMs)) {
        return {
          kind: 'done',
          state: await this.settle(
            counted,
            JOB_STATUS.FAILED,
            {
              finished_at: observedAt,
              error_code: ERROR_CODE.OUTPUT_EXPIRED,
              error_message: `Waterflai no longer knows the execution: its result was cleaned up at ${compare.cleanup_after}`,
            },
            observedAt,
          ),
        };
      }
      // Right after the start a 404 may only mean that Waterflai has not caught up yet.
      const failures = compare.incident?.failures ?? 0;
      if (compare.upstream_seen !== true && failures < NOT_FOUND_BEFORE_FIRST_READ_TOLERANCE)
        return { kind: 'incident', incident: 'transient', error };
      return {
        kind: 'done',
        state: await this.settle(
          counted,
          JOB_STATUS.FAILED,
          {
            finished_at: observedAt,
            error_code: ERROR_CODE.EXECUTION_NOT_FOUND,
            error_message:
              compare.upstream_seen === true
                ? `Waterflai no longer knows the execution although it reported it ${compare.status} before, with no cleanup due`
                : 'Waterflai does not know the execution it accepted (404 on every status read)',
          },
          observedAt,
        ),
      };
    }
    if (error.retryable) return { kind: 'incident', incident: 'transient', error };
    throw error;
  }

  /** Records what a status read showed (when it changed) and says what it led to. */
  private async observe(
    compare: PollState,
    counted: PollState,
    execution: ExecutionStatus,
    nowMs: number,
    options: { deferCancelled?: boolean } = {},
  ): Promise<ReadResult> {
    const { logger } = this.deps;
    const pollCount = counted.poll_count;
    const observedAt = new Date(nowMs).toISOString();
    const scale = inferProgressScale(compare.progress_scale, progressSampleOf(execution));
    const mapped = mapExecutionStatus(execution, observedAt, acceptedOutputBytes(this.deps), scale);
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
      upstream_seen: true,
      ...(scale === undefined ? {} : { progress_scale: scale }),
    };
    const changed = mapped.status !== compare.status || progress !== compare.progress || currentNode !== compare.current_node;
    if (!changed && !isTerminalStatus(mapped.status)) return { kind: 'running', next, execution, atMs: nowMs };

    const result = await this.record(compare.job_id, mapped.status, { ...fields, polls: pollCount }, observedAt);
    if (result.applied) {
      return isTerminalStatus(mapped.status)
        ? { kind: 'done', state: withoutNextPoll(next, counted) }
        : { kind: 'running', next, execution, atMs: nowMs };
    }

    const current = result.record;
    if (current && isSettled(current)) {
      // Someone settled the job first (a cancel request, the sweeper): finish with their outcome.
      logger.info('job already settled; finishing with the recorded outcome', { job_id: compare.job_id, status: current.status });
      return { kind: 'done', state: { ...withoutNextPoll(next, counted), status: current.status } };
    }
    // A stale or backwards observation (e.g. RUNNING after a recorded later status): keep the recorded state.
    logger.warn('status update refused as stale', { job_id: compare.job_id, observed: mapped.status, recorded: current?.status });
    return {
      kind: 'running',
      next: {
        ...withoutIncident(compare),
        poll_count: counted.poll_count,
        execution_polls: counted.execution_polls,
        upstream_seen: true,
        ...(current ? { status: current.status } : {}),
      },
      execution,
      atMs: nowMs,
    };
  }

  /**
   * Waterflai could not answer (or refused the key): record the incident when it starts,
   * and poll again after a capped exponential backoff. A key still refused after the auth
   * grace period gives up (POLL_FAILED).
   */
  private async incident(
    counted: PollState,
    previous: PollIncident | undefined,
    read: { incident: 'transient' | 'auth'; error: unknown },
    remainingMs: () => number,
  ): Promise<PollState> {
    const { logger, store } = this.deps;
    const nowMs = this.now();
    const at = new Date(nowMs).toISOString();
    const same = previous !== undefined && previous.kind === read.incident;
    const incident: PollIncident = {
      kind: read.incident,
      since: same ? previous.since : at,
      failures: (same ? previous.failures : 0) + 1,
      last_error: describeError(read.error).slice(0, 300),
    };
    const lastedSeconds = this.clock.jobSeconds(nowMs - Date.parse(incident.since));
    if (incident.kind === 'auth' && lastedSeconds >= this.authGraceSeconds) {
      logger.error('Waterflai kept refusing the API key for the whole auth grace period; giving up', {
        job_id: counted.job_id,
        since: incident.since,
        auth_grace_seconds: this.authGraceSeconds,
        error: incident.last_error,
      });
      return this.giveUp(
        counted,
        { Error: 'AuthGraceExpired', Cause: `Waterflai refused the API key since ${incident.since}: ${incident.last_error}` },
        remainingMs,
      );
    }
    if (!same) {
      logger.warn('upstream incident: Waterflai did not answer the status read; polling on with backoff until it does', {
        job_id: counted.job_id,
        incident: incident.kind,
        error: incident.last_error,
      });
      await this.note(() => store.recordIncident(counted.job_id, incident, at), counted.job_id);
    } else {
      logger.info('upstream incident goes on', {
        job_id: counted.job_id,
        incident: incident.kind,
        since: incident.since,
        failures: incident.failures,
        error: incident.last_error,
      });
    }
    const wait = this.capAtDeadline(
      counted,
      backoffSeconds(incident.failures, {
        baseSeconds: INCIDENT_BACKOFF_BASE_SECONDS,
        capSeconds: this.deps.pollSettings.maxSeconds,
        random: this.random,
      }),
    );
    return this.continueLoop({ ...counted, incident, next_poll_seconds: wait });
  }

  /** Waterflai answers again: the record stops showing the incident. */
  private async endIncident(state: PollState, incident: PollIncident): Promise<void> {
    const nowMs = this.now();
    this.deps.logger.info('upstream incident over: Waterflai answers again', {
      job_id: state.job_id,
      incident: incident.kind,
      since: incident.since,
      failures: incident.failures,
      lasted_seconds: Math.round((nowMs - Date.parse(incident.since)) / 1000),
    });
    await this.note(() => this.deps.store.recordIncident(state.job_id, null, new Date(nowMs).toISOString()), state.job_id);
  }

  /** A bookkeeping write that must not stop the loop (the next one tries again). */
  private async note(write: () => Promise<unknown>, jobId: string): Promise<void> {
    try {
      await write();
    } catch (error) {
      this.deps.logger.warn('could not record the incident on the job', { job_id: jobId, error: describeError(error) });
    }
  }

  /** A COMPLETED output over the inline limit goes to S3; the record keeps its location. */
  private async placeOutput(
    state: PollState,
    status: JobStatus,
    fields: StatusFields,
    outputBytes: number | undefined,
  ): Promise<StatusFields> {
    let placed: StatusFields;
    try {
      placed = await placeOutput(this.deps, state, status, fields, outputBytes);
    } catch (error) {
      if (isTransientAwsError(error)) throw new TransientPollError(`storing the output failed: ${describeError(error)}`, { cause: error });
      throw error;
    }
    if (placed.output_location !== undefined)
      this.deps.logger.info('large output stored in S3', {
        job_id: state.job_id,
        bytes: placed.output_location.size,
        key: placed.output_location.key,
      });
    return placed;
  }

  /**
   * Past the deadline: read the status first (a result that came in time is recorded as
   * it is), then cancel and confirm. A confirmed cancel (or an execution Waterflai no longer
   * knows) settles FAILED `TIMED_OUT`; an execution found finished is recorded as it ended;
   * an unconfirmed cancel polls again soon (backoff up to {@link DEADLINE_ROUND_MAX_WAIT_SECONDS}),
   * and once {@link DEADLINE_CANCEL_WINDOW_SECONDS} have passed since the deadline settles
   * `TIMED_OUT` with `upstream_cancel: unconfirmed`, leaving the execution to the sweeper.
   */
  private async pastDeadline(counted: PollState, remainingMs: () => number): Promise<PollState> {
    const { logger } = this.deps;
    const rounds = counted.deadline_cancel_rounds ?? 0;
    // After a round of ours, a CANCELLED is our own cancel taking effect, not a remote one.
    const read = await this.read(counted, counted, remainingMs, this.now(), { deferCancelled: rounds > 0 });
    if (read.kind === 'done') return read.state;
    const timedOut = (
      upstreamCancel: (typeof UPSTREAM_CANCEL)[keyof typeof UPSTREAM_CANCEL],
      pendingCancels?: readonly string[],
    ): Promise<PollState> => {
      const at = new Date(this.now()).toISOString();
      logger.warn('job passed its deadline; cancelled upstream', {
        job_id: counted.job_id,
        deadline_at: counted.deadline_at,
        upstream_cancel: upstreamCancel,
      });
      return this.settle(
        counted,
        JOB_STATUS.FAILED,
        {
          finished_at: at,
          error_code: ERROR_CODE.TIMED_OUT,
          error_message:
            upstreamCancel === UPSTREAM_CANCEL.CONFIRMED
              ? `the job did not finish by its deadline ${counted.deadline_at}; the execution was cancelled`
              : `the job did not finish by its deadline ${counted.deadline_at}; cancelling the execution could not be confirmed yet (the sweeper keeps trying)`,
          upstream_cancel: upstreamCancel,
        },
        at,
        pendingCancels,
      );
    };
    if (read.kind === 'cancel-deferred') return timedOut(UPSTREAM_CANCEL.CONFIRMED);

    const outcome = await this.cancel(counted, remainingMs);
    if (outcome.kind === 'cancelled' || outcome.kind === 'gone') return timedOut(UPSTREAM_CANCEL.CONFIRMED);
    if (outcome.kind === 'finished') {
      // Our DELETE came after the end (or took effect meanwhile): record what really happened.
      if (outcome.execution.known_status === 'CANCELLED') return timedOut(UPSTREAM_CANCEL.CONFIRMED);
      const observed = await this.observe(counted, counted, outcome.execution, this.now());
      if (observed.kind === 'done') return observed.state;
    }
    const pastDeadlineSeconds = this.clock.jobSeconds(this.now() - Date.parse(counted.deadline_at));
    if (pastDeadlineSeconds < DEADLINE_CANCEL_WINDOW_SECONDS) {
      logger.warn('job passed its deadline but its cancellation is not confirmed yet; trying again', {
        job_id: counted.job_id,
        round: rounds + 1,
        ...(outcome.kind === 'unconfirmed' ? { reason: outcome.reason } : {}),
      });
      const cap = Math.min(this.deps.pollSettings.maxSeconds, DEADLINE_ROUND_MAX_WAIT_SECONDS);
      const wait = backoffSeconds(rounds + 1, { baseSeconds: INCIDENT_BACKOFF_BASE_SECONDS, capSeconds: cap, random: this.random });
      return this.continueLoop({ ...counted, deadline_cancel_rounds: rounds + 1, next_poll_seconds: wait });
    }
    logger.error('could not confirm the cancellation of a timed-out execution; the sweeper keeps trying', {
      job_id: counted.job_id,
      execution_id: counted.execution_id,
    });
    return timedOut(UPSTREAM_CANCEL.UNCONFIRMED, [counted.execution_id]);
  }

  /**
   * The state machine's Catch: polling failed for good (a permanent error, retries of an
   * AWS fault exhausted, or the auth grace period over). Before the job ends POLL_FAILED
   * the execution is cancelled and the cancel confirmed; an execution found finished is
   * recorded as it ended (a finished result is never thrown away). An unconfirmed cancel
   * is recorded as such, with the execution left to the sweeper.
   */
  async giveUp(state: PollState, error: CaughtError, remainingMs: () => number): Promise<PollState> {
    const counted: PollState = { ...state, poll_count: state.poll_count, execution_polls: state.execution_polls ?? 0 };
    const outcome = await this.cancel(counted, remainingMs);
    if (outcome.kind === 'finished' && outcome.execution.known_status !== 'CANCELLED') {
      const observed = await this.observe(counted, counted, outcome.execution, this.now());
      if (observed.kind === 'done') return observed.state;
    }
    const confirmed = outcome.kind !== 'unconfirmed';
    const at = new Date(this.now()).toISOString();
    this.deps.logger.warn('polling failed for good; job settled as failed', {
      job_id: state.job_id,
      error: error.Error,
      upstream_cancel: confirmed ? 'confirmed' : 'unconfirmed',
    });
    return this.settle(
      counted,
      JOB_STATUS.FAILED,
      {
        finished_at: at,
        error_code: ERROR_CODE.POLL_FAILED,
        error_message: describeCaughtError(error),
        upstream_cancel: confirmed ? UPSTREAM_CANCEL.CONFIRMED : UPSTREAM_CANCEL.UNCONFIRMED,
      },
      at,
      confirmed ? undefined : [state.execution_id],
    );
  }

  private cancel(state: PollState, remainingMs: () => number): Promise<CancelOutcome> {
    return cancelAndConfirm(this.deps.waterflai, state.execution_id, {
      // Keep room for the records that follow.
      remainingMs: () => remainingMs() - 5_000,
      ...(this.deps.cancelRetryDelaysMs === undefined ? {} : { delaysMs: this.deps.cancelRetryDelaysMs }),
    });
  }

  /** Settles the job (unless someone else did first) and returns the terminal loop state. `counted` carries this poll's counts. */
  private async settle(
    counted: PollState,
    status: JobStatus,
    fields: StatusFields,
    at: string,
    pendingCancels?: readonly string[],
  ): Promise<PollState> {
    const result = await this.record(counted.job_id, status, { ...fields, polls: counted.poll_count }, at, pendingCancels);
    const settledStatus = result.record && isSettled(result.record) ? result.record.status : status;
    const { incident: _incident, deadline_cancel_rounds: _rounds, ...rest } = counted;
    return { ...rest, status: settledStatus };
  }

  private async record(
    jobId: string,
    status: JobStatus,
    fields: StatusFields,
    at: string,
    pendingCancels?: readonly string[],
  ): Promise<UpdateResult> {
    try {
      return await this.deps.store.applyStatus(jobId, {
        status,
        fields,
        observedAt: at,
        now: at,
        ...(pendingCancels === undefined ? {} : { pendingCancels }),
      });
    } catch (error) {
      // DynamoDB throttling or a 5xx that outlasted the SDK's own retries: let the state machine retry.
      if (isTransientAwsError(error))
        throw new TransientPollError(`recording the status failed: ${describeError(error)}`, { cause: error });
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
      if (isTransientAwsError(error))
        throw new TransientPollError(`handing over to a successor failed: ${describeError(error)}`, { cause: error });
      throw error;
    }
    return { ...next, handed_over: true };
  }
}

function withoutIncident(state: PollState): PollState {
  const { incident: _incident, ...rest } = state;
  return rest;
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
