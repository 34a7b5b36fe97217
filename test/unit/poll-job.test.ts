import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import { ERROR_CODE, JOB_STATUS, STATUS_RANK, type JobStatus, type TerminalStatus } from '../../lambdas/contract/constants';
import {
  InvalidIdentifierError,
  TransientPollError,
  WaterflaiHttpError,
  WaterflaiNetworkError,
  WaterflaiRedirectError,
  WaterflaiResponseError,
} from '../../lambdas/contract/errors';
import { JobStore } from '../../lambdas/aws/job-store';
import type { AppLogger } from '../../lambdas/platform/logger';
import { MAX_RETRY_AFTER_SECONDS, type FixedIntervalSettings } from '../../lambdas/contract/settings';
import { nextPollSeconds } from '../../lambdas/domain/poll-strategy';
import type { ExecutionStatus } from '../../lambdas/contract/waterflai-api';
import type { PollState } from '../../lambdas/domain/workflow';
import { INCIDENT_BACKOFF_BASE_SECONDS, JobPoller, NOT_FOUND_BEFORE_FIRST_READ_TOLERANCE } from '../../lambdas/poll/poll-job';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';
import { execution } from '../support/execution-status';
import { ScriptedWaterflai } from '../support/scripted-waterflai';

const ACCEPTED_AT = '2025-03-01T12:00:00.000Z';
const POLL_SETTINGS: FixedIntervalSettings = { intervalSeconds: 5, minSeconds: 1, maxSeconds: 60 };
const MAX_INLINE_OUTPUT_BYTES = 2_048;
const PLENTY_OF_TIME = () => 60_000;

/** Seconds after ACCEPTED_AT, as epoch ms. */
const atMs = (seconds: number): number => Date.parse(ACCEPTED_AT) + seconds * 1000;
const at = (seconds: number): string => new Date(atMs(seconds)).toISOString();

function isTerminal(status: JobStatus): boolean {
  return STATUS_RANK[status] >= STATUS_RANK.COMPLETED;
}

function fakeLogger(): AppLogger & { warn: MockInstance; info: MockInstance } {
  return { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() };
}

let dynamo: LocalDynamo;
let store: JobStore;
let sendSpy: MockInstance;

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
});

afterAll(async () => {
  await dynamo.close();
});

afterEach(() => {
  sendSpy?.mockRestore();
});

/** Counts the UpdateItem calls made from now on. */
function countUpdates(): () => number {
  sendSpy = vi.spyOn(dynamo.documentClient, 'send');
  return () => sendSpy.mock.calls.filter(([command]) => command instanceof UpdateCommand).length;
}

let jobCounter = 0;

/** A job in the table with an execution id (PENDING), and the loop state the start step hands over. */
async function startedJob(): Promise<PollState> {
  jobCounter += 1;
  const jobId = `poll-job-${jobCounter}`;
  await store.claim({
    job_id: jobId,
    chatbot_id: 'bot-1',
    metadata: {},
    source_message_id: `msg-${jobCounter}`,
    delivery: 'sqs',
    accepted_at: ACCEPTED_AT,
    deadline_at: '2025-03-02T12:00:00.000Z',
    expires_at: 1_800_000_000,
    state_machine_execution_name: `sm-${jobCounter}`,
    claim_expires_at: atMs(60),
  });
  await store.saveExecutionId(jobId, 'wf-exec', at(1));
  return {
    job_id: jobId,
    chatbot_id: 'bot-1',
    execution_id: 'wf-exec',
    accepted_at: ACCEPTED_AT,
    deadline_at: '2025-03-02T12:00:00.000Z',
    status: JOB_STATUS.PENDING,
    progress: null,
    current_node: null,
    poll_count: 0,
    next_poll_seconds: 1,
  };
}

function poller(script: Array<ExecutionStatus | Error>, options: { clockSeconds?: number; logger?: AppLogger } = {}) {
  const waterflai = new ScriptedWaterflai(script);
  let seconds = options.clockSeconds ?? 100;
  const instance = new JobPoller({
    store,
    waterflai,
    logger: options.logger ?? fakeLogger(),
    pollSettings: POLL_SETTINGS,
    maxInlineOutputBytes: MAX_INLINE_OUTPUT_BYTES,
    now: () => atMs((seconds += 1)),
  });
  return { instance, waterflai };
}

