/**
 * The bad-input catalogue, end to end on the local runtime: malformed and hostile intake
 * messages, one table row each, with the error code, the reason and the disposition the
 * orchestrator gives them (DESIGN.md, "Guarantees": a bad message gets a clear, specific
 * error, never blocks its batch, never loops through retries, is not lost; nothing from a
 * message can change where requests go).
 *
 * Every row is sent next to a good job of its own: the intake queue is paused, all pairs are
 * queued (bad, good, bad, good, ...), and the queue is resumed, so each batch the start
 * function receives holds five bad messages and their five good partners (fauxqs hands out
 * a standard queue's messages in the order they were sent, ten per receive; the event
 * source's counters show the wave arrived in full batches). Then, per row: no request reached
 * Waterflai for it (each row has its own chatbot id, and the simulator's counters show only
 * the good jobs' chatbots), its good partner ran to COMPLETED, and the bad message is in the
 * dead-letter queue with its reason as attributes, with a Failed event exactly when a job
 * id could be read from it. A cancel request for a job not seen yet is not an error: it
 * leaves a tombstone (CANCELLED, reason `requested`) that keeps a later start from reaching
 * Waterflai.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetQueueAttributesCommand, SendMessageBatchCommand, SQSClient, type Message } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CANCEL_REASON, DETAIL_TYPE, DLQ_ATTRIBUTE, ERROR_CODE, JOB_STATUS } from '../../lambdas/contract/constants';
import { JOB_REQUEST_LIMITS } from '../../lambdas/contract/job-request';
import type { SimulatorStats } from '../../local/simulator/server';
import { startLocalRuntime, type LocalRuntime } from '../../local/runtime/runtime';
import { drainQueue, eventsFor, jobBody, waitFor } from './support';

const TIME_SCALE = 0.1;

// ---------------------------------------------------------------------------------------
// The catalogue
// ---------------------------------------------------------------------------------------

/** What a row's body may use: its own chatbot id and job id, and the trap server's URL. */
interface RowContext {
  readonly n: string;
  readonly bot: string;
  readonly job: string;
  readonly trapUrl: string;
}

type Delivery = 'sqs' | 'eventbridge';

/** Which job id the orchestrator can still read from the bad message. */
type KnownJobId = { readonly kind: 'message-id' } | { readonly kind: 'literal'; readonly value: string };

type Expectation =
  | {
      /** Not a JSON object, or no job id can be read: only the DLQ copy, no record, no event. */
      readonly disposition: 'dead-lettered';
      readonly errorMessage: RegExp;
    }
  | {
      /** A job id can be read: a FAILED record, one Failed event, and the DLQ copy with `job_id`. */
      readonly disposition: 'dead-lettered with a Failed event';
      readonly errorMessage: RegExp;
      readonly jobId: KnownJobId;
      readonly delivery: Delivery;
      /** Whether the Failed event carries the row's chatbot id / metadata (each only when valid on its own). */
      readonly keepsChatbot: boolean;
      readonly keepsMetadata: boolean;
    }
  | {
      /** A cancel request for a job not seen yet: a CANCELLED tombstone and one Cancelled event; nothing dead-lettered. */
      readonly disposition: 'tombstone (Cancelled, reason requested)';
      readonly jobId: string;
      readonly delivery: Delivery;
    };

interface Row {
  readonly name: string;
  readonly body: (ctx: RowContext) => string;
  readonly expect: Expectation;
}

const METADATA = (ctx: RowContext): Record<string, unknown> => ({ row: ctx.n });
/** A valid request of the row (its own job id, chatbot id and metadata), with overrides; `undefined` removes a field. */
const request = (ctx: RowContext, overrides: Record<string, unknown> = {}): Record<string, unknown> => {
  const base: Record<string, unknown> = {
    job_id: ctx.job,
    chatbot_id: ctx.bot,
    input_data: { query: `bad-input row ${ctx.n}` },
    metadata: METADATA(ctx),
    ...overrides,
  };
  for (const [key, value] of Object.entries(base)) if (value === undefined) delete base[key];
  return base;
};
const json = (value: unknown): string => JSON.stringify(value);
const envelope = (id: unknown, detail: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  version: '0',
  ...(id === undefined ? {} : { id }),
  'detail-type': 'Waterflai Job Requested',
  source: 'com.example.bad-input',
  account: '123456789012',
  time: '2026-11-29T12:00:00Z',
  region: 'us-east-1',
  resources: [],
  detail,
  ...extra,
});
const nested = (depth: number): unknown => {
  let value: unknown = 'leaf';
  for (let level = 0; level < depth; level += 1) value = { level: value };
  return value;
};

