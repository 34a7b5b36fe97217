import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CANCEL_REASON,
  DETAIL_TYPE,
  DLQ_ATTRIBUTE,
  ERROR_CODE,
  JOB_STATUS,
  STATUS_RANK,
  type TerminalStatus,
} from '../../lambdas/contract/constants';
import { UpstreamCancelUnconfirmedError, WaterflaiHttpError, WaterflaiNetworkError } from '../../lambdas/contract/errors';
import { JobStore } from '../../lambdas/aws/job-store';
import type { StatusFields } from '../../lambdas/contract/job-record';
import { OutcomePublisher } from '../../lambdas/aws/outcome-publisher';
import { outcomeDetailSchema } from '../../lambdas/contract/outcome-event';
import { JobBusyError, JobStarter } from '../../lambdas/start-execution/start-job';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';
import { sqsRecord } from '../support/sqs-record';
import { execution } from '../support/execution-status';
import { cancelResult } from '../support/scripted-waterflai';
import { answerLikeHealthyAws, fakeWaterflaiStarter, STARTER_SETTINGS, type FakeWaterflaiStarter } from '../support/starter';

/** The record apart from the cancel-request marker a cancel leaves before its DELETE (and the bookkeeping of that write). */
function withoutCancelMarker(record: object | undefined): object | undefined {
  if (record === undefined) return undefined;
  const {
    requested_cancel_reason: _reason,
    cancel_requested_at: _at,
    version: _version,
    updated_at: _updated,
    ...rest
  } = record as Record<string, unknown>;
  return rest;
}

const settings = STARTER_SETTINGS;
const START_AT = '2026-11-29T12:00:00.000Z';

const sfnMock = mockClient(SFNClient);
const sqsMock = mockClient(SQSClient);
const eventsMock = mockClient(EventBridgeClient);

let dynamo: LocalDynamo;
let store: JobStore;
let clock: number;
let waterflai: FakeWaterflaiStarter;
let starter: JobStarter;

const startBody = (overrides: Record<string, unknown> = {}): string =>
  JSON.stringify({ job_id: 'job-1', chatbot_id: 'bot-1', input_data: { query: 'q' }, metadata: { team: 'reports' }, ...overrides });

const cancelBody = (jobId = 'job-1'): string => JSON.stringify({ action: 'cancel', job_id: jobId });

const envelope = (detail: Record<string, unknown>, id = 'evt-cancel-1'): string =>
  JSON.stringify({ version: '0', id, 'detail-type': 'Cancel Job', source: 'com.example', detail });

const remaining = (): number => 60_000;

function published(): Array<{ detailType: string; detail: Record<string, unknown> }> {
  return eventsMock.commandCalls(PutEventsCommand).flatMap((call) =>
    (call.args[0].input.Entries ?? []).map((entry) => ({
      detailType: entry.DetailType ?? '',
      detail: JSON.parse(entry.Detail ?? '{}') as Record<string, unknown>,
    })),
  );
}

function dlqMessages(): Array<{ body: string | undefined; attributes: Record<string, string | undefined> }> {
  return sqsMock.commandCalls(SendMessageCommand).map((call) => ({
    body: call.args[0].input.MessageBody,
    attributes: Object.fromEntries(
      Object.entries(call.args[0].input.MessageAttributes ?? {}).map(([key, value]) => [key, value.StringValue]),
    ),
  }));
}

/** Starts job-1 through the starter: PENDING, execution exec_1, state machine started. */
async function runningJob(): Promise<void> {
  await starter.handleRecord(sqsRecord(startBody(), { messageId: 'msg-start' }), remaining);
  expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: 'exec_1' });
  sfnMock.resetHistory();
}

const iso = (ms: number): string => new Date(ms).toISOString();

beforeAll(async () => {
  dynamo = await startLocalDynamo();
});

afterAll(async () => {
  sfnMock.restore();
  sqsMock.restore();
  eventsMock.restore();
  await dynamo.close();
});

