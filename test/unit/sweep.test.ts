import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { CANCEL_REASON, DETAIL_TYPE, ERROR_CODE, JOB_STATUS, type JobStatus, type TerminalStatus } from '../../lambdas/contract/constants';
import { WaterflaiHttpError } from '../../lambdas/contract/errors';
import { JobStore } from '../../lambdas/aws/job-store';
import type { StatusFields } from '../../lambdas/contract/job-record';
import type { AppLogger } from '../../lambdas/platform/logger';
import { OutcomePublisher } from '../../lambdas/aws/outcome-publisher';
import { JobSweeper, type SweepSettings } from '../../lambdas/sweep/sweep-jobs';
import type { UpstreamExecutions } from '../../lambdas/domain/upstream-cancel';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';
import { execution } from '../support/execution-status';
import { cancelResult } from '../support/scripted-waterflai';

const NOW_MS = Date.parse('2025-03-01T18:00:00.000Z');
const NOW = new Date(NOW_MS).toISOString();
const GRACE_SECONDS = 300;
/** An ISO time `seconds` relative to now. */
const fromNow = (seconds: number): string => new Date(NOW_MS + seconds * 1000).toISOString();

const eventsMock = mockClient(EventBridgeClient);

let dynamo: LocalDynamo;
let store: JobStore;
let cancelExecution: ReturnType<typeof vi.fn<UpstreamExecutions['cancelExecution']>>;
let getExecution: ReturnType<typeof vi.fn<UpstreamExecutions['getExecution']>>;
let logger: AppLogger & { error: MockInstance; info: MockInstance };

beforeAll(async () => {
  dynamo = await startLocalDynamo();
});

afterAll(async () => {
  eventsMock.restore();
  await dynamo.close();
});

beforeEach(async () => {
  // A fresh table per test: the sweeper looks at every job in it.
  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
  eventsMock.reset();
  eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'eb-1' }] });
  cancelExecution = vi.fn<UpstreamExecutions['cancelExecution']>(async (executionId) => cancelResult(true, { execution_id: executionId }));
  getExecution = vi.fn<UpstreamExecutions['getExecution']>(async (executionId) => execution('RUNNING', { execution_id: executionId }));
  logger = { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() };
});

function sweeper(settings: Partial<SweepSettings> = {}): JobSweeper {
  return new JobSweeper(
    {
      store,
      publisher: new OutcomePublisher(
        new EventBridgeClient({ region: 'us-east-1' }),
        'bus',
        async () => undefined,
        () => 0,
      ),
      waterflai: { cancelExecution, getExecution },
      logger,
      now: () => NOW_MS,
      cancelRetryDelaysMs: [0, 0, 0],
    },
    { graceSeconds: GRACE_SECONDS, maxJobsPerRun: 100, ...settings },
  );
}

/**
 * A job whose deadline is `deadlineSeconds` from now, in `status`. Every status but
 * SUBMITTING has the Waterflai execution `wf-<jobId>`.
 */
async function job(
  jobId: string,
  deadlineSeconds: number,
  status: JobStatus = JOB_STATUS.RUNNING,
  fields: StatusFields = {},
): Promise<void> {
  await store.claim({
    job_id: jobId,
    chatbot_id: 'bot-1',
    metadata: { tenant: 'acme' },
    source_message_id: `msg-${jobId}`,
    delivery: 'sqs',
    accepted_at: fromNow(-7200),
    deadline_at: fromNow(deadlineSeconds),
    expires_at: 1_800_000_000,
    state_machine_execution_name: jobId,
    claim_expires_at: Date.parse(fromNow(-7100)),
  });
  if (status === JOB_STATUS.SUBMITTING) return;
  await store.saveExecutionId(jobId, `wf-${jobId}`, fromNow(-7000));
  if (status !== JOB_STATUS.PENDING) await store.applyStatus(jobId, { status, fields, now: fromNow(-6000) });
}

