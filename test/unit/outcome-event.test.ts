import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { DETAIL_TYPE, ERROR_CODE, EVENT_SOURCE, JOB_STATUS, STATUS_RANK, type TerminalStatus } from '../../lambdas/contract/constants';
import type { JobRecord } from '../../lambdas/contract/job-record';
import { OutcomePublisher } from '../../lambdas/aws/outcome-publisher';
import { buildOutcomeEvent, outcomeDetailSchema, outcomeEventId, type OutcomeEvent } from '../../lambdas/contract/outcome-event';

const BUS = 'orchestrator-bus';
const eventBridge = mockClient(EventBridgeClient);
const client = new EventBridgeClient({ region: 'us-east-1' });

type SettledRecord = JobRecord & { status: TerminalStatus };

function settledRecord(status: TerminalStatus, overrides: Partial<JobRecord> = {}): SettledRecord {
  const base: JobRecord = {
    job_id: 'job-42',
    chatbot_id: 'bot-7',
    status,
    status_rank: STATUS_RANK[status],
    version: 6,
    accepted_at: '2025-03-01T12:00:00.000Z',
    updated_at: '2025-03-01T12:05:00.000Z',
    deadline_at: '2025-03-02T12:00:00.000Z',
    expires_at: 1_800_000_000,
    metadata: { tenant: 'acme', trace: 'abc' },
    source_message_id: 'msg-1',
    delivery: 'sqs',
    execution_id: 'exec-9',
    upstream_started_at: '2025-03-01T12:00:03.000Z',
    finished_at: '2025-03-01T12:04:30.500Z',
    polls: 17,
    final_output: { answer: 'forty-two' },
    error_code: ERROR_CODE.EXECUTION_FAILED,
    error_message: 'node crashed',
    cancel_reason: 'requested',
  };
  return { ...base, ...overrides, status } as SettledRecord;
}

const TERMINALS: TerminalStatus[] = [JOB_STATUS.COMPLETED, JOB_STATUS.FAILED, JOB_STATUS.CANCELLED];

describe('outcomeEventId', () => {
  it.each(TERMINALS)('is "<job_id>:<status in lower case>" for %s', (status) => {
    // Act
    const id = outcomeEventId('job-42', status);

    // Assess
    expect(id).toBe(`job-42:${status.toLowerCase()}`);
  });

  it('differs between the outcomes of one job', () => {
    // Act
    const ids = new Set(TERMINALS.map((status) => outcomeEventId('job-42', status)));

    // Assess
    expect(ids.size).toBe(3);
  });
});