beforeEach(async () => {
  answerLikeHealthyAws(sfnMock, sqsMock, eventsMock);

  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
  clock = Date.parse(START_AT);
  waterflai = fakeWaterflaiStarter();
  starter = new JobStarter({
    store,
    waterflai,
    sfn: new SFNClient({ region: 'us-east-1' }),
    sqs: new SQSClient({ region: 'us-east-1' }),
    publisher: new OutcomePublisher(
      new EventBridgeClient({ region: 'us-east-1' }),
      'bus',
      async () => undefined,
      () => 0,
    ),
    logger: { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() },
    settings,
    now: () => clock,
    random: () => 0.5,
    sleep: async () => undefined,
  });
});

describe('cancel before the job started (tombstone)', () => {
  it('records a CANCELLED tombstone and announces one Cancelled event with reason requested', async () => {
    // Act
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel' }), remaining);

    // Assess
    expect(await store.get('job-1')).toMatchObject({
      status: JOB_STATUS.CANCELLED,
      status_rank: STATUS_RANK.CANCELLED,
      cancel_reason: CANCEL_REASON.REQUESTED,
      source_message_id: 'msg-cancel',
      delivery: 'sqs',
      finished_at: START_AT,
      event_published_at: START_AT,
      outcome_event_id: 'job-1:cancelled',
    });
    const events = published();
    expect(events).toHaveLength(1);
    expect(events[0]?.detailType).toBe(DETAIL_TYPE.CANCELLED);
    expect(events[0]?.detail).toMatchObject({
      event_id: 'job-1:cancelled',
      job_id: 'job-1',
      execution_id: null,
      status: JOB_STATUS.CANCELLED,
      reason: CANCEL_REASON.REQUESTED,
    });
    expect(outcomeDetailSchema.safeParse(events[0]?.detail).success).toBe(true);
    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    expect(waterflai.startExecution).not.toHaveBeenCalled();
    expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
  });

  it('the start that arrives later never calls Waterflai nor starts a state machine, and the job keeps exactly one Cancelled event', async () => {
    // Prepare
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel' }), remaining);
    clock += 5_000;

    // Act: the start, then a redelivery of it
    await starter.handleRecord(sqsRecord(startBody(), { messageId: 'msg-start' }), remaining);
    await starter.handleRecord(sqsRecord(startBody(), { messageId: 'msg-start', receiveCount: 2 }), remaining);

    // Assess
    expect(waterflai.startExecution).not.toHaveBeenCalled();
    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    expect(sfnMock).not.toHaveReceivedCommand(StartExecutionCommand);
    expect(published()).toEqual([
      expect.objectContaining({ detailType: DETAIL_TYPE.CANCELLED, detail: expect.objectContaining({ reason: CANCEL_REASON.REQUESTED }) }),
    ]);
    expect(await store.get('job-1')).toMatchObject({
      status: JOB_STATUS.CANCELLED,
      cancel_reason: CANCEL_REASON.REQUESTED,
      source_message_id: 'msg-cancel',
    });
    expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
  });

  it('a tombstone whose announcement failed is announced by the redelivered cancel, once', async () => {
    // Prepare: EventBridge refuses the entry during the first attempt
    eventsMock
      .on(PutEventsCommand)
      .resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] });
    await expect(starter.handleRecord(sqsRecord(cancelBody()), remaining)).rejects.toThrow(/PutEvents failed/);
    expect((await store.get('job-1'))?.event_published_at).toBeUndefined();
    eventsMock.reset();
    eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'event-2' }] });

    // Act
    await starter.handleRecord(sqsRecord(cancelBody(), { receiveCount: 2 }), remaining);
    await starter.handleRecord(sqsRecord(cancelBody(), { receiveCount: 3 }), remaining);

    // Assess
    expect(published()).toEqual([
      expect.objectContaining({ detailType: DETAIL_TYPE.CANCELLED, detail: expect.objectContaining({ event_id: 'job-1:cancelled' }) }),
    ]);
    expect((await store.get('job-1'))?.event_published_at).toBeDefined();
  });
});