const noJobId = (errorMessage: RegExp): Expectation => ({ disposition: 'dead-lettered', errorMessage });
const failed = (
  errorMessage: RegExp,
  options: { jobId?: KnownJobId; delivery?: Delivery; keepsChatbot?: boolean; keepsMetadata?: boolean } = {},
): Expectation => ({
  disposition: 'dead-lettered with a Failed event',
  errorMessage,
  jobId: options.jobId ?? { kind: 'literal', value: '' }, // '' = the row's own job id (filled in below)
  delivery: options.delivery ?? 'sqs',
  keepsChatbot: options.keepsChatbot ?? true,
  keepsMetadata: options.keepsMetadata ?? true,
});
const badChatbot = (chatbot: (ctx: RowContext) => string): Pick<Row, 'body' | 'expect'> => ({
  body: (ctx) => json(request(ctx, { chatbot_id: chatbot(ctx) })),
  expect: failed(/^chatbot_id: /, { keepsChatbot: false }),
});

const ROWS: readonly Row[] = [
  // Not JSON, empty-ish, not an object: no job id can be read.
  { name: 'not JSON (a truncated object)', body: (ctx) => json(request(ctx)).slice(0, 40), expect: noJobId(/not valid JSON/) },
  { name: 'whitespace only (SQS refuses a truly empty body)', body: () => '   ', expect: noJobId(/not valid JSON/) },
  { name: 'line breaks and tabs only', body: () => '\r\n\t \n', expect: noJobId(/not valid JSON/) },
  { name: 'a byte order mark before a valid request', body: (ctx) => `\uFEFF${json(request(ctx))}`, expect: noJobId(/not valid JSON/) },
  { name: 'JSON null', body: () => 'null', expect: noJobId(/must be a JSON object, got null/) },
  {
    name: 'a JSON array holding a valid request',
    body: (ctx) => json([request(ctx)]),
    expect: noJobId(/must be a JSON object, got an array/),
  },
  { name: 'a JSON number', body: () => '42', expect: noJobId(/must be a JSON object, got a number/) },
  {
    name: 'a JSON string (a double-encoded request)',
    body: (ctx) => json(json(request(ctx))),
    expect: noJobId(/must be a JSON object, got a string/),
  },
  { name: 'JSON true', body: () => 'true', expect: noJobId(/must be a JSON object, got a boolean/) },
  // Missing fields and wrong types: the job id is still readable.
  {
    name: 'an empty object (the SQS message id becomes the job id)',
    body: () => '{}',
    expect: failed(/^chatbot_id: .*; input_data: /, { jobId: { kind: 'message-id' }, keepsChatbot: false, keepsMetadata: false }),
  },
  {
    name: 'chatbot_id missing',
    body: (ctx) => json(request(ctx, { chatbot_id: undefined })),
    expect: failed(/^chatbot_id: Invalid input: expected string, received undefined/, { keepsChatbot: false }),
  },
  {
    name: 'input_data missing',
    body: (ctx) => json(request(ctx, { input_data: undefined })),
    expect: failed(/^input_data: Invalid input: expected record, received undefined/),
  },
  {
    name: 'chatbot_id a number',
    body: (ctx) => json(request(ctx, { chatbot_id: 42 })),
    expect: failed(/^chatbot_id: Invalid input: expected string, received number/, { keepsChatbot: false }),
  },
  {
    name: 'chatbot_id null',
    body: (ctx) => json(request(ctx, { chatbot_id: null })),
    expect: failed(/^chatbot_id: Invalid input: expected string, received null/, { keepsChatbot: false }),
  },
  {
    name: 'input_data a string',
    body: (ctx) => json(request(ctx, { input_data: 'summarise this' })),
    expect: failed(/^input_data: Invalid input: expected record, received string/),
  },
  {
    name: 'input_data an array',
    body: (ctx) => json(request(ctx, { input_data: [{ query: 'x' }] })),
    expect: failed(/^input_data: Invalid input: expected record, received array/),
  },
  {
    name: 'input_data null',
    body: (ctx) => json(request(ctx, { input_data: null })),
    expect: failed(/^input_data: Invalid input: expected record, received null/),
  },
  {
    name: 'metadata an array',
    body: (ctx) => json(request(ctx, { metadata: ['a'] })),
    expect: failed(/^metadata: Invalid input: expected record, received array/, { keepsMetadata: false }),
  },
  {
    name: 'metadata a string',
    body: (ctx) => json(request(ctx, { metadata: 'team=reports' })),
    expect: failed(/^metadata: Invalid input: expected record, received string/, { keepsMetadata: false }),
  },
  {
    name: 'action "restart"',
    body: (ctx) => json(request(ctx, { action: 'restart' })),
    expect: failed(/^action: Invalid input: expected "start"/),
  },
  {
    name: 'action "CANCEL" (actions are case-sensitive)',
    body: (ctx) => json(request(ctx, { action: 'CANCEL' })),
    expect: failed(/^action: Invalid input: expected "start"/),
  },

  // Unknown fields are refused, not ignored.
  {
    name: 'an unknown field (priority)',
    body: (ctx) => json(request(ctx, { priority: 'high' })),
    expect: failed(/^message: Unrecognized key: "priority"/),
  },
  {
    name: 'a base_url field pointing at a loopback trap server',
    body: (ctx) => json(request(ctx, { base_url: ctx.trapUrl })),
    expect: failed(/^message: Unrecognized key: "base_url"/),
  },
  {
    name: 'host and port fields naming another server',
    body: (ctx) => json(request(ctx, { host: 'waterflai.evil.example', port: 443 })),
    expect: failed(/^message: Unrecognized keys: "host", "port"/),
  },
  {
    name: 'a "__proto__" key',
    body: (ctx) => `{"__proto__":{"chatbot_id":"x"},${json(request(ctx)).slice(1)}`,
    expect: failed(/^message: Unrecognized key: "__proto__"/),
  },

  // Hostile chatbot ids: nothing may change a request's path, query or host.
  { name: 'chatbot_id with ../ (path traversal)', ...badChatbot((ctx) => `../../${ctx.bot}`) },
  { name: 'chatbot_id with ? (a query)', ...badChatbot((ctx) => `${ctx.bot}?admin=true`) },
  { name: 'chatbot_id with # (a fragment)', ...badChatbot((ctx) => `${ctx.bot}#fragment`) },
  { name: 'chatbot_id with %2F (an encoded slash)', ...badChatbot((ctx) => `${ctx.bot}%2F..%2Fadmin`) },
  { name: 'chatbot_id %2e%2e (an encoded dot-dot)', ...badChatbot((ctx) => `%2e%2e%2f${ctx.bot}`) },
  { name: 'chatbot_id with NUL', ...badChatbot((ctx) => `${ctx.bot}\u0000admin`) },
  { name: 'chatbot_id with a Cyrillic look-alike letter', ...badChatbot((ctx) => ctx.bot.replace('a', '\u0430')) },
  { name: 'chatbot_id with a zero-width space', ...badChatbot((ctx) => `${ctx.bot}\u200B`) },
  { name: 'chatbot_id 10 KB long', ...badChatbot((ctx) => `${ctx.bot}${'x'.repeat(10 * 1024)}`) },
  { name: 'chatbot_id empty', ...badChatbot(() => '') },
  { name: 'chatbot_id with a leading space', ...badChatbot((ctx) => ` ${ctx.bot}`) },
  { name: 'chatbot_id an absolute URL', ...badChatbot((ctx) => `https://waterflai.evil.example/v1/executions/${ctx.bot}`) },
  {
    name: 'chatbot_id given twice, the last one hostile (JSON takes the last)',
    body: (ctx) => `{"chatbot_id":${json(ctx.bot)},${json(request(ctx, { chatbot_id: `../${ctx.bot}` })).slice(1)}`,
    expect: failed(/^chatbot_id: /, { keepsChatbot: false }),
  },

  // Limits.
  {
    name: 'input_data over the size limit',
    body: (ctx) => json(request(ctx, { input_data: { blob: 'x'.repeat(JOB_REQUEST_LIMITS.MAX_INPUT_DATA_BYTES) } })),
    expect: failed(/^input_data is \d+ bytes, over the limit of 196608$/),
  },
  {
    name: 'input_data over the depth limit (33 levels)',
    body: (ctx) => json(request(ctx, { input_data: nested(33) })),
    expect: failed(/^input_data is nested 33 levels deep, over the limit of 32$/),
  },
  {
    name: 'metadata over the size limit',
    body: (ctx) => json(request(ctx, { metadata: { notes: 'm'.repeat(JOB_REQUEST_LIMITS.MAX_METADATA_BYTES) } })),
    expect: failed(/^metadata is \d+ bytes, over the limit of 8192$/, { keepsMetadata: false }),
  },
  {
    name: 'metadata over the depth limit (9 levels)',
    body: (ctx) => json(request(ctx, { metadata: nested(9) })),
    expect: failed(/^metadata is nested 9 levels deep, over the limit of 8$/, { keepsMetadata: false }),
  },
  {
    name: 'timeout_seconds negative',
    body: (ctx) => json(request(ctx, { timeout_seconds: -60 })),
    expect: failed(/^timeout_seconds: Too small/),
  },
  {
    name: 'timeout_seconds zero',
    body: (ctx) => json(request(ctx, { timeout_seconds: 0 })),
    expect: failed(/^timeout_seconds: Too small/),
  },
  {
    name: 'timeout_seconds fractional',
    body: (ctx) => json(request(ctx, { timeout_seconds: 1.5 })),
    expect: failed(/^timeout_seconds: Invalid input: expected int/),
  },
  {
    name: 'timeout_seconds huge (1e12)',
    body: (ctx) => json(request(ctx, { timeout_seconds: 1e12 })),
    expect: failed(/^timeout_seconds: Too big: expected number to be <=31536000/),
  },
  {
    name: 'timeout_seconds a string',
    body: (ctx) => json(request(ctx, { timeout_seconds: '600' })),
    expect: failed(/^timeout_seconds: Invalid input: expected number, received string/),
  },

  // Bad job ids: no job id can be read (a default is only used when job_id is absent).
  {
    name: 'job_id with a slash',
    body: (ctx) => json(request(ctx, { job_id: `jobs/${ctx.job}` })),
    expect: noJobId(/^job_id: Invalid string/),
  },
  {
    name: 'job_id 129 characters long',
    body: (ctx) => json(request(ctx, { job_id: ctx.job + 'j'.repeat(129 - ctx.job.length) })),
    expect: noJobId(/^job_id: Too big/),
  },
  {
    name: 'job_id a number',
    body: (ctx) => json(request(ctx, { job_id: 4242 })),
    expect: noJobId(/^job_id: Invalid input: expected string, received number/),
  },
  { name: 'job_id empty', body: (ctx) => json(request(ctx, { job_id: '' })), expect: noJobId(/^job_id: Invalid string/) },
  {
    name: 'job_id null',
    body: (ctx) => json(request(ctx, { job_id: null })),
    expect: noJobId(/^job_id: Invalid input: expected string, received null/),
  },

  // Malformed EventBridge envelopes. The orchestrator reports these under the SQS message id
  // (not the envelope's own id, which it does not trust once the envelope is malformed).
  {
    name: 'EventBridge envelope whose detail is a string',
    body: (ctx) => json(envelope(`evt-${ctx.job}`, json(request(ctx)))),
    expect: failed(/^malformed EventBridge envelope: detail: Invalid input: expected record, received string/, {
      jobId: { kind: 'message-id' },
      delivery: 'eventbridge',
      keepsChatbot: false,
      keepsMetadata: false,
    }),
  },
  {
    name: 'EventBridge envelope without an id',
    body: (ctx) => json(envelope(undefined, request(ctx, { job_id: undefined }))),
    expect: failed(/^malformed EventBridge envelope: id: Invalid input: expected string, received undefined/, {
      jobId: { kind: 'message-id' },
      delivery: 'eventbridge',
      keepsChatbot: false,
      keepsMetadata: false,
    }),
  },
  {
    name: 'EventBridge envelope whose id has spaces',
    body: (ctx) => json(envelope(`evt ${ctx.job}`, request(ctx, { job_id: undefined }))),
    expect: failed(/^malformed EventBridge envelope: id: Invalid string/, {
      jobId: { kind: 'message-id' },
      delivery: 'eventbridge',
      keepsChatbot: false,
      keepsMetadata: false,
    }),
  },
  {
    name: 'EventBridge envelope whose detail is an array',
    body: (ctx) => json(envelope(`evt-${ctx.job}`, [request(ctx)])),
    expect: failed(/^malformed EventBridge envelope: detail: Invalid input: expected record, received array/, {
      jobId: { kind: 'message-id' },
      delivery: 'eventbridge',
      keepsChatbot: false,
      keepsMetadata: false,
    }),
  },
  {
    name: 'EventBridge envelope whose detail carries a base_url (the event id is the job id)',
    body: (ctx) => json(envelope(`evt-${ctx.job}`, request(ctx, { job_id: undefined, base_url: ctx.trapUrl }))),
    expect: failed(/^message: Unrecognized key: "base_url"/, { jobId: { kind: 'literal', value: 'evt-' }, delivery: 'eventbridge' }),
  },
  {
    name: 'EventBridge envelope whose detail has a ../ chatbot id (the event id is the job id)',
    body: (ctx) => json(envelope(`evt-${ctx.job}`, request(ctx, { job_id: undefined, chatbot_id: `../${ctx.bot}` }))),
    expect: failed(/^chatbot_id: /, { jobId: { kind: 'literal', value: 'evt-' }, delivery: 'eventbridge', keepsChatbot: false }),
  },

  // Cancel requests. A malformed one names no job the orchestrator may touch: DLQ only.
  {
    name: 'cancel with a job_id holding a slash',
    body: (ctx) => json({ action: 'cancel', job_id: `jobs/${ctx.job}` }),
    expect: noJobId(/^invalid cancel request: job_id: Invalid string/),
  },
  {
    name: 'cancel without a job_id',
    body: () => json({ action: 'cancel' }),
    expect: noJobId(/^invalid cancel request: job_id: Invalid input: expected string, received undefined/),
  },
  {
    name: 'cancel with a numeric job_id',
    body: () => json({ action: 'cancel', job_id: 7 }),
    expect: noJobId(/^invalid cancel request: job_id: Invalid input: expected string, received number/),
  },
  {
    name: 'cancel through an EventBridge envelope with a job_id holding spaces',
    body: (ctx) => json(envelope(`evt-${ctx.job}`, { action: 'cancel', job_id: `the ${ctx.job}` })),
    expect: noJobId(/^invalid cancel request: job_id: Invalid string/),
  },
  // A cancel for a job not seen yet is valid: it leaves a tombstone.
  {
    name: 'cancel for an unknown job',
    body: (ctx) => json({ action: 'cancel', job_id: ctx.job }),
    expect: { disposition: 'tombstone (Cancelled, reason requested)', jobId: '', delivery: 'sqs' },
  },
  {
    name: 'cancel for an unknown job through an EventBridge envelope',
    body: (ctx) => json(envelope(`evt-${ctx.job}`, { action: 'cancel', job_id: ctx.job })),
    expect: { disposition: 'tombstone (Cancelled, reason requested)', jobId: '', delivery: 'eventbridge' },
  },
];

