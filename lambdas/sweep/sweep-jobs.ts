import { announceOutcome } from '../lifecycle/announce';
import { ERROR_CODE, JOB_STATUS, TERMINAL_STATUSES } from '../contract/constants';
import { describeError } from '../contract/errors';
import { cancelUpstream, settleFromOutside, type OutsideSettlerDeps } from '../lifecycle/settle';

/** Non-terminal statuses the sweeper looks through. */
const OPEN_STATUSES = [JOB_STATUS.SUBMITTING, JOB_STATUS.PENDING, JOB_STATUS.RUNNING, JOB_STATUS.UNKNOWN] as const;

export interface SweepSettings {
  /** How long past its deadline a job is left to its poll loop before the sweeper settles it. */
  readonly graceSeconds: number;
  /** Most jobs settled per run (the next run takes the rest). */
  readonly maxJobsPerRun: number;
  /**
   * How far back (before the grace period) the sweeper looks for settled jobs whose
   * outcome was never announced (every announcer failed for good, or crashed).
   * @default 3600
   */
  readonly announceLookbackSeconds?: number;
}

export interface SweepReport {
  readonly examined: number;
  readonly settled: number;
  readonly failed: number;
  /** Settled jobs whose missing outcome event this run published. */
  readonly announced: number;
  /** Pending Waterflai executions this run confirmed cancelled (or found finished). */
  readonly cancelsConfirmed: number;
  /** Pending Waterflai executions still unconfirmed after this run (tried again next run). */
  readonly cancelsPending: number;
}

/** Time kept free at the end of a sweep invocation: no new cancel starts after it. */
const SWEEP_RESERVE_MS = 30_000;

/**
 * The backstop for jobs nothing else will finish: Step Functions status-change events are
 * best effort, so on a schedule the sweeper lists non-terminal jobs whose deadline passed
 * more than `graceSeconds` ago, cancels them in Waterflai and settles them FAILED with
 * `TIMED_OUT` (announcing the outcome). It also announces the outcome of jobs settled in
 * the last hour whose announcement never went out, and keeps cancelling the Waterflai
 * executions whose cancellation nobody could confirm (the pending-cancels index), until
 * Waterflai confirms or reports them finished. One job's failure does not stop the others.
 */
export class JobSweeper {
  private readonly now: () => number;

  constructor(
    private readonly deps: OutsideSettlerDeps,
    private readonly settings: SweepSettings,
  ) {
    this.now = deps.now ?? Date.now;
  }

  async sweep(remainingMs: () => number = () => Number.POSITIVE_INFINITY): Promise<SweepReport> {
    const deps: OutsideSettlerDeps = { ...this.deps, remainingMs: () => remainingMs() - SWEEP_RESERVE_MS };
    const cutoff = new Date(this.now() - this.settings.graceSeconds * 1000).toISOString();
    let examined = 0;
    let settled = 0;
    let failed = 0;
    for (const status of OPEN_STATUSES) {
      const remaining = this.settings.maxJobsPerRun - examined;
      if (remaining <= 0) break;
      for (const jobId of await this.deps.store.listOverdue(status, cutoff, remaining)) {
        if (remainingMs() < 2 * SWEEP_RESERVE_MS) break;
        examined += 1;
        try {
          const record = await settleFromOutside(deps, jobId, JOB_STATUS.FAILED, {
            error_code: ERROR_CODE.TIMED_OUT,
            error_message: 'the job was still unfinished past its deadline; the sweeper cancelled it',
          });
          if (record?.error_code === ERROR_CODE.TIMED_OUT) settled += 1;
        } catch (error) {
          failed += 1;
          this.deps.logger.error('could not settle an overdue job', { job_id: jobId, error: describeError(error) });
        }
      }
    }
    const announced = await this.announceMissing();
    const cancels = await this.cancelPending(deps, remainingMs);
    this.deps.logger.info('sweep finished', {
      examined,
      settled,
      failed,
      announced,
      cancels_confirmed: cancels.confirmed,
      cancels_pending: cancels.pending,
    });
    return { examined, settled, failed, announced, cancelsConfirmed: cancels.confirmed, cancelsPending: cancels.pending };
  }

  /** Tries again to cancel every execution whose cancellation is still unconfirmed. */
  private async cancelPending(deps: OutsideSettlerDeps, remainingMs: () => number): Promise<{ confirmed: number; pending: number }> {
    const { store, logger } = this.deps;
    let confirmed = 0;
    let pending = 0;
    for (const jobId of await store.listPendingCancels(this.settings.maxJobsPerRun)) {
      const record = await store.get(jobId);
      for (const executionId of record?.pending_cancels ?? []) {
        if (remainingMs() < 2 * SWEEP_RESERVE_MS) {
          pending += 1;
          continue;
        }
        const at = new Date(this.now()).toISOString();
        try {
          const outcome = await cancelUpstream(deps, executionId);
          if (outcome.kind === 'unconfirmed') {
            pending += 1;
            logger.warn('the cancellation of a Waterflai execution is still unconfirmed; next sweep tries again', {
              job_id: jobId,
              execution_id: executionId,
              reason: outcome.reason,
            });
            await store.recordCancelAttemptFailed(jobId, outcome.reason, at);
            continue;
          }
          const finishedOnItsOwn = outcome.kind === 'finished' && outcome.execution.known_status !== 'CANCELLED';
          if (finishedOnItsOwn && outcome.execution.known_status === 'COMPLETED' && record?.status !== 'COMPLETED') {
            logger.error('a Waterflai execution of an ended job completed before its cancel took effect; its result is not delivered', {
              job_id: jobId,
              execution_id: executionId,
              job_status: record?.status,
            });
          }
          await store.resolvePendingCancel(jobId, executionId, at, !finishedOnItsOwn);
          confirmed += 1;
          logger.info('pending Waterflai execution confirmed stopped', { job_id: jobId, execution_id: executionId, outcome: outcome.kind });
        } catch (error) {
          pending += 1;
          logger.error('could not process a pending cancel', { job_id: jobId, execution_id: executionId, error: describeError(error) });
        }
      }
    }
    return { confirmed, pending };
  }

  private async announceMissing(): Promise<number> {
    const { store, publisher, logger } = this.deps;
    const to = this.now() - this.settings.graceSeconds * 1000;
    const from = new Date(to - (this.settings.announceLookbackSeconds ?? 3600) * 1000).toISOString();
    let announced = 0;
    for (const status of TERMINAL_STATUSES) {
      for (const jobId of await store.listUnannounced(status, from, new Date(to).toISOString(), this.settings.maxJobsPerRun)) {
        try {
          const record = await store.get(jobId);
          if (record === undefined || record.event_published_at !== undefined) continue;
          await announceOutcome(store, publisher, record, this.now);
          announced += 1;
        } catch (error) {
          logger.error('could not announce a settled job', { job_id: jobId, error: describeError(error) });
        }
      }
    }
    return announced;
  }
}
