import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { ExecutionAlreadyExists, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { DETAIL_TYPE, DLQ_ATTRIBUTE, ERROR_CODE, JOB_STATUS } from '../../lambdas/contract/constants';
import { WaterflaiHttpError, WaterflaiNetworkError } from '../../lambdas/contract/errors';
import { JobStore } from '../../lambdas/aws/job-store';
import type { NewJob } from '../../lambdas/contract/job-record';
import { OutcomePublisher } from '../../lambdas/aws/outcome-publisher';
import type { PollState } from '../../lambdas/domain/workflow';
import { JobBusyError, JobStarter, sqsSafe } from '../../lambdas/start-execution/start-job';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';
import { sqsRecord } from '../support/sqs-record';
import {
  answerLikeHealthyAws,
  fakeWaterflaiStarter,
  STARTER_SETTINGS,
  STATE_MACHINE_ARN,
  type FakeWaterflaiStarter,
} from '../support/starter';

const settings = STARTER_SETTINGS;

const sfnMock = mockClient(SFNClient);
const sqsMock = mockClient(SQSClient);
const eventsMock = mockClient(EventBridgeClient);

let dynamo: LocalDynamo;
let store: JobStore;
let clock: number;
let waterflai: FakeWaterflaiStarter;
let logs: Array<{ level: string; args: unknown[] }>;
let starter: JobStarter;

const job = (overrides: Record<string, unknown> = {}): string =>
  JSON.stringify({
    job_id: 'job-1',
    chatbot_id: 'bot-1',
    input_data: { query: 'private question' },
    metadata: { team: 'reports' },
    ...overrides,
  });

const remaining = (): number => 60_000;

function startInputs(): string[] {
  return sfnMock.commandCalls(StartExecutionCommand).map((call) => call.args[0].input.input ?? '');
}

function publishedDetails(): Array<{ detailType: string; detail: Record<string, unknown> }> {
  return eventsMock.commandCalls(PutEventsCommand).flatMap((call) =>
    (call.args[0].input.Entries ?? []).map((entry) => ({
      detailType: entry.DetailType ?? '',
      detail: JSON.parse(entry.Detail ?? '{}') as Record<string, unknown>,
    })),
  );
}

function dlqAttributes(): Array<Record<string, string | undefined>> {
  return sqsMock
    .commandCalls(SendMessageCommand)
    .map((call) =>
      Object.fromEntries(Object.entries(call.args[0].input.MessageAttributes ?? {}).map(([key, value]) => [key, value.StringValue])),
    );
}

/** A claim another start attempt holds (or held) on a job (job-1 unless overridden). */
async function claimedElsewhere(overrides: Partial<NewJob> & Pick<NewJob, 'source_message_id' | 'claim_expires_at'>): Promise<void> {
  const jobId = overrides.job_id ?? 'job-1';
  await store.claim({
    job_id: jobId,
    chatbot_id: 'bot-1',
    metadata: {},
    delivery: 'sqs',
    accepted_at: new Date(clock).toISOString(),
    deadline_at: new Date(clock + 3_600_000).toISOString(),
    expires_at: 0,
    state_machine_execution_name: jobId,
    ...overrides,
  });
}

beforeAll(async () => {
  dynamo = await startLocalDynamo();
});

afterAll(async () => {
  await dynamo.close();
});

beforeEach(async () => {
  answerLikeHealthyAws(sfnMock, sqsMock, eventsMock);

  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
  clock = Date.parse('2026-11-29T12:00:00.000Z');
  waterflai = fakeWaterflaiStarter();
  logs = [];
  const capture =
    (level: string) =>
    (...args: unknown[]) =>
      void logs.push({ level, args });
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
    logger: { debug: capture('debug'), info: capture('info'), warn: capture('warn'), error: capture('error') },
    settings,
    now: () => clock,
    random: () => 0.5,
    sleep: async (ms) => {
      clock += ms;
    },
  });
});