/**
 * Polls until the job is terminal, the clock (seconds after ACCEPTED_AT, from 100) moving by
 * each planned wait. Returns the last state and when the last poll was made.
 */
async function pollToTheEnd(
  start: PollState,
  waterflai: ScriptedWaterflai,
  deps: Pick<ConstructorParameters<typeof JobPoller>[0], 'authGraceSeconds' | 'cancelRetryDelaysMs'>,
): Promise<{ state: PollState; lastPollSeconds: number }> {
  let seconds = 100;
  const instance = new JobPoller({
    store,
    waterflai,
    logger: fakeLogger(),
    pollSettings: POLL_SETTINGS,
    maxInlineOutputBytes: MAX_INLINE_OUTPUT_BYTES,
    now: () => atMs(seconds),
    ...deps,
  });
  let state = start;
  let lastPollSeconds = seconds;
  while (!isTerminal(state.status)) {
    lastPollSeconds = seconds;
    state = await instance.poll(state, PLENTY_OF_TIME);
    seconds += state.next_poll_seconds;
  }
  return { state, lastPollSeconds };
}

describe('JobPoller', () => {
  describe('recording changes', () => {
    it('writes a new status with its fields, the poll count and the observation time', async () => {
      // Prepare
      const state = await startedJob();
      const { instance } = poller(
        [execution('RUNNING', { progress: 12.345678, current_node: 'retrieve', completed_nodes: 1, total_nodes: 4 })],
        { clockSeconds: 9 },
      );
      const updates = countUpdates();

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(updates()).toBe(1);
      expect(next).toEqual({
        ...state,
        status: JOB_STATUS.RUNNING,
        progress: 12.35,
        current_node: 'retrieve',
        poll_count: 1,
        execution_polls: 1,
        cleanup_after: null,
        upstream_seen: true,
        progress_scale: 'percent',
        next_poll_seconds: nextPollSeconds(POLL_SETTINGS),
      });
      expect(await store.get(state.job_id)).toMatchObject({
        status: JOB_STATUS.RUNNING,
        progress: 12.35,
        current_node: 'retrieve',
        completed_nodes: 1,
        total_nodes: 4,
        polls: 1,
        observed_at: at(10),
        updated_at: at(10),
        upstream_started_at: '2025-03-01T12:00:02.000Z',
      });
    });

    it('does not write when status, progress and current node are unchanged', async () => {
      // Prepare
      const state = await startedJob();
      const same = execution('RUNNING', { progress: 50, current_node: 'summarise' });
      const { instance } = poller([same, same, same]);
      const first = await instance.poll(state, PLENTY_OF_TIME);
      const versionAfterFirst = (await store.get(state.job_id))!.version;
      const updates = countUpdates();

      // Act
      const second = await instance.poll(first, PLENTY_OF_TIME);
      const third = await instance.poll(second, PLENTY_OF_TIME);

      // Assess
      expect(updates()).toBe(0);
      expect((await store.get(state.job_id))!.version).toBe(versionAfterFirst);
      expect(third).toMatchObject({ status: JOB_STATUS.RUNNING, progress: 50, current_node: 'summarise', poll_count: 3 });
    });

    it.each([
      { name: 'the status', answer: execution('RUNNING', { progress: 50, current_node: 'a' }) },
      { name: 'the progress', answer: execution('PENDING', { progress: 51, current_node: 'a' }) },
      { name: 'the current node', answer: execution('PENDING', { progress: 50, current_node: 'b' }) },
      { name: 'the current node to null', answer: execution('PENDING', { progress: 50, current_node: null }) },
      { name: 'the progress to null', answer: execution('PENDING', { progress: null, current_node: 'a' }) },
    ])('writes once when only $name changed', async ({ answer }) => {
      // Prepare
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.PENDING, progress: 50, current_node: 'a' };
      const { instance } = poller([answer]);
      const updates = countUpdates();

      // Act
      await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(updates()).toBe(1);
    });

    it('does not write when only fields outside status, progress and current node changed', async () => {
      // Prepare
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.PENDING, progress: 50, current_node: 'a' };
      const { instance } = poller([execution('PENDING', { progress: 50, current_node: 'a', completed_nodes: 9 })]);
      const updates = countUpdates();

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(updates()).toBe(0);
      expect(next.poll_count).toBe(1);
    });

    it('increments poll_count on every poll and takes next_poll_seconds from the strategy', async () => {
      // Prepare
      let state = await startedJob();
      const { instance } = poller([execution('PENDING'), execution('RUNNING', { progress: 5 }), execution('RUNNING', { progress: 5 })]);

      // Act
      const seen: Array<[number, number]> = [];
      for (let i = 0; i < 3; i += 1) {
        state = await instance.poll(state, PLENTY_OF_TIME);
        seen.push([state.poll_count, state.next_poll_seconds]);
      }

      // Assess
      expect(seen).toEqual([
        [1, 5],
        [2, 5],
        [3, 5],
      ]);
    });

    it("gives Waterflai a request deadline that fits in the Lambda's remaining time", async () => {
      // Prepare
      const state = await startedJob();
      const { instance, waterflai } = poller([execution('PENDING'), execution('PENDING')]);

      // Act
      const next = await instance.poll(state, () => 7_500);
      await instance.poll(next, () => 600_000);

      // Assess
      expect(waterflai.reads).toEqual([
        { executionId: 'wf-exec', options: { timeoutMs: 4_500 } },
        { executionId: 'wf-exec', options: { timeoutMs: 10_000 } },
      ]);
    });
  });

  describe.each([
    {
      status: JOB_STATUS.COMPLETED,
      answer: execution('COMPLETED', { progress: 100, current_node: 'end', final_output: { answer: 'forty-two', items: [1, 2] } }),
      expected: { final_output: { answer: 'forty-two', items: [1, 2] } },
    },
    {
      status: JOB_STATUS.FAILED,
      answer: execution('FAILED', { progress: 100, current_node: 'end', error_message: 'node end crashed' }),
      expected: { error_code: ERROR_CODE.EXECUTION_FAILED, error_message: 'node end crashed' },
    },
    {
      status: JOB_STATUS.CANCELLED,
      answer: execution('CANCELLED', { progress: 100, current_node: 'end' }),
      expected: { cancel_reason: 'remote' },
    },
  ])('a terminal $status answer', ({ status, answer, expected }) => {
    it('is always written, even when progress and node did not change, with its outcome fields', async () => {
      // Prepare: the loop state already shows what the terminal answer reports, except the status
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, progress: 100, current_node: 'end', poll_count: 8 };
      const { instance } = poller([answer], { clockSeconds: 199 });
      const updates = countUpdates();

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(updates()).toBe(1);
      expect(next).toMatchObject({ status, poll_count: 9, progress: 100, current_node: 'end' });
      const record = await store.get(state.job_id);
      expect(record).toMatchObject({ ...expected, status, status_rank: STATUS_RANK[status], finished_at: at(200), polls: 9 });
    });

    it('is written even when the loop state already shows that status', async () => {
      // Prepare: a retried poll after the write succeeded but the Lambda's answer was lost
      const state: PollState = { ...(await startedJob()), status, progress: 100, current_node: 'end' };
      const { instance } = poller([answer]);
      const updates = countUpdates();

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(updates()).toBe(1);
      expect(next.status).toBe(status);
      expect((await store.get(state.job_id))?.status).toBe(status);
    });
  });

  describe('429 Too Many Requests', () => {
    it.each([
      { name: 'a Retry-After above the interval is honoured', retryAfter: 7 as number | undefined, expected: 7 },
      { name: 'a Retry-After above maxSeconds is still honoured', retryAfter: 600, expected: 600 },
      { name: 'a Retry-After below the interval keeps the interval', retryAfter: 2, expected: 5 },
      { name: 'a huge Retry-After is capped', retryAfter: 999_999, expected: MAX_RETRY_AFTER_SECONDS },
      { name: 'no Retry-After waits the interval', retryAfter: undefined, expected: 5 },
    ])('does not throw or write, and waits as asked: $name', async ({ retryAfter, expected }) => {
      // Prepare
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, progress: 30, current_node: 'x', poll_count: 4 };
      const logger = fakeLogger();
      const { instance } = poller([new WaterflaiHttpError('get', 429, retryAfter)], { logger });
      const before = await store.get(state.job_id);
      const updates = countUpdates();

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(next).toEqual({ ...state, poll_count: 5, execution_polls: 1, next_poll_seconds: expected });
      expect(updates()).toBe(0);
      expect(await store.get(state.job_id)).toEqual(before);
      expect(logger.info).toHaveBeenCalledWith('Waterflai asked us to slow down', {
        job_id: state.job_id,
        retry_after_seconds: retryAfter,
      });
    });
  });

  describe('upstream incidents', () => {
    it.each([
      { name: 'HTTP 500', error: new WaterflaiHttpError('get', 500), kind: 'transient' },
      { name: 'HTTP 502', error: new WaterflaiHttpError('get', 502), kind: 'transient' },
      { name: 'HTTP 503', error: new WaterflaiHttpError('get', 503), kind: 'transient' },
      { name: 'HTTP 504', error: new WaterflaiHttpError('get', 504), kind: 'transient' },
      { name: 'HTTP 408', error: new WaterflaiHttpError('get', 408), kind: 'transient' },
      { name: 'a timeout', error: new WaterflaiNetworkError('get', 'TIMEOUT', 'no answer within 10000 ms'), kind: 'transient' },
      {
        name: 'a connection reset',
        error: new WaterflaiNetworkError('get', 'NETWORK_ERROR', 'connection failed (ECONNRESET)'),
        kind: 'transient',
      },
      { name: 'an invalid response', error: new WaterflaiResponseError('get', 'body is not valid JSON'), kind: 'transient' },
      { name: 'HTTP 401 (after a fresh key)', error: new WaterflaiHttpError('get', 401), kind: 'auth' },
      { name: 'HTTP 403 (after a fresh key)', error: new WaterflaiHttpError('get', 403), kind: 'auth' },
    ])('$name: the loop goes on with backoff and the record shows the incident', async ({ error, kind }) => {
      // Prepare
      const state = await startedJob();
      const { instance } = poller([error], { clockSeconds: 9 });

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(next.status).toBe(JOB_STATUS.PENDING);
      expect(next.incident).toEqual({ kind, since: at(11), failures: 1, last_error: `${error.name}: ${error.message}` });
      expect(next.next_poll_seconds).toBeGreaterThanOrEqual(INCIDENT_BACKOFF_BASE_SECONDS / 2);
      expect(next.next_poll_seconds).toBeLessThanOrEqual(INCIDENT_BACKOFF_BASE_SECONDS);
      expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.PENDING, incident: next.incident });
    });

    it('backs off exponentially, never past pollMaxSeconds, writing the incident only when it starts', async () => {
      // Prepare
      const failures = 12;
      let state: PollState = await startedJob();
      const { instance } = poller(Array.from({ length: failures }, () => new WaterflaiHttpError('get', 503)));
      const updates = countUpdates();
      const waits: number[] = [];

      // Act
      for (let poll = 0; poll < failures; poll += 1) {
        state = await instance.poll(state, PLENTY_OF_TIME);
        waits.push(state.next_poll_seconds);
      }

      // Assess
      expect(updates()).toBe(1);
      expect(state.incident?.failures).toBe(failures);
      expect(state.poll_count).toBe(failures);
      expect(Math.max(...waits)).toBeLessThanOrEqual(POLL_SETTINGS.maxSeconds);
      expect(waits.at(-1)).toBeGreaterThanOrEqual(POLL_SETTINGS.maxSeconds / 2);
      expect(waits[2]!).toBeGreaterThanOrEqual(2 * INCIDENT_BACKOFF_BASE_SECONDS);
    });

    it('ends the incident when Waterflai answers again: normal polling, incident cleared on the record', async () => {
      // Prepare
      const state = await startedJob();
      const logger = fakeLogger();
      const { instance } = poller([new WaterflaiHttpError('get', 503), execution('RUNNING', { progress: 30 })], { logger });
      const during = await instance.poll(state, PLENTY_OF_TIME);

      // Act
      const after = await instance.poll(during, PLENTY_OF_TIME);

      // Assess
      expect(after.incident).toBeUndefined();
      expect(after).toMatchObject({ status: JOB_STATUS.RUNNING, progress: 30, next_poll_seconds: nextPollSeconds(POLL_SETTINGS) });
      expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.RUNNING, incident: null });
      expect(logger.info).toHaveBeenCalledWith(
        'upstream incident over: Waterflai answers again',
        expect.objectContaining({ job_id: state.job_id, failures: 1 }),
      );
    });

    it('the read that ends an incident may settle the job: the record stops showing the incident all the same', async () => {
      const state = await startedJob();
      const { instance } = poller([
        new WaterflaiNetworkError('get', 'NETWORK_ERROR', 'connection failed (ECONNREFUSED)'),
        execution('COMPLETED', { final_output: 1 }),
      ]);

      const during = await instance.poll(state, PLENTY_OF_TIME);
      expect((await store.get(state.job_id))?.incident).toMatchObject({ kind: 'transient' });
      const after = await instance.poll(during, PLENTY_OF_TIME);

      expect(after.status).toBe(JOB_STATUS.COMPLETED);
      expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.COMPLETED, incident: null });
    });

    it('an outage never fails the job before its deadline; at the deadline the execution is cancelled and the job times out', async () => {
      // Prepare: every read fails until past the deadline (2 days of 503s at pollMaxSeconds)
      const start: PollState = { ...(await startedJob()), deadline_at: at(3_600) };
      const waterflai = new ScriptedWaterflai(Array.from({ length: 200 }, () => new WaterflaiHttpError('get', 503)));

      // Act
      const { state, lastPollSeconds } = await pollToTheEnd(start, waterflai, { cancelRetryDelaysMs: [] });

      // Assess
      expect(lastPollSeconds).toBeGreaterThanOrEqual(3_600);
      expect(waterflai.cancelled).toHaveLength(1);
      expect(await store.get(state.job_id)).toMatchObject({
        status: JOB_STATUS.FAILED,
        error_code: ERROR_CODE.TIMED_OUT,
        upstream_cancel: 'confirmed',
      });
    });

    it('a key refused past the auth grace period gives up: the execution is cancelled and the job ends POLL_FAILED', async () => {
      // Prepare
      const waterflai = new ScriptedWaterflai(Array.from({ length: 50 }, () => new WaterflaiHttpError('get', 401)));

      // Act
      const { state, lastPollSeconds } = await pollToTheEnd(await startedJob(), waterflai, { authGraceSeconds: 300 });

      // Assess
      expect(lastPollSeconds - 100).toBeGreaterThanOrEqual(300);
      expect(waterflai.cancelled).toHaveLength(1);
      expect(await store.get(state.job_id)).toMatchObject({
        status: JOB_STATUS.FAILED,
        error_code: ERROR_CODE.POLL_FAILED,
        upstream_cancel: 'confirmed',
      });
      expect((await store.get(state.job_id))?.error_message).toMatch(/^AuthGraceExpired: Waterflai refused the API key since/);
    });

    it('a key refused only for a while is ridden out: the job goes on when the key works again', async () => {
      const state = await startedJob();
      const { instance } = poller([
        new WaterflaiHttpError('get', 401),
        new WaterflaiHttpError('get', 401),
        execution('COMPLETED', { progress: 100, final_output: { ok: true } }),
      ]);

      let next = await instance.poll(state, PLENTY_OF_TIME);
      next = await instance.poll(next, PLENTY_OF_TIME);
      next = await instance.poll(next, PLENTY_OF_TIME);

      expect(next.status).toBe(JOB_STATUS.COMPLETED);
      expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: { ok: true } });
    });
  });

  describe('a 404', () => {
    it('before any successful read is tolerated a few times (Waterflai may not have caught up), then ends EXECUTION_NOT_FOUND', async () => {
      let state: PollState = await startedJob();
      const { instance } = poller(
        Array.from({ length: NOT_FOUND_BEFORE_FIRST_READ_TOLERANCE + 1 }, () => new WaterflaiHttpError('get', 404)),
      );

      for (let poll = 0; poll < NOT_FOUND_BEFORE_FIRST_READ_TOLERANCE; poll += 1) {
        state = await instance.poll(state, PLENTY_OF_TIME);
        expect(state.status).toBe(JOB_STATUS.PENDING);
      }
      state = await instance.poll(state, PLENTY_OF_TIME);

      expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.EXECUTION_NOT_FOUND });
    });

    it('after the execution was seen running, with no cleanup due, ends EXECUTION_NOT_FOUND at once', async () => {
      const state = await startedJob();
      const { instance } = poller([execution('RUNNING', { progress: 10 }), new WaterflaiHttpError('get', 404)]);

      const running = await instance.poll(state, PLENTY_OF_TIME);
      const next = await instance.poll(running, PLENTY_OF_TIME);

      expect(next.status).toBe(JOB_STATUS.FAILED);
      const record = await store.get(state.job_id);
      expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.EXECUTION_NOT_FOUND });
      expect(record?.error_message).toMatch(/reported it RUNNING before/);
    });
  });

  describe('permanent failures', () => {
    it.each([
      { name: 'a refused redirect', error: new WaterflaiRedirectError('get', 302) },
      { name: 'HTTP 400', error: new WaterflaiHttpError('get', 400) },
      { name: 'an invalid execution id', error: new InvalidIdentifierError('execution_id', 'empty') },
      { name: 'an unexpected error', error: new TypeError('cannot read properties of undefined') },
    ])('$name propagates unchanged (not retried, caught by the state machine)', async ({ error }) => {
      // Prepare
      const state = await startedJob();
      const { instance } = poller([error]);
      const updates = countUpdates();

      // Act
      const thrown = await instance.poll(state, PLENTY_OF_TIME).then(
        () => undefined,
        (caught: unknown) => caught,
      );

      // Assess
      expect(thrown).toBe(error);
      expect(thrown).not.toBeInstanceOf(TransientPollError);
      expect(updates()).toBe(0);
    });
  });

  describe('a job settled by someone else', () => {
    it.each([
      { name: 'a RUNNING answer', answer: execution('RUNNING', { progress: 80, current_node: 'late' }) },
      { name: 'a COMPLETED answer', answer: execution('COMPLETED', { progress: 100, final_output: 'done' }) },
    ])('returns the recorded terminal status on $name and leaves the record alone', async ({ answer }) => {
      // Prepare
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, progress: 40 };
      await store.applyStatus(state.job_id, {
        status: JOB_STATUS.CANCELLED,
        fields: { cancel_reason: 'requested', finished_at: at(50) },
        now: at(50),
      });
      const before = await store.get(state.job_id);
      const logger = fakeLogger();
      const { instance } = poller([answer], { logger });

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(next.status).toBe(JOB_STATUS.CANCELLED);
      expect(next.poll_count).toBe(1);
      expect(await store.get(state.job_id)).toEqual(before);
      expect(logger.info).toHaveBeenCalledWith('job already settled; finishing with the recorded outcome', {
        job_id: state.job_id,
        status: JOB_STATUS.CANCELLED,
      });
    });

    it('never overwrites a recorded COMPLETED with a backwards RUNNING', async () => {
      // Prepare: the loop state lags behind the record
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, progress: 90 };
      await store.applyStatus(state.job_id, {
        status: JOB_STATUS.COMPLETED,
        fields: { final_output: { ok: true }, finished_at: at(70) },
        now: at(70),
      });
      const before = await store.get(state.job_id);
      const { instance } = poller([execution('RUNNING', { progress: 95 })]);

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(next.status).toBe(JOB_STATUS.COMPLETED);
      const after = await store.get(state.job_id);
      expect(after).toEqual(before);
      expect(after).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: { ok: true } });
    });
  });

  describe('stale observations', () => {
    it('keeps the recorded state when Waterflai reports an earlier status than recorded', async () => {
      // Prepare: the record is RUNNING (another poll got there first) but this answer says PENDING
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.PENDING, progress: 10, current_node: 'a', poll_count: 2 };
      await store.applyStatus(state.job_id, { status: JOB_STATUS.RUNNING, fields: { progress: 40 }, now: at(20) });
      const before = await store.get(state.job_id);
      const logger = fakeLogger();
      const { instance } = poller([execution('PENDING', { progress: 11, current_node: 'a' })], { logger });

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(next).toEqual({
        ...state,
        status: JOB_STATUS.RUNNING,
        poll_count: 3,
        execution_polls: 1,
        upstream_seen: true,
        next_poll_seconds: 5,
      });
      expect(await store.get(state.job_id)).toEqual(before);
      expect(logger.warn).toHaveBeenCalledWith('status update refused as stale', {
        job_id: state.job_id,
        observed: JOB_STATUS.PENDING,
        recorded: JOB_STATUS.RUNNING,
      });
    });

    it('refuses an observation made before the one already recorded', async () => {
      // Prepare: a concurrent poller with a later clock already recorded progress 70
      const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, progress: 60 };
      await store.applyStatus(state.job_id, { status: JOB_STATUS.RUNNING, fields: { progress: 70 }, observedAt: at(500), now: at(500) });
      const { instance } = poller([execution('RUNNING', { progress: 65 })], { clockSeconds: 300 });

      // Act
      const next = await instance.poll(state, PLENTY_OF_TIME);

      // Assess
      expect(next).toMatchObject({ status: JOB_STATUS.RUNNING, progress: 60, poll_count: 1 });
      expect(await store.get(state.job_id)).toMatchObject({ progress: 70, observed_at: at(500) });
    });
  });

  it('settles an output over maxInlineOutputBytes as FAILED OUTPUT_TOO_LARGE without storing it', async () => {
    // Prepare
    const state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING };
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: { text: 'x'.repeat(MAX_INLINE_OUTPUT_BYTES) } })]);

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.FAILED);
    const record = await store.get(state.job_id);
    expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.OUTPUT_TOO_LARGE });
    expect(record?.error_message).toContain(`over the ${MAX_INLINE_OUTPUT_BYTES} byte limit`);
    expect(record).not.toHaveProperty('final_output');
  });

  it('records an unknown status as UNKNOWN and keeps the loop going', async () => {
    // Prepare
    let state: PollState = { ...(await startedJob()), status: JOB_STATUS.RUNNING, progress: 20 };
    const { instance } = poller([
      execution('PAUSED_FOR_REVIEW', { progress: 20 }),
      execution('RUNNING', { progress: 25 }),
      execution('COMPLETED', { progress: 100, final_output: 1 }),
    ]);

    // Act
    const statuses: JobStatus[] = [];
    for (let i = 0; i < 3; i += 1) {
      state = await instance.poll(state, PLENTY_OF_TIME);
      statuses.push(state.status);
      if (i === 0) {
        // Assess (mid-loop): UNKNOWN is recorded and the loop is told to wait and poll again
        expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.UNKNOWN, status_rank: STATUS_RANK.UNKNOWN });
        expect(state.next_poll_seconds).toBe(5);
      }
    }

    // Assess
    expect(statuses).toEqual([JOB_STATUS.UNKNOWN, JOB_STATUS.RUNNING, JOB_STATUS.COMPLETED]);
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: 1, polls: 3 });
  });

  it('drives a job from PENDING to COMPLETED with one write per change', async () => {
    // Prepare
    let state = await startedJob();
    const answers = [
      execution('PENDING'),
      execution('RUNNING', { progress: 10, current_node: 'a' }),
      execution('RUNNING', { progress: 10, current_node: 'a' }),
      execution('RUNNING', { progress: 60, current_node: 'b' }),
      execution('COMPLETED', { progress: 100, current_node: 'b', final_output: { result: 'ok' } }),
    ];
    const { instance } = poller(answers);
    const updates = countUpdates();
    const terminal: TerminalStatus = JOB_STATUS.COMPLETED;

    // Act
    for (let i = 0; i < 5; i += 1) state = await instance.poll(state, PLENTY_OF_TIME);

    // Assess: PENDING (unchanged from the start) and the repeated RUNNING wrote nothing
    expect(updates()).toBe(3);
    expect(state).toMatchObject({ status: terminal, poll_count: 5 });
    expect(await store.get(state.job_id)).toMatchObject({ status: terminal, version: 5, polls: 5, final_output: { result: 'ok' } });
  });
});