describe('cancel of a running job', () => {
  it.each([JOB_STATUS.PENDING, JOB_STATUS.RUNNING, JOB_STATUS.UNKNOWN])(
    'a %s job: sends one DELETE for its execution, settles CANCELLED/requested and announces once',
    async (status) => {
      // Prepare
      await runningJob();
      if (status !== JOB_STATUS.PENDING) await store.applyStatus('job-1', { status, fields: { progress: 40 }, now: iso(clock + 1_000) });
      clock += 60_000;

      // Act
      await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel' }), remaining);

      // Assess
      expect(waterflai.cancelExecution).toHaveBeenCalledOnce();
      expect(waterflai.cancelExecution.mock.calls[0]?.[0]).toBe('exec_1');
      expect(waterflai.cancelExecution.mock.calls[0]?.[1]).toEqual({ timeoutMs: expect.any(Number) });
      expect(await store.get('job-1')).toMatchObject({
        status: JOB_STATUS.CANCELLED,
        cancel_reason: CANCEL_REASON.REQUESTED,
        finished_at: iso(clock),
        execution_id: 'exec_1',
        source_message_id: 'msg-start',
      });
      const events = published();
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({
        detailType: DETAIL_TYPE.CANCELLED,
        detail: {
          job_id: 'job-1',
          execution_id: 'exec_1',
          chatbot_id: 'bot-1',
          reason: CANCEL_REASON.REQUESTED,
          metadata: { team: 'reports' },
          duration_ms: 60_000,
        },
      });
      expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
    },
  );

  it('a duplicate cancel sends no second DELETE and no second event', async () => {
    // Prepare
    await runningJob();
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel-1' }), remaining);
    const before = await store.get('job-1');

    // Act
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel-2' }), remaining);

    // Assess
    expect(waterflai.cancelExecution).toHaveBeenCalledOnce();
    expect(eventsMock).toHaveReceivedCommandTimes(PutEventsCommand, 1);
    expect(withoutCancelMarker(await store.get('job-1'))).toEqual(withoutCancelMarker(before));
  });

  it('a 404 from the DELETE and the status read (Waterflai no longer knows the execution) still settles and announces the job', async () => {
    // Prepare
    await runningJob();
    waterflai.cancelExecution.mockRejectedValueOnce(new WaterflaiHttpError('cancel', 404));
    waterflai.getExecution.mockRejectedValueOnce(new WaterflaiHttpError('get', 404));

    // Act
    await starter.handleRecord(sqsRecord(cancelBody()), remaining);

    // Assess
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REQUESTED });
    expect(published()).toEqual([expect.objectContaining({ detailType: DETAIL_TYPE.CANCELLED })]);
    expect(sqsMock).not.toHaveReceivedCommand(ChangeMessageVisibilityCommand);
  });

  it('Waterflai says the execution already finished: the job is not settled and nothing is announced (the poll loop reports the outcome)', async () => {
    // Prepare
    await runningJob();
    const before = await store.get('job-1');
    waterflai.cancelExecution.mockResolvedValueOnce(cancelResult(false, { alreadyFinished: true, previous_status: 'COMPLETED' }));
    waterflai.getExecution.mockResolvedValueOnce(execution('COMPLETED', { final_output: 'done' }));

    // Act
    await starter.handleRecord(sqsRecord(cancelBody()), remaining);

    // Assess
    expect(waterflai.cancelExecution).toHaveBeenCalledOnce();
    expect(withoutCancelMarker(await store.get('job-1'))).toEqual(withoutCancelMarker(before));
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
    expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
  });

  it.each([
    ['HTTP 503', new WaterflaiHttpError('cancel', 503)],
    ['HTTP 429 with Retry-After', new WaterflaiHttpError('cancel', 429, 30)],
    ['a timeout', new WaterflaiNetworkError('cancel', 'TIMEOUT', 'no answer in 10000 ms')],
    ['a refusal while it runs (200 cancelled: false)', cancelResult(false, { previous_status: 'RUNNING' })],
    ['HTTP 403 (the key may be rotating)', new WaterflaiHttpError('cancel', 403)],
  ])(
    'a DELETE that keeps failing (%s) is retried in-process, then fails the item for an SQS retry and settles nothing',
    async (_name, answer) => {
      // Prepare
      await runningJob();
      const before = await store.get('job-1');
      if (answer instanceof Error) waterflai.cancelExecution.mockRejectedValue(answer);
      else waterflai.cancelExecution.mockResolvedValue(answer);

      // Act
      const attempt = starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel', receiveCount: 2 }), remaining);

      // Assess
      await expect(attempt).rejects.toBeInstanceOf(UpstreamCancelUnconfirmedError);
      expect(waterflai.cancelExecution).toHaveBeenCalledTimes(4);
      expect(withoutCancelMarker(await store.get('job-1'))).toEqual(withoutCancelMarker(before));
      expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
      expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, {
        QueueUrl: settings.intakeQueueUrl,
        ReceiptHandle: 'receipt-msg-cancel-2',
      });
      expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
    },
  );

  it('a DELETE that fails once is retried in-process: the job is cancelled in the same attempt', async () => {
    // Prepare
    await runningJob();
    waterflai.cancelExecution.mockRejectedValueOnce(new WaterflaiHttpError('cancel', 503));

    // Act
    await starter.handleRecord(sqsRecord(cancelBody()), remaining);

    // Assess
    expect(waterflai.cancelExecution).toHaveBeenCalledTimes(2);
    expect(await store.get('job-1')).toMatchObject({
      status: JOB_STATUS.CANCELLED,
      cancel_reason: CANCEL_REASON.REQUESTED,
      upstream_cancel: 'confirmed',
    });
    expect(eventsMock).toHaveReceivedCommandTimes(PutEventsCommand, 1);
  });

  it('the redelivery after an unconfirmed cancel cancels the job once', async () => {
    // Prepare
    await runningJob();
    for (let attempt = 0; attempt < 4; attempt += 1) waterflai.cancelExecution.mockRejectedValueOnce(new WaterflaiHttpError('cancel', 503));
    await expect(starter.handleRecord(sqsRecord(cancelBody()), remaining)).rejects.toThrow(/503/);

    // Act
    await starter.handleRecord(sqsRecord(cancelBody(), { receiveCount: 2 }), remaining);

    // Assess
    expect(waterflai.cancelExecution).toHaveBeenCalledTimes(5);
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REQUESTED });
    expect(eventsMock).toHaveReceivedCommandTimes(PutEventsCommand, 1);
  });

  it('retries exhausted on the last receive: the cancel message is dead-lettered with the job id and the job is left running', async () => {
    // Prepare
    await runningJob();
    const before = await store.get('job-1');
    waterflai.cancelExecution.mockRejectedValue(new WaterflaiHttpError('cancel', 503));

    // Act
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel', receiveCount: settings.maxReceiveCount }), remaining);

    // Assess
    expect(dlqMessages()).toEqual([
      {
        body: cancelBody(),
        attributes: expect.objectContaining({
          [DLQ_ATTRIBUTE.ERROR_CODE]: ERROR_CODE.START_RETRIES_EXHAUSTED,
          [DLQ_ATTRIBUTE.JOB_ID]: 'job-1',
          [DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]: 'msg-cancel',
        }),
      },
    ]);
    expect(withoutCancelMarker(await store.get('job-1'))).toEqual(withoutCancelMarker(before));
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('a cancel whose announcement failed is announced by its redelivery without a second DELETE', async () => {
    // Prepare
    await runningJob();
    eventsMock
      .on(PutEventsCommand)
      .resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] });
    await expect(starter.handleRecord(sqsRecord(cancelBody()), remaining)).rejects.toThrow(/PutEvents failed/);
    eventsMock.reset();
    eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'event-2' }] });

    // Act
    await starter.handleRecord(sqsRecord(cancelBody(), { receiveCount: 2 }), remaining);

    // Assess
    expect(waterflai.cancelExecution).toHaveBeenCalledOnce();
    expect(published()).toEqual([
      expect.objectContaining({ detailType: DETAIL_TYPE.CANCELLED, detail: expect.objectContaining({ reason: CANCEL_REASON.REQUESTED }) }),
    ]);
    expect((await store.get('job-1'))?.event_published_at).toBeDefined();
  });
});