// ---------------------------------------------------------------------------------------
// Running the catalogue
// ---------------------------------------------------------------------------------------

/** A row with its ids; the body and the SQS message ids are filled in when the catalogue runs. */
interface PreparedRow {
  readonly id: string;
  readonly row: Row;
  readonly ctx: RowContext;
  /** The job id the bad message should be recorded under, when one can be read. */
  readonly expectedJobId: (messageId: string) => string | undefined;
  readonly goodJobId: string;
  readonly goodBot: string;
  body: string;
  messageId: string;
  goodMessageId: string;
}

function prepare(row: Row, index: number): PreparedRow {
  const n = String(index + 1).padStart(2, '0');
  const ctx: RowContext = { n, bot: `bad-bot-${n}`, job: `bad-job-${n}`, trapUrl: '' };
  const { expect: expectation } = row;
  const expectedJobId = (messageId: string): string | undefined => {
    switch (expectation.disposition) {
      case 'dead-lettered':
        return undefined;
      case 'tombstone (Cancelled, reason requested)':
        return ctx.job;
      case 'dead-lettered with a Failed event':
        if (expectation.jobId.kind === 'message-id') return messageId;
        return expectation.jobId.value === '' ? ctx.job : `${expectation.jobId.value}${ctx.job}`;
    }
  };
  return {
    id: n,
    row,
    ctx,
    expectedJobId,
    goodJobId: `good-job-${n}`,
    goodBot: `good-bot-${n}`,
    body: '',
    messageId: '',
    goodMessageId: '',
  };
}

