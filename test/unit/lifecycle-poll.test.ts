import { createHash } from 'node:crypto';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { JobPoller, type SuccessorStarter } from '../../lambdas/poll/poll-job';
import { announceOutcome } from '../../lambdas/lifecycle/announce';
import { CANCEL_REASON, DETAIL_TYPE, ERROR_CODE, JOB_STATUS, type JobStatus } from '../../lambdas/contract/constants';
import { TransientPollError, WaterflaiHttpError, WaterflaiNetworkError } from '../../lambdas/contract/errors';
import { executionNameForGeneration, EXECUTION_NAME_MAX_LENGTH } from '../../lambdas/contract/identifiers';
import { JobStore } from '../../lambdas/aws/job-store';
import type { AppLogger } from '../../lambdas/platform/logger';
import { OutcomePublisher } from '../../lambdas/aws/outcome-publisher';
import { outcomeDetailSchema } from '../../lambdas/contract/outcome-event';
import { OutputStore } from '../../lambdas/aws/output-store';
import {
  DEADLINE_CANCEL_WINDOW_SECONDS,
  DEADLINE_ROUND_MAX_WAIT_SECONDS,
  type FixedIntervalSettings,
} from '../../lambdas/contract/settings';
import type { CancelResult, ExecutionStatus } from '../../lambdas/contract/waterflai-api';
import type { PollState } from '../../lambdas/domain/workflow';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';
import { execution } from '../support/execution-status';
import { cancelResult, ScriptedWaterflai } from '../support/scripted-waterflai';

const ACCEPTED_AT = '2025-03-01T12:00:00.000Z';
const DEADLINE_AT = '2025-03-01T13:00:00.000Z';
const POLL_SETTINGS: FixedIntervalSettings = { intervalSeconds: 5, minSeconds: 1, maxSeconds: 60 };
const MAX_INLINE_OUTPUT_BYTES = 1_024;
const BUCKET = 'orchestrator-outputs';
const STATE_MACHINE_ARN = 'arn:aws:states:us-east-1:123456789012:stateMachine:poll-loop';
const PLENTY_OF_TIME = (): number => 60_000;

/** Seconds after ACCEPTED_AT, as epoch ms / ISO. */
const atMs = (seconds: number): number => Date.parse(ACCEPTED_AT) + seconds * 1000;
const at = (seconds: number): string => new Date(atMs(seconds)).toISOString();

const s3Mock = mockClient(S3Client);
const eventsMock = mockClient(EventBridgeClient);

/** Records successor starts and answers with the ARN Step Functions would give. */
class RecordingSuccessor implements SuccessorStarter {
  readonly starts: Array<{ name: string; input: PollState }> = [];
  error: Error | undefined;

  async start(name: string, input: PollState): Promise<string> {
    this.starts.push({ name, input });
    if (this.error) throw this.error;
    return `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${name}`;
  }
}

function fakeLogger(): AppLogger & { error: MockInstance; info: MockInstance; warn: MockInstance } {
  return { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() };
}

let dynamo: LocalDynamo;
let store: JobStore;

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
});

afterAll(async () => {
  s3Mock.restore();
  eventsMock.restore();
  await dynamo.close();
});

beforeEach(() => {
  s3Mock.reset();
  s3Mock.on(PutObjectCommand).resolves({ ETag: '"etag"' });
  eventsMock.reset();
  eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'eb-1' }] });
});

let jobCounter = 0;

/** A PENDING job with an execution id and its state machine ARN, and the loop state for it. */
async function startedJob(options: { jobId?: string; deadlineAt?: string } = {}): Promise<PollState> {
  jobCounter += 1;
  const jobId = options.jobId ?? `lifecycle-poll-${jobCounter}`;
  const deadlineAt = options.deadlineAt ?? DEADLINE_AT;
  await store.claim({
    job_id: jobId,
    chatbot_id: 'bot-1',
    metadata: { tenant: 'acme' },
    source_message_id: `msg-${jobCounter}`,
    delivery: 'sqs',
    accepted_at: ACCEPTED_AT,
    deadline_at: deadlineAt,
    expires_at: 1_800_000_000,
    state_machine_execution_name: jobId,
    claim_expires_at: atMs(60),
  });
  await store.saveExecutionId(jobId, 'wf-exec', at(1));
  await store.saveStateMachineExecution(jobId, `arn:aws:states:us-east-1:123456789012:execution:poll-loop:${jobId}`, at(1));
  return {
    job_id: jobId,
    chatbot_id: 'bot-1',
    execution_id: 'wf-exec',
    accepted_at: ACCEPTED_AT,
    deadline_at: deadlineAt,
    status: JOB_STATUS.PENDING,
    progress: null,
    current_node: null,
    poll_count: 0,
    next_poll_seconds: 10,
  };
}

