/**
 * The job lifecycle end to end on the local runtime: cancellation both ways, deadlines,
 * jobs stranded without a terminal status, long jobs handed over to successor executions,
 * large outputs and outputs Waterflai already cleaned up. One runtime for the file, with a
 * small hand-over budget, a small inline-output limit and a short sweep interval.
 */
import { createHash } from 'node:crypto';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { ListExecutionsCommand, SFNClient, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CANCEL_REASON, DETAIL_TYPE, ERROR_CODE, JOB_STATUS, STATUS_RANK } from '../../lambdas/contract/constants';
import { executionNameForGeneration } from '../../lambdas/contract/identifiers';
import { startLocalRuntime, type LocalRuntime } from '../../local/runtime/runtime';
import { eventsFor, jobBody, queueIdle, waitFor } from './support';

const TIME_SCALE = 0.1;
const MAX_POLLS_PER_EXECUTION = 3;
const MAX_INLINE_OUTPUT_BYTES = 16 * 1024;

let runtime: LocalRuntime;
let sfn: SFNClient;
let s3: S3Client;
let sqs: SQSClient;

beforeAll(async () => {
  // The hand-over test counts polls: use the fixed-interval strategy (the operator setting
  // POLL_STRATEGY=fixed), not the adaptive default that may poll a 12 s job only a few times.
  process.env.POLL_STRATEGY = 'fixed';
  runtime = await startLocalRuntime({
    timeScale: TIME_SCALE,
    stackConfig: {
      pollIntervalSeconds: 1,
      maxPollsPerExecution: MAX_POLLS_PER_EXECUTION,
      maxInlineOutputBytes: MAX_INLINE_OUTPUT_BYTES,
      sweepIntervalMinutes: 1,
    },
    simulator: { seed: 4 },
  });
  const clientConfig = { region: runtime.region, credentials: runtime.credentials };
  sfn = new SFNClient({ ...clientConfig, endpoint: runtime.endpoints.aws });
  s3 = new S3Client({ ...clientConfig, endpoint: runtime.endpoints.sqs, forcePathStyle: true });
  sqs = new SQSClient({ ...clientConfig, endpoint: runtime.endpoints.sqs });
}, 60_000);

afterAll(async () => {
  sfn?.destroy();
  s3?.destroy();
  sqs?.destroy();
  await runtime?.close();
});

const cancelBody = (jobId: string): string => JSON.stringify({ action: 'cancel', job_id: jobId });
const events = (jobId: string) => eventsFor(runtime.eventBridge.events(), jobId);
const simulatorStats = () => runtime.simulator!.stats();

async function executionNames(): Promise<string[]> {
  const listed = await sfn.send(new ListExecutionsCommand({ stateMachineArn: runtime.stateMachineArn, maxResults: 1000 }));
  return (listed.executions ?? []).map((execution) => execution.name ?? '');
}

async function settled(jobId: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(`${jobId} to be announced`, () => events(jobId).length > 0, timeoutMs, 100);
}

describe('cancel requests from producers', () => {
  it('cancels a running job in Waterflai and ends it Cancelled (requested), with one event', async () => {
    // Prepare: a long job, running
    await runtime.sendMessage(jobBody('cancel-running', 'cancel-bot-1', { duration_ms: 60_000, nodes: 4 }));
    await waitFor('the job to run', async () => (await runtime.getJob('cancel-running'))?.status === JOB_STATUS.RUNNING, 15_000);
    const cancelsBefore = simulatorStats().by_route.cancel;

    // Act
    await runtime.sendMessage(cancelBody('cancel-running'));
    await settled('cancel-running');

    // Assess
    const record = await runtime.getJob('cancel-running');
    expect(record).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REQUESTED });
    expect(simulatorStats().by_route.cancel - cancelsBefore).toBe(1);
    expect(runtime.simulator!.execution(record!.execution_id!)?.status).toBe('CANCELLED');
    const published = events('cancel-running');
    expect(published).toHaveLength(1);
    expect(published[0]!['detail-type']).toBe(DETAIL_TYPE.CANCELLED);
    expect((published[0]!.detail as { reason: string }).reason).toBe(CANCEL_REASON.REQUESTED);
  });

  it('a cancel that arrives before its start leaves a tombstone: the start never reaches Waterflai, one Cancelled event', async () => {
    // Prepare: queues reorder, so the cancel comes first
    await runtime.sendMessage(cancelBody('cancel-first'));
    await settled('cancel-first');

    // Act
    await runtime.sendMessage(jobBody('cancel-first', 'tombstone-bot', { duration_ms: 1_000 }));
    await waitFor('the start message to be consumed', () => queueIdle(sqs, runtime.intakeQueueUrl), 10_000);

    // Assess
    expect(simulatorStats().starts_by_chatbot['tombstone-bot'] ?? 0).toBe(0);
    expect(await runtime.getJob('cancel-first')).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REQUESTED });
    expect(events('cancel-first')).toHaveLength(1);
    expect(await executionNames()).not.toContain('cancel-first');
  });

  it('a cancel for a finished job is a no-op: no second event', async () => {
    await runtime.sendMessage(jobBody('cancel-late', 'cancel-bot-2', { duration_ms: 300, nodes: 1 }));
    await settled('cancel-late');
    const cancelsBefore = simulatorStats().by_route.cancel;

    await runtime.sendMessage(cancelBody('cancel-late'));
    await waitFor('the cancel message to be consumed', () => queueIdle(sqs, runtime.intakeQueueUrl), 10_000);

    expect((await runtime.getJob('cancel-late'))?.status).toBe(JOB_STATUS.COMPLETED);
    expect(events('cancel-late')).toHaveLength(1);
    expect(simulatorStats().by_route.cancel).toBe(cancelsBefore);
  });

  it('accepts a cancel routed by an EventBridge rule', async () => {
    await runtime.sendMessage(jobBody('cancel-routed', 'cancel-bot-3', { duration_ms: 60_000 }));
    await waitFor('the job to start', async () => (await runtime.getJob('cancel-routed'))?.execution_id !== undefined, 15_000);

    await runtime.sendMessage(
      JSON.stringify({
        id: 'evt-cancel',
        'detail-type': 'Cancel Job',
        source: 'com.example',
        detail: { action: 'cancel', job_id: 'cancel-routed' },
      }),
    );
    await settled('cancel-routed');

    expect(await runtime.getJob('cancel-routed')).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REQUESTED });
  });
});