describe('cancel of a finished job', () => {
  it.each<[TerminalStatus, StatusFields]>([
    [JOB_STATUS.COMPLETED, { final_output: { answer: 42 } }],
    [JOB_STATUS.FAILED, { error_code: ERROR_CODE.EXECUTION_FAILED, error_message: 'boom' }],
    [JOB_STATUS.CANCELLED, { cancel_reason: CANCEL_REASON.REMOTE }],
  ])('a %s job is left alone: no DELETE, no event, record unchanged', async (status, fields) => {
    // Prepare
    await runningJob();
    await store.applyStatus('job-1', { status, fields: { ...fields, finished_at: iso(clock + 1_000) }, now: iso(clock + 1_000) });
    await store.markEventPublished('job-1', `job-1:${status.toLowerCase()}`, iso(clock + 2_000));
    const before = await store.get('job-1');
    eventsMock.resetHistory();

    // Act
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel' }), remaining);

    // Assess
    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
    expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
    expect(withoutCancelMarker(await store.get('job-1'))).toEqual(withoutCancelMarker(before));
  });

  it("a COMPLETED job whose outcome is not announced yet is not announced by the cancel (that is the poll loop's to do)", async () => {
    // Prepare
    await runningJob();
    await store.applyStatus('job-1', {
      status: JOB_STATUS.COMPLETED,
      fields: { final_output: 1, finished_at: iso(clock) },
      now: iso(clock),
    });

    // Act
    await starter.handleRecord(sqsRecord(cancelBody()), remaining);

    // Assess
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.COMPLETED });
    expect((await store.get('job-1'))?.cancel_reason).toBeUndefined();
  });
});

