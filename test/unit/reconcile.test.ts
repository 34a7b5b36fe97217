import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { ExecutionReconciler, type ExecutionStatusChange } from '../../lambdas/reconcile/reconcile-job';
import { CANCEL_REASON, DETAIL_TYPE, ERROR_CODE, JOB_STATUS } from '../../lambdas/contract/constants';
import { WaterflaiHttpError, WaterflaiNetworkError } from '../../lambdas/contract/errors';
import { JobStore } from '../../lambdas/aws/job-store';
import type { AppLogger } from '../../lambdas/platform/logger';
import { OutcomePublisher } from '../../lambdas/aws/outcome-publisher';
import { outcomeDetailSchema } from '../../lambdas/contract/outcome-event';
import type { UpstreamExecutions } from '../../lambdas/domain/upstream-cancel';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';
import { execution } from '../support/execution-status';
import { cancelResult } from '../support/scripted-waterflai';

const ACCEPTED_AT = '2025-03-01T12:00:00.000Z';
const NOW_MS = Date.parse('2025-03-01T12:30:00.000Z');
const NOW = new Date(NOW_MS).toISOString();
const EXECUTION_ARN_PREFIX = 'arn:aws:states:us-east-1:123456789012:execution:poll-loop:';
const at = (seconds: number): string => new Date(Date.parse(ACCEPTED_AT) + seconds * 1000).toISOString();

const eventsMock = mockClient(EventBridgeClient);

let dynamo: LocalDynamo;
let store: JobStore;
let cancelExecution: ReturnType<typeof vi.fn<UpstreamExecutions['cancelExecution']>>;
let getExecution: ReturnType<typeof vi.fn<UpstreamExecutions['getExecution']>>;
let logger: AppLogger & { error: MockInstance; info: MockInstance };
let reconciler: ExecutionReconciler;

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
});

afterAll(async () => {
  eventsMock.restore();
  await dynamo.close();
});

beforeEach(() => {
  eventsMock.reset();
  eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'eb-1' }] });
  cancelExecution = vi.fn<UpstreamExecutions['cancelExecution']>(async (executionId) => cancelResult(true, { execution_id: executionId }));
  getExecution = vi.fn<UpstreamExecutions['getExecution']>(async (executionId) => execution('RUNNING', { execution_id: executionId }));
  logger = { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() };
  reconciler = new ExecutionReconciler({
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
  });
});

let jobCounter = 0;

/** A job tracked by its first execution: PENDING with an execution id and that execution's ARN. */
async function trackedJob(options: { executionId?: string | null; withArn?: boolean } = {}): Promise<{ jobId: string; arn: string }> {
  jobCounter += 1;
  const jobId = `reconcile-job-${jobCounter}`;
  const arn = `${EXECUTION_ARN_PREFIX}${jobId}`;
  await store.claim({
    job_id: jobId,
    chatbot_id: 'bot-1',
    metadata: { tenant: 'acme' },
    source_message_id: `msg-${jobCounter}`,
    delivery: 'sqs',
    accepted_at: ACCEPTED_AT,
    deadline_at: '2025-03-01T13:00:00.000Z',
    expires_at: 1_800_000_000,
    state_machine_execution_name: jobId,
    claim_expires_at: Date.parse(ACCEPTED_AT) + 60_000,
  });
  if (options.executionId !== null) await store.saveExecutionId(jobId, options.executionId ?? `wf-${jobId}`, at(1));
  if (options.withArn !== false) await store.saveStateMachineExecution(jobId, arn, at(1));
  return { jobId, arn };
}

function change(status: string, jobId: string, arn: string, overrides: Partial<ExecutionStatusChange> = {}): ExecutionStatusChange {
  return {
    executionArn: arn,
    stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:poll-loop',
    name: jobId,
    status,
    input: JSON.stringify({ job_id: jobId, execution_id: `wf-${jobId}`, poll_count: 3 }),
    error: null,
    cause: null,
    ...overrides,
  };
}

