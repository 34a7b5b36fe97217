import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { JobFinisher, describeCaughtError } from '../../lambdas/finish/finish-job';
import { DETAIL_TYPE, ERROR_CODE, EVENT_SOURCE, JOB_STATUS, type TerminalStatus } from '../../lambdas/contract/constants';
import { JobStore } from '../../lambdas/aws/job-store';
import type { StatusFields } from '../../lambdas/contract/job-record';
import type { AppLogger } from '../../lambdas/platform/logger';
import { OutcomePublisher } from '../../lambdas/aws/outcome-publisher';
import { buildOutcomeEvent, outcomeDetailSchema, outcomeEventId } from '../../lambdas/contract/outcome-event';
import { MAX_ERROR_MESSAGE_CHARS } from '../../lambdas/domain/status-mapping';
import type { CaughtError, FinishInput } from '../../lambdas/domain/workflow';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';

const BUS = 'orchestrator-bus';
const ACCEPTED_AT = '2025-03-01T12:00:00.000Z';
const FINISH_AT_MS = Date.parse('2025-03-01T12:10:00.000Z');
const at = (seconds: number): string => new Date(Date.parse(ACCEPTED_AT) + seconds * 1000).toISOString();

const eventBridge = mockClient(EventBridgeClient);
const ACCEPTED = { FailedEntryCount: 0, Entries: [{ EventId: 'eb-1' }] };
const THROTTLED = { FailedEntryCount: 1, Entries: [{ ErrorCode: 'ThrottlingException', ErrorMessage: 'Rate exceeded' }] };

/** A Lambda error as the state machine's Catch puts it at `$.error`. */
const LAMBDA_CAUSE = JSON.stringify({
  errorType: 'TransientPollError',
  errorMessage: 'WaterflaiHttpError: Waterflai get answered HTTP 503',
  trace: ['TransientPollError: WaterflaiHttpError: Waterflai get answered HTTP 503', '    at JobPoller.poll (/var/task/index.mjs:12:34)'],
});

let dynamo: LocalDynamo;
let store: JobStore;

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
});

afterAll(async () => {
  eventBridge.restore();
  await dynamo.close();
});

beforeEach(() => {
  eventBridge.reset();
  eventBridge.on(PutEventsCommand).resolves(ACCEPTED);
});

function fakeLogger(): AppLogger {
  return { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() };
}

function finisher(sleep: (ms: number) => Promise<void> = async () => undefined): JobFinisher {
  const publisher = new OutcomePublisher(new EventBridgeClient({ region: 'us-east-1' }), BUS, sleep, () => 0.5);
  return new JobFinisher({ store, publisher, logger: fakeLogger(), now: () => FINISH_AT_MS });
}

let jobCounter = 0;

/** A job with an execution id (PENDING), optionally moved on to `status`; returns the finish input. */
async function job(status?: TerminalStatus | typeof JOB_STATUS.RUNNING, fields: StatusFields = {}): Promise<FinishInput> {
  jobCounter += 1;
  const jobId = `finish-job-${jobCounter}`;
  await store.claim({
    job_id: jobId,
    chatbot_id: 'bot-1',
    metadata: { tenant: 'acme' },
    source_message_id: `msg-${jobCounter}`,
    delivery: 'sqs',
    accepted_at: ACCEPTED_AT,
    deadline_at: '2025-03-02T12:00:00.000Z',
    expires_at: 1_800_000_000,
    state_machine_execution_name: `sm-${jobCounter}`,
    claim_expires_at: Date.parse(ACCEPTED_AT) + 60_000,
  });
  await store.saveExecutionId(jobId, 'wf-exec', at(1));
  if (status !== undefined) {
    const result = await store.applyStatus(jobId, { status, fields: { polls: 7, ...fields }, now: at(120) });
    expect(result.applied).toBe(true);
  }
  return {
    job_id: jobId,
    chatbot_id: 'bot-1',
    execution_id: 'wf-exec',
    accepted_at: ACCEPTED_AT,
    deadline_at: '2025-03-02T12:00:00.000Z',
    status: status ?? JOB_STATUS.PENDING,
    progress: null,
    current_node: null,
    poll_count: 7,
    next_poll_seconds: 5,
  };
}

/** The detail of the n-th PutEvents call, parsed back from its JSON string. */
function sentDetail(index = 0): unknown {
  const entry = eventBridge.commandCalls(PutEventsCommand)[index]!.args[0].input.Entries![0]!;
  return JSON.parse(entry.Detail!);
}