const TABLE: readonly PreparedRow[] = ROWS.map(prepare);

let runtime: LocalRuntime;
let sqs: SQSClient;
let trap: Server;
let trapRequests = 0;
let batchesBefore: number;
let recordsBefore: number;
let statsBefore: SimulatorStats;
let failedRecordsBefore: number;
const deadLetters: Message[] = [];

/** Sends the pairs in order (bad, good, ...), ten messages per request. */
async function sendPairs(rows: readonly PreparedRow[]): Promise<void> {
  for (let start = 0; start < rows.length; start += 5) {
    const chunk = rows.slice(start, start + 5);
    const entries = chunk.flatMap((row) => [
      { Id: `bad${row.id}`, MessageBody: row.body },
      { Id: `good${row.id}`, MessageBody: jobBody(row.goodJobId, row.goodBot, { duration_ms: 300, queue_ms: 0, nodes: 1 }) },
    ]);
    const sent = await sqs.send(new SendMessageBatchCommand({ QueueUrl: runtime.intakeQueueUrl, Entries: entries }));
    expect(sent.Failed ?? []).toEqual([]);
    const ids = new Map((sent.Successful ?? []).map((entry) => [entry.Id, entry.MessageId]));
    for (const row of chunk) {
      row.messageId = ids.get(`bad${row.id}`)!;
      row.goodMessageId = ids.get(`good${row.id}`)!;
    }
  }
}