/** job-1 SUBMITTING, claimed by a start that died: its lease ran out just before now. */
async function claimLeftByADeadStart(): Promise<void> {
  await store.claim({
    job_id: 'job-1',
    chatbot_id: 'bot-1',
    metadata: {},
    source_message_id: 'msg-start',
    delivery: 'sqs',
    accepted_at: START_AT,
    deadline_at: iso(Date.parse(START_AT) + 3_600_000),
    expires_at: 0,
    state_machine_execution_name: 'job-1',
    claim_expires_at: Date.parse(START_AT) - 1,
  });
}

describe('cancel during an in-flight start (job SUBMITTING)', () => {
  it('waits for the start: the cancel comes back once the execution id is saved, then cancels that execution and confirms it', async () => {
    // Prepare: while the start's POST is in flight, the cancel request is processed
    let cancelDuringPost: Promise<void> | undefined;
    waterflai.startExecution.mockImplementationOnce(async () => {
      expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.SUBMITTING });
      cancelDuringPost = starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel' }), remaining);
      await cancelDuringPost.catch(() => undefined);
      return { execution_id: 'exec_late' };
    });

    // Act
    await starter.handleRecord(sqsRecord(startBody(), { messageId: 'msg-start' }), remaining);
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel', receiveCount: 2 }), remaining);

    // Assess: the first receive was deferred (nothing settled while the POST was in flight) ...
    await expect(cancelDuringPost).rejects.toBeInstanceOf(JobBusyError);
    expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { ReceiptHandle: 'receipt-msg-cancel-1' });
    // ... the start went on as usual, and the redelivery cancelled its execution upstream.
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
    expect(waterflai.cancelExecution.mock.calls.map((call) => call[0])).toEqual(['exec_late']);
    expect(await store.get('job-1')).toMatchObject({
      status: JOB_STATUS.CANCELLED,
      cancel_reason: CANCEL_REASON.REQUESTED,
      execution_id: 'exec_late',
      upstream_cancel: 'confirmed',
    });
    expect(published()).toEqual([
      expect.objectContaining({
        detailType: DETAIL_TYPE.CANCELLED,
        detail: expect.objectContaining({ reason: CANCEL_REASON.REQUESTED, execution_id: 'exec_late' }),
      }),
    ]);
  });

  it('a start that died holding its claim does not hold the cancel up: once the lease ran out the job is settled before any POST', async () => {
    await claimLeftByADeadStart();

    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel' }), remaining);

    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REQUESTED });
  });

  it("a start that saves its execution id between the cancel's read and write still has that execution cancelled", async () => {
    // Prepare: the job is SUBMITTING when the cancel reads it; the start saves its id just before the cancel settles
    // A start whose lease ran out (a live claim defers the cancel: see above).
    await claimLeftByADeadStart();
    const applyStatus = store.applyStatus.bind(store);
    const spy = vi.spyOn(store, 'applyStatus').mockImplementationOnce(async (jobId, update) => {
      await store.saveExecutionId(jobId, 'exec_raced', update.now);
      return applyStatus(jobId, update);
    });

    // Act
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel' }), remaining);
    spy.mockRestore();

    // Assess
    expect(waterflai.cancelExecution.mock.calls.map((call) => call[0])).toEqual(['exec_raced']);
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.CANCELLED, execution_id: 'exec_raced' });
    expect(published()).toHaveLength(1);
  });

  it('a redelivered start after that never reaches Waterflai again', async () => {
    // Prepare: a cancel deferred during the POST, then redelivered after the start
    waterflai.startExecution.mockImplementationOnce(async () => {
      await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel' }), remaining).catch(() => undefined);
      return { execution_id: 'exec_late' };
    });
    await starter.handleRecord(sqsRecord(startBody(), { messageId: 'msg-start' }), remaining);
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel', receiveCount: 2 }), remaining);

    // Act
    await starter.handleRecord(sqsRecord(startBody(), { messageId: 'msg-start', receiveCount: 2 }), remaining);

    // Assess
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
    expect(eventsMock).toHaveReceivedCommandTimes(PutEventsCommand, 1);
  });
});

