import { describeError, isRetryable, isTransientAwsError, TransientPollError, WaterflaiHttpError } from '../shared/errors';
import { isSettled, type JobStore } from '../shared/job-store';
import type { AppLogger } from '../shared/logger';
import { nextPollSeconds, type FixedIntervalSettings } from '../shared/poll-strategy';
import { mapExecutionStatus } from '../shared/status-mapping';
import { requestTimeoutFor, type ExecutionStatus, type RequestOptions } from '../shared/waterflai-client';
import type { PollState } from '../shared/workflow';
import { isTerminalStatus } from '../shared/constants';

export interface WaterflaiStatusReader {
  getExecution(executionId: string, options?: RequestOptions): Promise<ExecutionStatus>;
}

export interface PollerDeps {
  readonly store: JobStore;
  readonly waterflai: WaterflaiStatusReader;
  readonly logger: AppLogger;
  readonly pollSettings: FixedIntervalSettings;
  readonly maxInlineOutputBytes: number;
  readonly now?: () => number;
}

/**
 * One iteration of the poll loop: ask Waterflai for the execution's status, record it when
 * something changed (status, progress or current node) with a conditional, monotonic
 * write, and return the next loop state with the wait before the next poll.
 *
 * Transient Waterflai failures throw {@link TransientPollError} for the state machine's
 * Retry; a 429 is not an error but a request to wait, honoured through `next_poll_seconds`;
 * permanent failures (401, 404, ...) propagate to the state machine's Catch.
 */
export class JobPoller {
  private readonly now: () => number;

  constructor(private readonly deps: PollerDeps) {
    this.now = deps.now ?? Date.now;
  }

  async poll(state: PollState, remainingMs: () => number): Promise<PollState> {
    const { waterflai, store, logger, pollSettings } = this.deps;
    const pollCount = state.poll_count + 1;
    let execution: ExecutionStatus;
    try {
      execution = await waterflai.getExecution(state.execution_id, { timeoutMs: requestTimeoutFor(remainingMs()) });
    } catch (error) {
      if (error instanceof WaterflaiHttpError && error.status === 429) {
        logger.info('Waterflai asked us to slow down', { job_id: state.job_id, retry_after_seconds: error.retryAfterSeconds });
        const retryAfter = error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds };
        return { ...state, poll_count: pollCount, next_poll_seconds: nextPollSeconds(pollSettings, retryAfter) };
      }
      if (isRetryable(error)) throw new TransientPollError(describeError(error), { cause: error });
      throw error;
    }

    const observedAt = new Date(this.now()).toISOString();
    const mapped = mapExecutionStatus(execution, observedAt, this.deps.maxInlineOutputBytes);
    const progress = mapped.fields.progress ?? null;
    const currentNode = mapped.fields.current_node ?? null;
    const next: PollState = {
      ...state,
      status: mapped.status,
      progress,
      current_node: currentNode,
      poll_count: pollCount,
      next_poll_seconds: nextPollSeconds(pollSettings),
    };
    const changed = mapped.status !== state.status || progress !== state.progress || currentNode !== state.current_node;
    if (!changed && !isTerminalStatus(mapped.status)) return next;

    let result: Awaited<ReturnType<JobStore['applyStatus']>>;
    try {
      result = await store.applyStatus(state.job_id, {
        status: mapped.status,
        fields: { ...mapped.fields, polls: pollCount },
        observedAt,
        now: observedAt,
      });
    } catch (error) {
      // DynamoDB throttling or a 5xx that outlasted the SDK's own retries: let the state machine retry.
      if (isTransientAwsError(error)) throw new TransientPollError(`recording the status failed: ${describeError(error)}`, { cause: error });
      throw error;
    }
    if (result.applied) return next;

    const current = result.record;
    if (current && isSettled(current)) {
      // Someone settled the job first (a cancel, the reconciler): finish with their outcome.
      logger.info('job already settled; finishing with the recorded outcome', { job_id: state.job_id, status: current.status });
      return { ...next, status: current.status };
    }
    // A stale or backwards observation (e.g. RUNNING after a recorded later status): keep the recorded state.
    logger.warn('status update refused as stale', { job_id: state.job_id, observed: mapped.status, recorded: current?.status });
    return { ...state, poll_count: pollCount, next_poll_seconds: next.next_poll_seconds, ...(current ? { status: current.status } : {}) };
  }
}