describe('JobStarter: the happy path', () => {
  it('claims the job, starts one Waterflai execution, saves its id and starts the state machine', async () => {
    // Act
    await starter.handleRecord(sqsRecord(job({ timeout_seconds: 600 })), remaining);

    // Assess
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    expect(waterflai.startExecution.mock.calls[0]?.slice(0, 2)).toEqual(['bot-1', { query: 'private question' }]);
    const record = await store.get('job-1');
    expect(record).toMatchObject({
      status: JOB_STATUS.PENDING,
      execution_id: 'exec_1',
      state_machine_execution_name: 'job-1',
      state_machine_execution_arn: `arn:aws:states:us-east-1:123456789012:execution:poll-loop:job-1`,
      accepted_at: '2026-11-29T12:00:00.000Z',
      deadline_at: '2026-11-29T12:10:00.000Z',
      metadata: { team: 'reports' },
    });
    expect(sfnMock).toHaveReceivedCommandWith(StartExecutionCommand, { stateMachineArn: STATE_MACHINE_ARN, name: 'job-1' });
    const input = JSON.parse(startInputs()[0] ?? '{}') as PollState;
    expect(input).toEqual({
      job_id: 'job-1',
      chatbot_id: 'bot-1',
      execution_id: 'exec_1',
      accepted_at: '2026-11-29T12:00:00.000Z',
      deadline_at: '2026-11-29T12:10:00.000Z',
      status: JOB_STATUS.PENDING,
      progress: null,
      current_node: null,
      poll_count: 0,
      next_poll_seconds: 10,
    });
  });

  it('caps a job timeout at the deployment maximum job duration', async () => {
    await starter.handleRecord(sqsRecord(job({ timeout_seconds: 999_999 })), remaining);

    expect((await store.get('job-1'))?.deadline_at).toBe('2026-11-29T13:00:00.000Z');
  });

  it('derives a valid, bounded execution name from a job id with characters Step Functions refuses', async () => {
    await starter.handleRecord(sqsRecord(job({ job_id: `order:42.${'x'.repeat(100)}` })), remaining);

    const name = sfnMock.commandCalls(StartExecutionCommand)[0]?.args[0].input.name ?? '';
    expect(name.length).toBeLessThanOrEqual(80);
    expect(name).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('uses the EventBridge event id as the job id of a routed event', async () => {
    const event = { id: 'evt-77', 'detail-type': 'Job Requested', source: 'com.example', detail: { chatbot_id: 'bot-1', input_data: {} } };

    await starter.handleRecord(sqsRecord(JSON.stringify(event)), remaining);

    expect(await store.get('evt-77')).toMatchObject({ delivery: 'eventbridge', execution_id: 'exec_1' });
  });

  it('keeps metadata DynamoDB could not store as a map (huge numbers, empty keys) exactly, and passes it to the event', async () => {
    const metadata = { big: 1e200, tiny: 1e-200, '': 'empty key' };

    await starter.handleRecord(sqsRecord(job({ metadata, chatbot_id: 'a/b' })), remaining);

    expect((await store.get('job-1'))?.metadata).toEqual(metadata);
    expect(publishedDetails()[0]?.detail.metadata).toEqual(metadata);
  });

  it('never logs the message body or input_data', async () => {
    await starter.handleRecord(sqsRecord(job()), remaining);
    await starter.handleRecord(sqsRecord('{"not valid json, private question'), remaining);

    expect(logs.length).toBeGreaterThan(0);
    expect(JSON.stringify(logs)).not.toContain('private question');
  });
});

describe('JobStarter: duplicate deliveries', () => {
  it('a duplicate delivery of a running job is a no-op', async () => {
    // Prepare
    await starter.handleRecord(sqsRecord(job(), { messageId: 'msg-1' }), remaining);

    // Act
    await starter.handleRecord(sqsRecord(job(), { messageId: 'msg-2' }), remaining);

    // Assess
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
  });

  it('a duplicate delivery of a finished job is a no-op and announces nothing', async () => {
    await starter.handleRecord(sqsRecord(job()), remaining);
    await store.applyStatus('job-1', {
      status: JOB_STATUS.COMPLETED,
      fields: { finished_at: new Date(clock).toISOString() },
      now: new Date(clock).toISOString(),
    });

    await starter.handleRecord(sqsRecord(job(), { messageId: 'msg-2' }), remaining);

    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('two deliveries of one job processed at the same time start one Waterflai execution', async () => {
    // Prepare: the POST takes a while, so both deliveries overlap
    waterflai.startExecution.mockImplementation(async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { execution_id: 'exec_1' };
    });

    // Act
    const results = await Promise.allSettled([
      starter.handleRecord(sqsRecord(job(), { messageId: 'msg-1' }), remaining),
      starter.handleRecord(sqsRecord(job(), { messageId: 'msg-2' }), remaining),
    ]);

    // Assess: one started it, the other is told to come back later
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    const rejected = results.filter((result) => result.status === 'rejected');
    expect(rejected).toHaveLength(1);
    expect((rejected[0] as PromiseRejectedResult).reason).toBeInstanceOf(JobBusyError);
  });

  it.each([
    [1, 3],
    [4, 33],
  ])(
    'a delivery while another holds the claim fails only that item without calling Waterflai (receive %i: back in %i s; the last receive waits out the claim)',
    async (receiveCount, visibility) => {
      await claimedElsewhere({ source_message_id: 'msg-0', claim_expires_at: clock + 30_000 });

      await expect(starter.handleRecord(sqsRecord(job(), { receiveCount }), remaining)).rejects.toBeInstanceOf(JobBusyError);

      expect(waterflai.startExecution).not.toHaveBeenCalled();
      // Backoff (5 s x random 0.5 on the first receive); before the last receive (of 5), the
      // 30 s the claim has left plus jitter (random 0.5 x 5 s), so the busy retries cannot use up the receives
      expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { VisibilityTimeout: visibility });
    },
  );

  it('takes over an expired claim left by a crashed attempt (the crash window) and starts the job', async () => {
    // Prepare: an attempt claimed the job and died before saving an execution id
    await claimedElsewhere({ source_message_id: 'msg-1', claim_expires_at: clock + 60_000 });
    clock += 61_000;

    // Act
    await starter.handleRecord(sqsRecord(job(), { receiveCount: 2 }), remaining);

    // Assess
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    expect((await store.get('job-1'))?.execution_id).toBe('exec_1');
    expect(logs.some((log) => log.level === 'warn' && String(log.args[0]).includes('expired claim'))).toBe(true);
  });
});

describe('JobStarter: transient failures fail only the item and are retried', () => {
  it.each([
    ['Waterflai 503', new WaterflaiHttpError('start', 503)],
    ['Waterflai 500', new WaterflaiHttpError('start', 500)],
    ['a Waterflai timeout', new WaterflaiNetworkError('start', 'TIMEOUT', 'no answer in 10000 ms')],
    ['a connection reset', new WaterflaiNetworkError('start', 'NETWORK_ERROR', 'socket hang up')],
  ])('%s: throws, releases the claim and delays the message with jittered backoff', async (_name, error) => {
    // Prepare
    waterflai.startExecution.mockRejectedValueOnce(error);

    // Act
    await expect(starter.handleRecord(sqsRecord(job(), { receiveCount: 3 }), remaining)).rejects.toBe(error);

    // Assess: backoff 5 s * 2^(3-1) = 20 s, full jitter at random 0.5 → 10 s
    expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, {
      QueueUrl: settings.intakeQueueUrl,
      ReceiptHandle: 'receipt-msg-1-3',
      VisibilityTimeout: 10,
    });
    const record = await store.get('job-1');
    expect(record).toMatchObject({ status: JOB_STATUS.SUBMITTING, claim_expires_at: 0 });
    expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('then the redelivery starts the job once', async () => {
    waterflai.startExecution.mockRejectedValueOnce(new WaterflaiHttpError('start', 502));
    await expect(starter.handleRecord(sqsRecord(job()), remaining)).rejects.toThrow();

    await starter.handleRecord(sqsRecord(job(), { receiveCount: 2 }), remaining);

    expect(waterflai.startExecution).toHaveBeenCalledTimes(2);
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: 'exec_1' });
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
  });

  it('Waterflai 429: the message comes back after the Retry-After delay', async () => {
    waterflai.startExecution.mockRejectedValueOnce(new WaterflaiHttpError('start', 429, 42));

    await expect(starter.handleRecord(sqsRecord(job()), remaining)).rejects.toThrow(/429/);

    expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { VisibilityTimeout: 42 });
  });

  it('a failed ChangeMessageVisibility does not hide the original failure', async () => {
    sqsMock.on(ChangeMessageVisibilityCommand).rejects(new Error('throttled'));
    waterflai.startExecution.mockRejectedValueOnce(new WaterflaiHttpError('start', 503));

    await expect(starter.handleRecord(sqsRecord(job()), remaining)).rejects.toThrow(/503/);
  });

  it('StartExecution throttled after the execution id was saved: the redelivery does not POST again and sends byte-identical input', async () => {
    // Prepare
    sfnMock.on(StartExecutionCommand).rejectsOnce(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
    await expect(starter.handleRecord(sqsRecord(job()), remaining)).rejects.toThrow(/Rate exceeded/);
    sfnMock
      .on(StartExecutionCommand)
      .resolves({ executionArn: 'arn:aws:states:us-east-1:123456789012:execution:poll-loop:job-1', startDate: new Date() });
    clock += 5_000;

    // Act
    await starter.handleRecord(sqsRecord(job(), { receiveCount: 2 }), remaining);

    // Assess
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    const inputs = startInputs();
    expect(inputs).toHaveLength(2);
    expect(inputs[1]).toBe(inputs[0]);
    expect((await store.get('job-1'))?.state_machine_execution_arn).toMatch(/:execution:poll-loop:job-1$/);
  });

  it('ExecutionAlreadyExists counts as started', async () => {
    sfnMock.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'exists', $metadata: {} }));

    await starter.handleRecord(sqsRecord(job()), remaining);

    expect((await store.get('job-1'))?.state_machine_execution_arn).toBe('arn:aws:states:us-east-1:123456789012:execution:poll-loop:job-1');
  });

  it('retries exhausted on the last receive: the job fails with START_RETRIES_EXHAUSTED, announced and dead-lettered', async () => {
    waterflai.startExecution.mockRejectedValueOnce(new WaterflaiHttpError('start', 503));

    await starter.handleRecord(sqsRecord(job(), { receiveCount: settings.maxReceiveCount }), remaining);

    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.START_RETRIES_EXHAUSTED });
    expect(publishedDetails()).toEqual([
      expect.objectContaining({
        detailType: DETAIL_TYPE.FAILED,
        detail: expect.objectContaining({ error: expect.objectContaining({ code: ERROR_CODE.START_RETRIES_EXHAUSTED }) }),
      }),
    ]);
    expect(dlqAttributes()).toEqual([
      expect.objectContaining({ [DLQ_ATTRIBUTE.ERROR_CODE]: ERROR_CODE.START_RETRIES_EXHAUSTED, [DLQ_ATTRIBUTE.JOB_ID]: 'job-1' }),
    ]);
  });
});