describe('JobFinisher', () => {
  describe.each([
    { status: JOB_STATUS.COMPLETED, fields: { finished_at: at(120), final_output: { answer: 42 } } as StatusFields },
    {
      status: JOB_STATUS.FAILED,
      fields: { finished_at: at(120), error_code: ERROR_CODE.EXECUTION_FAILED, error_message: 'node crashed' } as StatusFields,
    },
    { status: JOB_STATUS.CANCELLED, fields: { finished_at: at(120), cancel_reason: 'remote' } as StatusFields },
  ])('a settled $status job', ({ status, fields }) => {
    it('publishes the event built from the record once and marks it published', async () => {
      // Prepare
      const input = await job(status, fields);
      const record = await store.get(input.job_id);
      const expected = buildOutcomeEvent(record as Parameters<typeof buildOutcomeEvent>[0]);

      // Act
      const output = await finisher().finish(input);

      // Assess
      expect(output).toEqual({ job_id: input.job_id, status, event_id: outcomeEventId(input.job_id, status) });
      expect(eventBridge).toHaveReceivedCommandTimes(PutEventsCommand, 1);
      expect(eventBridge).toHaveReceivedCommandWith(PutEventsCommand, {
        Entries: [
          {
            EventBusName: BUS,
            Source: EVENT_SOURCE,
            DetailType: DETAIL_TYPE[status],
            Detail: JSON.stringify(expected.detail),
            Resources: [],
          },
        ],
      });
      expect(outcomeDetailSchema.safeParse(sentDetail()).success).toBe(true);
      expect(await store.get(input.job_id)).toMatchObject({
        status,
        outcome_event_id: outcomeEventId(input.job_id, status),
        event_published_at: new Date(FINISH_AT_MS).toISOString(),
      });
    });

    it('does not publish again on a second finish, and answers with the same event id', async () => {
      // Prepare
      const input = await job(status, fields);
      const first = await finisher().finish(input);

      // Act
      const second = await finisher().finish(input);

      // Assess
      expect(second).toEqual(first);
      expect(eventBridge).toHaveReceivedCommandTimes(PutEventsCommand, 1);
    });
  });

  it('retries a PutEvents partial failure and then marks the event published', async () => {
    // Prepare
    eventBridge.reset();
    eventBridge.on(PutEventsCommand).resolvesOnce(THROTTLED).resolves(ACCEPTED);
    const input = await job(JOB_STATUS.COMPLETED, { finished_at: at(120), final_output: 'ok' });
    const sleep = vi.fn(async (_ms: number) => undefined);

    // Act
    const output = await finisher(sleep).finish(input);

    // Assess
    expect(output.status).toBe(JOB_STATUS.COMPLETED);
    expect(eventBridge).toHaveReceivedCommandTimes(PutEventsCommand, 2);
    expect(sleep).toHaveBeenCalledTimes(1);
    expect((await store.get(input.job_id))?.event_published_at).toBe(new Date(FINISH_AT_MS).toISOString());
  });

  it('throws without marking the event when PutEvents keeps failing, so a retry publishes it', async () => {
    // Prepare
    eventBridge.reset();
    eventBridge.on(PutEventsCommand).resolves(THROTTLED);
    const input = await job(JOB_STATUS.COMPLETED, { finished_at: at(120), final_output: 'ok' });

    // Act
    const failed = finisher().finish(input);

    // Assess
    await expect(failed).rejects.toThrow('after 5 attempts');
    expect((await store.get(input.job_id))?.event_published_at).toBeUndefined();

    // Act (the state machine's retry, after EventBridge recovered)
    eventBridge.reset();
    eventBridge.on(PutEventsCommand).resolves(ACCEPTED);
    await finisher().finish(input);

    // Assess
    expect(eventBridge).toHaveReceivedCommandTimes(PutEventsCommand, 1);
    expect((await store.get(input.job_id))?.outcome_event_id).toBe(outcomeEventId(input.job_id, JOB_STATUS.COMPLETED));
  });

  describe('the Catch path (input.error set)', () => {
    it('settles a running job FAILED with POLL_FAILED and the error message, without the stack trace', async () => {
      // Prepare
      const input: FinishInput = {
        ...(await job(JOB_STATUS.RUNNING)),
        poll_count: 11,
        error: { Error: 'TransientPollError', Cause: LAMBDA_CAUSE },
      };

      // Act
      const output = await finisher().finish(input);

      // Assess
      expect(output).toEqual({
        job_id: input.job_id,
        status: JOB_STATUS.FAILED,
        event_id: outcomeEventId(input.job_id, JOB_STATUS.FAILED),
      });
      const record = await store.get(input.job_id);
      expect(record).toMatchObject({
        status: JOB_STATUS.FAILED,
        error_code: ERROR_CODE.POLL_FAILED,
        error_message: 'TransientPollError: WaterflaiHttpError: Waterflai get answered HTTP 503',
        finished_at: new Date(FINISH_AT_MS).toISOString(),
        polls: 11,
        // This function cannot reach Waterflai: the execution is left to the sweeper.
        upstream_cancel: 'unconfirmed',
        cancel_pending: 'pending',
      });
      expect([...(record?.pending_cancels ?? [])]).toEqual([input.execution_id]);
      expect(record?.error_message).not.toContain('/var/task');
      expect(record?.error_message).not.toContain('trace');
      const detail = sentDetail();
      expect(detail).toMatchObject({
        status: JOB_STATUS.FAILED,
        error: { code: ERROR_CODE.POLL_FAILED, message: 'TransientPollError: WaterflaiHttpError: Waterflai get answered HTTP 503' },
        upstream_cancel: 'unconfirmed',
        polls: 11,
      });
      expect(JSON.stringify(detail)).not.toContain('JobPoller.poll');
    });

    it('keeps an already COMPLETED job COMPLETED and publishes the Completed event', async () => {
      // Prepare
      const input: FinishInput = {
        ...(await job(JOB_STATUS.COMPLETED, { finished_at: at(120), final_output: { answer: 42 } })),
        error: { Error: 'Lambda.Unknown', Cause: 'The cause could not be determined because Lambda did not return an error type.' },
      };
      const before = await store.get(input.job_id);

      // Act
      const output = await finisher().finish(input);

      // Assess
      expect(output.status).toBe(JOB_STATUS.COMPLETED);
      const after = await store.get(input.job_id);
      expect(after).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: { answer: 42 }, finished_at: at(120), polls: 7 });
      expect(after?.error_code).toBeUndefined();
      expect(after?.version).toBe(before!.version + 1); // only the publication mark
      expect(eventBridge).toHaveReceivedCommandWith(PutEventsCommand, {
        Entries: [expect.objectContaining({ DetailType: DETAIL_TYPE.COMPLETED })],
      });
      expect(sentDetail()).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: { answer: 42 } });
    });

    it('settles FAILED only once when the failure step runs twice', async () => {
      // Prepare
      const input: FinishInput = { ...(await job(JOB_STATUS.RUNNING)), error: { Error: 'States.Timeout' } };
      await finisher().finish(input);
      const afterFirst = await store.get(input.job_id);

      // Act
      const again = await finisher().finish(input);

      // Assess
      expect(again.status).toBe(JOB_STATUS.FAILED);
      expect(eventBridge).toHaveReceivedCommandTimes(PutEventsCommand, 1);
      expect(await store.get(input.job_id)).toEqual(afterFirst);
    });
  });

  it.each([
    { name: 'PENDING', status: undefined },
    { name: 'RUNNING', status: JOB_STATUS.RUNNING },
  ] as const)('throws for a job that is not settled ($name) and publishes nothing', async ({ name, status }) => {
    // Prepare
    const input = await job(status);

    // Act / Assess
    await expect(finisher().finish(input)).rejects.toThrow(`job ${input.job_id} is not settled (status ${name})`);
    expect(eventBridge).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('throws for a job that has no record', async () => {
    // Prepare
    const input: FinishInput = { ...(await job(JOB_STATUS.RUNNING)), job_id: 'finish-job-missing', error: { Error: 'States.ALL' } };

    // Act / Assess
    await expect(finisher().finish(input)).rejects.toThrow('job finish-job-missing has no record');
    expect(eventBridge).not.toHaveReceivedCommand(PutEventsCommand);
  });
});