interface PollerOptions {
  /** The clock, in seconds after ACCEPTED_AT (fixed). */
  readonly nowSeconds?: number;
  readonly nowMs?: number;
  readonly outputs?: OutputStore;
  readonly maxOutputBytes?: number;
  readonly maxPollsPerExecution?: number;
  readonly successor?: SuccessorStarter;
  readonly logger?: AppLogger;
  readonly cancels?: Array<CancelResult | Error>;
}

function poller(script: Array<ExecutionStatus | Error>, options: PollerOptions = {}) {
  const waterflai = new ScriptedWaterflai(script, options.cancels);
  const nowMs = options.nowMs ?? atMs(options.nowSeconds ?? 100);
  const instance = new JobPoller({
    store,
    waterflai,
    logger: options.logger ?? fakeLogger(),
    pollSettings: POLL_SETTINGS,
    maxInlineOutputBytes: MAX_INLINE_OUTPUT_BYTES,
    ...(options.outputs ? { outputs: options.outputs } : {}),
    ...(options.maxOutputBytes === undefined ? {} : { maxOutputBytes: options.maxOutputBytes }),
    ...(options.maxPollsPerExecution === undefined ? {} : { maxPollsPerExecution: options.maxPollsPerExecution }),
    ...(options.successor ? { successor: options.successor } : {}),
    now: () => nowMs,
    cancelRetryDelaysMs: [0, 0, 0],
  });
  return { instance, waterflai };
}

const outputStore = (): OutputStore => new OutputStore(new S3Client({ region: 'us-east-1' }), BUCKET);