function announcedJobs(): string[] {
  return eventsMock
    .commandCalls(PutEventsCommand)
    .flatMap((call) => (call.args[0].input.Entries ?? []).map((entry) => (JSON.parse(entry.Detail ?? '{}') as { job_id: string }).job_id))
    .sort();
}

describe('JobSweeper: which jobs are swept', () => {
  it('settles an overdue job past the grace period and leaves jobs within grace, not yet due, or terminal alone', async () => {
    // Prepare
    await job('overdue', -(GRACE_SECONDS + 100));
    await job('within-grace', -(GRACE_SECONDS - 100));
    await job('not-due', 600);
    await job('terminal', -86_400, JOB_STATUS.COMPLETED, { final_output: { ok: 1 }, finished_at: fromNow(-5000) });
    const untouched = await Promise.all(['within-grace', 'not-due', 'terminal'].map((id) => store.get(id)));

    // Act
    const report = await sweeper().sweep();

    // Assess
    expect(report).toEqual({ examined: 1, settled: 1, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
    expect(await store.get('overdue')).toMatchObject({
      status: JOB_STATUS.FAILED,
      error_code: ERROR_CODE.TIMED_OUT,
      finished_at: NOW,
      event_published_at: NOW,
    });
    expect(cancelExecution.mock.calls).toEqual([['wf-overdue', { timeoutMs: expect.any(Number) }]]);
    expect(await Promise.all(['within-grace', 'not-due', 'terminal'].map((id) => store.get(id)))).toEqual(untouched);
    const events = eventsMock.commandCalls(PutEventsCommand).flatMap((call) => call.args[0].input.Entries ?? []);
    expect(events).toHaveLength(1);
    expect(events[0]?.DetailType).toBe(DETAIL_TYPE.FAILED);
    expect(JSON.parse(events[0]?.Detail ?? '{}')).toMatchObject({ job_id: 'overdue', error: { code: ERROR_CODE.TIMED_OUT } });
  });

  it('a deadline exactly grace seconds ago is not yet swept (it must be more than grace)', async () => {
    await job('at-cutoff', -GRACE_SECONDS);

    const report = await sweeper().sweep();

    expect(report).toEqual({ examined: 0, settled: 0, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
    expect((await store.get('at-cutoff'))?.status).toBe(JOB_STATUS.RUNNING);
  });

  it.each([JOB_STATUS.SUBMITTING, JOB_STATUS.PENDING, JOB_STATUS.RUNNING, JOB_STATUS.UNKNOWN])(
    'an overdue %s job is swept',
    async (status) => {
      // Prepare
      await job('stuck', -3600, status);

      // Act
      const report = await sweeper().sweep();

      // Assess
      expect(report).toEqual({ examined: 1, settled: 1, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
      expect(await store.get('stuck')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.TIMED_OUT });
      expect(cancelExecution).toHaveBeenCalledTimes(status === JOB_STATUS.SUBMITTING ? 0 : 1);
      expect(announcedJobs()).toEqual(['stuck']);
    },
  );

  it.each<[TerminalStatus, StatusFields]>([
    [JOB_STATUS.COMPLETED, { final_output: 1 }],
    [JOB_STATUS.FAILED, { error_code: ERROR_CODE.EXECUTION_FAILED, error_message: 'boom' }],
    [JOB_STATUS.CANCELLED, { cancel_reason: CANCEL_REASON.REQUESTED }],
  ])('a long-overdue %s job is never swept, even when unannounced', async (status, fields) => {
    await job('done', -86_400, status, { ...fields, finished_at: fromNow(-5000) });
    const before = await store.get('done');

    const report = await sweeper().sweep();

    expect(report).toEqual({ examined: 0, settled: 0, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
    expect(await store.get('done')).toEqual(before);
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('a second sweep finds nothing left to do', async () => {
    // Prepare
    await job('a', -3600);
    await job('b', -3600, JOB_STATUS.PENDING);
    await sweeper().sweep();
    eventsMock.resetHistory();
    cancelExecution.mockClear();

    // Act
    const report = await sweeper().sweep();

    // Assess
    expect(report).toEqual({ examined: 0, settled: 0, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
    expect(cancelExecution).not.toHaveBeenCalled();
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('an empty table: nothing examined', async () => {
    expect(await sweeper().sweep()).toEqual({ examined: 0, settled: 0, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
  });
});

describe('JobSweeper: failures', () => {
  it('a cancel that cannot be confirmed for one job does not stop the next: that job is settled unconfirmed and the next sweep confirms it', async () => {
    // Prepare
    await job('flaky', -3600);
    await job('fine', -3600);
    cancelExecution.mockImplementation(async (executionId) => {
      if (executionId === 'wf-flaky') throw new WaterflaiHttpError('cancel', 503);
      return cancelResult(true, { execution_id: executionId });
    });

    // Act
    const report = await sweeper().sweep();
    cancelExecution.mockImplementation(async (executionId) => cancelResult(true, { execution_id: executionId }));
    const next = await sweeper().sweep();

    // Assess
    expect(report).toEqual({ examined: 2, settled: 2, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 1 });
    expect(next).toEqual({ examined: 0, settled: 0, failed: 0, announced: 0, cancelsConfirmed: 1, cancelsPending: 0 });
    expect(await store.get('fine')).toMatchObject({
      status: JOB_STATUS.FAILED,
      error_code: ERROR_CODE.TIMED_OUT,
      upstream_cancel: 'confirmed',
    });
    const flaky = await store.get('flaky');
    expect(flaky).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.TIMED_OUT, upstream_cancel: 'confirmed' });
    expect(flaky?.pending_cancels).toBeUndefined();
    expect(flaky?.cancel_pending).toBeUndefined();
    expect(announcedJobs()).toEqual(['fine', 'flaky']);
  });

  it('a failing announcement for one job does not stop the next', async () => {
    // Prepare: EventBridge refuses the first job's entry every time
    await job('first', -3600);
    await job('second', -3600);
    eventsMock
      .on(PutEventsCommand)
      .callsFake((input: { Entries: Array<{ Detail: string }> }) =>
        input.Entries[0]?.Detail.includes('"job_id":"first"')
          ? { FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'no' }] }
          : { FailedEntryCount: 0, Entries: [{ EventId: 'eb-2' }] },
      );

    // Act
    const report = await sweeper().sweep();

    // Assess: the first job is settled but not announced; it counts as failed
    expect(report).toEqual({ examined: 2, settled: 1, failed: 1, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
    expect(await store.get('second')).toMatchObject({ status: JOB_STATUS.FAILED, event_published_at: NOW });
    expect((await store.get('first'))?.event_published_at).toBeUndefined();
  });

  it.each([
    ['HTTP 404', new WaterflaiHttpError('cancel', 404)],
    ['HTTP 409', new WaterflaiHttpError('cancel', 409)],
    ['HTTP 401', new WaterflaiHttpError('cancel', 401)],
  ])('a cancel answered %s, then a 404 on the status read (the execution is gone), settles the job', async (_name, error) => {
    await job('gone', -3600);
    cancelExecution.mockRejectedValueOnce(error);
    getExecution.mockRejectedValueOnce(new WaterflaiHttpError('get', 404));

    const report = await sweeper().sweep();

    expect(report).toEqual({ examined: 1, settled: 1, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
    expect((await store.get('gone'))?.error_code).toBe(ERROR_CODE.TIMED_OUT);
  });
});

describe('JobSweeper: maxJobsPerRun', () => {
  it('examines at most maxJobsPerRun jobs across statuses; the next run takes the rest', async () => {
    // Prepare: five overdue jobs in three statuses
    await job('s-1', -3600, JOB_STATUS.SUBMITTING);
    await job('p-1', -3600, JOB_STATUS.PENDING);
    await job('p-2', -3600, JOB_STATUS.PENDING);
    await job('r-1', -3600, JOB_STATUS.RUNNING);
    await job('r-2', -3600, JOB_STATUS.RUNNING);
    const all = ['p-1', 'p-2', 'r-1', 'r-2', 's-1'];

    // Act
    const first = await sweeper({ maxJobsPerRun: 3 }).sweep();
    const settledAfterFirst = (await Promise.all(all.map((id) => store.get(id)))).filter(
      (record) => record?.status === JOB_STATUS.FAILED,
    ).length;
    const second = await sweeper({ maxJobsPerRun: 3 }).sweep();

    // Assess
    expect(first).toEqual({ examined: 3, settled: 3, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
    expect(settledAfterFirst).toBe(3);
    expect(second).toEqual({ examined: 2, settled: 2, failed: 0, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
    expect(announcedJobs()).toEqual(all);
  });

  it('failed jobs count against the budget', async () => {
    await job('a', -3600);
    await job('b', -3600);
    await job('c', -3600);
    eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'no' }] });

    const report = await sweeper({ maxJobsPerRun: 2 }).sweep();

    expect(report).toEqual({ examined: 2, settled: 0, failed: 2, announced: 0, cancelsConfirmed: 0, cancelsPending: 0 });
    expect(cancelExecution).toHaveBeenCalledTimes(2);
  });
});

describe('JobSweeper: outcomes that were never announced', () => {
  /** A job settled `settledSecondsAgo` ago; announced or not. */
  async function settledJob(jobId: string, settledSecondsAgo: number, announced: boolean): Promise<void> {
    await job(jobId, 3600, JOB_STATUS.PENDING);
    await store.applyStatus(jobId, {
      status: JOB_STATUS.FAILED,
      fields: { error_code: ERROR_CODE.EXECUTION_FAILED, error_message: 'boom', finished_at: fromNow(-settledSecondsAgo) },
      now: fromNow(-settledSecondsAgo),
    });
    if (announced) await store.markEventPublished(jobId, `${jobId}:failed`, fromNow(-settledSecondsAgo + 1));
  }

  it('announces a job settled past the grace period whose event never went out, once', async () => {
    // Prepare
    await settledJob('lost-event', 900, false);

    // Act
    const first = await sweeper().sweep();
    const second = await sweeper().sweep();

    // Assess
    expect(first.announced).toBe(1);
    expect(second.announced).toBe(0);
    expect(announcedJobs()).toEqual(['lost-event']);
    expect((await store.get('lost-event'))?.event_published_at).toBeDefined();
    expect(cancelExecution).not.toHaveBeenCalled();
  });

  it.each([
    ['still within the grace period (its announcer may be retrying)', 60, false],
    ['already announced', 900, true],
    ['settled before the look-back window', 3600 + GRACE_SECONDS + 60, false],
  ])('leaves a settled job alone when %s', async (_name, settledSecondsAgo, announced) => {
    await settledJob('settled', settledSecondsAgo, announced);

    const report = await sweeper().sweep();

    expect(report.announced).toBe(0);
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('an overdue job whose announcement fails is announced by the next sweep', async () => {
    // Prepare: EventBridge refuses the entry during the first sweep
    await job('overdue', -3600);
    eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure' }] });
    const first = await sweeper().sweep();
    eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });

    // Act: the next run, after the grace period
    const later = new JobSweeper(
      {
        store,
        publisher: new OutcomePublisher(
          new EventBridgeClient({ region: 'us-east-1' }),
          'bus',
          async () => undefined,
          () => 0,
        ),
        waterflai: { cancelExecution, getExecution },
        logger,
        now: () => NOW_MS + (GRACE_SECONDS + 60) * 1000,
      },
      { graceSeconds: GRACE_SECONDS, maxJobsPerRun: 100 },
    );
    const second = await later.sweep();

    // Assess
    expect(first).toMatchObject({ examined: 1, failed: 1 });
    expect(second).toMatchObject({ examined: 0, announced: 1, cancelsConfirmed: 0, cancelsPending: 0 });
    expect((await store.get('overdue'))?.event_published_at).toBeDefined();
  });
});

describe('JobSweeper: executions whose cancellation is still unconfirmed', () => {
  async function endedWithPending(jobId: string, executions: string[]): Promise<void> {
    await job(jobId, 3600);
    await store.applyStatus(jobId, {
      status: JOB_STATUS.FAILED,
      fields: { error_code: ERROR_CODE.TIMED_OUT, error_message: 'late', finished_at: fromNow(-60), upstream_cancel: 'unconfirmed' },
      pendingCancels: executions,
      now: fromNow(-60),
    });
  }

  it('cancels every pending execution, takes each off the list, and marks the job confirmed when none is left', async () => {
    await endedWithPending('ended', ['wf-ended', 'wf-extra']);

    const report = await sweeper().sweep();

    expect(report).toMatchObject({ cancelsConfirmed: 2, cancelsPending: 0 });
    expect(cancelExecution.mock.calls.map(([id]) => id).sort()).toEqual(['wf-ended', 'wf-extra']);
    const record = await store.get('ended');
    expect(record).toMatchObject({ status: JOB_STATUS.FAILED, upstream_cancel: 'confirmed' });
    expect(record?.pending_cancels).toBeUndefined();
    expect(await store.listPendingCancels(10)).toEqual([]);
  });

  it('an execution Waterflai keeps refusing to cancel stays pending, with the reason, for the next sweep', async () => {
    await endedWithPending('stubborn', ['wf-stubborn']);
    cancelExecution.mockResolvedValue(cancelResult(false, { previous_status: 'RUNNING' }));

    const report = await sweeper().sweep();

    expect(report).toMatchObject({ cancelsConfirmed: 0, cancelsPending: 1 });
    const record = await store.get('stubborn');
    expect(record).toMatchObject({ upstream_cancel: 'unconfirmed', cancel_pending: 'pending' });
    expect(record?.last_cancel_error).toMatch(/still RUNNING/);
    expect(await store.listPendingCancels(10)).toEqual(['stubborn']);
  });

  it('a pending execution found COMPLETED is taken off the list and logged: its result cannot be delivered any more', async () => {
    await endedWithPending('late', ['wf-late']);
    cancelExecution.mockRejectedValueOnce(new WaterflaiHttpError('cancel', 409));
    getExecution.mockResolvedValueOnce(execution('COMPLETED', { execution_id: 'wf-late', final_output: 'too late' }));

    const report = await sweeper().sweep();

    expect(report).toMatchObject({ cancelsConfirmed: 1, cancelsPending: 0 });
    expect(logger.error).toHaveBeenCalledWith(
      'a Waterflai execution of an ended job completed before its cancel took effect; its result is not delivered',
      expect.objectContaining({ job_id: 'late', execution_id: 'wf-late' }),
    );
    expect(await store.listPendingCancels(10)).toEqual([]);
    // It was never cancelled: the job's cancel stays unconfirmed (the record tells the truth).
    expect(await store.get('late')).toMatchObject({ upstream_cancel: 'unconfirmed', pending_cancel_finished: true });
  });

  it("a superfluous execution of a job that completed on its own is cancelled without touching the job's outcome fields", async () => {
    await job('done', 3600);
    await store.applyStatus('done', {
      status: JOB_STATUS.COMPLETED,
      fields: { final_output: 'ok', finished_at: fromNow(-60) },
      now: fromNow(-60),
    });
    await store.addPendingCancels('done', ['wf-duplicate'], 'refused', fromNow(-30));

    await sweeper().sweep();

    const record = await store.get('done');
    expect(record?.upstream_cancel).toBeUndefined();
    expect(record?.pending_cancels).toBeUndefined();
    expect(cancelExecution.mock.calls.map(([id]) => id)).toEqual(['wf-duplicate']);
  });
});
