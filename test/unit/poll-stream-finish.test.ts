import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { JobPoller, type ExecutionStreamListener } from '../../lambdas/poll/poll-job';
import type { Clock } from '../../lambdas/domain/clock';
import { JOB_STATUS, WATERFLAI_STATUS, type WaterflaiStatus } from '../../lambdas/contract/constants';
import { WaterflaiHttpError } from '../../lambdas/contract/errors';
import { listenToExecution, type ListenResult, type StreamProgress } from '../../lambdas/waterflai/stream';
import { JobStore } from '../../lambdas/aws/job-store';
import type { AppLogger } from '../../lambdas/platform/logger';
import { adaptiveStrategy, DEFAULT_ADAPTIVE_SETTINGS } from '../../lambdas/domain/poll-strategy';
import type { FixedIntervalSettings } from '../../lambdas/contract/settings';
import type { ExecutionStatus } from '../../lambdas/contract/waterflai-api';
import type { PollState } from '../../lambdas/domain/workflow';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';
import { ScriptedWaterflai } from '../support/scripted-waterflai';

/**
 * The poll Lambda's stream finish: when the strategy says the end may be near, the poll
 * listens on the execution's stream, then reads the status (the read decides) and records
 * it. DynamoDB is dynalite; Waterflai's status reads are scripted; the stream is a fake
 * listener, or the real listener against a local SSE server.
 */
const ACCEPTED_AT = '2025-03-01T12:00:00.000Z';
const POLL_SETTINGS: FixedIntervalSettings = { intervalSeconds: 10, minSeconds: 1, maxSeconds: 300 };
const TEN_MINUTES = (): number => 600_000;
const acceptedMs = Date.parse(ACCEPTED_AT);
const atMs = (seconds: number): number => acceptedMs + seconds * 1000;

function execution(status: WaterflaiStatus, overrides: Partial<ExecutionStatus> = {}): ExecutionStatus {
  return {
    execution_id: 'wf-exec',
    status,
    known_status: status,
    progress: null,
    current_node: null,
    completed_nodes: null,
    total_nodes: null,
    final_output: undefined,
    error_message: null,
    created_at: null,
    started_at: '2025-03-01T12:00:01.000Z',
    completed_at: null,
    retry_count: null,
    execution_source: null,
    is_temporary: null,
    cleanup_after: null,
    ...overrides,
  };
}

/** Node `n` of 10 finished: the job is near its end when n is 9. */
const running = (completed: number): ExecutionStatus =>
  execution(WATERFLAI_STATUS.RUNNING, {
    progress: completed * 10,
    completed_nodes: completed,
    total_nodes: 10,
    current_node: `node-${completed + 1}`,
  });

/** A stream listener that "hears" the given events, then ends as told; the clock advances meanwhile. */
function fakeStream(
  clock: { ms: number },
  events: Array<Omit<StreamProgress, 'receivedAtMs'> & { afterMs: number }>,
  end: Pick<ListenResult, 'outcome'> & { afterMs: number },
) {
  const calls: Array<{ executionId: string; windowMs: number }> = [];
  const listener: ExecutionStreamListener = {
    async listen(executionId, options) {
      calls.push({ executionId, windowMs: options.windowMs });
      const start = clock.ms;
      const heard: StreamProgress[] = [];
      for (const { afterMs, ...event } of events) {
        clock.ms = start + afterMs;
        const progress = { ...event, receivedAtMs: clock.ms };
        heard.push(progress);
        options.onEvent(progress);
        if (!options.keepListening())
          return { outcome: 'stopped', events: heard.length, malformed: 0, progress: heard, elapsedMs: clock.ms - start };
      }
      clock.ms = start + Math.min(end.afterMs, options.windowMs);
      return { outcome: end.outcome, events: heard.length, malformed: 0, progress: heard, elapsedMs: clock.ms - start };
    },
  };
  return { listener, calls };
}

const logger = (): AppLogger => ({ debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() });

let dynamo: LocalDynamo;
let store: JobStore;
let counter = 0;

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
});

afterAll(async () => {
  await dynamo.close();
});

