import { ERROR_CODE, isTerminalStatus, JOB_STATUS, type JobStatus } from '../shared/constants';
import { describeError, isRetryable, isTransientAwsError, TransientPollError, WaterflaiHttpError } from '../shared/errors';
import { executionNameForGeneration } from '../shared/identifiers';
import { isSettled, type JobStore, type StatusFields, type UpdateResult } from '../shared/job-store';
import type { AppLogger } from '../shared/logger';
import type { OutputStore } from '../shared/output-store';
import { nextPollSeconds, type FixedIntervalSettings } from '../shared/poll-strategy';
import { mapExecutionStatus } from '../shared/status-mapping';
import { requestTimeoutFor, type ExecutionStatus, type RequestOptions } from '../shared/waterflai-client';
import type { PollState } from '../shared/workflow';

export interface WaterflaiStatusReader {
  getExecution(executionId: string, options?: RequestOptions): Promise<ExecutionStatus>;
  cancelExecution(executionId: string, options?: RequestOptions): Promise<unknown>;
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
}

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

  constructor(private readonly deps: PollerDeps) {
    this.now = deps.now ?? Date.now;
  }

  async poll(state: PollState, remainingMs: () => number): Promise<PollState> {
    const { waterflai, logger, pollSettings } = this.deps;
    const pollCount = state.poll_count + 1;
    const executionPolls = (state.execution_polls ?? 0) + 1;
    const nowMs = this.now();
    const observedAt = new Date(nowMs).toISOString();

    if (nowMs >= Date.parse(state.deadline_at)) return this.timeOut(state, pollCount, observedAt, remainingMs);

    let execution: ExecutionStatus;
    try {
      execution = await waterflai.getExecution(state.execution_id, { timeoutMs: requestTimeoutFor(remainingMs()) });
    } catch (error) {
      if (error instanceof WaterflaiHttpError && error.status === 429) {
        logger.info('Waterflai asked us to slow down', { job_id: state.job_id, retry_after_seconds: error.retryAfterSeconds });
        const retryAfter = error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds };
        return this.continueLoop({ ...state, poll_count: pollCount, execution_polls: executionPolls, next_poll_seconds: nextPollSeconds(pollSettings, retryAfter) });
      }
      if (error instanceof WaterflaiHttpError && error.status === 404 && isPast(state.cleanup_after, nowMs)) {
        return this.settle(state, pollCount, JOB_STATUS.FAILED, {
          finished_at: observedAt,
          error_code: ERROR_CODE.OUTPUT_EXPIRED,
          error_message: `Waterflai no longer knows the execution: its result was cleaned up at ${state.cleanup_after}`,
        }, observedAt);
      }
      if (isRetryable(error)) throw new TransientPollError(describeError(error), { cause: error });
      throw error;
    }

    const mapped = mapExecutionStatus(execution, observedAt, this.deps.outputs ? (this.deps.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES) : this.deps.maxInlineOutputBytes);
    const fields = await this.placeOutput(state, mapped.status, mapped.fields, mapped.outputBytes);
    const progress = fields.progress ?? null;
    const currentNode = fields.current_node ?? null;
    const next: PollState = {
      ...state,
      status: mapped.status,
      progress,
      current_node: currentNode,
      poll_count: pollCount,
      execution_polls: executionPolls,
      cleanup_after: execution.cleanup_after,
      next_poll_seconds: nextPollSeconds(pollSettings),
    };
    const changed = mapped.status !== state.status || progress !== state.progress || currentNode !== state.current_node;
    if (!changed && !isTerminalStatus(mapped.status)) return this.continueLoop(next);

    const result = await this.record(state.job_id, mapped.status, { ...fields, polls: pollCount }, observedAt);
    if (result.applied) return this.continueLoop(next);

    const current = result.record;
    if (current && isSettled(current)) {
      // Someone settled the job first (a cancel request, the sweeper): finish with their outcome.
      logger.info('job already settled; finishing with the recorded outcome', { job_id: state.job_id, status: current.status });
      return { ...next, status: current.status };
    }
    // A stale or backwards observation (e.g. RUNNING after a recorded later status): keep the recorded state.
    logger.warn('status update refused as stale', { job_id: state.job_id, observed: mapped.status, recorded: current?.status });
    return this.continueLoop({ ...state, poll_count: pollCount, execution_polls: executionPolls, next_poll_seconds: next.next_poll_seconds, ...(current ? { status: current.status } : {}) });
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
    return this.settle(state, pollCount, JOB_STATUS.FAILED, {
      finished_at: at,
      error_code: ERROR_CODE.TIMED_OUT,
      error_message: `the job did not finish by its deadline ${state.deadline_at}; the execution was cancelled`,
    }, at);
  }

  /** Settles the job (unless someone else did first) and returns the terminal loop state. */
  private async settle(state: PollState, pollCount: number, status: JobStatus, fields: StatusFields, at: string): Promise<PollState> {
    const result = await this.record(state.job_id, status, { ...fields, polls: pollCount }, at);
    const settledStatus = result.record && isSettled(result.record) ? result.record.status : status;
    return { ...state, status: settledStatus, poll_count: pollCount, execution_polls: (state.execution_polls ?? 0) + 1 };
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

function isPast(isoTime: string | null | undefined, nowMs: number): boolean {
  if (isoTime === null || isoTime === undefined) return false;
  const ms = Date.parse(isoTime);
  return Number.isFinite(ms) && ms <= nowMs;
}