describe('JobPoller: the job deadline', () => {
  const cancelCall = { executionId: 'wf-exec', options: { timeoutMs: expect.any(Number) } };

  it.each([
    ['exactly at the deadline', Date.parse(DEADLINE_AT)],
    ['one ms past the deadline', Date.parse(DEADLINE_AT) + 1],
    ['a day past the deadline', Date.parse(DEADLINE_AT) + 86_400_000],
  ])('%s: reads the status first, cancels the running execution, confirms it and settles FAILED TIMED_OUT', async (_name, nowMs) => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, poll_count: 41, execution_polls: 3 };
    const { instance, waterflai } = poller([execution('RUNNING')], { nowMs });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(waterflai.reads.map((read) => read.executionId)).toEqual(['wf-exec']);
    expect(waterflai.cancelled).toEqual([cancelCall]);
    expect(next).toMatchObject({ status: JOB_STATUS.FAILED, poll_count: 42, execution_polls: 4 });
    const record = await store.get(state.job_id);
    expect(record).toMatchObject({
      status: JOB_STATUS.FAILED,
      error_code: ERROR_CODE.TIMED_OUT,
      finished_at: new Date(nowMs).toISOString(),
      polls: 42,
      upstream_cancel: 'confirmed',
    });
    expect(record?.error_message).toContain(DEADLINE_AT);
  });

  it('deadline race: an execution that completed just before the deadline (no poll in between) ends COMPLETED with its output, nothing cancelled', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, progress: 40 };
    const { instance, waterflai } = poller([execution('COMPLETED', { final_output: { answer: 42 } })], {
      nowMs: Date.parse(DEADLINE_AT) + 2_000,
    });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(waterflai.cancelled).toEqual([]);
    expect(next.status).toBe(JOB_STATUS.COMPLETED);
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: { answer: 42 } });
  });

  it.each<[string, CancelResult | Error]>([
    ['HTTP 409', new WaterflaiHttpError('cancel', 409)],
    ['HTTP 400', new WaterflaiHttpError('cancel', 400)],
    ['HTTP 404', new WaterflaiHttpError('cancel', 404)],
    ['200 cancelled: false', cancelResult(false, { previous_status: 'COMPLETED', alreadyFinished: true })],
  ])(
    'deadline race: a DELETE refused with %s because the execution completed meanwhile ends COMPLETED with its output',
    async (_name, refusal) => {
      // Prepare
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
      const { instance, waterflai } = poller([execution('RUNNING'), execution('COMPLETED', { final_output: 'in time' })], {
        nowMs: Date.parse(DEADLINE_AT),
        cancels: [refusal],
      });

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(waterflai.cancelled).toEqual([cancelCall]);
      expect(next.status).toBe(JOB_STATUS.COMPLETED);
      expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: 'in time' });
    },
  );

  it('a refused cancel (200 cancelled: false, still RUNNING) is not success: a further DELETE confirms it, then TIMED_OUT', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const { instance, waterflai } = poller([execution('RUNNING'), execution('RUNNING')], {
      nowMs: Date.parse(DEADLINE_AT),
      cancels: [cancelResult(false, { previous_status: 'RUNNING' }), cancelResult(true)],
    });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(waterflai.cancelled).toEqual([cancelCall, cancelCall]);
    expect(next.status).toBe(JOB_STATUS.FAILED);
    expect(await store.get(state.job_id)).toMatchObject({
      status: JOB_STATUS.FAILED,
      error_code: ERROR_CODE.TIMED_OUT,
      upstream_cancel: 'confirmed',
    });
  });

  it('a cancel that cannot be confirmed is tried again on later polls for the deadline window, then the job ends TIMED_OUT unconfirmed with the execution left to the sweeper', async () => {
    // Prepare: Waterflai unreachable at and after the deadline (an outage)
    let state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const logger = fakeLogger();
    let nowMs = Date.parse(DEADLINE_AT) + 5_000;
    const waterflai = new ScriptedWaterflai(Array.from({ length: 1_000 }, () => new WaterflaiHttpError('get', 503)));
    waterflai.cancelError = new WaterflaiHttpError('cancel', 503);
    const instance = new JobPoller({
      store,
      waterflai,
      logger,
      pollSettings: POLL_SETTINGS,
      maxInlineOutputBytes: MAX_INLINE_OUTPUT_BYTES,
      now: () => nowMs,
      cancelRetryDelaysMs: [0, 0, 0],
    });

    // Act
    const waits: number[] = [];
    while (state.status === JOB_STATUS.RUNNING) {
      state = await instance.poll(state, PLENTY_OF_TIME);
      waits.push(state.next_poll_seconds);
      nowMs += state.next_poll_seconds * 1000;
    }

    // Assess
    expect(nowMs - Date.parse(DEADLINE_AT)).toBeGreaterThanOrEqual(DEADLINE_CANCEL_WINDOW_SECONDS * 1000);
    expect(Math.max(...waits.slice(0, -1))).toBeLessThanOrEqual(DEADLINE_ROUND_MAX_WAIT_SECONDS);
    expect(waterflai.cancelled.length).toBeGreaterThanOrEqual(4 * 20);
    const record = await store.get(state.job_id);
    expect(record).toMatchObject({
      status: JOB_STATUS.FAILED,
      error_code: ERROR_CODE.TIMED_OUT,
      upstream_cancel: 'unconfirmed',
      cancel_pending: 'pending',
    });
    expect([...(record?.pending_cancels ?? [])]).toEqual(['wf-exec']);
    expect(logger.error).toHaveBeenCalledWith(
      'could not confirm the cancellation of a timed-out execution; the sweeper keeps trying',
      expect.objectContaining({ job_id: state.job_id }),
    );
  });

  it('an outage at the deadline does not throw away a result that came in time: the first answer after it is recorded', async () => {
    let state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    let nowMs = Date.parse(DEADLINE_AT);
    const waterflai = new ScriptedWaterflai([
      ...Array.from({ length: 6 }, () => new WaterflaiHttpError('get', 503)),
      execution('COMPLETED', { final_output: 'came in time' }),
    ]);
    waterflai.cancelError = new WaterflaiNetworkError('cancel', 'NETWORK_ERROR', 'connection failed (ECONNRESET)');
    const instance = new JobPoller({
      store,
      waterflai,
      logger: fakeLogger(),
      pollSettings: POLL_SETTINGS,
      maxInlineOutputBytes: MAX_INLINE_OUTPUT_BYTES,
      now: () => nowMs,
      cancelRetryDelaysMs: [0, 0, 0],
    });

    while (state.status === JOB_STATUS.RUNNING) {
      state = await instance.poll(state, PLENTY_OF_TIME);
      nowMs += state.next_poll_seconds * 1000;
    }

    expect(state.status).toBe(JOB_STATUS.COMPLETED);
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: 'came in time' });
  });

  it('after a refused round, a CANCELLED read is our own cancel taking effect: TIMED_OUT, not a remote cancel', async () => {
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, deadline_cancel_rounds: 1 };
    const { instance, waterflai } = poller([execution('CANCELLED')], { nowMs: Date.parse(DEADLINE_AT) + 60_000 });

    const next = await instance.poll(state, PLENTY_OF_TIME);

    expect(waterflai.cancelled).toEqual([]);
    expect(next.status).toBe(JOB_STATUS.FAILED);
    expect(await store.get(state.job_id)).toMatchObject({
      status: JOB_STATUS.FAILED,
      error_code: ERROR_CODE.TIMED_OUT,
      upstream_cancel: 'confirmed',
    });
  });

  it('one ms before the deadline: polls as usual and cancels nothing', async () => {
    // Prepare
    const state = await startedJob();
    const { instance, waterflai } = poller([execution('RUNNING', { progress: 10 })], { nowMs: Date.parse(DEADLINE_AT) - 1 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(waterflai.reads.map((read) => read.executionId)).toEqual(['wf-exec']);
    expect(waterflai.cancelled).toEqual([]);
    expect(next.status).toBe(JOB_STATUS.RUNNING);
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.RUNNING });
  });

  it('a job already settled (cancelled on request) keeps its outcome: the loop ends with the recorded status', async () => {
    // Prepare
    const state = await startedJob();
    await store.applyStatus(state.job_id, {
      status: JOB_STATUS.CANCELLED,
      fields: { cancel_reason: CANCEL_REASON.REQUESTED, finished_at: at(50) },
      now: at(50),
    });
    const before = await store.get(state.job_id);
    const { instance } = poller([execution('CANCELLED')], { nowMs: Date.parse(DEADLINE_AT) });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.CANCELLED);
    expect(await store.get(state.job_id)).toEqual(before);
  });

  it('past the deadline at the hand-over budget the job is settled, not handed over', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), execution_polls: 9 };
    const successor = new RecordingSuccessor();
    const { instance } = poller([execution('RUNNING')], { nowMs: Date.parse(DEADLINE_AT), successor, maxPollsPerExecution: 10 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(successor.starts).toEqual([]);
    expect(next.handed_over).toBeUndefined();
    expect(next.status).toBe(JOB_STATUS.FAILED);
  });
});