describe('cancel requests routed by EventBridge', () => {
  it("a cancel in an event's detail tombstones the job named by the detail (not the event id)", async () => {
    // Act
    await starter.handleRecord(
      sqsRecord(envelope({ action: 'cancel', job_id: 'job-1' }, 'evt-cancel-1'), { messageId: 'msg-cancel' }),
      remaining,
    );

    // Assess
    expect(await store.get('job-1')).toMatchObject({
      status: JOB_STATUS.CANCELLED,
      cancel_reason: CANCEL_REASON.REQUESTED,
      delivery: 'eventbridge',
    });
    expect(await store.get('evt-cancel-1')).toBeUndefined();
    expect(published()).toEqual([expect.objectContaining({ detailType: DETAIL_TYPE.CANCELLED })]);
  });

  it("a cancel in an event's detail cancels a running job in Waterflai", async () => {
    // Prepare
    await runningJob();

    // Act
    await starter.handleRecord(sqsRecord(envelope({ action: 'cancel', job_id: 'job-1' })), remaining);

    // Assess
    expect(waterflai.cancelExecution).toHaveBeenCalledOnce();
    expect(waterflai.cancelExecution.mock.calls[0]?.[0]).toBe('exec_1');
    expect(await store.get('job-1')).toMatchObject({
      status: JOB_STATUS.CANCELLED,
      cancel_reason: CANCEL_REASON.REQUESTED,
      delivery: 'sqs',
    });
  });
});

