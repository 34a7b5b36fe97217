/**
 * End to end over the embedded local runtime: real SQS (fauxqs), real DynamoDB (DynamoDB
 * Local when java is available), the synthesized state machine on aws-local-stepfunctions,
 * the local EventBridge endpoint and the Waterflai simulator, with the three handlers
 * unchanged. One runtime for the whole file; each test uses its own job ids and chatbot ids
 * so the simulator's per-chatbot counters isolate it.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { GetQueueAttributesCommand, SendMessageBatchCommand, SQSClient, type Message } from '@aws-sdk/client-sqs';
import { ExecutionAlreadyExists, ListExecutionsCommand, SFNClient, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DETAIL_TYPE,
  DLQ_ATTRIBUTE,
  ERROR_CODE,
  EVENT_SOURCE,
  JOB_STATUS,
  STATUS_RANK,
  TERMINAL_RANK,
} from '../../lambdas/contract/constants';
import {
  installNetworkGuard,
  isLoopbackSocket,
  NonLoopbackConnectionError,
  processSockets,
  type NetworkGuard,
} from '../../local/runtime/net-guard';
import { hostClock } from '../../lambdas/platform/clock';
import { startLocalRuntime, type LocalRuntime } from '../../local/runtime/runtime';
import { drainQueue, eventsFor, jobBody, waitFor } from './support';

const TIME_SCALE = 0.2;

let guard: NetworkGuard;
let runtime: LocalRuntime;
let sqs: SQSClient;
let sfn: SFNClient;
const deadLetters: Message[] = [];

beforeAll(async () => {
  // Installed before the runtime opens a single connection, so it sees all of them.
  guard = installNetworkGuard({ mode: 'enforce' });
  runtime = await startLocalRuntime({
    timeScale: TIME_SCALE,
    stackConfig: { pollIntervalSeconds: 1 },
    networkGuard: guard,
    simulator: { seed: 20261129 },
  });
  const clientConfig = { region: runtime.region, credentials: runtime.credentials };
  sqs = new SQSClient({ ...clientConfig, endpoint: runtime.endpoints.sqs });
  sfn = new SFNClient({ ...clientConfig, endpoint: runtime.endpoints.aws });
}, 60_000);

afterAll(async () => {
  sqs?.destroy();
  sfn?.destroy();
  await runtime?.close();
  guard?.uninstall();
});

async function sendBatch(bodies: readonly string[]): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < bodies.length; start += 10) {
    const chunk = bodies.slice(start, start + 10);
    const result = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: runtime.intakeQueueUrl,
        Entries: chunk.map((body, index) => ({ Id: `m${index}`, MessageBody: body })),
      }),
    );
    expect(result.Failed ?? []).toEqual([]);
    const byId = new Map((result.Successful ?? []).map((entry) => [entry.Id, entry.MessageId]));
    for (const [index] of chunk.entries()) ids.push(byId.get(`m${index}`)!);
  }
  return ids;
}

async function executionsNamed(name: string): Promise<Array<{ name?: string; status?: string }>> {
  const listed = await sfn.send(new ListExecutionsCommand({ stateMachineArn: runtime.stateMachineArn, maxResults: 1000 }));
  return (listed.executions ?? []).filter((execution) => execution.name === name);
}

async function intakeQueueEmpty(): Promise<boolean> {
  const attributes = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: runtime.intakeQueueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
    }),
  );
  const a = attributes.Attributes ?? {};
  return (
    Number(a.ApproximateNumberOfMessages) +
      Number(a.ApproximateNumberOfMessagesNotVisible) +
      Number(a.ApproximateNumberOfMessagesDelayed) ===
    0
  );
}

describe('the local runtime', () => {
  it('is configured from the synthesized template', () => {
    expect(runtime.model.intakeQueue.maxReceiveCount).toBeGreaterThanOrEqual(1);
    expect(runtime.model.intakeQueue.attributes.VisibilityTimeout).toBe(String(runtime.model.functions.start.timeoutSeconds * 6));
    expect(Object.keys(runtime.model.stateMachine.taskRoles).sort()).toEqual(
      expect.arrayContaining(['PollExecution', 'PublishOutcome', 'RecordPollFailure']),
    );
    expect(runtime.intakeQueueUrl.startsWith('http://127.0.0.1:')).toBe(true);
    for (const url of Object.values(runtime.endpoints)) expect(new URL(url).hostname).toBe('127.0.0.1');
    // The poll function plans in job time, as deployed: the runtime injected its clock, whose
    // job time runs 1 / TIME_SCALE times faster (no environment variable tells product code).
    expect(hostClock().jobSeconds(1_000)).toBeCloseTo(1 / TIME_SCALE, 9);
  });

  it('runs 60 jobs mixing outcomes and durations to exactly one terminal record and one outcome event each', async () => {
    // Prepare
    const outcomes = ['completed', 'failed', 'cancelled'] as const;
    const shapes = ['linear', 'front_loaded', 'back_loaded', 'stall', 'none'] as const;
    const jobs = Array.from({ length: 60 }, (_, index) => {
      const outcome = outcomes[index % 3]!;
      const durationMs = 400 + ((index * 373) % 3_600);
      const simulate: Record<string, unknown> = {
        duration_ms: durationMs,
        nodes: 1 + (index % 6),
        progress: shapes[index % 5],
        queue_ms: (index % 4) * 100,
      };
      // Half of the cancellations happen at the natural end, half part-way through.
      if (outcome === 'cancelled' && index % 2 === 0) simulate.cancel_after_ms = Math.floor(durationMs / 2);
      else simulate.outcome = outcome;
      const expected = { completed: JOB_STATUS.COMPLETED, failed: JOB_STATUS.FAILED, cancelled: JOB_STATUS.CANCELLED }[outcome];
      return { jobId: `mix-${String(index).padStart(2, '0')}`, chatbotId: `mix-bot-${index % 4}`, simulate, expected, index };
    });

    // Act
    await sendBatch(jobs.map((job) => jobBody(job.jobId, job.chatbotId, job.simulate, { metadata: { index: job.index } })));
    await waitFor(
      'an outcome event for each of the 60 jobs',
      () => jobs.every((job) => eventsFor(runtime.eventBridge.events(), job.jobId).length > 0),
      60_000,
      250,
    );
    await waitFor(
      'every execution to end',
      async () =>
        (await Promise.all(jobs.map((job) => executionsNamed(job.jobId)))).every((found) => found.every((e) => e.status !== 'RUNNING')),
      10_000,
    );

    // Assess
    const events = runtime.eventBridge.events();
    for (const job of jobs) {
      const record = await runtime.getJob(job.jobId);
      expect(record?.status, job.jobId).toBe(job.expected);
      expect(record?.status_rank).toBe(TERMINAL_RANK);
      expect(record?.event_published_at, `${job.jobId} event_published_at`).toBeDefined();

      const published = eventsFor(events, job.jobId);
      expect(published, `${job.jobId} events`).toHaveLength(1);
      const [event] = published;
      expect(event!.source).toBe(EVENT_SOURCE);
      expect(event!['detail-type']).toBe(DETAIL_TYPE[job.expected as keyof typeof DETAIL_TYPE]);
      const detail = event!.detail as Record<string, unknown>;
      expect(detail.status).toBe(job.expected);
      expect(detail.event_id).toBe(`${job.jobId}:${job.expected.toLowerCase()}`);
      expect(detail.chatbot_id).toBe(job.chatbotId);
      expect(detail.metadata).toEqual({ index: job.index });
      if (job.expected === JOB_STATUS.FAILED) expect((detail.error as { code: string }).code).toBe(ERROR_CODE.EXECUTION_FAILED);
      if (job.expected === JOB_STATUS.CANCELLED) expect(detail.reason).toBe('remote');
      if (job.expected === JOB_STATUS.COMPLETED) expect(detail.final_output).toBeDefined();

      const executions = await executionsNamed(job.jobId);
      expect(
        executions.map((execution) => execution.status),
        `${job.jobId} executions`,
      ).toEqual(['SUCCEEDED']);
    }
    // Exactly one record per job, all terminal.
    const records = (await runtime.scanJobs()).filter((record) => record.job_id.startsWith('mix-'));
    expect(records).toHaveLength(60);
    expect(records.every((record) => record.status_rank === STATUS_RANK.COMPLETED)).toBe(true);
  }, 90_000);

  it('starts one Waterflai execution and one state machine execution for a job delivered twice (and once more later)', async () => {
    // Prepare
    const body = jobBody('dup-job-1', 'dup-bot', { duration_ms: 1_500, nodes: 3 });
    const recordsBefore = runtime.eventSource.stats().records;

    // Act: two deliveries at once, then a third after the job finished.
    await sendBatch([body, body]);
    await waitFor('the duplicated job to finish', () => eventsFor(runtime.eventBridge.events(), 'dup-job-1').length > 0, 30_000);
    await waitFor('both deliveries to be consumed', intakeQueueEmpty, 30_000, 200);
    await sendBatch([body]);
    await waitFor('the late delivery to be consumed', intakeQueueEmpty, 30_000, 200);

    // Assess: the start handler saw all three deliveries...
    expect(runtime.eventSource.stats().records - recordsBefore).toBeGreaterThanOrEqual(3);
    // ...and only one of them started anything.
    const stats = runtime.simulator!.stats();
    expect(stats.starts_by_chatbot['dup-bot']).toBe(1);
    expect(stats.executions_by_chatbot['dup-bot']).toBe(1);
    expect(await executionsNamed('dup-job-1')).toHaveLength(1);
    expect(eventsFor(runtime.eventBridge.events(), 'dup-job-1')).toHaveLength(1);
    expect((await runtime.getJob('dup-job-1'))?.status).toBe(JOB_STATUS.COMPLETED);

    // The local Step Functions keeps AWS's naming rule: a closed execution's name cannot be reused.
    const [execution] = await executionsNamed('dup-job-1');
    await expect(
      sfn.send(new StartExecutionCommand({ stateMachineArn: runtime.stateMachineArn, name: execution!.name!, input: '{}' })),
    ).rejects.toBeInstanceOf(ExecutionAlreadyExists);
  }, 60_000);

  it('dead-letters invalid messages with the reason, announcing a Failed event only when a job id is known', async () => {
    // Prepare
    const bodies = {
      notJson: 'this is not json {',
      array: '[1, 2, 3]',
      noChatbot: JSON.stringify({ job_id: 'bad-no-chatbot', input_data: { query: 'x' }, metadata: { case: 'missing chatbot_id' } }),
      pathChatbot: JSON.stringify({ job_id: 'bad-chatbot-path', chatbot_id: '../../admin', input_data: { query: 'x' } }),
    };

    // Act
    const [notJsonId, arrayId, noChatbotId, pathChatbotId] = await sendBatch([
      bodies.notJson,
      bodies.array,
      bodies.noChatbot,
      bodies.pathChatbot,
    ]);
    const bySource = (id: string): Message | undefined =>
      deadLetters.find((message) => message.MessageAttributes?.[DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]?.StringValue === id);
    await waitFor(
      'the four invalid messages in the dead-letter queue',
      async () => {
        await drainQueue(sqs, runtime.deadLetterQueueUrl, deadLetters);
        return [notJsonId, arrayId, noChatbotId, pathChatbotId].every((id) => bySource(id!) !== undefined);
      },
      20_000,
      200,
    );
    await waitFor('the Failed events of the invalid messages with a job id', () =>
      ['bad-no-chatbot', 'bad-chatbot-path'].every((jobId) => eventsFor(runtime.eventBridge.events(), jobId).length > 0),
    );

    // Assess: the reason travels as message attributes, the body is untouched.
    const attribute = (message: Message | undefined, name: string): string | undefined => message?.MessageAttributes?.[name]?.StringValue;
    const notJson = bySource(notJsonId!);
    expect(notJson?.Body).toBe(bodies.notJson);
    expect(attribute(notJson, DLQ_ATTRIBUTE.ERROR_CODE)).toBe(ERROR_CODE.INVALID_MESSAGE);
    expect(attribute(notJson, DLQ_ATTRIBUTE.ERROR_MESSAGE)).toMatch(/not valid JSON/);
    expect(attribute(notJson, DLQ_ATTRIBUTE.JOB_ID)).toBeUndefined();

    const array = bySource(arrayId!);
    expect(attribute(array, DLQ_ATTRIBUTE.ERROR_CODE)).toBe(ERROR_CODE.INVALID_MESSAGE);
    expect(attribute(array, DLQ_ATTRIBUTE.ERROR_MESSAGE)).toMatch(/JSON object/);
    expect(attribute(array, DLQ_ATTRIBUTE.JOB_ID)).toBeUndefined();

    const noChatbot = bySource(noChatbotId!);
    expect(noChatbot?.Body).toBe(bodies.noChatbot);
    expect(attribute(noChatbot, DLQ_ATTRIBUTE.ERROR_CODE)).toBe(ERROR_CODE.INVALID_MESSAGE);
    expect(attribute(noChatbot, DLQ_ATTRIBUTE.ERROR_MESSAGE)).toMatch(/chatbot_id/);
    expect(attribute(noChatbot, DLQ_ATTRIBUTE.JOB_ID)).toBe('bad-no-chatbot');

    const pathChatbot = bySource(pathChatbotId!);
    expect(attribute(pathChatbot, DLQ_ATTRIBUTE.JOB_ID)).toBe('bad-chatbot-path');
    expect(attribute(pathChatbot, DLQ_ATTRIBUTE.ERROR_MESSAGE)).toMatch(/chatbot_id/);

    const events = runtime.eventBridge.events();
    for (const jobId of ['bad-no-chatbot', 'bad-chatbot-path']) {
      const published = eventsFor(events, jobId);
      expect(published, jobId).toHaveLength(1);
      expect(published[0]!['detail-type']).toBe(DETAIL_TYPE.FAILED);
      const detail = published[0]!.detail as { error: { code: string }; chatbot_id: unknown; execution_id: unknown };
      expect(detail.error.code).toBe(ERROR_CODE.INVALID_MESSAGE);
      expect(detail.execution_id).toBeNull();
      expect((await runtime.getJob(jobId))?.status).toBe(JOB_STATUS.FAILED);
    }
    expect((eventsFor(events, 'bad-no-chatbot')[0]!.detail as { metadata: unknown }).metadata).toEqual({ case: 'missing chatbot_id' });
    expect((eventsFor(events, 'bad-chatbot-path')[0]!.detail as { chatbot_id: unknown }).chatbot_id).toBeNull();
    // No job id: no event, no record (the message id would have been the job id).
    for (const id of [notJsonId!, arrayId!]) {
      expect(eventsFor(events, id)).toHaveLength(0);
      expect(await runtime.getJob(id)).toBeUndefined();
    }
    // Nothing from an invalid message reached Waterflai.
    expect(runtime.simulator!.stats().starts_by_chatbot['../../admin']).toBeUndefined();
  }, 40_000);

  it('runs a job delivered in the EventBridge envelope form, with the event id as job id', async () => {
    // Prepare
    const envelope = {
      version: '0',
      id: 'evt-e2e-0001',
      'detail-type': 'Waterflai Job Requested',
      source: 'com.example.e2e',
      account: '123456789012',
      time: '2026-11-29T12:00:00Z',
      region: 'us-east-1',
      resources: [],
      detail: {
        chatbot_id: 'envelope-bot',
        input_data: { query: 'via a rule', simulate: { duration_ms: 800, nodes: 2 } },
        metadata: { via: 'eventbridge' },
      },
    };

    // Act
    await sendBatch([JSON.stringify(envelope)]);
    await waitFor('the envelope job to finish', () => eventsFor(runtime.eventBridge.events(), 'evt-e2e-0001').length > 0, 20_000);

    // Assess
    const record = await runtime.getJob('evt-e2e-0001');
    expect(record?.status).toBe(JOB_STATUS.COMPLETED);
    expect(record?.delivery).toBe('eventbridge');
    const [event] = eventsFor(runtime.eventBridge.events(), 'evt-e2e-0001');
    expect(event!['detail-type']).toBe(DETAIL_TYPE.COMPLETED);
    expect((event!.detail as { metadata: unknown; chatbot_id: unknown }).metadata).toEqual({ via: 'eventbridge' });
    expect((event!.detail as { chatbot_id: unknown }).chatbot_id).toBe('envelope-bot');
    expect(runtime.simulator!.stats().starts_by_chatbot['envelope-bot']).toBe(1);
  }, 30_000);

  it('retries a start that Waterflai answers with 503 and then 429, and starts exactly one execution', async () => {
    // Prepare
    const before = runtime.simulator!.stats();
    runtime.simulator!.setFaults({
      retryAfterSeconds: 1,
      failNext: [
        { kind: 'error5xx', route: 'start', status: 503 },
        { kind: 'rateLimit', route: 'start' },
      ],
    });

    // Act
    try {
      await sendBatch([jobBody('retry-job-1', 'retry-bot', { duration_ms: 500, nodes: 2 })]);
      await waitFor('the retried job to finish', () => eventsFor(runtime.eventBridge.events(), 'retry-job-1').length > 0, 30_000, 200);
    } finally {
      runtime.simulator!.setFaults({});
    }

    // Assess
    const after = runtime.simulator!.stats();
    expect(after.starts_by_chatbot['retry-bot']).toBe(3);
    expect(after.executions_by_chatbot['retry-bot']).toBe(1);
    expect(after.faults.error5xx - before.faults.error5xx).toBe(1);
    expect(after.faults.rateLimit - before.faults.rateLimit).toBe(1);
    expect((await runtime.getJob('retry-job-1'))?.status).toBe(JOB_STATUS.COMPLETED);
    expect(await executionsNamed('retry-job-1')).toHaveLength(1);
    expect(eventsFor(runtime.eventBridge.events(), 'retry-job-1')).toHaveLength(1);
    await waitFor('the retried message to be deleted', intakeQueueEmpty, 10_000, 200);
  }, 45_000);

  it('stores a final output too large to inline in the local S3 bucket and announces its location', async () => {
    // Prepare: an output over the inline limit (MAX_INLINE_OUTPUT_BYTES, 128 KiB by default).
    const bucket = runtime.model.buckets[0];
    expect(bucket, 'the template has an output bucket').toBeDefined();

    // Act
    await sendBatch([jobBody('big-output-1', 'big-bot', { duration_ms: 300, output_bytes: 300_000 })]);
    await waitFor('the large-output job to finish', () => eventsFor(runtime.eventBridge.events(), 'big-output-1').length > 0, 20_000);

    // Assess
    const [event] = eventsFor(runtime.eventBridge.events(), 'big-output-1');
    expect(event!['detail-type']).toBe(DETAIL_TYPE.COMPLETED);
    const detail = event!.detail as {
      final_output?: unknown;
      output_location?: { bucket: string; key: string; size: number; sha256: string };
    };
    expect(detail.final_output).toBeUndefined();
    expect(detail.output_location?.bucket).toBe(bucket!.name);
    const location = detail.output_location!;
    const object = await fetch(`${runtime.endpoints.sqs}/${location.bucket}/${location.key.split('/').map(encodeURIComponent).join('/')}`);
    expect(object.status).toBe(200);
    const bytes = Buffer.from(await object.arrayBuffer());
    expect(bytes.byteLength).toBe(location.size);
    expect(bytes.byteLength).toBeGreaterThan(128 * 1024);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(location.sha256);
  }, 30_000);

  it('settles a job whose execution is stopped from outside, through the status-change rule of the template', async () => {
    // Prepare: a long job, running.
    const rule = runtime.model.rules.find((candidate) => candidate.targets.some((target) => target.role === 'reconcile'));
    expect(rule, 'a rule of the template routes execution status changes to the reconcile function').toBeDefined();
    await sendBatch([jobBody('stop-job-1', 'stop-bot', { duration_ms: 120_000, nodes: 4 })]);
    const execution = await waitFor('the job to be running', async () => {
      const record = await runtime.getJob('stop-job-1');
      const listed = await sfn.send(new ListExecutionsCommand({ stateMachineArn: runtime.stateMachineArn, statusFilter: 'RUNNING' }));
      return record?.status === JOB_STATUS.RUNNING ? listed.executions?.find((candidate) => candidate.name === 'stop-job-1') : undefined;
    });

    // Act: an operator stops the execution.
    await sfn.send(new StopExecutionCommand({ executionArn: execution.executionArn, error: 'Operator', cause: 'stopped by the e2e test' }));
    await waitFor('the stopped job to be announced', () => eventsFor(runtime.eventBridge.events(), 'stop-job-1').length > 0, 20_000);

    // Assess
    const record = await runtime.getJob('stop-job-1');
    expect(record?.status).toBe(JOB_STATUS.CANCELLED);
    expect(record?.status_rank).toBe(TERMINAL_RANK);
    const published = eventsFor(runtime.eventBridge.events(), 'stop-job-1');
    expect(published).toHaveLength(1);
    expect(published[0]!['detail-type']).toBe(DETAIL_TYPE.CANCELLED);
    expect((published[0]!.detail as { reason?: unknown }).reason).toBe('stopped');
    const statusChanges = runtime.eventBridge
      .events()
      .filter((event) => event.source === 'aws.states' && event.resources.includes(execution.executionArn!));
    expect(statusChanges.map((event) => (event.detail as { status: string }).status)).toEqual(['RUNNING', 'ABORTED']);
  }, 40_000);

  // Last: it covers every connection the tests above made.
  it('made every socket connection to 127.0.0.1, and bound every socket to it', async () => {
    // Every outgoing connection of this process (SDK clients, fetch, the handlers' clients).
    const connections = guard.connections();
    expect(connections.length).toBeGreaterThan(50);
    expect(guard.nonLoopback()).toEqual([]);
    expect(connections.every((connection) => connection.host === '127.0.0.1')).toBe(true);

    // Every socket this process and the DynamoDB Local JVM hold, from /proc.
    const own = processSockets();
    if (own !== undefined) {
      expect(own.length).toBeGreaterThan(0);
      expect(own.filter((socket) => !isLoopbackSocket(socket))).toEqual([]);
      const listening = own.filter((socket) => socket.state === 'LISTEN').map((socket) => socket.localPort);
      for (const url of [runtime.endpoints.sqs, runtime.endpoints.aws, runtime.endpoints.waterflai])
        expect(listening).toContain(Number(new URL(url).port));
    }
    if (runtime.dynamodbPid !== undefined) {
      const jvm = processSockets(runtime.dynamodbPid);
      if (jvm !== undefined) {
        expect(jvm.filter((socket) => !isLoopbackSocket(socket))).toEqual([]);
        expect(
          jvm.some((socket) => socket.state === 'LISTEN' && socket.localPort === Number(new URL(runtime.endpoints.dynamodb).port)),
        ).toBe(true);
      }
    }

    // And the guard really refuses a non-loopback destination (TEST-NET-1), before connecting.
    const socket = net.connect(80, '192.0.2.1');
    const [error] = (await once(socket, 'error')) as [Error];
    expect(error).toBeInstanceOf(NonLoopbackConnectionError);
    expect(guard.nonLoopback()).toEqual([expect.objectContaining({ host: '192.0.2.1', port: 80, blocked: true })]);
  });
});