describe('JobPoller: results Waterflai already cleaned up', () => {
  it('a 404 after the last reported cleanup_after settles FAILED OUTPUT_EXPIRED', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, poll_count: 6, cleanup_after: at(90) };
    const { instance } = poller([new WaterflaiHttpError('get', 404)], { nowSeconds: 100 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next).toMatchObject({ status: JOB_STATUS.FAILED, poll_count: 7 });
    const record = await store.get(state.job_id);
    expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.OUTPUT_EXPIRED, finished_at: at(100), polls: 7 });
    expect(record?.error_message).toContain(at(90));
  });

  it('a 404 exactly at cleanup_after is expired too', async () => {
    const state: PollState = { ...(await startedJob()), cleanup_after: at(100) };
    const { instance } = poller([new WaterflaiHttpError('get', 404)], { nowSeconds: 100 });

    const next = await instance.poll(state, PLENTY_OF_TIME);

    expect(next.status).toBe(JOB_STATUS.FAILED);
    expect((await store.get(state.job_id))?.error_code).toBe(ERROR_CODE.OUTPUT_EXPIRED);
  });

  it.each([
    ['before cleanup_after', at(500) as string | null],
    ['with no cleanup_after reported', null],
    ['with an unparsable cleanup_after', 'soon'],
  ])('a 404 %s, after the execution was seen, settles FAILED EXECUTION_NOT_FOUND', async (_name, cleanupAfter) => {
    // Prepare
    const state: PollState = { ...(await startedJob()), cleanup_after: cleanupAfter, upstream_seen: true };
    const { instance } = poller([new WaterflaiHttpError('get', 404)], { nowSeconds: 100 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.FAILED);
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.EXECUTION_NOT_FOUND });
  });

  it.each([
    ['no final_output', undefined],
    ['a null final_output', null],
  ])('COMPLETED with %s after cleanup_after settles FAILED OUTPUT_EXPIRED', async (_name, finalOutput) => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: finalOutput, cleanup_after: at(99) })], {
      nowSeconds: 100,
    });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.FAILED);
    const record = await store.get(state.job_id);
    expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.OUTPUT_EXPIRED, finished_at: at(100) });
    expect(record).not.toHaveProperty('final_output');
  });

  it('COMPLETED with a null output before cleanup_after is a COMPLETED job with a null output', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: null, cleanup_after: at(3600) })], {
      nowSeconds: 100,
    });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.COMPLETED);
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: null });
  });

  it('carries the reported cleanup_after in the loop state for the next poll', async () => {
    // Prepare
    const state = await startedJob();
    const { instance } = poller([execution('RUNNING', { cleanup_after: at(7200) })]);

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.cleanup_after).toBe(at(7200));
  });
});

