import { ERROR_CODE, JOB_STATUS } from '../shared/constants';
import { describeError } from '../shared/errors';
import { settleFromOutside, type OutsideSettlerDeps } from '../shared/settle';

/** Non-terminal statuses the sweeper looks through. */
const OPEN_STATUSES = [JOB_STATUS.SUBMITTING, JOB_STATUS.PENDING, JOB_STATUS.RUNNING, JOB_STATUS.UNKNOWN] as const;

export interface SweepSettings {
  /** How long past its deadline a job is left to its poll loop before the sweeper settles it. */
  readonly graceSeconds: number;
  /** Most jobs settled per run (the next run takes the rest). */
  readonly maxJobsPerRun: number;
}

export interface SweepReport {
  readonly examined: number;
  readonly settled: number;
  readonly failed: number;
}

/**
 * The backstop for jobs nothing else will finish: Step Functions status-change events are
 * best effort, so on a schedule the sweeper lists non-terminal jobs whose deadline passed
 * more than `graceSeconds` ago, cancels them in Waterflai and settles them FAILED with
 * `TIMED_OUT` (announcing the outcome). One job's failure does not stop the others.
 */
export class JobSweeper {
  private readonly now: () => number;

  constructor(
    private readonly deps: OutsideSettlerDeps,
    private readonly settings: SweepSettings,
  ) {
    this.now = deps.now ?? Date.now;
  }

  async sweep(): Promise<SweepReport> {
    const cutoff = new Date(this.now() - this.settings.graceSeconds * 1000).toISOString();
    let examined = 0;
    let settled = 0;
    let failed = 0;
    for (const status of OPEN_STATUSES) {
      const remaining = this.settings.maxJobsPerRun - examined;
      if (remaining <= 0) break;
      for (const jobId of await this.deps.store.listOverdue(status, cutoff, remaining)) {
        examined += 1;
        try {
          const record = await settleFromOutside(this.deps, jobId, JOB_STATUS.FAILED, {
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
    this.deps.logger.info('sweep finished', { examined, settled, failed });
    return { examined, settled, failed };
  }
}