describe('invalid cancel requests', () => {
  it.each([
    ['without a job_id', JSON.stringify({ action: 'cancel' })],
    ['with a job_id holding a slash', JSON.stringify({ action: 'cancel', job_id: 'job/1' })],
    ['with a job_id starting with a dot', JSON.stringify({ action: 'cancel', job_id: '.job-1' })],
    ['with a job_id over 128 characters', JSON.stringify({ action: 'cancel', job_id: 'j'.repeat(129) })],
    ['with a numeric job_id', JSON.stringify({ action: 'cancel', job_id: 1 })],
    ['with an empty job_id', JSON.stringify({ action: 'cancel', job_id: '' })],
    ['in an EventBridge detail without a job_id', envelope({ action: 'cancel' }, 'evt-77')],
  ])('a cancel %s is dead-lettered with INVALID_MESSAGE, without a job record or event', async (_name, body) => {
    // Act
    await starter.handleRecord(sqsRecord(body, { messageId: 'msg-bad' }), remaining);

    // Assess
    const dlq = dlqMessages();
    expect(dlq).toHaveLength(1);
    expect(dlq[0]?.body).toBe(body);
    expect(dlq[0]?.attributes).toMatchObject({
      [DLQ_ATTRIBUTE.ERROR_CODE]: ERROR_CODE.INVALID_MESSAGE,
      [DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]: 'msg-bad',
    });
    expect(dlq[0]?.attributes[DLQ_ATTRIBUTE.ERROR_MESSAGE]).toMatch(/^invalid cancel request: .*job_id/);
    expect(dlq[0]?.attributes).not.toHaveProperty(DLQ_ATTRIBUTE.JOB_ID);
    expect(await store.get('msg-bad')).toBeUndefined();
    expect(await store.get('evt-77')).toBeUndefined();
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    expect(sqsMock).not.toHaveReceivedCommand(ChangeMessageVisibilityCommand);
  });

  it('a cancel with an unexpected field naming a running job is dead-lettered and leaves that job alone', async () => {
    // Prepare
    await runningJob();
    const before = await store.get('job-1');
    const body = JSON.stringify({ action: 'cancel', job_id: 'job-1', reason: 'user asked' });

    // Act
    await starter.handleRecord(sqsRecord(body, { messageId: 'msg-bad' }), remaining);

    // Assess
    expect(dlqMessages()).toEqual([
      { body, attributes: expect.objectContaining({ [DLQ_ATTRIBUTE.ERROR_CODE]: ERROR_CODE.INVALID_MESSAGE }) },
    ]);
    expect(withoutCancelMarker(await store.get('job-1'))).toEqual(withoutCancelMarker(before));
    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });
});

describe('cancel racing the poll loop', () => {
  it("when the poll loop records Waterflai's CANCELLED before the cancel request does, the reason is still requested", async () => {
    // Prepare: a running job; the DELETE is answered, and the poll loop records CANCELLED (reason remote) before the cancel writes
    await runningJob();
    waterflai.cancelExecution.mockImplementationOnce(async () => {
      const at = iso(Date.parse(START_AT) + 5_000);
      await store.applyStatus('job-1', {
        status: JOB_STATUS.CANCELLED,
        fields: { cancel_reason: CANCEL_REASON.REMOTE, finished_at: at },
        observedAt: at,
        now: at,
      });
      return cancelResult(true);
    });

    // Act
    await starter.handleRecord(sqsRecord(cancelBody(), { messageId: 'msg-cancel' }), remaining);

    // Assess
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REQUESTED });
    expect(published()).toEqual([expect.objectContaining({ detail: expect.objectContaining({ reason: CANCEL_REASON.REQUESTED }) })]);
  });
});