function published(): Array<{ detailType: string; detail: Record<string, unknown> }> {
  return eventsMock.commandCalls(PutEventsCommand).flatMap((call) =>
    (call.args[0].input.Entries ?? []).map((entry) => ({
      detailType: entry.DetailType ?? '',
      detail: JSON.parse(entry.Detail ?? '{}') as Record<string, unknown>,
    })),
  );
}

describe('ExecutionReconciler: executions that ended outside the poll loop', () => {
  it('ABORTED (an operator stopped it): cancels upstream, settles CANCELLED with reason stopped and announces it', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob();

    // Act
    const result = await reconciler.reconcile(change('ABORTED', jobId, arn));

    // Assess
    expect(result).toBe('settled');
    expect(cancelExecution).toHaveBeenCalledOnce();
    expect(cancelExecution.mock.calls[0]?.[0]).toBe(`wf-${jobId}`);
    expect(await store.get(jobId)).toMatchObject({
      status: JOB_STATUS.CANCELLED,
      cancel_reason: CANCEL_REASON.STOPPED,
      finished_at: NOW,
      event_published_at: NOW,
    });
    const events = published();
    expect(events).toHaveLength(1);
    expect(events[0]?.detailType).toBe(DETAIL_TYPE.CANCELLED);
    expect(events[0]?.detail).toMatchObject({
      job_id: jobId,
      status: JOB_STATUS.CANCELLED,
      reason: CANCEL_REASON.STOPPED,
      metadata: { tenant: 'acme' },
    });
    expect(outcomeDetailSchema.safeParse(events[0]?.detail).success).toBe(true);
  });

  it('TIMED_OUT: settles FAILED with TIMED_OUT and announces it', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob();

    // Act
    const result = await reconciler.reconcile(change('TIMED_OUT', jobId, arn));

    // Assess
    expect(result).toBe('settled');
    expect(cancelExecution).toHaveBeenCalledOnce();
    expect(await store.get(jobId)).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.TIMED_OUT });
    expect(published()).toEqual([
      expect.objectContaining({
        detailType: DETAIL_TYPE.FAILED,
        detail: expect.objectContaining({ error: expect.objectContaining({ code: ERROR_CODE.TIMED_OUT }) }),
      }),
    ]);
  });

  it('FAILED: settles FAILED with ORCHESTRATION_FAILED, naming the error and its cause', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob();

    // Act
    const result = await reconciler.reconcile(
      change('FAILED', jobId, arn, { error: 'States.Runtime', cause: 'An error occurred while executing the state PollExecution' }),
    );

    // Assess
    expect(result).toBe('settled');
    const record = await store.get(jobId);
    expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.ORCHESTRATION_FAILED });
    expect(record?.error_message).toBe(
      'the state machine execution failed: States.Runtime: An error occurred while executing the state PollExecution',
    );
    expect(published()).toEqual([
      expect.objectContaining({
        detailType: DETAIL_TYPE.FAILED,
        detail: expect.objectContaining({ error: { code: ERROR_CODE.ORCHESTRATION_FAILED, message: record?.error_message } }),
      }),
    ]);
  });

  it.each([
    ['neither error nor cause', {}, 'the state machine execution failed'],
    ['only an error', { error: 'States.Timeout' }, 'the state machine execution failed: States.Timeout'],
    ['an empty error and a cause', { error: '', cause: 'lost' }, 'the state machine execution failed: lost'],
  ])('FAILED with %s: the message says what is known', async (_name, overrides: Partial<ExecutionStatusChange>, message) => {
    const { jobId, arn } = await trackedJob();

    await reconciler.reconcile(change('FAILED', jobId, arn, overrides));

    expect((await store.get(jobId))?.error_message).toBe(message);
  });

  it('FAILED with a huge cause keeps the stored message bounded', async () => {
    const { jobId, arn } = await trackedJob();

    await reconciler.reconcile(change('FAILED', jobId, arn, { error: 'States.TaskFailed', cause: 'x'.repeat(50_000) }));

    const message = (await store.get(jobId))?.error_message ?? '';
    expect(message.length).toBeLessThanOrEqual('the state machine execution failed: '.length + 1024);
    expect(message).toMatch(/^the state machine execution failed: States\.TaskFailed: x+$/);
  });

  it('a job that never got a Waterflai execution is settled without a DELETE', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob({ executionId: null });

    // Act
    const result = await reconciler.reconcile(change('ABORTED', jobId, arn));

    // Assess
    expect(result).toBe('settled');
    expect(cancelExecution).not.toHaveBeenCalled();
    expect(await store.get(jobId)).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.STOPPED });
  });

  it('a job whose record has no state machine ARN yet is settled (not taken for superseded)', async () => {
    const { jobId, arn } = await trackedJob({ withArn: false });

    const result = await reconciler.reconcile(change('TIMED_OUT', jobId, arn));

    expect(result).toBe('settled');
    expect((await store.get(jobId))?.status).toBe(JOB_STATUS.FAILED);
  });
});