describe('JobPoller: outputs DynamoDB could not store as a map', () => {
  it.each([
    ['an integer beyond 2^53', { id: 9007199254740993n }],
    ['a number above DynamoDB range', { id: 1e200 }],
    ['a number below DynamoDB range', { x: 1e-200 }],
    ['nesting deeper than 32 levels', { deep: JSON.parse(`${'['.repeat(40)}1${']'.repeat(40)}`) as unknown }],
    ['an empty key', { '': 'value' }],
  ])('records a COMPLETED output with %s exactly as received', async (_name, output) => {
    // Prepare: bigint stands for a number JSON.parse would not keep exactly; use its closest double
    const finalOutput = JSON.parse(
      JSON.stringify(output, (_key, value: unknown) => (typeof value === 'bigint' ? Number(value) : value)),
    ) as unknown;
    const state = await startedJob();
    const { instance } = poller([execution('COMPLETED', { progress: 100, final_output: finalOutput })]);

    // Act
    const next = await instance.poll(state, PLENTY_OF_TIME);

    // Assess
    expect(next.status).toBe(JOB_STATUS.COMPLETED);
    expect((await store.get(state.job_id))?.final_output).toEqual(finalOutput);
  });
});

describe('JobPoller: DynamoDB faults while recording', () => {
  it.each([
    ['throttling', Object.assign(new Error('Rate exceeded'), { name: 'ProvisionedThroughputExceededException', $fault: 'client' })],
    ['a 5xx', Object.assign(new Error('Internal error'), { name: 'InternalServerError', $fault: 'server' })],
  ])('%s becomes a TransientPollError so the state machine retries it', async (_name, fault) => {
    // Prepare
    const state = await startedJob();
    const { instance } = poller([execution('RUNNING', { progress: 5 })]);
    sendSpy = vi.spyOn(dynamo.documentClient, 'send').mockRejectedValueOnce(fault);

    // Act / Assess
    await expect(instance.poll(state, PLENTY_OF_TIME)).rejects.toMatchObject({ name: 'TransientPollError', cause: fault });
  });

  it('a validation error is not retried', async () => {
    const state = await startedJob();
    const { instance } = poller([execution('RUNNING', { progress: 5 })]);
    const fault = Object.assign(new Error('bad expression'), { name: 'ValidationException', $fault: 'client' });
    sendSpy = vi.spyOn(dynamo.documentClient, 'send').mockRejectedValueOnce(fault);

    await expect(instance.poll(state, PLENTY_OF_TIME)).rejects.toBe(fault);
  });
});