describe('JobPoller: outputs too large to carry inline', () => {
  const bigOutput = { text: 'é'.repeat(MAX_INLINE_OUTPUT_BYTES), items: [1, 2, 3] };
  const bigJson = JSON.stringify(bigOutput);

  it('stores a COMPLETED output over the inline limit in S3 and records its location instead of the output', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: bigOutput })], {
      outputs: outputStore(),
      nowSeconds: 300,
    });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.COMPLETED);
    expect(JSON.stringify(next)).not.toContain('é');
    const key = `outputs/${state.job_id}/wf-exec.json`;
    expect(s3Mock).toHaveReceivedCommandOnce(PutObjectCommand);
    expect(s3Mock).toHaveReceivedCommandWith(PutObjectCommand, { Bucket: BUCKET, Key: key, ContentType: 'application/json' });
    const body = s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input.Body as Buffer;
    expect(Buffer.from(body).toString('utf8')).toBe(bigJson);
    const record = await store.get(state.job_id);
    expect(record).toMatchObject({
      status: JOB_STATUS.COMPLETED,
      finished_at: at(300),
      output_location: {
        bucket: BUCKET,
        key,
        size: Buffer.byteLength(bigJson, 'utf8'),
        sha256: createHash('sha256').update(bigJson, 'utf8').digest('hex'),
      },
    });
    expect(record).not.toHaveProperty('final_output');
  });

  it('the outcome event of such a job carries output_location and no final_output', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: bigOutput })], { outputs: outputStore() });
    await instance.poll(state, PLENTY_OF_TIME);
    const record = await store.get(state.job_id);
    const publisher = new OutcomePublisher(
      new EventBridgeClient({ region: 'us-east-1' }),
      'bus',
      async () => undefined,
      () => 0,
    );

    // Act
    await announceOutcome(store, publisher, record!, () => atMs(400));

    // Assess
    const entry = eventsMock.commandCalls(PutEventsCommand)[0]?.args[0].input.Entries?.[0];
    expect(entry?.DetailType).toBe(DETAIL_TYPE.COMPLETED);
    const detail = JSON.parse(entry?.Detail ?? '{}') as Record<string, unknown>;
    expect(detail.output_location).toEqual(record?.output_location);
    expect(detail).not.toHaveProperty('final_output');
    expect(outcomeDetailSchema.safeParse(detail).success).toBe(true);
  });

  it('an output of exactly the inline limit stays inline and nothing goes to S3', async () => {
    // Prepare: {"t":"..."} is 8 bytes of JSON around the text
    const output = { t: 'x'.repeat(MAX_INLINE_OUTPUT_BYTES - 8) };
    expect(Buffer.byteLength(JSON.stringify(output))).toBe(MAX_INLINE_OUTPUT_BYTES);
    const state = await startedJob();
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: output })], { outputs: outputStore() });

    // Act
    await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(s3Mock).not.toHaveReceivedCommand(PutObjectCommand);
    const record = await store.get(state.job_id);
    expect(record).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: output });
    expect(record).not.toHaveProperty('output_location');
  });

  it('without an output store an output over the inline limit fails the job with OUTPUT_TOO_LARGE', async () => {
    // Prepare
    const state = await startedJob();
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: bigOutput })]);

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.FAILED);
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.OUTPUT_TOO_LARGE });
    expect(s3Mock).not.toHaveReceivedCommand(PutObjectCommand);
  });

  it('with an output store an output over maxOutputBytes fails the job with OUTPUT_TOO_LARGE and stores nothing', async () => {
    // Prepare
    const state = await startedJob();
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: bigOutput })], {
      outputs: outputStore(),
      maxOutputBytes: 2_000,
    });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.FAILED);
    const record = await store.get(state.job_id);
    expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.OUTPUT_TOO_LARGE });
    expect(record?.error_message).toContain('over the 2000 byte limit');
    expect(s3Mock).not.toHaveReceivedCommand(PutObjectCommand);
  });

  it.each([
    [
      'SlowDown (503)',
      new S3ServiceException({
        name: 'SlowDown',
        $fault: 'server',
        $metadata: { httpStatusCode: 503 },
        message: 'Please reduce your request rate.',
      }),
    ],
    [
      'a throttling error',
      new S3ServiceException({
        name: 'ThrottlingException',
        $fault: 'client',
        $metadata: { httpStatusCode: 400 },
        message: 'Rate exceeded',
      }),
    ],
    [
      'an internal error',
      new S3ServiceException({
        name: 'InternalError',
        $fault: 'server',
        $metadata: { httpStatusCode: 500 },
        message: 'We encountered an internal error.',
      }),
    ],
  ])('S3 %s while storing the output throws a TransientPollError and records nothing', async (_name, fault) => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const before = await store.get(state.job_id);
    s3Mock.on(PutObjectCommand).rejects(fault);
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: bigOutput })], { outputs: outputStore() });

    // Act
    const thrown = await instance.poll(state, PLENTY_OF_TIME).then(
      () => undefined,
      (caught: unknown) => caught,
    );

    // Assess
    expect(thrown).toBeInstanceOf(TransientPollError);
    expect((thrown as Error).name).toBe('TransientPollError');
    expect((thrown as Error).cause).toBe(fault);
    expect(await store.get(state.job_id)).toEqual(before);
  });

  it('S3 AccessDenied is not retried: it propagates unchanged', async () => {
    // Prepare
    const state = await startedJob();
    const fault = new S3ServiceException({
      name: 'AccessDenied',
      $fault: 'client',
      $metadata: { httpStatusCode: 403 },
      message: 'Access Denied',
    });
    s3Mock.on(PutObjectCommand).rejects(fault);
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: bigOutput })], { outputs: outputStore() });

    // Act / Assess
    await expect(instance.poll(state, PLENTY_OF_TIME)).rejects.toBe(fault);
    expect((await store.get(state.job_id))?.status).toBe(JOB_STATUS.PENDING);
  });

  it('an output stored for a job someone else settled first leaves that outcome alone', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    await store.applyStatus(state.job_id, {
      status: JOB_STATUS.CANCELLED,
      fields: { cancel_reason: CANCEL_REASON.REQUESTED, finished_at: at(50) },
      now: at(50),
    });
    const before = await store.get(state.job_id);
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: bigOutput })], { outputs: outputStore() });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.CANCELLED);
    expect(await store.get(state.job_id)).toEqual(before);
  });
});