describe('ExecutionReconciler: the upstream cancel', () => {
  it('a confirmed cancel settles CANCELLED stopped with upstream_cancel confirmed', async () => {
    const { jobId, arn } = await trackedJob();

    expect(await reconciler.reconcile(change('ABORTED', jobId, arn))).toBe('settled');

    expect(await store.get(jobId)).toMatchObject({
      status: JOB_STATUS.CANCELLED,
      cancel_reason: CANCEL_REASON.STOPPED,
      upstream_cancel: 'confirmed',
    });
    expect(logger.error).not.toHaveBeenCalled();
  });

  it.each([
    ['HTTP 404', new WaterflaiHttpError('cancel', 404)],
    ['HTTP 409', new WaterflaiHttpError('cancel', 409)],
  ])('%s with a 404 on the status read (the execution is gone) settles and is not logged as an error', async (_name, error) => {
    // Prepare
    const { jobId, arn } = await trackedJob();
    cancelExecution.mockRejectedValueOnce(error);
    getExecution.mockRejectedValueOnce(new WaterflaiHttpError('get', 404));

    // Act
    const result = await reconciler.reconcile(change('ABORTED', jobId, arn));

    // Assess
    expect(result).toBe('settled');
    expect(await store.get(jobId)).toMatchObject({ status: JOB_STATUS.CANCELLED, upstream_cancel: 'confirmed' });
    expect(logger.error).not.toHaveBeenCalled();
  });

  it('a DELETE refused because the execution completed meanwhile: the job ends COMPLETED with its output (a finished result is never thrown away)', async () => {
    const { jobId, arn } = await trackedJob();
    cancelExecution.mockRejectedValueOnce(new WaterflaiHttpError('cancel', 409));
    getExecution.mockResolvedValueOnce(execution('COMPLETED', { execution_id: `wf-${jobId}`, final_output: { summary: 'done' } }));

    expect(await reconciler.reconcile(change('ABORTED', jobId, arn))).toBe('settled');

    expect(await store.get(jobId)).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: { summary: 'done' } });
    expect(published()).toEqual([expect.objectContaining({ detailType: DETAIL_TYPE.COMPLETED })]);
  });

  it.each([
    ['HTTP 503', new WaterflaiHttpError('cancel', 503)],
    ['a timeout', new WaterflaiNetworkError('cancel', 'TIMEOUT', 'no answer')],
    ['HTTP 403', new WaterflaiHttpError('cancel', 403)],
    ['a refusal while running', cancelResult(false, { previous_status: 'RUNNING' })],
  ])(
    'a cancel that cannot be confirmed (%s on every attempt) settles with upstream_cancel unconfirmed and leaves the execution to the sweeper',
    async (_name, answer) => {
      // Prepare
      const { jobId, arn } = await trackedJob();
      if (answer instanceof Error) cancelExecution.mockRejectedValue(answer);
      else cancelExecution.mockResolvedValue(answer);

      // Act
      const result = await reconciler.reconcile(change('ABORTED', jobId, arn));

      // Assess
      expect(result).toBe('settled');
      expect(cancelExecution).toHaveBeenCalledTimes(4);
      const record = await store.get(jobId);
      expect(record).toMatchObject({ status: JOB_STATUS.CANCELLED, upstream_cancel: 'unconfirmed', cancel_pending: 'pending' });
      expect([...(record?.pending_cancels ?? [])]).toEqual([`wf-${jobId}`]);
      expect(logger.error).toHaveBeenCalledWith(
        'could not confirm the cancellation of the execution; the sweeper keeps trying',
        expect.objectContaining({ job_id: jobId }),
      );
    },
  );
});