describe('JobStarter: permanent failures are not retried', () => {
  it.each([400, 404, 409, 422])(
    'Waterflai %i on start: FAILED with WATERFLAI_REJECTED, Failed event, DLQ with the reason',
    async (status) => {
      // Prepare
      waterflai.startExecution.mockRejectedValueOnce(new WaterflaiHttpError('start', status, undefined, 'chatbot is not published'));

      // Act
      await starter.handleRecord(sqsRecord(job()), remaining);

      // Assess
      const record = await store.get('job-1');
      expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.WATERFLAI_REJECTED, rejected_at_intake: true });
      expect(record?.error_message).toContain(`HTTP ${status}`);
      expect(record?.dead_lettered_at).toBeDefined();
      expect(record?.event_published_at).toBeDefined();
      const [event] = publishedDetails();
      expect(event?.detailType).toBe(DETAIL_TYPE.FAILED);
      expect(event?.detail).toMatchObject({
        job_id: 'job-1',
        chatbot_id: 'bot-1',
        execution_id: null,
        status: 'FAILED',
        metadata: { team: 'reports' },
      });
      expect(dlqAttributes()[0]).toMatchObject({
        [DLQ_ATTRIBUTE.ERROR_CODE]: ERROR_CODE.WATERFLAI_REJECTED,
        [DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]: 'msg-1',
      });
      expect(sqsMock.commandCalls(SendMessageCommand)[0]?.args[0].input.MessageBody).toBe(job());
      expect(sfnMock).not.toHaveReceivedCommand(StartExecutionCommand);
      expect(sqsMock).not.toHaveReceivedCommand(ChangeMessageVisibilityCommand);
    },
  );

  it.each([401, 403])(
    'Waterflai %i on start (the key refused even after a fresh read) is retried through SQS, not a rejection of the job',
    async (status) => {
      // Prepare
      waterflai.startExecution.mockRejectedValueOnce(new WaterflaiHttpError('start', status, undefined, 'invalid key'));

      // Act
      const attempt = starter.handleRecord(sqsRecord(job(), { receiveCount: 1 }), remaining);

      // Assess
      await expect(attempt).rejects.toBeInstanceOf(WaterflaiHttpError);
      // The claim is given back: the next receive may POST at once (with the key read again).
      expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.SUBMITTING, claim_expires_at: 0 });
      expect(sqsMock).toHaveReceivedCommand(ChangeMessageVisibilityCommand);
      expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
      expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
    },
  );

  it('an invalid message that is not a JSON object goes to the DLQ with its reason, and no event (no job id is known)', async () => {
    await starter.handleRecord(sqsRecord('definitely not json'), remaining);

    expect(dlqAttributes()).toEqual([
      expect.objectContaining({
        [DLQ_ATTRIBUTE.ERROR_CODE]: ERROR_CODE.INVALID_MESSAGE,
        [DLQ_ATTRIBUTE.ERROR_MESSAGE]: 'message body is not valid JSON',
      }),
    ]);
    expect(dlqAttributes()[0]).not.toHaveProperty(DLQ_ATTRIBUTE.JOB_ID);
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
    expect(waterflai.startExecution).not.toHaveBeenCalled();
  });

  it('an invalid job request with a job id is recorded FAILED, announced and dead-lettered, and never reaches Waterflai', async () => {
    await starter.handleRecord(sqsRecord(job({ chatbot_id: '../admin' })), remaining);

    expect(waterflai.startExecution).not.toHaveBeenCalled();
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.INVALID_MESSAGE });
    expect(publishedDetails()).toEqual([
      expect.objectContaining({
        detailType: DETAIL_TYPE.FAILED,
        detail: expect.objectContaining({
          job_id: 'job-1',
          chatbot_id: null,
          error: expect.objectContaining({ code: ERROR_CODE.INVALID_MESSAGE }),
        }),
      }),
    ]);
    expect(dlqAttributes()[0]).toMatchObject({ [DLQ_ATTRIBUTE.JOB_ID]: 'job-1' });
    expect(dlqAttributes()[0]?.[DLQ_ATTRIBUTE.ERROR_MESSAGE]).toMatch(/chatbot_id/);
  });

  it('an invalid message reusing the id of a running job is dead-lettered without touching that job or announcing anything', async () => {
    await starter.handleRecord(sqsRecord(job(), { messageId: 'msg-1' }), remaining);

    await starter.handleRecord(sqsRecord(job({ input_data: 'oops' }), { messageId: 'msg-2' }), remaining);

    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: 'exec_1' });
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
    expect(dlqAttributes()).toEqual([
      expect.objectContaining({ [DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]: 'msg-2', [DLQ_ATTRIBUTE.JOB_ID]: 'job-1' }),
    ]);
  });

  it('a rejection interrupted by a PutEvents failure is completed by the redelivery: one event id, one DLQ copy', async () => {
    // Prepare: EventBridge keeps failing the entry during the first attempt
    eventsMock
      .on(PutEventsCommand)
      .resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] });
    await expect(starter.handleRecord(sqsRecord(job({ input_data: 3 })), remaining)).rejects.toThrow(/PutEvents failed/);
    expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
    eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-2' }] });

    // Act
    await starter.handleRecord(sqsRecord(job({ input_data: 3 }), { receiveCount: 2 }), remaining);
    await starter.handleRecord(sqsRecord(job({ input_data: 3 }), { receiveCount: 3 }), remaining);

    // Assess
    const ids = new Set(publishedDetails().map((event) => event.detail.event_id));
    expect([...ids]).toEqual(['job-1:failed']);
    expect(sqsMock).toHaveReceivedCommandTimes(SendMessageCommand, 1);
  });
});