describe('JobPoller: progress as a fraction or a percent', () => {
  it('a server reporting 0..1 fractions is recorded in percent, and the decided scale is kept in the loop state', async () => {
    let state: PollState = await startedJob();
    const { instance } = poller([execution('RUNNING', { progress: 0.37 }), execution('RUNNING', { progress: 1, status: 'RUNNING' })]);

    state = await instance.poll(state, PLENTY_OF_TIME);
    expect(state).toMatchObject({ progress: 37, progress_scale: 'fraction' });
    expect((await store.get(state.job_id))?.progress).toBe(37);

    // Once decided, an ambiguous 1 is 100%, not 1%.
    state = await instance.poll(state, PLENTY_OF_TIME);
    expect(state).toMatchObject({ progress: 100, progress_scale: 'fraction' });
  });

  it('node counts tell 1% from 100%: progress 1 with 1 of 100 nodes done is 1%', async () => {
    const state = await startedJob();
    const { instance } = poller([execution('RUNNING', { progress: 1, completed_nodes: 1, total_nodes: 100 })]);

    const next = await instance.poll(state, PLENTY_OF_TIME);

    expect(next).toMatchObject({ progress: 1, progress_scale: 'percent' });
  });

  it("a percent server (the contract's stream example, 50.0) is recorded as it is", async () => {
    const state = await startedJob();
    const { instance } = poller([execution('RUNNING', { progress: 50 })]);

    const next = await instance.poll(state, PLENTY_OF_TIME);

    expect(next).toMatchObject({ progress: 50, progress_scale: 'percent' });
  });
});