describe('remote cancellation and deadlines', () => {
  it('a CANCELLED status from Waterflai ends the job Cancelled (remote)', async () => {
    await runtime.sendMessage(jobBody('remote-cancel', 'remote-bot', { duration_ms: 20_000, cancel_after_ms: 1_000 }));
    await settled('remote-cancel');

    expect(await runtime.getJob('remote-cancel')).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REMOTE });
  });

  it('past timeout_seconds the job is cancelled upstream and ends Failed with TIMED_OUT', async () => {
    // Prepare: Waterflai would take 100 s (10 s scaled); the job allows 2 s
    await runtime.sendMessage(jobBody('deadline-job', 'deadline-bot', { duration_ms: 100_000, nodes: 5 }, { timeout_seconds: 2 }));

    // Act
    await settled('deadline-job');

    // Assess
    const record = await runtime.getJob('deadline-job');
    expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.TIMED_OUT });
    expect(Date.parse(record!.finished_at!)).toBeGreaterThanOrEqual(Date.parse(record!.deadline_at));
    expect(runtime.simulator!.execution(record!.execution_id!)?.status).toBe('CANCELLED');
    const [event] = events('deadline-job');
    expect((event!.detail as { error: { code: string } }).error.code).toBe(ERROR_CODE.TIMED_OUT);
  });
});

describe('executions ended from outside: the status-change rule -> reconcile queue -> reconcile function', () => {
  const reconcileQueue = () => {
    expect(runtime.reconcileQueue, 'the template has a reconcile queue').toBeDefined();
    return runtime.reconcileQueue!;
  };
  const reconcileSource = () => {
    expect(runtime.reconcileEventSource, 'the reconcile queue has an event source mapping').toBeDefined();
    return runtime.reconcileEventSource!;
  };

  it('an operator stopping an execution ends the job Cancelled (stopped), through the queue, with one event', async () => {
    // Prepare: a long job, running
    await runtime.sendMessage(jobBody('stopped-job', 'stopped-bot', { duration_ms: 60_000, nodes: 4 }));
    await waitFor('the job to run', async () => (await runtime.getJob('stopped-job'))?.status === JOB_STATUS.RUNNING, 15_000);
    const executionArn = (await runtime.getJob('stopped-job'))!.state_machine_execution_arn!;
    const before = reconcileSource().stats();
    const sentBefore = runtime.queueTargets.stats().sent;

    // Act
    await sfn.send(new StopExecutionCommand({ executionArn, error: 'Operator', cause: 'stopped by the lifecycle e2e test' }));
    await settled('stopped-job');

    // Assess: delivered to the queue, consumed by the reconcile function, deleted, nothing dead-lettered
    const record = await runtime.getJob('stopped-job');
    expect(record).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.STOPPED });
    expect(runtime.simulator!.execution(record!.execution_id!)?.status).toBe('CANCELLED');
    expect(events('stopped-job')).toHaveLength(1);
    expect(runtime.queueTargets.stats().sent - sentBefore).toBeGreaterThanOrEqual(1);
    await waitFor(
      'the status change to be deleted from the reconcile queue',
      () => reconcileSource().stats().deleted > before.deleted && runtime.sqs.messages(reconcileQueue().name).length === 0,
      10_000,
    );
    expect(reconcileSource().stats().failedRecords).toBe(before.failedRecords);
    expect(runtime.sqs.messages(reconcileQueue().deadLetterQueue.name)).toEqual([]);
  });

  it('a malformed message on the reconcile queue is acknowledged: not retried, not dead-lettered', async () => {
    // Prepare
    const before = reconcileSource().stats();

    // Act: something that is not a status-change event lands on the queue
    await sqs.send(new SendMessageCommand({ QueueUrl: reconcileQueue().url, MessageBody: '{"not":"a status change"}' }));
    await sqs.send(new SendMessageCommand({ QueueUrl: reconcileQueue().url, MessageBody: 'not even JSON' }));

    // Assess
    await waitFor(
      'both messages to be consumed and deleted',
      () => reconcileSource().stats().deleted - before.deleted >= 2 && runtime.sqs.messages(reconcileQueue().name).length === 0,
      10_000,
    );
    expect(reconcileSource().stats().failedRecords).toBe(before.failedRecords);
    expect(reconcileSource().stats().failedBatches).toBe(before.failedBatches);
    expect(runtime.sqs.messages(reconcileQueue().deadLetterQueue.name)).toEqual([]);
  });
});