/** A RUNNING job near its end: 9 of 10 nodes done, the strategy's memory reflecting it. */
async function nearTheEnd(): Promise<PollState> {
  counter += 1;
  const jobId = `stream-job-${counter}`;
  await store.claim({
    job_id: jobId,
    chatbot_id: 'bot-1',
    metadata: {},
    source_message_id: `msg-${counter}`,
    delivery: 'sqs',
    accepted_at: ACCEPTED_AT,
    deadline_at: '2025-03-02T12:00:00.000Z',
    expires_at: 1_800_000_000,
    state_machine_execution_name: `sm-${counter}`,
    claim_expires_at: atMs(60),
  });
  await store.saveExecutionId(jobId, 'wf-exec', new Date(atMs(1)).toISOString());
  const strategy = adaptiveStrategy();
  let memory = strategy.observe(undefined, { at: 1, status: 'RUNNING', progress: 0, completedNodes: 0, totalNodes: 10, startedAt: 1 });
  for (let node = 1; node <= 9; node += 1)
    memory = strategy.observe(memory, {
      at: 1 + node * 60,
      status: 'RUNNING',
      progress: node * 10,
      completedNodes: node,
      totalNodes: 10,
      exact: true,
    });
  return {
    job_id: jobId,
    chatbot_id: 'bot-1',
    execution_id: 'wf-exec',
    accepted_at: ACCEPTED_AT,
    deadline_at: '2025-03-02T12:00:00.000Z',
    status: JOB_STATUS.RUNNING,
    progress: 90,
    current_node: 'node-10',
    poll_count: 12,
    next_poll_seconds: 1,
    poll_memo: memory,
  };
}

/** The test's clock; job time runs 1/scale times faster than it (a host's time-scaled clock). */
function scaledClock(clock: { ms: number }, scale: number): Clock {
  return { now: () => clock.ms, jobSeconds: (clockMs) => clockMs / 1000 / scale, clockMs: (jobSeconds) => jobSeconds * 1000 * scale };
}

function poller(
  script: Array<ExecutionStatus | Error>,
  options: { stream?: ExecutionStreamListener; clock: { ms: number }; timeScale?: number; log?: AppLogger },
) {
  const waterflai = new ScriptedWaterflai(script);
  const instance = new JobPoller({
    store,
    waterflai,
    logger: options.log ?? logger(),
    pollSettings: POLL_SETTINGS,
    strategy: adaptiveStrategy({ ...DEFAULT_ADAPTIVE_SETTINGS, ...POLL_SETTINGS }),
    maxInlineOutputBytes: 4096,
    random: () => 0.5,
    clock: scaledClock(options.clock, options.timeScale ?? 1),
    ...(options.stream ? { stream: options.stream } : {}),
  });
  return { instance, waterflai };
}