describe('JobPoller: continue-as-new', () => {
  it("at the poll budget starts the successor with the next generation's name and a reset budget, records it, and ends this execution", async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, progress: 10, poll_count: 99, execution_polls: 9 };
    const successor = new RecordingSuccessor();
    const { instance } = poller([execution('RUNNING', { progress: 20, current_node: 'b' })], {
      successor,
      maxPollsPerExecution: 10,
      nowSeconds: 500,
    });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    const expectedName = `${state.job_id}_g1`;
    expect(executionNameForGeneration(state.job_id, 1)).toBe(expectedName);
    expect(successor.starts).toHaveLength(1);
    expect(successor.starts[0]?.name).toBe(expectedName);
    const { handed_over: handedOver, ...carried } = next;
    expect(handedOver).toBe(true);
    expect(successor.starts[0]?.input).toEqual({ ...carried, generation: 1, execution_polls: 0 });
    expect(next).toMatchObject({ status: JOB_STATUS.RUNNING, progress: 20, current_node: 'b', poll_count: 100, execution_polls: 10 });
    expect(await store.get(state.job_id)).toMatchObject({
      generation: 1,
      state_machine_execution_arn: `arn:aws:states:us-east-1:123456789012:execution:poll-loop:${expectedName}`,
      status: JOB_STATUS.RUNNING,
      progress: 20,
      updated_at: at(500),
    });
  });

  it.each([
    ['StartExecution throttled', Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $fault: 'client' })],
    ['a Step Functions 5xx', Object.assign(new Error('Internal'), { name: 'ServiceUnavailable', $fault: 'server' })],
  ])(
    '%s during the hand-over becomes a TransientPollError, so the state machine retries instead of failing the job',
    async (_name, fault) => {
      // Prepare
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, execution_polls: 9 };
      const successor = new RecordingSuccessor();
      successor.error = fault;
      const { instance } = poller([execution('RUNNING', { progress: 30 })], { successor, maxPollsPerExecution: 10 });

      // Act / Assess
      await expect(instance.poll(state, PLENTY_OF_TIME)).rejects.toMatchObject({ name: 'TransientPollError', cause: fault });
      expect((await store.get(state.job_id))?.generation).toBeUndefined();
    },
  );

  it('below the budget the loop goes on in this execution', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), execution_polls: 8 };
    const successor = new RecordingSuccessor();
    const { instance } = poller([execution('RUNNING')], { successor, maxPollsPerExecution: 10 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(successor.starts).toEqual([]);
    expect(next.handed_over).toBeUndefined();
    expect(next.execution_polls).toBe(9);
    expect((await store.get(state.job_id))?.generation).toBeUndefined();
  });

  it('a successor hands over to generation 2, named _g2', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), generation: 1, execution_polls: 4 };
    await store.recordHandOver(state.job_id, 1, 'arn:aws:states:us-east-1:123456789012:execution:poll-loop:gen1', at(10));
    const successor = new RecordingSuccessor();
    const { instance } = poller([execution('PENDING')], { successor, maxPollsPerExecution: 5 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.handed_over).toBe(true);
    expect(successor.starts.map((start) => [start.name, start.input.generation, start.input.execution_polls])).toEqual([
      [`${state.job_id}_g2`, 2, 0],
    ]);
    expect(await store.get(state.job_id)).toMatchObject({ generation: 2, state_machine_execution_arn: expect.stringMatching(/_g2$/) });
  });

  it('a job id Step Functions can not use as a name gets a valid, bounded successor name', async () => {
    // Prepare
    const jobId = `order:42.${'x'.repeat(100)}`;
    const state: PollState = { ...(await startedJob({ jobId })), execution_polls: 0 };
    const successor = new RecordingSuccessor();
    const { instance } = poller([execution('RUNNING')], { successor, maxPollsPerExecution: 1 });

    // Act
    await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    const name = successor.starts[0]?.name ?? '';
    expect(name).toBe(executionNameForGeneration(jobId, 1));
    expect(name).toMatch(/^[A-Za-z0-9-]+_h[0-9a-f]{24}_g1$/);
    expect(name.length).toBeLessThanOrEqual(EXECUTION_NAME_MAX_LENGTH);
  });

  it('a 429 at the budget also hands over, carrying the requested wait', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), execution_polls: 2 };
    const successor = new RecordingSuccessor();
    const { instance } = poller([new WaterflaiHttpError('get', 429, 30)], { successor, maxPollsPerExecution: 3 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.handed_over).toBe(true);
    expect(successor.starts[0]?.input).toMatchObject({ next_poll_seconds: 30, generation: 1, execution_polls: 0 });
  });

  it.each<[JobStatus, ExecutionStatus]>([
    [JOB_STATUS.COMPLETED, execution('COMPLETED', { progress: 100, final_output: { ok: true } })],
    [JOB_STATUS.FAILED, execution('FAILED', { error_message: 'boom' })],
    [JOB_STATUS.CANCELLED, execution('CANCELLED')],
  ])('a %s answer at the budget never hands over', async (status, answer) => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, execution_polls: 9 };
    const successor = new RecordingSuccessor();
    const { instance } = poller([answer], { successor, maxPollsPerExecution: 10 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(status);
    expect(next.handed_over).toBeUndefined();
    expect(successor.starts).toEqual([]);
    expect((await store.get(state.job_id))?.generation).toBeUndefined();
  });

  it('a job settled by a cancel request at the budget ends this execution with that outcome instead of handing over', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, execution_polls: 9 };
    await store.applyStatus(state.job_id, {
      status: JOB_STATUS.CANCELLED,
      fields: { cancel_reason: CANCEL_REASON.REQUESTED, finished_at: at(50) },
      now: at(50),
    });
    const successor = new RecordingSuccessor();
    const { instance } = poller([execution('RUNNING', { progress: 70 })], { successor, maxPollsPerExecution: 10 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.CANCELLED);
    expect(next.handed_over).toBeUndefined();
    expect(successor.starts).toEqual([]);
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REQUESTED });
  });

  it('without a successor starter there is no hand-over, whatever the poll count', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), execution_polls: 5_000 };
    const { instance } = poller([execution('RUNNING')], { maxPollsPerExecution: 10 });

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.handed_over).toBeUndefined();
    expect(next.execution_polls).toBe(5_001);
  });

  it('a retried hand-over poll (the answer was lost) does not move the recorded generation back', async () => {
    // Prepare: the answer matches the loop state, so the only write a poll could make is the hand-over
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, execution_polls: 9 };
    const successor = new RecordingSuccessor();
    const first = poller([execution('RUNNING')], { successor, maxPollsPerExecution: 10, nowSeconds: 200 });
    await first.instance.poll(state, PLENTY_OF_TIME);
    const afterFirst = await store.get(state.job_id);

    // Act
    const retry = poller([execution('RUNNING')], { successor, maxPollsPerExecution: 10, nowSeconds: 201 });
    const next = await retry.instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.handed_over).toBe(true);
    expect(successor.starts.map((start) => start.name)).toEqual([`${state.job_id}_g1`, `${state.job_id}_g1`]);
    expect(await store.get(state.job_id)).toMatchObject({ generation: 1, version: afterFirst?.version });
  });
});