describe('ExecutionReconciler: jobs already settled', () => {
  it('the same status change delivered twice settles and announces exactly once', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob();

    // Act
    const first = await reconciler.reconcile(change('ABORTED', jobId, arn));
    const afterFirst = await store.get(jobId);
    const second = await reconciler.reconcile(change('ABORTED', jobId, arn));

    // Assess
    expect([first, second]).toEqual(['settled', 'already-settled']);
    expect(eventsMock).toHaveReceivedCommandTimes(PutEventsCommand, 1);
    expect(cancelExecution).toHaveBeenCalledOnce();
    expect(await store.get(jobId)).toEqual(afterFirst);
  });

  it('a job settled and announced by its poll loop is left alone', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob();
    await store.applyStatus(jobId, { status: JOB_STATUS.COMPLETED, fields: { final_output: { ok: 1 }, finished_at: at(60) }, now: at(60) });
    await store.markEventPublished(jobId, `${jobId}:completed`, at(61));
    const before = await store.get(jobId);

    // Act
    const result = await reconciler.reconcile(change('FAILED', jobId, arn, { error: 'States.Runtime' }));

    // Assess
    expect(result).toBe('already-settled');
    expect(await store.get(jobId)).toEqual(before);
    expect(cancelExecution).not.toHaveBeenCalled();
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('a job settled by its poll loop whose finish step never announced it gets its own outcome announced, unchanged', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob();
    await store.applyStatus(jobId, {
      status: JOB_STATUS.COMPLETED,
      fields: { final_output: { ok: 1 }, finished_at: at(60), polls: 12 },
      now: at(60),
    });

    // Act
    const result = await reconciler.reconcile(change('FAILED', jobId, arn, { error: 'Lambda.Unknown' }));

    // Assess
    expect(result).toBe('already-settled');
    expect(cancelExecution).not.toHaveBeenCalled();
    expect(await store.get(jobId)).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: { ok: 1 }, event_published_at: NOW });
    expect((await store.get(jobId))?.error_code).toBeUndefined();
    expect(published()).toEqual([
      expect.objectContaining({
        detailType: DETAIL_TYPE.COMPLETED,
        detail: expect.objectContaining({ job_id: jobId, final_output: { ok: 1 }, polls: 12 }),
      }),
    ]);
  });

  it('a job cancelled on request keeps reason requested when its execution is then stopped', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob();
    await store.applyStatus(jobId, {
      status: JOB_STATUS.CANCELLED,
      fields: { cancel_reason: CANCEL_REASON.REQUESTED, finished_at: at(60) },
      now: at(60),
    });
    await store.markEventPublished(jobId, `${jobId}:cancelled`, at(61));

    // Act
    const result = await reconciler.reconcile(change('ABORTED', jobId, arn));

    // Assess
    expect(result).toBe('already-settled');
    expect((await store.get(jobId))?.cancel_reason).toBe(CANCEL_REASON.REQUESTED);
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });
});