describe('buildOutcomeEvent', () => {
  describe.each(TERMINALS)('for a %s record', (status) => {
    it('produces a detail that validates against outcomeDetailSchema', () => {
      // Prepare
      const record = settledRecord(status);

      // Act
      const event = buildOutcomeEvent(record);
      const parsed = outcomeDetailSchema.safeParse(event.detail);

      // Assess
      expect(parsed.success).toBe(true);
    });

    it('takes source and detail-type from the constants', () => {
      // Act
      const event = buildOutcomeEvent(settledRecord(status));

      // Assess
      expect(event.source).toBe(EVENT_SOURCE);
      expect(event.source).toBe('waterflai.orchestrator');
      expect(event.detailType).toBe(DETAIL_TYPE[status]);
    });

    it('has a stable event_id, identical across rebuilds of the same record', () => {
      // Prepare
      const record = settledRecord(status);

      // Act
      const first = buildOutcomeEvent(record);
      const again = buildOutcomeEvent(structuredClone(record));
      const afterBookkeeping = buildOutcomeEvent({ ...record, version: 99, event_published_at: '2025-03-01T13:00:00.000Z' });

      // Assess
      expect(first.detail.event_id).toBe(outcomeEventId('job-42', status));
      expect(again).toEqual(first);
      expect(afterBookkeeping).toEqual(first);
    });

    it("passes the job's identity, metadata, timing and poll count through", () => {
      // Act
      const { detail } = buildOutcomeEvent(settledRecord(status));

      // Assess
      expect(detail).toMatchObject({
        job_id: 'job-42',
        chatbot_id: 'bot-7',
        execution_id: 'exec-9',
        status,
        metadata: { tenant: 'acme', trace: 'abc' },
        accepted_at: '2025-03-01T12:00:00.000Z',
        started_at: '2025-03-01T12:00:03.000Z',
        finished_at: '2025-03-01T12:04:30.500Z',
        duration_ms: 270_500,
        polls: 17,
      });
    });
  });

  it('carries final_output only on COMPLETED', () => {
    // Act
    const details = TERMINALS.map((status) => buildOutcomeEvent(settledRecord(status)).detail);

    // Assess
    expect(details[0]).toHaveProperty('final_output', { answer: 'forty-two' });
    expect(details[1]).not.toHaveProperty('final_output');
    expect(details[2]).not.toHaveProperty('final_output');
  });

  it('carries error only on FAILED', () => {
    // Act
    const details = TERMINALS.map((status) => buildOutcomeEvent(settledRecord(status)).detail);

    // Assess
    expect(details[0]).not.toHaveProperty('error');
    expect(details[1]).toHaveProperty('error', { code: ERROR_CODE.EXECUTION_FAILED, message: 'node crashed' });
    expect(details[2]).not.toHaveProperty('error');
  });

  it('carries reason only on CANCELLED', () => {
    // Act
    const details = TERMINALS.map((status) => buildOutcomeEvent(settledRecord(status)).detail);

    // Assess
    expect(details[0]).not.toHaveProperty('reason');
    expect(details[1]).not.toHaveProperty('reason');
    expect(details[2]).toHaveProperty('reason', 'requested');
  });

  it('gives a COMPLETED record without an output a null final_output', () => {
    // Act
    const { detail } = buildOutcomeEvent(settledRecord(JOB_STATUS.COMPLETED, { final_output: undefined }));

    // Assess
    expect(detail.final_output).toBeNull();
    expect(outcomeDetailSchema.safeParse(detail).success).toBe(true);
  });

  it('gives a FAILED record without error fields a generic code and message', () => {
    // Act
    const { detail } = buildOutcomeEvent(settledRecord(JOB_STATUS.FAILED, { error_code: undefined, error_message: undefined }));

    // Assess
    expect(detail.error).toEqual({ code: 'UNKNOWN_ERROR', message: 'no error message was recorded' });
  });

  it('defaults a CANCELLED record without a reason to "remote"', () => {
    // Act
    const { detail } = buildOutcomeEvent(settledRecord(JOB_STATUS.CANCELLED, { cancel_reason: undefined }));

    // Assess
    expect(detail.reason).toBe('remote');
  });

  it('uses null for the chatbot and execution ids of a job rejected at intake', () => {
    // Prepare
    const record = settledRecord(JOB_STATUS.FAILED, {
      chatbot_id: undefined,
      execution_id: undefined,
      upstream_started_at: undefined,
      polls: undefined,
      rejected_at_intake: true,
      error_code: ERROR_CODE.INVALID_MESSAGE,
      error_message: 'chatbot_id: required',
    });

    // Act
    const { detail } = buildOutcomeEvent(record);

    // Assess
    expect(detail).toMatchObject({ chatbot_id: null, execution_id: null, started_at: null, polls: 0 });
    expect(outcomeDetailSchema.safeParse(detail).success).toBe(true);
  });

  it('falls back to updated_at when finished_at is missing', () => {
    // Act
    const { detail } = buildOutcomeEvent(settledRecord(JOB_STATUS.COMPLETED, { finished_at: undefined }));

    // Assess
    expect(detail.finished_at).toBe('2025-03-01T12:05:00.000Z');
    expect(detail.duration_ms).toBe(300_000);
  });

  it.each([
    { name: 'finished before accepted (clock skew)', finished_at: '2025-03-01T11:59:59.000Z' },
    { name: 'an unparsable finished_at', finished_at: 'not-a-date' },
  ])('reports a duration of 0 for $name, never negative or NaN', ({ finished_at }) => {
    // Act
    const { detail } = buildOutcomeEvent(settledRecord(JOB_STATUS.COMPLETED, { finished_at }));

    // Assess
    expect(detail.duration_ms).toBe(0);
    expect(outcomeDetailSchema.safeParse(detail).success).toBe(true);
  });

  it('produces details the schema would reject if the status were not terminal', () => {
    // Prepare: the schema is the contract subscribers rely on; prove it is not vacuous
    const { detail } = buildOutcomeEvent(settledRecord(JOB_STATUS.COMPLETED));

    // Act
    const parsed = outcomeDetailSchema.safeParse({ ...detail, status: JOB_STATUS.RUNNING });

    // Assess
    expect(parsed.success).toBe(false);
  });
});