describe('describeCaughtError', () => {
  it.each<{ name: string; error: CaughtError; expected: string }>([
    {
      name: 'a Lambda error keeps type and message, not the trace',
      error: { Error: 'TransientPollError', Cause: LAMBDA_CAUSE },
      expected: 'TransientPollError: WaterflaiHttpError: Waterflai get answered HTTP 503',
    },
    {
      name: 'a plain-text States.* cause is kept as is',
      error: { Error: 'States.Timeout', Cause: 'Task timed out after 60 seconds' },
      expected: 'States.Timeout: Task timed out after 60 seconds',
    },
    { name: 'no cause gives the error name alone', error: { Error: 'States.TaskFailed' }, expected: 'States.TaskFailed' },
    { name: 'an empty cause gives the error name alone', error: { Error: 'States.TaskFailed', Cause: '' }, expected: 'States.TaskFailed' },
    {
      name: 'a JSON cause without errorMessage or errorType is dropped',
      error: { Error: 'Custom', Cause: '{"reason":"x"}' },
      expected: 'Custom',
    },
    {
      name: 'a JSON cause without errorMessage keeps only its errorType, never its trace',
      error: { Error: 'Custom', Cause: '{"errorType":"Boom","trace":["at secret (/var/task/index.js:1:1)"]}' },
      expected: 'Custom: Boom',
    },
    { name: 'a JSON string cause is kept as is', error: { Error: 'Custom', Cause: '"quoted"' }, expected: 'Custom: "quoted"' },
  ])('$name', ({ error, expected }) => {
    // Act
    const message = describeCaughtError(error);

    // Assess
    expect(message).toBe(expected);
  });

  it('truncates to MAX_ERROR_MESSAGE_CHARS', () => {
    // Prepare
    const error: CaughtError = {
      Error: 'Big',
      Cause: JSON.stringify({ errorType: 'Big', errorMessage: 'm'.repeat(MAX_ERROR_MESSAGE_CHARS * 2), trace: [] }),
    };

    // Act
    const message = describeCaughtError(error);

    // Assess
    expect(message).toHaveLength(MAX_ERROR_MESSAGE_CHARS);
    expect(message.startsWith('Big: mmm')).toBe(true);
  });
});