describe('JobPoller: giving up (the state machine Catch)', () => {
  const error = {
    Error: 'WaterflaiRedirectError',
    Cause: JSON.stringify({
      errorType: 'WaterflaiRedirectError',
      errorMessage: 'Waterflai get answered a redirect (302)',
      trace: ['at x'],
    }),
  };

  it('cancels the execution, confirms it, and settles FAILED POLL_FAILED with upstream_cancel confirmed', async () => {
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, poll_count: 7 };
    const { instance, waterflai } = poller([]);

    const next = await instance.handle({ ...state, error }, PLENTY_OF_TIME);

    expect(waterflai.cancelled).toHaveLength(1);
    expect(next.status).toBe(JOB_STATUS.FAILED);
    expect(next).not.toHaveProperty('error');
    expect(await store.get(state.job_id)).toMatchObject({
      status: JOB_STATUS.FAILED,
      error_code: ERROR_CODE.POLL_FAILED,
      error_message: 'WaterflaiRedirectError: Waterflai get answered a redirect (302)',
      upstream_cancel: 'confirmed',
      polls: 7,
    });
  });

  it('an execution found COMPLETED when cancelling ends COMPLETED with its output, not POLL_FAILED', async () => {
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const { instance } = poller([execution('COMPLETED', { final_output: { kept: true } })], {
      cancels: [new WaterflaiHttpError('cancel', 409)],
    });

    const next = await instance.handle({ ...state, error }, PLENTY_OF_TIME);

    expect(next.status).toBe(JOB_STATUS.COMPLETED);
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: { kept: true } });
  });

  it('a cancel that cannot be confirmed settles POLL_FAILED unconfirmed and notes the execution for the sweeper', async () => {
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const { instance, waterflai } = poller(Array.from({ length: 4 }, () => new WaterflaiHttpError('get', 503)));
    waterflai.cancelError = new WaterflaiHttpError('cancel', 502);

    const next = await instance.handle({ ...state, error }, PLENTY_OF_TIME);

    expect(next.status).toBe(JOB_STATUS.FAILED);
    const record = await store.get(state.job_id);
    expect(record).toMatchObject({ error_code: ERROR_CODE.POLL_FAILED, upstream_cancel: 'unconfirmed', cancel_pending: 'pending' });
    expect([...(record?.pending_cancels ?? [])]).toEqual(['wf-exec']);
  });
});