describe('sqsSafe', () => {
  it.each([
    ['NUL and other control characters', 'a\u0000b\u0007c\u001fd', 'a\uFFFDb\uFFFDc\uFFFDd'],
    ['non-characters', 'x\uFFFEy\uFFFF', 'x\uFFFDy\uFFFD'],
    ['a lone surrogate', 'a\uD800b', 'a\uFFFDb'],
  ])('replaces %s that SQS refuses in attribute values', (_name, given, expected) => {
    expect(sqsSafe(given)).toBe(expected);
  });

  it('keeps tabs, newlines, non-ASCII text and astral characters', () => {
    const text = 'tab\tnl\ncr\r é ü 中文 😀';
    expect(sqsSafe(text)).toBe(text);
  });
});

describe('JobStarter: a lost answer to the execution id save', () => {
  it('recognises its own saved execution id and starts the state machine instead of cancelling its own execution', async () => {
    // Prepare: the save is applied, but the caller sees a failed condition (the SDK retried a write whose answer was lost)
    const save = store.saveExecutionId.bind(store);
    const spy = vi.spyOn(store, 'saveExecutionId').mockImplementationOnce(async (jobId, executionId, now) => {
      const applied = await save(jobId, executionId, now);
      return { applied: false, record: applied.record };
    });

    // Act
    await starter.handleRecord(sqsRecord(job()), remaining);
    spy.mockRestore();

    // Assess
    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: 'exec_1' });
  });
});