describe('jobs nothing else would finish', () => {
  it('the scheduled sweeper settles a job left non-terminal past its deadline (a lost status-change event)', async () => {
    // Prepare: a RUNNING job whose poll loop is gone and whose deadline passed
    const past = new Date(Date.now() - 3_600_000).toISOString();
    await runtime.documentClient.send(
      new PutCommand({
        TableName: runtime.tableName,
        Item: {
          job_id: 'stranded-job',
          chatbot_id: 'stranded-bot',
          status: JOB_STATUS.RUNNING,
          status_rank: STATUS_RANK.RUNNING,
          version: 3,
          accepted_at: past,
          updated_at: past,
          deadline_at: past,
          expires_at: Math.floor(Date.now() / 1000) + 86_400,
          metadata_json: '{"owner":"e2e"}',
          source_message_id: 'lost-message',
          delivery: 'sqs',
          polls: 4,
        },
      }),
    );

    // Act: the sweep runs every minute, scaled to 6 s
    await settled('stranded-job', 30_000);

    // Assess
    expect(await runtime.getJob('stranded-job')).toMatchObject({
      status: JOB_STATUS.FAILED,
      error_code: ERROR_CODE.TIMED_OUT,
      metadata: { owner: 'e2e' },
    });
    expect(events('stranded-job')).toHaveLength(1);
  });
});

describe('long jobs', () => {
  it(`hands over to successor executions every ${MAX_POLLS_PER_EXECUTION} polls, links them, and ends with one outcome`, async () => {
    // Prepare: about 12 polls at 1 s (scaled to 0.1 s)
    await runtime.sendMessage(jobBody('long-job', 'long-bot', { duration_ms: 12_000, nodes: 6 }));

    // Act
    await settled('long-job', 30_000);

    // Assess
    const record = await runtime.getJob('long-job');
    expect(record?.status).toBe(JOB_STATUS.COMPLETED);
    expect(record?.generation).toBeGreaterThanOrEqual(2);
    const names = await executionNames();
    for (let generation = 0; generation <= record!.generation!; generation += 1) {
      expect(names).toContain(executionNameForGeneration('long-job', generation));
    }
    expect(record?.state_machine_execution_arn).toMatch(new RegExp(`:${executionNameForGeneration('long-job', record!.generation!)}$`));
    expect(events('long-job')).toHaveLength(1);
    expect((events('long-job')[0]!.detail as { polls: number }).polls).toBeGreaterThan(MAX_POLLS_PER_EXECUTION * 2);
  });
});

describe('outputs', () => {
  it('a multi-megabyte output goes to the output bucket and the event carries its location and checksum', async () => {
    // Prepare
    const bytes = 3 * 1024 * 1024;
    await runtime.sendMessage(jobBody('big-output', 'big-bot', { duration_ms: 500, nodes: 2, output_bytes: bytes }));

    // Act
    await settled('big-output');

    // Assess
    const [event] = events('big-output');
    const detail = event!.detail as {
      final_output?: unknown;
      output_location: { bucket: string; key: string; size: number; sha256: string };
    };
    expect(detail.final_output).toBeUndefined();
    expect(detail.output_location.size).toBe(bytes);
    expect(JSON.stringify(event!.detail).length).toBeLessThan(MAX_INLINE_OUTPUT_BYTES);
    const object = await s3.send(new GetObjectCommand({ Bucket: detail.output_location.bucket, Key: detail.output_location.key }));
    const body = Buffer.from(await object.Body!.transformToByteArray());
    expect(body.byteLength).toBe(bytes);
    expect(createHash('sha256').update(body).digest('hex')).toBe(detail.output_location.sha256);
    const record = await runtime.getJob('big-output');
    expect(record?.final_output).toBeUndefined();
    expect(record?.output_location).toEqual(detail.output_location);
  });

  it('an output Waterflai already cleaned up ends the job Failed with OUTPUT_EXPIRED', async () => {
    // Prepare: the loop sees the job running, then Waterflai deletes the result the moment it completes
    await runtime.sendMessage(jobBody('expired-output', 'expired-bot', { duration_ms: 3_000, queue_ms: 0, nodes: 1, retention_ms: 0 }));

    // Act
    await settled('expired-output');

    // Assess
    expect(await runtime.getJob('expired-output')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.OUTPUT_EXPIRED });
  });
});