async function intakeQueueEmpty(): Promise<boolean> {
  const { Attributes: a = {} } = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: runtime.intakeQueueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
    }),
  );
  return (
    Number(a.ApproximateNumberOfMessages) +
      Number(a.ApproximateNumberOfMessagesNotVisible) +
      Number(a.ApproximateNumberOfMessagesDelayed) ===
    0
  );
}

const deadLettersOf = (messageId: string): Message[] =>
  deadLetters.filter((message) => message.MessageAttributes?.[DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]?.StringValue === messageId);
const attribute = (message: Message | undefined, name: string): string | undefined => message?.MessageAttributes?.[name]?.StringValue;
const isDeadLettered = (row: PreparedRow): boolean => row.row.expect.disposition !== 'tombstone (Cancelled, reason requested)';

beforeAll(async () => {
  trap = createServer((request, response) => {
    trapRequests += 1;
    request.resume();
    response.writeHead(202, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ execution_id: 'exec_trap' }));
  });
  await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
  const trapUrl = `http://127.0.0.1:${(trap.address() as AddressInfo).port}`;
  for (const row of TABLE) row.body = row.row.body({ ...row.ctx, trapUrl });

  runtime = await startLocalRuntime({ timeScale: TIME_SCALE, stackConfig: { pollIntervalSeconds: 1 }, simulator: { seed: 6 } });
  sqs = new SQSClient({ region: runtime.region, credentials: runtime.credentials, endpoint: runtime.endpoints.sqs });

  // Prepare: the intake queue paused, so the batches the start function gets are the pairs as queued.
  statsBefore = runtime.simulator!.stats();
  ({ failedRecords: failedRecordsBefore, batches: batchesBefore, records: recordsBefore } = runtime.eventSource.stats());
  await runtime.eventSource.stop();
  await sendPairs(TABLE);

  // Act
  runtime.eventSource.start();
  await waitFor(
    'every good job announced, every bad message dead-lettered or tombstoned',
    async () => {
      await drainQueue(sqs, runtime.deadLetterQueueUrl, deadLetters);
      const events = runtime.eventBridge.events();
      return TABLE.every(
        (row) =>
          eventsFor(events, row.goodJobId).length > 0 &&
          (isDeadLettered(row) ? deadLettersOf(row.messageId).length > 0 : eventsFor(events, row.expectedJobId(row.messageId)!).length > 0),
      );
    },
    45_000,
    200,
  );
  await waitFor('the intake queue to be empty', intakeQueueEmpty, 10_000, 100);
  await drainQueue(sqs, runtime.deadLetterQueueUrl, deadLetters);
}, 90_000);