describe('JobStarter: a lost answer to its own claim', () => {
  it('recognises its own claim (the retried write finds the record) and starts the job at once', async () => {
    // Prepare: the claim is written, but the caller sees "already there"
    const claim = store.claim.bind(store);
    const spy = vi.spyOn(store, 'claim').mockImplementationOnce(async (newJob) => {
      const written = await claim(newJob);
      return { kind: 'exists', record: written.record };
    });

    // Act
    await starter.handleRecord(sqsRecord(job()), remaining);
    spy.mockRestore();

    // Assess
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: 'exec_1' });
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
  });

  it('recognises its own takeover of an expired claim when the answer to it was lost', async () => {
    // Prepare: an expired claim, and a takeover that is applied but answered "condition failed"
    await claimedElsewhere({ source_message_id: 'msg-0', claim_expires_at: clock - 1 });
    const takeOver = store.takeOverClaim.bind(store);
    const spy = vi.spyOn(store, 'takeOverClaim').mockImplementationOnce(async (...args) => {
      await takeOver(...args);
      return undefined;
    });

    // Act
    await starter.handleRecord(sqsRecord(job(), { receiveCount: 2 }), remaining);
    spy.mockRestore();

    // Assess
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    expect(await store.get('job-1')).toMatchObject({ execution_id: 'exec_1' });
  });

  it("another attempt's live claim is still busy, whatever its token", async () => {
    // Prepare
    await claimedElsewhere({ job_id: 'job-2', source_message_id: 'msg-0', claim_expires_at: clock + 30_000, claim_token: 'someone-else' });

    // Act / Assess
    await expect(starter.handleRecord(sqsRecord(job({ job_id: 'job-2' })), remaining)).rejects.toBeInstanceOf(JobBusyError);
  });
});