describe('ExecutionReconciler: executions that do not own the job', () => {
  it('a superseded execution (the job continues in its successor) is ignored', async () => {
    // Prepare: the job handed over to generation 1
    const { jobId, arn } = await trackedJob();
    await store.recordHandOver(jobId, 1, `${arn}-g1`, at(30));
    const before = await store.get(jobId);

    // Act
    const result = await reconciler.reconcile(change('ABORTED', jobId, arn));

    // Assess
    expect(result).toBe('superseded');
    expect(await store.get(jobId)).toEqual(before);
    expect(cancelExecution).not.toHaveBeenCalled();
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('the successor execution itself ending is reconciled', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob();
    await store.recordHandOver(jobId, 1, `${arn}-g1`, at(30));

    // Act
    const result = await reconciler.reconcile(change('TIMED_OUT', jobId, `${arn}-g1`, { name: `${jobId}-g1` }));

    // Assess
    expect(result).toBe('settled');
    expect(await store.get(jobId)).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.TIMED_OUT });
  });

  it('a superseded execution of a settled but unannounced job still gets the outcome announced', async () => {
    // Prepare
    const { jobId, arn } = await trackedJob();
    await store.recordHandOver(jobId, 1, `${arn}-g1`, at(30));
    await store.applyStatus(jobId, {
      status: JOB_STATUS.FAILED,
      fields: { error_code: ERROR_CODE.EXECUTION_FAILED, error_message: 'boom', finished_at: at(40) },
      now: at(40),
    });

    // Act
    const result = await reconciler.reconcile(change('ABORTED', jobId, arn));

    // Assess
    expect(result).toBe('already-settled');
    expect(published()).toEqual([expect.objectContaining({ detailType: DETAIL_TYPE.FAILED })]);
    expect((await store.get(jobId))?.error_code).toBe(ERROR_CODE.EXECUTION_FAILED);
  });

  it.each(['SUCCEEDED', 'RUNNING', 'PENDING_REDRIVE', 'aborted'])(
    'status %s is ignored without reading or writing the job',
    async (status) => {
      // Prepare
      const { jobId, arn } = await trackedJob();
      const before = await store.get(jobId);
      const send = vi.spyOn(dynamo.documentClient, 'send');

      // Act
      const result = await reconciler.reconcile(change(status, jobId, arn));

      // Assess
      const calls = send.mock.calls.length;
      send.mockRestore();
      expect(result).toBe('ignored');
      expect(calls).toBe(0);
      expect(await store.get(jobId)).toEqual(before);
      expect(cancelExecution).not.toHaveBeenCalled();
      expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
    },
  );

  it.each([
    ['no input', null],
    ['an absent input', undefined],
    ['an input that is not JSON', '{"job_id": "truncated'],
    ['an input without job_id', JSON.stringify({ execution_id: 'wf-1' })],
    ['an input with a numeric job_id', JSON.stringify({ job_id: 42 })],
    ['an input that is JSON null', 'null'],
  ])('%s: unknown-job, logged, nothing settled', async (_name, input) => {
    // Prepare
    const { jobId, arn } = await trackedJob();
    const before = await store.get(jobId);
    const base = change('ABORTED', jobId, arn);
    const event: ExecutionStatusChange =
      input === undefined ? { executionArn: base.executionArn, status: base.status } : { ...base, input };

    // Act
    const result = await reconciler.reconcile(event);

    // Assess
    expect(result).toBe('unknown-job');
    expect(logger.error).toHaveBeenCalledWith('execution status change without a readable job id', {
      execution_arn: arn,
      status: 'ABORTED',
    });
    expect(await store.get(jobId)).toEqual(before);
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('a job id with no record is unknown-job and creates nothing', async () => {
    // Act
    const result = await reconciler.reconcile(change('FAILED', 'never-seen', `${EXECUTION_ARN_PREFIX}never-seen`));

    // Assess
    expect(result).toBe('unknown-job');
    expect(await store.get('never-seen')).toBeUndefined();
    expect(cancelExecution).not.toHaveBeenCalled();
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });
});