describe('JobPoller: the stream finish', () => {
  it('listens near the end, hears execution_completed, reads the status and settles the job in the same poll', async () => {
    // Prepare
    const state = await nearTheEnd();
    const clock = { ms: atMs(600) };
    const { listener, calls } = fakeStream(clock, [], { outcome: 'completed', afterMs: 42_000 });
    const done = execution(WATERFLAI_STATUS.COMPLETED, {
      progress: 100,
      completed_nodes: 10,
      total_nodes: 10,
      final_output: { answer: 42 },
    });
    const { instance, waterflai } = poller([running(9), done], { stream: listener, clock });

    // Act
    const next = await instance.poll(state, TEN_MINUTES);

    // Assess: one poll, one listen bounded by the invocation (10 min - 20 s reserve), two reads
    expect(calls).toEqual([{ executionId: 'wf-exec', windowMs: 580_000 }]);
    expect(waterflai.reads).toHaveLength(2);
    expect(next).toMatchObject({ status: JOB_STATUS.COMPLETED, poll_count: 13, progress: 100 });
    expect(await store.get(state.job_id)).toMatchObject({
      status: JOB_STATUS.COMPLETED,
      final_output: { answer: 42 },
      polls: 13,
      finished_at: new Date(atMs(642)).toISOString(),
    });
  });

  it('after a listen that ends without the end, reads and records the status and comes back soon, remembering what the stream showed', async () => {
    // Prepare
    const state = await nearTheEnd();
    const clock = { ms: atMs(600) };
    const { listener } = fakeStream(
      clock,
      [{ afterMs: 5_000, type: 'progress_update', status: 'RUNNING', progress: 95, completedNodes: null, totalNodes: 10, nodeId: null }],
      {
        outcome: 'window',
        afterMs: 580_000,
      },
    );
    const { instance } = poller(
      [running(9), execution(WATERFLAI_STATUS.RUNNING, { progress: 95, total_nodes: 10, current_node: 'node-10' })],
      { stream: listener, clock },
    );

    // Act
    const next = await instance.poll(state, TEN_MINUTES);

    // Assess
    expect(next).toMatchObject({ status: JOB_STATUS.RUNNING, progress: 95, poll_count: 13, next_poll_seconds: 1 });
    expect(next.poll_memo?.b?.[1]).toBe(95);
    expect(next.poll_memo?.b?.[0]).toBe(605); // dated when the stream event arrived
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.RUNNING, progress: 95 });
  });

  it('falls back to polling when the stream is unavailable: the next polls do not listen for a while', async () => {
    // Prepare
    const state = await nearTheEnd();
    const clock = { ms: atMs(600) };
    const { listener, calls } = fakeStream(clock, [], { outcome: 'unavailable', afterMs: 10 });
    const { instance } = poller([running(9), running(9), running(9)], { stream: listener, clock });

    // Act
    const first = await instance.poll(state, TEN_MINUTES);
    clock.ms += first.next_poll_seconds * 1000;
    const second = await instance.poll(first, TEN_MINUTES);

    // Assess: one listen attempt; then a poll-only wait (a share of the estimate), no listen
    expect(calls).toHaveLength(1);
    expect(first.poll_memo).toMatchObject({ e: 1, x: expect.any(Number) });
    expect(first.next_poll_seconds).toBeGreaterThanOrEqual(1);
    expect(second.poll_count).toBe(14);
    // The failed listen and the status read after it are one poll in the history budget
    expect(state.poll_memo?.k).toBeUndefined();
    expect(first.poll_memo?.k?.[0]).toBe(DEFAULT_ADAPTIVE_SETTINGS.budgetBurst - 1);
  });

  it('does not settle a cancel heard while listening (the execution may have been stopped meanwhile): the next poll does', async () => {
    // Prepare
    const state = await nearTheEnd();
    const clock = { ms: atMs(600) };
    const { listener } = fakeStream(clock, [], { outcome: 'completed', afterMs: 3_000 });
    const cancelled = execution(WATERFLAI_STATUS.CANCELLED, { progress: 90, completed_nodes: 9, total_nodes: 10, current_node: 'node-10' });
    const { instance } = poller([running(9), cancelled, cancelled], { stream: listener, clock });

    // Act
    const first = await instance.poll(state, TEN_MINUTES);
    const recordAfterFirst = await store.get(state.job_id);
    clock.ms += 1_000;
    const second = await instance.poll(first, TEN_MINUTES);

    // Assess: nothing recorded by the listening poll; the next one settles CANCELLED (remote)
    expect(first).toMatchObject({ status: JOB_STATUS.RUNNING, poll_count: 13, next_poll_seconds: 1 });
    expect(recordAfterFirst?.status).not.toBe(JOB_STATUS.CANCELLED);
    expect(second).toMatchObject({ status: JOB_STATUS.CANCELLED, poll_count: 14 });
    expect(await store.get(state.job_id)).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: 'remote' });
  });

  it('honours a 429 on the status read after a listen', async () => {
    // Prepare
    const state = await nearTheEnd();
    const clock = { ms: atMs(600) };
    const { listener } = fakeStream(clock, [], { outcome: 'window', afterMs: 580_000 });
    const { instance } = poller([running(9), new WaterflaiHttpError('get', 429, 90)], { stream: listener, clock });

    // Act
    const next = await instance.poll(state, TEN_MINUTES);

    // Assess
    expect(next).toMatchObject({ status: JOB_STATUS.RUNNING, poll_count: 13, next_poll_seconds: 90 });
  });

  it('rides out a transient failure of the status read after a listen: an incident, polled again with backoff', async () => {
    const state = await nearTheEnd();
    const clock = { ms: atMs(600) };
    const { listener } = fakeStream(clock, [], { outcome: 'completed', afterMs: 1_000 });
    const { instance } = poller([running(9), new WaterflaiHttpError('get', 503)], { stream: listener, clock });

    const next = await instance.poll(state, TEN_MINUTES);

    expect(next).toMatchObject({ status: JOB_STATUS.RUNNING, incident: { kind: 'transient', failures: 1 } });
    expect(next.next_poll_seconds).toBeGreaterThanOrEqual(5);
  });

  it('never listens past the job deadline, and keeps the reserve before the Lambda timeout', async () => {
    // Prepare: the deadline is 100 s away; the invocation has 60 s left
    const state = { ...(await nearTheEnd()), deadline_at: new Date(atMs(700)).toISOString() };
    const clock = { ms: atMs(600) };
    const { listener, calls } = fakeStream(clock, [], { outcome: 'window', afterMs: 1_000_000 });
    const { instance } = poller([running(9), running(9)], { stream: listener, clock });

    // Act
    await instance.poll(state, () => 60_000);

    // Assess
    expect(calls).toHaveLength(1);
    expect(calls[0]!.windowMs).toBeLessThanOrEqual(40_000);
  });

  it('never sleeps past the job deadline: the poll that cancels upstream comes right after it', async () => {
    // Prepare: far from the end (2 of 10 nodes), so the strategy would sleep the 300 s cap; the deadline is 40 s away
    const state = { ...(await nearTheEnd()), deadline_at: new Date(atMs(640)).toISOString() };
    const clock = { ms: atMs(600) };
    const { instance } = poller([running(2)], { clock });

    // Act
    const next = await instance.poll({ ...state, poll_memo: undefined, progress: 20 }, TEN_MINUTES);

    // Assess
    expect(next.next_poll_seconds).toBe(40);
  });

  it('does not listen without a stream', async () => {
    const state = await nearTheEnd();
    const clock = { ms: atMs(600) };
    const { instance, waterflai } = poller([running(9)], { clock });

    const next = await instance.poll(state, TEN_MINUTES);

    expect(waterflai.reads).toHaveLength(1);
    expect(next).toMatchObject({ status: JOB_STATUS.RUNNING, poll_count: 13 });
    expect(next.next_poll_seconds).toBeGreaterThanOrEqual(1);
  });

  it('reasons in job time under a local time scale: windows shrink, clock durations stretch', async () => {
    // Prepare: 20x faster than real time; the job state is the same in job time
    const state = await nearTheEnd();
    const clock = { ms: acceptedMs + 600 * 1000 * 0.05 };
    const { listener, calls } = fakeStream(clock, [], { outcome: 'window', afterMs: 1_000_000 });
    const { instance } = poller(
      [execution(WATERFLAI_STATUS.RUNNING, { ...running(9), started_at: new Date(acceptedMs + 50).toISOString() }), running(9)],
      { stream: listener, clock, timeScale: 0.05 },
    );

    // Act
    const next = await instance.poll(state, TEN_MINUTES);

    // Assess: the same 580 s of job time as on AWS = 29 s of clock time, and back in job time
    expect(calls[0]!.windowMs).toBe(29_000);
    expect(next.poll_memo?.w).toBeCloseTo(600 + 580, 0);
  });

  it('works end to end with the real listener on a local SSE stream', async () => {
    // Prepare: a stream that announces the last node and the end after 50 ms
    const server: Server = createServer((request, response) => {
      expect(request.headers['x-api-key']).toBe('k-0123456789');
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(': hello\n\n');
      setTimeout(() => response.end('data: {"type":"execution_completed","status":"COMPLETED"}\n\n'), 50);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/executions/wf-exec/stream`;
    const state = await nearTheEnd();
    const clock = { ms: atMs(600) };
    const stream: ExecutionStreamListener = {
      listen: (_id, options) => listenToExecution({ url, apiKey: () => 'k-0123456789', ...options }),
    };
    const { instance } = poller([running(9), execution(WATERFLAI_STATUS.COMPLETED, { progress: 100, final_output: { ok: true } })], {
      stream,
      clock,
    });

    try {
      // Act
      const next = await instance.poll(state, TEN_MINUTES);

      // Assess
      expect(next.status).toBe(JOB_STATUS.COMPLETED);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