describe('JobStarter: transient faults while rejecting an invalid message', () => {
  it('defers the message with backoff (instead of waiting out the visibility timeout), then dead-letters it on the next receive', async () => {
    // Prepare: EventBridge keeps failing the Failed event during the first receive
    eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'ThrottlingException' }] });

    // Act
    await expect(starter.handleRecord(sqsRecord(job({ chatbot_id: 'a/b' })), remaining)).rejects.toThrow(/PutEvents failed/);
    eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e' }] });
    await starter.handleRecord(sqsRecord(job({ chatbot_id: 'a/b' }), { receiveCount: 2 }), remaining);

    // Assess
    expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { ReceiptHandle: 'receipt-msg-1-1' });
    expect(sqsMock).toHaveReceivedCommandTimes(SendMessageCommand, 1);
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.INVALID_MESSAGE });
  });
});

describe('JobStarter: an accepted execution whose id cannot be saved', () => {
  const throttled = (): Error =>
    Object.assign(new Error('Rate of requests exceeds the allowed throughput.'), {
      name: 'ThrottlingException',
      $fault: 'client',
      $retryable: { throttling: true },
    });

  it('retries the save in-process and starts the job with its one execution', async () => {
    // Prepare: DynamoDB throttles the first two saves
    const spy = vi.spyOn(store, 'saveExecutionId').mockRejectedValueOnce(throttled()).mockRejectedValueOnce(throttled());

    // Act
    await starter.handleRecord(sqsRecord(job()), remaining);
    spy.mockRestore();

    // Assess
    expect(waterflai.startExecution).toHaveBeenCalledOnce();
    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: 'exec_1' });
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
  });

  it('when the faults outlast the retries, cancels the execution and releases the claim; the redelivery starts the job at once', async () => {
    // Prepare: every save of the first attempt is throttled
    const spy = vi.spyOn(store, 'saveExecutionId').mockRejectedValue(throttled());
    waterflai.startExecution.mockResolvedValueOnce({ execution_id: 'exec_lost' });

    // Act
    await expect(starter.handleRecord(sqsRecord(job()), remaining)).rejects.toThrow(/throughput/);
    const saves = spy.mock.calls.length;
    spy.mockRestore();
    const between = await store.get('job-1');
    await starter.handleRecord(sqsRecord(job(), { receiveCount: 2 }), remaining);

    // Assess: nothing runs untracked; the redelivery did not wait for a lease
    expect(saves).toBe(4);
    expect(waterflai.cancelExecution).toHaveBeenCalledExactlyOnceWith('exec_lost', expect.anything());
    expect(between).toMatchObject({ status: JOB_STATUS.SUBMITTING, claim_expires_at: 0 });
    expect(between?.execution_id).toBeUndefined();
    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: 'exec_1' });
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
  });

  it('does not cancel an execution whose id was saved although every answer was lost', async () => {
    // Prepare: the first save is applied, then its answer and every retry's answer are lost
    const save = store.saveExecutionId.bind(store);
    const spy = vi.spyOn(store, 'saveExecutionId').mockImplementation(async (jobId, executionId, now) => {
      await save(jobId, executionId, now).catch(() => undefined);
      throw throttled();
    });

    // Act
    await starter.handleRecord(sqsRecord(job()), remaining);
    spy.mockRestore();

    // Assess
    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
    expect(await store.get('job-1')).toMatchObject({ execution_id: 'exec_1' });
  });

  it('when another delivery saved its execution meanwhile, cancels ours and runs the job with theirs', async () => {
    // Prepare: while our saves fail, another delivery saves its execution id
    const save = store.saveExecutionId.bind(store);
    const spy = vi.spyOn(store, 'saveExecutionId').mockImplementation(async (jobId, _executionId, now) => {
      await save(jobId, 'exec_other', now).catch(() => undefined);
      throw throttled();
    });

    // Act
    await starter.handleRecord(sqsRecord(job()), remaining);
    spy.mockRestore();

    // Assess
    expect(waterflai.cancelExecution).toHaveBeenCalledExactlyOnceWith('exec_1', expect.anything());
    expect(await store.get('job-1')).toMatchObject({ execution_id: 'exec_other' });
    expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
  });

  it('when even the read fails, leaves the execution alone (it may be saved) and logs its id for operators', async () => {
    // Prepare
    const saves = vi.spyOn(store, 'saveExecutionId').mockRejectedValue(throttled());
    const reads = vi.spyOn(store, 'get').mockRejectedValue(throttled());

    // Act
    await expect(starter.handleRecord(sqsRecord(job()), remaining)).rejects.toThrow(/throughput/);
    saves.mockRestore();
    reads.mockRestore();

    // Assess
    expect(waterflai.cancelExecution).not.toHaveBeenCalled();
    const logged = logs.find((log) => log.level === 'error' && String(log.args[0]).includes('untracked'));
    expect(logged?.args[1]).toMatchObject({ job_id: 'job-1', execution_id: 'exec_1' });
    expect(sqsMock).toHaveReceivedCommand(ChangeMessageVisibilityCommand);
  });

  it('a save that fails for good (not a transient fault) is not retried', async () => {
    // Prepare
    const spy = vi.spyOn(store, 'saveExecutionId').mockRejectedValue(new TypeError('broken'));

    // Act
    await expect(starter.handleRecord(sqsRecord(job()), remaining)).rejects.toThrow(/broken/);
    const saves = spy.mock.calls.length;
    spy.mockRestore();

    // Assess
    expect(saves).toBe(1);
  });
});