afterAll(async () => {
  sqs?.destroy();
  await runtime?.close();
  await new Promise<void>((resolve) => (trap ? trap.close(() => resolve()) : resolve()));
});

describe('the bad-input catalogue', () => {
  it('has at least 40 rows, and a Failed event is expected exactly when a job id can be read', () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(40);
    expect(new Set(ROWS.map((row) => row.name)).size).toBe(ROWS.length);
    for (const row of TABLE) {
      const knownJobId = row.expectedJobId('message-id') !== undefined;
      expect(row.row.expect.disposition === 'dead-lettered', row.row.name).toBe(!knownJobId);
    }
  });

  describe.each(TABLE)('$id $row.name', (row) => {
    it(`${row.row.expect.disposition}; its good partner in the same batch completes; nothing reached Waterflai for it`, async () => {
      const expectation = row.row.expect;
      const messageId = row.messageId;
      const events = runtime.eventBridge.events();
      const stats = runtime.simulator!.stats();

      // The good job is unaffected: one start, one execution, COMPLETED, one Completed event.
      expect(stats.starts_by_chatbot[row.goodBot]).toBe(1);
      expect(stats.executions_by_chatbot[row.goodBot]).toBe(1);
      expect((await runtime.getJob(row.goodJobId))?.status).toBe(JOB_STATUS.COMPLETED);
      const goodEvents = eventsFor(events, row.goodJobId);
      expect(goodEvents.map((event) => event['detail-type'])).toEqual([DETAIL_TYPE.COMPLETED]);

      // No request reached Waterflai for the bad message.
      expect(stats.starts_by_chatbot[row.ctx.bot]).toBeUndefined();
      expect(statsBefore.starts_by_chatbot[row.ctx.bot]).toBeUndefined();

      const jobId = row.expectedJobId(messageId);
      if (expectation.disposition === 'tombstone (Cancelled, reason requested)') {
        expect(deadLettersOf(messageId)).toEqual([]);
        const record = await runtime.getJob(jobId!);
        expect(record).toMatchObject({
          status: JOB_STATUS.CANCELLED,
          cancel_reason: CANCEL_REASON.REQUESTED,
          delivery: expectation.delivery,
          source_message_id: messageId,
        });
        expect(record?.execution_id).toBeUndefined();
        const published = eventsFor(events, jobId!);
        expect(published.map((event) => event['detail-type'])).toEqual([DETAIL_TYPE.CANCELLED]);
        expect(published[0]!.detail).toMatchObject({ status: JOB_STATUS.CANCELLED, reason: CANCEL_REASON.REQUESTED, execution_id: null });
        return;
      }

      // Dead-lettered once, body untouched, with the reason as attributes.
      const copies = deadLettersOf(messageId);
      expect(copies, 'copies of the message in the DLQ').toHaveLength(1);
      const [copy] = copies;
      expect(copy!.Body).toBe(row.body);
      expect(attribute(copy, DLQ_ATTRIBUTE.ERROR_CODE)).toBe(ERROR_CODE.INVALID_MESSAGE);
      expect(attribute(copy, DLQ_ATTRIBUTE.ERROR_MESSAGE)).toMatch(expectation.errorMessage);
      expect(attribute(copy, DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID)).toBe(messageId);
      expect(Number.isNaN(Date.parse(attribute(copy, DLQ_ATTRIBUTE.FAILED_AT) ?? ''))).toBe(false);
      expect(attribute(copy, DLQ_ATTRIBUTE.JOB_ID)).toBe(jobId);

      if (expectation.disposition === 'dead-lettered') {
        // No job id: no record and no event (the message id would have been the job id).
        expect(eventsFor(events, messageId)).toEqual([]);
        expect(await runtime.getJob(messageId)).toBeUndefined();
        expect(await runtime.getJob(row.ctx.job)).toBeUndefined();
        expect(eventsFor(events, row.ctx.job)).toEqual([]);
        return;
      }

      // A job id is known: a FAILED record and exactly one Failed event carrying the reason.
      const record = await runtime.getJob(jobId!);
      expect(record).toMatchObject({
        status: JOB_STATUS.FAILED,
        error_code: ERROR_CODE.INVALID_MESSAGE,
        error_message: attribute(copy, DLQ_ATTRIBUTE.ERROR_MESSAGE),
        rejected_at_intake: true,
        delivery: expectation.delivery,
        source_message_id: messageId,
      });
      expect(record?.dead_lettered_at).toBeDefined();
      expect(record?.event_published_at).toBeDefined();
      expect(record?.execution_id).toBeUndefined();
      const published = eventsFor(events, jobId!);
      expect(published.map((event) => event['detail-type'])).toEqual([DETAIL_TYPE.FAILED]);
      const detail = published[0]!.detail as Record<string, unknown>;
      expect(detail).toMatchObject({
        status: JOB_STATUS.FAILED,
        execution_id: null,
        error: { code: ERROR_CODE.INVALID_MESSAGE, message: attribute(copy, DLQ_ATTRIBUTE.ERROR_MESSAGE) },
        chatbot_id: expectation.keepsChatbot ? row.ctx.bot : null,
        metadata: expectation.keepsMetadata ? METADATA(row.ctx) : {},
      });
    });
  });

  it('handed the start function the wave in full batches of ten (five bad messages, five good partners)', () => {
    const { batches, records } = runtime.eventSource.stats();
    expect(records - recordsBefore).toBe(TABLE.length * 2);
    expect(batches - batchesBefore).toBe(Math.ceil((TABLE.length * 2) / 10));
  });

  it('sent no request for any bad message: Waterflai saw exactly one start per good job, and the trap host none', () => {
    const after = runtime.simulator!.stats();
    const newStarts = Object.fromEntries(
      Object.entries(after.starts_by_chatbot).filter(([bot]) => statsBefore.starts_by_chatbot[bot] === undefined),
    );
    expect(newStarts).toEqual(Object.fromEntries(TABLE.map((row) => [row.goodBot, 1])));
    expect(after.by_route.start - statsBefore.by_route.start).toBe(TABLE.length);
    expect(after.by_route.cancel - statsBefore.by_route.cancel).toBe(0);
    expect(after.by_route.other - statsBefore.by_route.other).toBe(0);
    expect(after.unauthorized).toBe(0);
    expect(trapRequests).toBe(0);
    expect(runtime.networkGuard?.nonLoopback()).toEqual([]);
  });

  it('settled every bad message on its first receive: nothing was retried, and the DLQ holds exactly the refused messages', async () => {
    expect(runtime.eventSource.stats().failedRecords - failedRecordsBefore).toBe(0);
    expect(await intakeQueueEmpty()).toBe(true);
    const expectedSources = TABLE.filter(isDeadLettered).map((row) => row.messageId);
    const sources = deadLetters.map((message) => attribute(message, DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID));
    expect(sources.slice().sort()).toEqual(expectedSources.slice().sort());
  });

  it('published exactly the expected outcome events: one per good job, one per readable bad job id, nothing else', () => {
    const expected = TABLE.flatMap((row) => {
      const jobId = row.expectedJobId(row.messageId);
      return [row.goodJobId, ...(jobId === undefined ? [] : [jobId])];
    });
    const outcomes = runtime.eventBridge.events().filter((event) => event.source === 'waterflai.orchestrator');
    expect(outcomes.map((event) => (event.detail as { job_id: string }).job_id).sort()).toEqual(expected.sort());
  });

  it('refuses a body over 256 KiB at send time: the producer gets the error, nothing reaches the handler or Waterflai', async () => {
    // Prepare
    const before = runtime.simulator!.stats().total_requests;
    const body = JSON.stringify({
      job_id: 'too-big',
      chatbot_id: 'too-big-bot',
      input_data: { blob: 'x'.repeat(JOB_REQUEST_LIMITS.MAX_MESSAGE_BYTES) },
    });

    // Act
    const sent = await sqs.send(
      new SendMessageBatchCommand({ QueueUrl: runtime.intakeQueueUrl, Entries: [{ Id: 'big', MessageBody: body }] }),
    );

    // Assess
    expect(sent.Successful ?? []).toEqual([]);
    expect(sent.Failed?.[0]?.SenderFault).toBe(true);
    expect(runtime.simulator!.stats().total_requests).toBe(before);
    expect(await runtime.getJob('too-big')).toBeUndefined();
  });

  it('keeps a job cancelled before it arrived from ever reaching Waterflai', async () => {
    // Prepare: the tombstoned job ids, now sent as real job requests.
    const tombstones = TABLE.filter((row) => !isDeadLettered(row));
    expect(tombstones.length).toBeGreaterThan(0);
    const before = runtime.simulator!.stats();
    const bots = tombstones.map((row) => `late-bot-${row.id}`);

    // Act
    for (const [index, row] of tombstones.entries()) await runtime.sendMessage(jobBody(row.ctx.job, bots[index]!, { duration_ms: 100 }));
    await waitFor('the late starts to be consumed', intakeQueueEmpty, 10_000, 100);

    // Assess
    const after = runtime.simulator!.stats();
    expect(after.by_route.start).toBe(before.by_route.start);
    for (const bot of bots) expect(after.starts_by_chatbot[bot]).toBeUndefined();
    for (const row of tombstones) {
      expect((await runtime.getJob(row.ctx.job))?.status).toBe(JOB_STATUS.CANCELLED);
      expect(eventsFor(runtime.eventBridge.events(), row.ctx.job)).toHaveLength(1);
    }
  });
});