describe('OutcomePublisher', () => {
  const event: OutcomeEvent = buildOutcomeEvent(settledRecord(JOB_STATUS.COMPLETED));
  const accepted = { FailedEntryCount: 0, Entries: [{ EventId: 'eb-1' }] };
  const throttled = { FailedEntryCount: 1, Entries: [{ ErrorCode: 'ThrottlingException', ErrorMessage: 'Rate exceeded' }] };

  beforeEach(() => {
    eventBridge.reset();
  });

  afterAll(() => {
    eventBridge.restore();
  });

  it('sends one entry to the bus with source, detail-type and the detail as a JSON string', async () => {
    // Prepare
    eventBridge.on(PutEventsCommand).resolves(accepted);
    const sleep = vi.fn(async (_ms: number) => undefined);
    const publisher = new OutcomePublisher(client, BUS, sleep, () => 0.5);

    // Act
    await publisher.publish(event);

    // Assess
    expect(eventBridge).toHaveReceivedCommandTimes(PutEventsCommand, 1);
    expect(eventBridge).toHaveReceivedCommandWith(PutEventsCommand, {
      Entries: [
        {
          EventBusName: BUS,
          Source: EVENT_SOURCE,
          DetailType: DETAIL_TYPE.COMPLETED,
          Detail: JSON.stringify(event.detail),
          Resources: [],
        },
      ],
    });
    const sent = eventBridge.commandCalls(PutEventsCommand)[0]!.args[0].input;
    expect(sent.Entries).toHaveLength(1);
    const detail: unknown = JSON.parse(sent.Entries![0]!.Detail!);
    expect(outcomeDetailSchema.parse(detail)).toEqual(event.detail);
    expect(sleep).not.toHaveBeenCalled();
  });

  it('retries a partial failure (FailedEntryCount 1) with backoff and succeeds on the next attempt', async () => {
    // Prepare
    eventBridge.on(PutEventsCommand).resolvesOnce(throttled).resolves(accepted);
    const sleep = vi.fn(async (_ms: number) => undefined);
    const publisher = new OutcomePublisher(client, BUS, sleep, () => 0.5);

    // Act
    await publisher.publish(event);

    // Assess
    expect(eventBridge).toHaveReceivedCommandTimes(PutEventsCommand, 2);
    expect(sleep).toHaveBeenCalledTimes(1);
    expect(sleep).toHaveBeenCalledWith(100); // 0.5 * 100 ms * 2^1
    const [first, second] = eventBridge.commandCalls(PutEventsCommand).map((call) => call.args[0].input);
    expect(second).toEqual(first);
  });

  it('treats an answer without an event id as a failure and retries it', async () => {
    // Prepare
    eventBridge
      .on(PutEventsCommand)
      .resolvesOnce({ FailedEntryCount: 0, Entries: [{}] })
      .resolves(accepted);
    const publisher = new OutcomePublisher(
      client,
      BUS,
      async () => undefined,
      () => 0,
    );

    // Act
    await publisher.publish(event);

    // Assess
    expect(eventBridge).toHaveReceivedCommandTimes(PutEventsCommand, 2);
  });

  it('throws after 5 attempts when the entry keeps failing, naming the event and the last error', async () => {
    // Prepare
    eventBridge.on(PutEventsCommand).resolves(throttled);
    const sleep = vi.fn(async (_ms: number) => undefined);
    const publisher = new OutcomePublisher(client, BUS, sleep, () => 1);

    // Act
    const result = publisher.publish(event);

    // Assess
    await expect(result).rejects.toThrow(
      `PutEvents failed for outcome ${event.detail.event_id} after 5 attempts: ThrottlingException: Rate exceeded`,
    );
    expect(eventBridge).toHaveReceivedCommandTimes(PutEventsCommand, 5);
    // Exponential backoff between attempts, none after the last one.
    expect(sleep.mock.calls.map(([ms]) => ms)).toEqual([200, 400, 800, 1600]);
  });

  it('scales the backoff by the random jitter', async () => {
    // Prepare
    eventBridge.on(PutEventsCommand).resolvesOnce(throttled).resolvesOnce(throttled).resolves(accepted);
    const sleep = vi.fn(async (_ms: number) => undefined);
    const publisher = new OutcomePublisher(client, BUS, sleep, () => 0.25);

    // Act
    await publisher.publish(event);

    // Assess
    expect(sleep.mock.calls.map(([ms]) => ms)).toEqual([50, 100]);
  });

  it('propagates an error thrown by the SDK call itself', async () => {
    // Prepare
    eventBridge.on(PutEventsCommand).rejects(new Error('AccessDeniedException'));
    const publisher = new OutcomePublisher(
      client,
      BUS,
      async () => undefined,
      () => 0,
    );

    // Act / Assess
    await expect(publisher.publish(event)).rejects.toThrow('AccessDeniedException');
  });
});
