/**
 * The Waterflai response catalogue: every answer Waterflai (or a proxy in front of it) may
 * give, on each of the three calls the orchestrator makes, with the behaviour the
 * orchestrator shows for it. Waterflai is a scripted node:http server on 127.0.0.1 (one
 * answer per method, so a cancel's DELETE and the status read that follows a refusal each
 * have theirs), reached through the real WaterflaiClient, here without a key refresh (a
 * 401/403 comes back as it is); DynamoDB is dynalite; Step Functions, SQS and EventBridge
 * are mocked at the SDK level. The rule behind every behaviour: an outcome is announced only
 * when it is true upstream, or after the orchestrator has done all it can to make it true
 * (docs/upstream-incidents.md, docs/waterflai-contract.md).
 *
 * - start (JobStarter, a job request): a redirect or a 4xx other than 401/403/408/425/429 is
 *   rejected at once (FAILED, Failed event + DLQ, WATERFLAI_REJECTED). Everything else is
 *   retried through SQS visibility (the server's Retry-After, else backoff with jitter), a
 *   refused key (401/403) included: a key rotation is the deployment's problem, not the job's.
 *   On the last receive it gives up (FAILED, Failed event + DLQ, START_RETRIES_EXHAUSTED).
 * - poll (JobPoller.poll): Waterflai's failures never reach the state machine's Retry
 *   (TransientPollError is for AWS faults only). A transient failure (5xx, 408, timeout,
 *   reset, an off-contract or invalid body) or a refused key is an incident (kind `transient`
 *   or `auth`): the job's record shows it, the status stays, and the next poll comes after a
 *   capped exponential backoff. A 429 waits its Retry-After. A 404 before any successful read
 *   is an incident too (a few times: Waterflai may not have caught up); after the execution
 *   was seen it settles FAILED EXECUTION_NOT_FOUND, or OUTPUT_EXPIRED once `cleanup_after` has
 *   passed. Only a redirect and the other 4xx go to the state machine's Catch (POLL_FAILED).
 * - cancel (JobStarter, a producer's cancel request for a running job): cancel and confirm.
 *   `cancelled: true` settles CANCELLED (requested, `upstream_cancel: confirmed`) with a
 *   Cancelled event. Any refusal (409, 400, 404, 200 `cancelled: false`, a refused key, a
 *   redirect) is followed by a status read: a finished execution is left to the poll loop
 *   (nothing settled, nothing announced), a 404 means it is gone (settled CANCELLED), a
 *   running one is asked again. Transient failures are retried in-process (4 attempts,
 *   0.5, 1 and 2 s apart). When nothing is confirmed the message is deferred (nothing
 *   settled) and, on its last receive, dead-lettered (START_RETRIES_EXHAUSTED) while the job
 *   keeps running, tracked by its poll loop.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CANCEL_REASON, DETAIL_TYPE, DLQ_ATTRIBUTE, ERROR_CODE, JOB_STATUS, UPSTREAM_CANCEL } from '../../lambdas/contract/constants';
import {
  TransientPollError,
  UpstreamCancelUnconfirmedError,
  type WaterflaiError,
  WaterflaiHttpError,
  WaterflaiNetworkError,
  WaterflaiRedirectError,
  WaterflaiResponseError,
} from '../../lambdas/contract/errors';
import type { PollIncident } from '../../lambdas/contract/job-record';
import type { RequestOptions } from '../../lambdas/contract/waterflai-api';
import { JobStore } from '../../lambdas/aws/job-store';
import type { AppLogger } from '../../lambdas/platform/logger';
import { OutcomePublisher } from '../../lambdas/aws/outcome-publisher';
import { MAX_RETRY_AFTER_SECONDS, type FixedIntervalSettings } from '../../lambdas/contract/settings';
import { WaterflaiClient } from '../../lambdas/waterflai/client';
import { CANCEL_RETRY_DELAYS_MS } from '../../lambdas/domain/upstream-cancel';
import type { PollState } from '../../lambdas/domain/workflow';
import { INCIDENT_BACKOFF_BASE_SECONDS, JobPoller, NOT_FOUND_BEFORE_FIRST_READ_TOLERANCE } from '../../lambdas/poll/poll-job';
import { JobStarter, type WaterflaiStarter } from '../../lambdas/start-execution/start-job';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';
import { STARTER_SETTINGS, STATE_MACHINE_ARN } from '../support/starter';

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

// ---------------------------------------------------------------------------------------
// The scripted Waterflai
// ---------------------------------------------------------------------------------------

const API_KEY = 'responses-test-key-3f9a';
/** The orchestrator's clock (and the client's, for HTTP-date Retry-After values). */
const NOW_MS = Date.parse('2026-11-29T12:00:00.000Z');
const NOW = new Date(NOW_MS).toISOString();
/** Per-request deadline: `requestTimeoutFor` keeps 3 s of the remaining time free. */
const REQUEST_TIMEOUT_MS = 600;
/** The time a start or a poll has left: room for one request of REQUEST_TIMEOUT_MS. */
const remaining = (): number => 3_000 + REQUEST_TIMEOUT_MS;
/**
 * The time a cancel has left: room for all its attempts (each needs 20 s by the default
 * request deadline). Its requests are still cut at REQUEST_TIMEOUT_MS (see {@link shortRequests}).
 */
const cancelRemaining = (): number => 30_000;
/** With random() = 0.5 and a first receive, the start backoff is ceil(0.5 * 5 s). */
const BACKOFF_SECONDS = 3;
const EXECUTION_ID = 'exec_1';

type Answer = (request: IncomingMessage, response: ServerResponse) => void;
type Method = 'POST' | 'GET' | 'DELETE';

const open = new Set<ServerResponse>();

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Answer =>
  (request, response) => {
    request.resume();
    const text = JSON.stringify(body);
    response.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
    response.end(text);
  };
const raw =
  (status: number, text: string): Answer =>
  (request, response) => {
    request.resume();
    response.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
    response.end(text);
  };
const error = (status: number, headers: Record<string, string> = {}): Answer =>
  json(status, { detail: `scripted HTTP ${status}` }, headers);
/** An answer without a body. */
const empty =
  (status: number): Answer =>
  (request, response) => {
    request.resume();
    response.writeHead(status, { 'content-length': '0' });
    response.end();
  };
/** Never answers (until the test ends). */
const hang: Answer = (request, response) => {
  request.resume();
  open.add(response);
};
/** Drops the connection without an answer. */
const reset: Answer = (request) => {
  request.socket.destroy();
};
/** Sends the head and half of the body at once, the rest after `delayMs`. */
const slowBody =
  (status: number, body: unknown, delayMs: number): Answer =>
  (request, response) => {
    request.resume();
    const text = JSON.stringify(body);
    const half = Math.floor(text.length / 2);
    open.add(response);
    response.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
    response.write(text.slice(0, half));
    setTimeout(() => {
      if (!response.destroyed) response.end(text.slice(half));
    }, delayMs);
  };
/** What the server answers to a request the case did not script (the request list shows it anyway). */
const unscripted: Answer = json(500, { detail: 'unscripted request' });

const RETRY_AFTER_SECONDS = 7;
/** An HTTP-date 45 s after NOW_MS. */
const RETRY_AFTER_DATE = new Date(NOW_MS + 45_000).toUTCString();
const RETRY_AFTER_DATE_SECONDS = 45;

let server: Server;
let baseUrl: string;
/** The server's answer to each method, set by each case. */
let script: Partial<Record<Method, Answer>> = {};
const requests: Array<{ method: string; url: string; apiKey: string | undefined }> = [];

// ---------------------------------------------------------------------------------------
// The orchestrator under test
// ---------------------------------------------------------------------------------------

const settings = STARTER_SETTINGS;
const POLL_SETTINGS: FixedIntervalSettings = { intervalSeconds: 5, minSeconds: 1, maxSeconds: 300 };

const sfnMock = mockClient(SFNClient);
const sqsMock = mockClient(SQSClient);
const eventsMock = mockClient(EventBridgeClient);

let dynamo: LocalDynamo;
let store: JobStore;
let starter: JobStarter;
let poller: JobPoller;
/** The waits the starter asked for between its in-process attempts (none really waited). */
const sleeps: number[] = [];

const quietLogger: AppLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/**
 * The real client, with every request's deadline cut to REQUEST_TIMEOUT_MS (what a Lambda
 * with little time left would give it): a cancel then makes all its attempts, and a hang
 * costs each of them 0.6 s rather than 10.
 */
function shortRequests(client: WaterflaiClient): WaterflaiStarter {
  const short = (options: RequestOptions = {}): RequestOptions => ({
    ...options,
    timeoutMs: Math.min(options.timeoutMs ?? REQUEST_TIMEOUT_MS, REQUEST_TIMEOUT_MS),
  });
  return {
    startExecution: (chatbotId, inputData, options) => client.startExecution(chatbotId, inputData, short(options)),
    getExecution: (executionId, options) => client.getExecution(executionId, short(options)),
    cancelExecution: (executionId, options) => client.cancelExecution(executionId, short(options)),
  };
}

function sqsRecord(body: string, receiveCount = 1): SQSRecord {
  return {
    messageId: 'msg-1',
    receiptHandle: `receipt-${receiveCount}`,
    body,
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: String(NOW_MS),
      SenderId: 'sender',
      ApproximateFirstReceiveTimestamp: String(NOW_MS),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:intake',
    awsRegion: 'us-east-1',
  };
}

const startBody = JSON.stringify({ job_id: 'job-1', chatbot_id: 'bot-1', input_data: { query: 'q' }, metadata: { team: 'reports' } });
const cancelBody = JSON.stringify({ action: 'cancel', job_id: 'job-1' });

function published(): Array<{ detailType: string; detail: Record<string, unknown> }> {
  return eventsMock.commandCalls(PutEventsCommand).flatMap((call) =>
    (call.args[0].input.Entries ?? []).map((entry) => ({
      detailType: entry.DetailType ?? '',
      detail: JSON.parse(entry.Detail ?? '{}') as Record<string, unknown>,
    })),
  );
}

function deadLetters(): Array<Record<string, string | undefined>> {
  return sqsMock
    .commandCalls(SendMessageCommand)
    .map((call) =>
      Object.fromEntries(Object.entries(call.args[0].input.MessageAttributes ?? {}).map(([key, value]) => [key, value.StringValue])),
    );
}

function visibilityChanges(): Array<number | undefined> {
  return sqsMock.commandCalls(ChangeMessageVisibilityCommand).map((call) => call.args[0].input.VisibilityTimeout);
}

/** job-1 as the start step leaves it: PENDING with Waterflai execution exec_1 and its state machine execution. */
async function runningJob(): Promise<PollState> {
  const acceptedAt = new Date(NOW_MS - 60_000).toISOString();
  const deadlineAt = new Date(NOW_MS + 3_600_000).toISOString();
  await store.claim({
    job_id: 'job-1',
    chatbot_id: 'bot-1',
    metadata: { team: 'reports' },
    source_message_id: 'msg-0',
    delivery: 'sqs',
    accepted_at: acceptedAt,
    deadline_at: deadlineAt,
    expires_at: 1_900_000_000,
    state_machine_execution_name: 'job-1',
    claim_expires_at: NOW_MS,
  });
  await store.saveExecutionId('job-1', EXECUTION_ID, acceptedAt);
  await store.saveStateMachineExecution('job-1', `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:job-1`, acceptedAt);
  return {
    job_id: 'job-1',
    chatbot_id: 'bot-1',
    execution_id: EXECUTION_ID,
    accepted_at: acceptedAt,
    deadline_at: deadlineAt,
    status: JOB_STATUS.PENDING,
    progress: null,
    current_node: null,
    poll_count: 0,
    next_poll_seconds: 10,
  };
}

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  server = createServer((request, response) => {
    const method = request.method ?? '';
    requests.push({ method, url: request.url ?? '', apiKey: request.headers['x-api-key'] as string | undefined });
    (script[method as Method] ?? unscripted)(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await dynamo.close();
});

beforeEach(async () => {
  sfnMock.reset();
  sqsMock.reset();
  eventsMock.reset();
  sfnMock.on(StartExecutionCommand).callsFake((input: { name: string }) => ({
    executionArn: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${input.name}`,
    startDate: new Date(),
  }));
  sqsMock.on(SendMessageCommand).resolves({ MessageId: 'dlq-message' });
  sqsMock.on(ChangeMessageVisibilityCommand).resolves({});
  eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'event-1' }] });
  requests.length = 0;
  sleeps.length = 0;
  script = {};

  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
  const waterflai = new WaterflaiClient({ baseUrl, apiKey: () => API_KEY, now: () => NOW_MS });
  starter = new JobStarter({
    store,
    waterflai: shortRequests(waterflai),
    sfn: new SFNClient({ region: 'us-east-1' }),
    sqs: new SQSClient({ region: 'us-east-1' }),
    publisher: new OutcomePublisher(
      new EventBridgeClient({ region: 'us-east-1' }),
      'bus',
      async () => undefined,
      () => 0,
    ),
    logger: quietLogger,
    settings,
    now: () => NOW_MS,
    random: () => 0.5,
    // The default waits between cancel attempts, recorded rather than waited.
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  poller = new JobPoller({
    store,
    waterflai,
    logger: quietLogger,
    pollSettings: POLL_SETTINGS,
    maxInlineOutputBytes: 64 * 1024,
    now: () => NOW_MS,
  });
});

afterEach(() => {
  for (const response of open) response.destroy();
  open.clear();
});

const started = { execution_id: EXECUTION_ID, status_url: 'https://waterflai.example/s', stream_url: null, cancel_url: null };
const status = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  execution_id: EXECUTION_ID,
  status: 'RUNNING',
  progress: 40,
  current_node: 'node-2',
  ...overrides,
});
const cancelled = { execution_id: EXECUTION_ID, cancelled: true, message: 'cancelled', previous_status: 'RUNNING' };

/** The Waterflai error class an answer becomes (what the retry decisions are made on), and a part of its description. */
type ErrorShape = { readonly type: new (...args: never[]) => WaterflaiError; readonly code: string; readonly text: string };
const HTTP = (status: number): ErrorShape => ({ type: WaterflaiHttpError, code: `HTTP_${status}`, text: `HTTP ${status}` });
const TIMEOUT: ErrorShape = { type: WaterflaiNetworkError, code: 'TIMEOUT', text: 'timed out' };
const NETWORK: ErrorShape = { type: WaterflaiNetworkError, code: 'NETWORK_ERROR', text: 'connection failed' };
const INVALID: ErrorShape = { type: WaterflaiResponseError, code: 'INVALID_RESPONSE', text: 'invalid response' };
const REDIRECT: ErrorShape = { type: WaterflaiRedirectError, code: 'REDIRECT_REFUSED', text: 'redirect' };

// ---------------------------------------------------------------------------------------
// start
// ---------------------------------------------------------------------------------------

type StartBehaviour =
  | { readonly kind: 'rejected: FAILED, Failed event and DLQ (WATERFLAI_REJECTED), not retried'; readonly error: ErrorShape }
  | { readonly kind: 'retried: deferred by Retry-After'; readonly error: ErrorShape; readonly seconds: number }
  | { readonly kind: 'retried: deferred with backoff'; readonly error: ErrorShape }
  | { readonly kind: 'retried: the key was refused (a rotation?), deferred with backoff'; readonly error: ErrorShape }
  | { readonly kind: 'given up on the last receive: FAILED, Failed event and DLQ (START_RETRIES_EXHAUSTED)'; readonly error: ErrorShape }
  | { readonly kind: 'started' };

interface StartRow {
  readonly response: string;
  readonly answer: Answer;
  readonly receiveCount?: number;
  readonly behaviour: StartBehaviour;
}

const rejected = (error: ErrorShape): StartBehaviour => ({
  kind: 'rejected: FAILED, Failed event and DLQ (WATERFLAI_REJECTED), not retried',
  error,
});
const backoff = (error: ErrorShape): StartBehaviour => ({ kind: 'retried: deferred with backoff', error });
const keyRefused = (status: number): StartBehaviour => ({
  kind: 'retried: the key was refused (a rotation?), deferred with backoff',
  error: HTTP(status),
});
const givenUp = (error: ErrorShape): StartBehaviour => ({
  kind: 'given up on the last receive: FAILED, Failed event and DLQ (START_RETRIES_EXHAUSTED)',
  error,
});

const START_ROWS: readonly StartRow[] = [
  { response: '202 with an execution_id', answer: json(202, started), behaviour: { kind: 'started' } },
  { response: '400 Bad Request', answer: error(400), behaviour: rejected(HTTP(400)) },
  { response: '401 Unauthorized', answer: error(401), behaviour: keyRefused(401) },
  { response: '403 Forbidden', answer: error(403), behaviour: keyRefused(403) },
  { response: '404 Not Found (unknown chatbot)', answer: error(404), behaviour: rejected(HTTP(404)) },
  { response: '408 Request Timeout', answer: error(408), behaviour: backoff(HTTP(408)) },
  { response: '409 Conflict', answer: error(409), behaviour: rejected(HTTP(409)) },
  {
    response: '422 Unprocessable Entity',
    answer: json(422, { detail: [{ loc: ['body', 'input_data'], msg: 'field required', input: {} }] }),
    behaviour: rejected(HTTP(422)),
  },
  {
    response: '429 with Retry-After in seconds',
    answer: error(429, { 'retry-after': String(RETRY_AFTER_SECONDS) }),
    behaviour: { kind: 'retried: deferred by Retry-After', error: HTTP(429), seconds: RETRY_AFTER_SECONDS },
  },
  {
    response: '429 with Retry-After as an HTTP-date',
    answer: error(429, { 'retry-after': RETRY_AFTER_DATE }),
    behaviour: { kind: 'retried: deferred by Retry-After', error: HTTP(429), seconds: RETRY_AFTER_DATE_SECONDS },
  },
  { response: '429 without Retry-After', answer: error(429), behaviour: backoff(HTTP(429)) },
  { response: '500 Internal Server Error', answer: error(500), behaviour: backoff(HTTP(500)) },
  { response: '502 Bad Gateway (an HTML page)', answer: raw(502, '<html><body>Bad Gateway</body></html>'), behaviour: backoff(HTTP(502)) },
  {
    response: '503 with Retry-After',
    answer: error(503, { 'retry-after': String(RETRY_AFTER_SECONDS) }),
    behaviour: { kind: 'retried: deferred by Retry-After', error: HTTP(503), seconds: RETRY_AFTER_SECONDS },
  },
  { response: 'no answer (hang until the deadline)', answer: hang, behaviour: backoff(TIMEOUT) },
  { response: 'connection reset', answer: reset, behaviour: backoff(NETWORK) },
  {
    response: 'a slow body finishing after the deadline',
    answer: slowBody(202, started, REQUEST_TIMEOUT_MS * 3),
    behaviour: backoff(TIMEOUT),
  },
  {
    response: 'a slow body finishing before the deadline',
    answer: slowBody(202, started, REQUEST_TIMEOUT_MS / 4),
    behaviour: { kind: 'started' },
  },
  { response: '202 with invalid JSON', answer: raw(202, '{"execution_id": "exec_'), behaviour: backoff(INVALID) },
  { response: '202 without execution_id', answer: json(202, { status_url: 'https://waterflai.example/s' }), behaviour: backoff(INVALID) },
  {
    response: '202 with an execution_id unsafe for a URL',
    answer: json(202, { ...started, execution_id: '../admin' }),
    behaviour: backoff(INVALID),
  },
  { response: '302 redirect', answer: json(302, {}, { location: 'https://elsewhere.example/' }), behaviour: rejected(REDIRECT) },
  { response: '503 on the last receive', answer: error(503), receiveCount: settings.maxReceiveCount, behaviour: givenUp(HTTP(503)) },
  {
    response: '401 on the last receive (the key still refused)',
    answer: error(401),
    receiveCount: settings.maxReceiveCount,
    behaviour: givenUp(HTTP(401)),
  },
];

describe.each(START_ROWS)('start: Waterflai answers $response', (row) => {
  it(`→ ${row.behaviour.kind}`, async () => {
    // Prepare
    script = { POST: row.answer };
    const { behaviour } = row;

    // Act
    const outcome = await starter.handleRecord(sqsRecord(startBody, row.receiveCount), remaining).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );

    // Assess: exactly one POST, to the configured server, with the key.
    expect(requests).toEqual([{ method: 'POST', url: '/v1/executions/bot-1/async', apiKey: API_KEY }]);
    expect(sleeps).toEqual([]);
    const record = await store.get('job-1');
    switch (behaviour.kind) {
      case 'started':
        expect(outcome).toBeUndefined();
        expect(record).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: EXECUTION_ID });
        expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 1);
        expect(published()).toEqual([]);
        expect(deadLetters()).toEqual([]);
        expect(visibilityChanges()).toEqual([]);
        return;
      case 'retried: deferred by Retry-After':
      case 'retried: deferred with backoff': {
        expect(outcome).toBeInstanceOf(behaviour.error.type);
        expect((outcome as WaterflaiError).code).toBe(behaviour.error.code);
        expect((outcome as WaterflaiError).retryable).toBe(true);
        expect(visibilityChanges()).toEqual([behaviour.kind === 'retried: deferred by Retry-After' ? behaviour.seconds : BACKOFF_SECONDS]);
        // The claim is released so that the retry need not wait for the lease; nothing is settled.
        expect(record).toMatchObject({ status: JOB_STATUS.SUBMITTING, claim_expires_at: 0 });
        expect(record?.execution_id).toBeUndefined();
        expect(published()).toEqual([]);
        expect(deadLetters()).toEqual([]);
        expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 0);
        return;
      }
      case 'retried: the key was refused (a rotation?), deferred with backoff': {
        // The error itself is not retryable (the same key would be refused again), but the
        // message is: it comes back once the new key is in place.
        expect(outcome).toBeInstanceOf(behaviour.error.type);
        expect((outcome as WaterflaiError).code).toBe(behaviour.error.code);
        expect((outcome as Error).message).not.toContain(API_KEY);
        expect(visibilityChanges()).toEqual([BACKOFF_SECONDS]);
        expect(record).toMatchObject({ status: JOB_STATUS.SUBMITTING });
        expect(record?.execution_id).toBeUndefined();
        expect(record?.error_code).toBeUndefined();
        expect(published()).toEqual([]);
        expect(deadLetters()).toEqual([]);
        expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 0);
        return;
      }
      case 'rejected: FAILED, Failed event and DLQ (WATERFLAI_REJECTED), not retried':
      case 'given up on the last receive: FAILED, Failed event and DLQ (START_RETRIES_EXHAUSTED)': {
        const code = behaviour.kind.startsWith('rejected') ? ERROR_CODE.WATERFLAI_REJECTED : ERROR_CODE.START_RETRIES_EXHAUSTED;
        expect(outcome).toBeUndefined();
        expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: code, rejected_at_intake: true });
        expect(record?.error_message).toContain(behaviour.error.text);
        expect(record?.error_message).not.toContain(API_KEY);
        expect(published()).toEqual([
          {
            detailType: DETAIL_TYPE.FAILED,
            detail: expect.objectContaining({ job_id: 'job-1', error: { code, message: record?.error_message } }),
          },
        ]);
        expect(deadLetters()).toEqual([
          expect.objectContaining({
            [DLQ_ATTRIBUTE.ERROR_CODE]: code,
            [DLQ_ATTRIBUTE.JOB_ID]: 'job-1',
            [DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]: 'msg-1',
          }),
        ]);
        expect(visibilityChanges()).toEqual([]);
        expect(sfnMock).toHaveReceivedCommandTimes(StartExecutionCommand, 0);
        return;
      }
    }
  });
});

// ---------------------------------------------------------------------------------------
// poll
// ---------------------------------------------------------------------------------------

type PollBehaviour =
  | { readonly kind: 'permanent: the Waterflai error goes to the Catch (POLL_FAILED), no retry'; readonly error: ErrorShape }
  | {
      readonly kind: 'incident: polled again with backoff, the record shows it';
      readonly incident: PollIncident['kind'];
      readonly error: ErrorShape;
    }
  | { readonly kind: 'wait: polled again after Retry-After (else the usual interval), no incident'; readonly seconds: number }
  | { readonly kind: 'recorded'; readonly status: string }
  | { readonly kind: 'settled: FAILED, the poll loop ends'; readonly code: string };

interface PollRow {
  readonly response: string;
  readonly answer: Answer;
  readonly state?: Partial<PollState>;
  /** An incident already going on: in the loop state and on the record. */
  readonly ongoing?: PollIncident;
  readonly behaviour: PollBehaviour;
}

const permanent = (error: ErrorShape): PollBehaviour => ({
  kind: 'permanent: the Waterflai error goes to the Catch (POLL_FAILED), no retry',
  error,
});
const incident = (error: ErrorShape, kind: PollIncident['kind'] = 'transient'): PollBehaviour => ({
  kind: 'incident: polled again with backoff, the record shows it',
  incident: kind,
  error,
});
const waitFor = (seconds: number): PollBehaviour => ({
  kind: 'wait: polled again after Retry-After (else the usual interval), no incident',
  seconds,
});
const settledFailed = (code: string): PollBehaviour => ({ kind: 'settled: FAILED, the poll loop ends', code });
const ongoing = (kind: PollIncident['kind'], failures: number, lastError: string): PollIncident => ({
  kind,
  since: new Date(NOW_MS - 600_000).toISOString(),
  failures,
  last_error: lastError,
});
/** The execution was read before (its status recorded). */
const SEEN: Partial<PollState> = { status: JOB_STATUS.RUNNING, progress: 40, current_node: 'node-2', upstream_seen: true };

const POLL_ROWS: readonly PollRow[] = [
  { response: '200 RUNNING', answer: json(200, status()), behaviour: { kind: 'recorded', status: JOB_STATUS.RUNNING } },
  {
    response: '200 RUNNING while an incident goes on (it ends)',
    answer: json(200, status()),
    ongoing: ongoing('transient', 2, 'WaterflaiHttpError: Waterflai get answered HTTP 503: scripted HTTP 503'),
    behaviour: { kind: 'recorded', status: JOB_STATUS.RUNNING },
  },
  { response: '400 Bad Request', answer: error(400), behaviour: permanent(HTTP(400)) },
  { response: '401 Unauthorized', answer: error(401), behaviour: incident(HTTP(401), 'auth') },
  { response: '403 Forbidden', answer: error(403), behaviour: incident(HTTP(403), 'auth') },
  {
    response: '403 Forbidden while an auth incident goes on',
    answer: error(403),
    ongoing: ongoing('auth', 1, 'WaterflaiHttpError: Waterflai get answered HTTP 403: scripted HTTP 403'),
    behaviour: incident(HTTP(403), 'auth'),
  },
  { response: '404 Not Found before any successful read', answer: error(404), behaviour: incident(HTTP(404)) },
  {
    response: `404 Not Found before any successful read, after ${NOT_FOUND_BEFORE_FIRST_READ_TOLERANCE} of them`,
    answer: error(404),
    ongoing: ongoing(
      'transient',
      NOT_FOUND_BEFORE_FIRST_READ_TOLERANCE,
      'WaterflaiHttpError: Waterflai get answered HTTP 404: scripted HTTP 404',
    ),
    behaviour: settledFailed(ERROR_CODE.EXECUTION_NOT_FOUND),
  },
  {
    response: '404 Not Found for an execution read before',
    answer: error(404),
    state: SEEN,
    behaviour: settledFailed(ERROR_CODE.EXECUTION_NOT_FOUND),
  },
  {
    response: '404 Not Found after the result was cleaned up',
    answer: error(404),
    state: { ...SEEN, cleanup_after: new Date(NOW_MS - 1_000).toISOString() },
    behaviour: settledFailed(ERROR_CODE.OUTPUT_EXPIRED),
  },
  { response: '408 Request Timeout', answer: error(408), behaviour: incident(HTTP(408)) },
  { response: '409 Conflict', answer: error(409), behaviour: permanent(HTTP(409)) },
  { response: '422 Unprocessable Entity', answer: error(422), behaviour: permanent(HTTP(422)) },
  {
    response: '429 with Retry-After in seconds',
    answer: error(429, { 'retry-after': String(RETRY_AFTER_SECONDS) }),
    behaviour: waitFor(RETRY_AFTER_SECONDS),
  },
  {
    response: '429 with Retry-After as an HTTP-date',
    answer: error(429, { 'retry-after': RETRY_AFTER_DATE }),
    behaviour: waitFor(RETRY_AFTER_DATE_SECONDS),
  },
  { response: '429 without Retry-After', answer: error(429), behaviour: waitFor(POLL_SETTINGS.intervalSeconds) },
  { response: '500 Internal Server Error', answer: error(500), behaviour: incident(HTTP(500)) },
  {
    response: '502 Bad Gateway (an HTML page)',
    answer: raw(502, '<html><body>Bad Gateway</body></html>'),
    behaviour: incident(HTTP(502)),
  },
  { response: '503 Service Unavailable', answer: error(503), behaviour: incident(HTTP(503)) },
  {
    response: '503 Service Unavailable while an incident goes on',
    answer: error(503),
    ongoing: ongoing('transient', 2, 'WaterflaiNetworkError: Waterflai get timed out: no complete answer within 600 ms'),
    behaviour: incident(HTTP(503)),
  },
  { response: 'no answer (hang until the deadline)', answer: hang, behaviour: incident(TIMEOUT) },
  { response: 'connection reset', answer: reset, behaviour: incident(NETWORK) },
  {
    response: 'a slow body finishing after the deadline',
    answer: slowBody(200, status(), REQUEST_TIMEOUT_MS * 3),
    behaviour: incident(TIMEOUT),
  },
  {
    response: 'a slow body finishing before the deadline',
    answer: slowBody(200, status(), REQUEST_TIMEOUT_MS / 4),
    behaviour: { kind: 'recorded', status: JOB_STATUS.RUNNING },
  },
  {
    response: '200 with invalid JSON',
    answer: raw(200, `{"execution_id": "${EXECUTION_ID}", "status": "RUNN`),
    behaviour: incident(INVALID),
  },
  {
    response: '200 without execution_id (the requested id is assumed)',
    answer: json(200, { status: 'RUNNING', progress: 10 }),
    behaviour: { kind: 'recorded', status: JOB_STATUS.RUNNING },
  },
  { response: '200 without status', answer: json(200, { execution_id: EXECUTION_ID, progress: 10 }), behaviour: incident(INVALID) },
  { response: "200 with another execution's id", answer: json(200, status({ execution_id: 'exec_other' })), behaviour: incident(INVALID) },
  {
    response: '200 with an unknown status',
    answer: json(200, status({ status: 'QUEUED_FOR_REVIEW' })),
    behaviour: { kind: 'recorded', status: JOB_STATUS.UNKNOWN },
  },
  { response: '302 redirect', answer: json(302, {}, { location: 'https://elsewhere.example/' }), behaviour: permanent(REDIRECT) },
];

describe.each(POLL_ROWS)('poll: Waterflai answers $response', (row) => {
  it(`→ ${row.behaviour.kind}`, async () => {
    // Prepare
    const state: PollState = { ...(await runningJob()), ...row.state, ...(row.ongoing === undefined ? {} : { incident: row.ongoing }) };
    if (row.ongoing !== undefined) await store.recordIncident('job-1', row.ongoing, row.ongoing.since);
    const before = await store.get('job-1');
    script = { GET: row.answer };
    const { behaviour } = row;

    // Act
    const outcome = await poller.poll(state, remaining).then(
      (next) => ({ next }),
      (thrown: unknown) => ({ thrown }),
    );

    // Assess
    expect(requests).toEqual([{ method: 'GET', url: `/v1/executions/${EXECUTION_ID}`, apiKey: API_KEY }]);
    const record = await store.get('job-1');
    const { incident: _ongoing, ...stateWithoutIncident } = state;
    switch (behaviour.kind) {
      case 'permanent: the Waterflai error goes to the Catch (POLL_FAILED), no retry':
        expect('thrown' in outcome).toBe(true);
        if (!('thrown' in outcome)) return;
        expect(outcome.thrown).not.toBeInstanceOf(TransientPollError);
        expect(outcome.thrown).toBeInstanceOf(behaviour.error.type);
        expect((outcome.thrown as WaterflaiError).code).toBe(behaviour.error.code);
        expect((outcome.thrown as WaterflaiError).retryable).toBe(false);
        expect((outcome.thrown as Error).message).not.toContain(API_KEY);
        expect(record).toEqual(before);
        return;
      case 'incident: polled again with backoff, the record shows it': {
        expect('next' in outcome).toBe(true);
        if (!('next' in outcome)) return;
        // A new incident starts (its first failure) unless one of the same kind goes on.
        const goesOn = row.ongoing?.kind === behaviour.incident ? row.ongoing : undefined;
        const failures = (goesOn?.failures ?? 0) + 1;
        expect(outcome.next).toEqual({
          ...stateWithoutIncident,
          poll_count: 1,
          execution_polls: 1,
          incident: {
            kind: behaviour.incident,
            since: goesOn?.since ?? NOW,
            failures,
            last_error: expect.stringContaining(behaviour.error.text),
          },
          next_poll_seconds: expect.any(Number),
        });
        expect(outcome.next.incident?.last_error).toContain(behaviour.error.type.name);
        expect(outcome.next.incident?.last_error).not.toContain(API_KEY);
        // Capped exponential backoff from INCIDENT_BACKOFF_BASE_SECONDS, half of it jittered.
        const ceiling = Math.min(POLL_SETTINGS.maxSeconds, INCIDENT_BACKOFF_BASE_SECONDS * 2 ** (failures - 1));
        expect(outcome.next.next_poll_seconds).toBeGreaterThanOrEqual(ceiling / 2);
        expect(outcome.next.next_poll_seconds).toBeLessThanOrEqual(ceiling);
        // The record shows an incident from its first failure on (not rewritten on every poll).
        if (goesOn === undefined) {
          expect(record).toEqual({ ...before, incident: outcome.next.incident, version: before!.version + 1, updated_at: NOW });
        } else {
          expect(record).toEqual(before);
        }
        return;
      }
      case 'wait: polled again after Retry-After (else the usual interval), no incident':
        expect('next' in outcome).toBe(true);
        if (!('next' in outcome)) return;
        expect(outcome.next).toEqual({ ...stateWithoutIncident, poll_count: 1, execution_polls: 1, next_poll_seconds: expect.any(Number) });
        expect(outcome.next.next_poll_seconds).toBeGreaterThanOrEqual(behaviour.seconds);
        expect(outcome.next.next_poll_seconds).toBeLessThanOrEqual(MAX_RETRY_AFTER_SECONDS);
        expect(record).toEqual(before);
        return;
      case 'recorded':
        expect('next' in outcome).toBe(true);
        if (!('next' in outcome)) return;
        expect(outcome.next.status).toBe(behaviour.status);
        expect(outcome.next.incident).toBeUndefined();
        expect(outcome.next.upstream_seen).toBe(true);
        expect(record?.status).toBe(behaviour.status);
        // The status write, and the end of a running incident.
        expect(record?.version).toBe(before!.version + (row.ongoing === undefined ? 1 : 2));
        expect(record?.incident ?? null).toBeNull();
        return;
      case 'settled: FAILED, the poll loop ends':
        expect('next' in outcome).toBe(true);
        if (!('next' in outcome)) return;
        expect(outcome.next.status).toBe(JOB_STATUS.FAILED);
        expect(outcome.next.incident).toBeUndefined();
        expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: behaviour.code, finished_at: NOW });
        expect(record?.incident ?? null).toBeNull();
        return;
    }
  });
});

// ---------------------------------------------------------------------------------------
// cancel
// ---------------------------------------------------------------------------------------

type CancelBehaviour =
  | { readonly kind: 'settled: CANCELLED (requested, upstream_cancel confirmed) with a Cancelled event' }
  | { readonly kind: 'left to the poll loop: the execution finished (nothing settled, nothing announced)' }
  | { readonly kind: 'unconfirmed after 4 attempts: deferred with backoff, nothing settled'; readonly reason: string }
  | {
      readonly kind: 'unconfirmed on the last receive: dead-lettered (START_RETRIES_EXHAUSTED), the job left running';
      readonly reason: string;
    };

interface CancelRow {
  readonly response: string;
  /** The answer to the DELETE. */
  readonly answer: Answer;
  /** The answer to the status read that follows a refusal. */
  readonly statusRead?: Answer;
  readonly receiveCount?: number;
  readonly behaviour: CancelBehaviour;
}

const SETTLED: CancelBehaviour = { kind: 'settled: CANCELLED (requested, upstream_cancel confirmed) with a Cancelled event' };
const LEFT_TO_POLL_LOOP: CancelBehaviour = { kind: 'left to the poll loop: the execution finished (nothing settled, nothing announced)' };
/** `reason`: a part of the last failure the error names. */
const unconfirmed = (reason: string): CancelBehaviour => ({
  kind: 'unconfirmed after 4 attempts: deferred with backoff, nothing settled',
  reason,
});
const unconfirmedOnLastReceive = (reason: string): CancelBehaviour => ({
  kind: 'unconfirmed on the last receive: dead-lettered (START_RETRIES_EXHAUSTED), the job left running',
  reason,
});
const readStatus = (waterflaiStatus: string, overrides: Record<string, unknown> = {}): Answer =>
  json(200, status({ status: waterflaiStatus, ...overrides }));
const COMPLETED_READ = readStatus('COMPLETED', { progress: 100, final_output: { answer: 'a' } });
const RUNNING_READ = readStatus('RUNNING');

const CANCEL_ROWS: readonly CancelRow[] = [
  { response: '200 cancelled', answer: json(200, cancelled), behaviour: SETTLED },
  { response: '200 cancelled, without execution_id', answer: json(200, { cancelled: true }), behaviour: SETTLED },
  {
    response: '200 not cancelled, previous status COMPLETED, then a COMPLETED status read',
    answer: json(200, { ...cancelled, cancelled: false, previous_status: 'COMPLETED' }),
    statusRead: COMPLETED_READ,
    behaviour: LEFT_TO_POLL_LOOP,
  },
  {
    response: '200 not cancelled, previous status RUNNING, then a RUNNING status read',
    answer: json(200, { ...cancelled, cancelled: false, previous_status: 'RUNNING' }),
    statusRead: RUNNING_READ,
    behaviour: unconfirmed('(previous status RUNNING); the execution is still RUNNING'),
  },
  {
    response: '400 Bad Request, then a FAILED status read',
    answer: error(400),
    statusRead: readStatus('FAILED'),
    behaviour: LEFT_TO_POLL_LOOP,
  },
  {
    response: '401 Unauthorized, the status read refused too',
    answer: error(401),
    statusRead: error(401),
    behaviour: unconfirmed('HTTP 401'),
  },
  {
    response: '403 Forbidden, the status read refused too',
    answer: error(403),
    statusRead: error(403),
    behaviour: unconfirmed('HTTP 403'),
  },
  {
    response: '404 Not Found, then 404 on the status read (nothing left to stop)',
    answer: error(404),
    statusRead: error(404),
    behaviour: SETTLED,
  },
  {
    response: '404 Not Found, then a CANCELLED status read',
    answer: error(404),
    statusRead: readStatus('CANCELLED'),
    behaviour: LEFT_TO_POLL_LOOP,
  },
  {
    response: '409 Conflict (already finished), then a COMPLETED status read',
    answer: json(409, { ...cancelled, cancelled: false, previous_status: 'COMPLETED' }),
    statusRead: COMPLETED_READ,
    behaviour: LEFT_TO_POLL_LOOP,
  },
  {
    response: '409 Conflict without a body, then 503 on the status read',
    answer: empty(409),
    statusRead: error(503),
    behaviour: unconfirmed('reading its status failed'),
  },
  {
    response: '422 Unprocessable Entity, then a RUNNING status read',
    answer: error(422),
    statusRead: RUNNING_READ,
    behaviour: unconfirmed('the execution is still RUNNING'),
  },
  {
    response: '429 with Retry-After in seconds',
    answer: error(429, { 'retry-after': String(RETRY_AFTER_SECONDS) }),
    behaviour: unconfirmed('HTTP 429'),
  },
  {
    response: '429 with Retry-After as an HTTP-date',
    answer: error(429, { 'retry-after': RETRY_AFTER_DATE }),
    behaviour: unconfirmed('HTTP 429'),
  },
  { response: '500 Internal Server Error', answer: error(500), behaviour: unconfirmed('HTTP 500') },
  {
    response: '502 Bad Gateway (an HTML page)',
    answer: raw(502, '<html><body>Bad Gateway</body></html>'),
    behaviour: unconfirmed('HTTP 502'),
  },
  { response: '503 Service Unavailable', answer: error(503), behaviour: unconfirmed('HTTP 503') },
  { response: 'no answer (hang until the deadline)', answer: hang, behaviour: unconfirmed(TIMEOUT.text) },
  { response: 'connection reset', answer: reset, behaviour: unconfirmed(NETWORK.text) },
  {
    response: 'a slow body finishing after the deadline',
    answer: slowBody(200, cancelled, REQUEST_TIMEOUT_MS * 3),
    behaviour: unconfirmed(TIMEOUT.text),
  },
  { response: 'a slow body finishing before the deadline', answer: slowBody(200, cancelled, REQUEST_TIMEOUT_MS / 4), behaviour: SETTLED },
  {
    response: '200 with invalid JSON',
    answer: raw(200, `{"execution_id": "${EXECUTION_ID}", "cancelled": tr`),
    behaviour: unconfirmed(INVALID.text),
  },
  {
    response: '200 without cancelled',
    answer: json(200, { execution_id: EXECUTION_ID, message: 'ok' }),
    behaviour: unconfirmed(INVALID.text),
  },
  {
    response: '302 redirect, the status read redirected too',
    answer: json(302, {}, { location: 'https://elsewhere.example/' }),
    statusRead: json(302, {}, { location: 'https://elsewhere.example/' }),
    behaviour: unconfirmed(REDIRECT.text),
  },
  {
    response: '503 on the last receive',
    answer: error(503),
    receiveCount: settings.maxReceiveCount,
    behaviour: unconfirmedOnLastReceive('HTTP 503'),
  },
  {
    response: '422 Unprocessable Entity, then a RUNNING status read, on the last receive',
    answer: error(422),
    statusRead: RUNNING_READ,
    receiveCount: settings.maxReceiveCount,
    behaviour: unconfirmedOnLastReceive('the execution is still RUNNING'),
  },
];

describe.each(CANCEL_ROWS)('cancel: Waterflai answers $response', (row) => {
  it(`→ ${row.behaviour.kind}`, async () => {
    // Prepare
    await runningJob();
    const before = await store.get('job-1');
    script = { DELETE: row.answer, ...(row.statusRead === undefined ? {} : { GET: row.statusRead }) };
    const { behaviour } = row;

    // Act
    const outcome = await starter.handleRecord(sqsRecord(cancelBody, row.receiveCount), cancelRemaining).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );

    // Assess: each attempt is a DELETE, followed by a status read when Waterflai refused it;
    // an unconfirmed cancel has made every attempt, with the default waits between them.
    const isUnconfirmed = behaviour.kind.startsWith('unconfirmed');
    const attempts = isUnconfirmed ? CANCEL_RETRY_DELAYS_MS.length + 1 : 1;
    const attempt = [
      { method: 'DELETE', url: `/v1/executions/${EXECUTION_ID}`, apiKey: API_KEY },
      ...(row.statusRead === undefined ? [] : [{ method: 'GET', url: `/v1/executions/${EXECUTION_ID}`, apiKey: API_KEY }]),
    ];
    expect(requests).toEqual(Array.from({ length: attempts }, () => attempt).flat());
    expect(sleeps).toEqual(isUnconfirmed ? [...CANCEL_RETRY_DELAYS_MS] : []);
    const record = await store.get('job-1');
    switch (behaviour.kind) {
      case 'settled: CANCELLED (requested, upstream_cancel confirmed) with a Cancelled event':
        expect(outcome).toBeUndefined();
        expect(record).toMatchObject({
          status: JOB_STATUS.CANCELLED,
          cancel_reason: CANCEL_REASON.REQUESTED,
          upstream_cancel: UPSTREAM_CANCEL.CONFIRMED,
          finished_at: NOW,
        });
        expect(published()).toEqual([
          {
            detailType: DETAIL_TYPE.CANCELLED,
            detail: expect.objectContaining({
              job_id: 'job-1',
              reason: CANCEL_REASON.REQUESTED,
              execution_id: EXECUTION_ID,
              upstream_cancel: UPSTREAM_CANCEL.CONFIRMED,
            }),
          },
        ]);
        expect(deadLetters()).toEqual([]);
        expect(visibilityChanges()).toEqual([]);
        return;
      case 'left to the poll loop: the execution finished (nothing settled, nothing announced)':
        // The poll loop records what really happened (a COMPLETED result is kept); the marker
        // makes a CANCELLED it finds carry reason `requested`.
        expect(outcome).toBeUndefined();
        expect(withoutCancelMarker(record)).toEqual(withoutCancelMarker(before));
        expect(record?.requested_cancel_reason).toBe(CANCEL_REASON.REQUESTED);
        expect(published()).toEqual([]);
        expect(deadLetters()).toEqual([]);
        expect(visibilityChanges()).toEqual([]);
        return;
      case 'unconfirmed after 4 attempts: deferred with backoff, nothing settled':
        // The message comes back; the poll loop keeps tracking the job meanwhile.
        expect(outcome).toBeInstanceOf(UpstreamCancelUnconfirmedError);
        expect(outcome).toMatchObject({ code: 'UPSTREAM_CANCEL_UNCONFIRMED', retryable: true, executionId: EXECUTION_ID });
        expect((outcome as Error).message).toContain(behaviour.reason);
        expect((outcome as Error).message).not.toContain(API_KEY);
        expect(visibilityChanges()).toEqual([BACKOFF_SECONDS]);
        expect(withoutCancelMarker(record)).toEqual(withoutCancelMarker(before));
        expect(record?.requested_cancel_reason).toBe(CANCEL_REASON.REQUESTED);
        expect(published()).toEqual([]);
        expect(deadLetters()).toEqual([]);
        return;
      case 'unconfirmed on the last receive: dead-lettered (START_RETRIES_EXHAUSTED), the job left running':
        expect(outcome).toBeUndefined();
        expect(deadLetters()).toEqual([
          expect.objectContaining({
            [DLQ_ATTRIBUTE.ERROR_CODE]: ERROR_CODE.START_RETRIES_EXHAUSTED,
            [DLQ_ATTRIBUTE.JOB_ID]: 'job-1',
            [DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]: 'msg-1',
          }),
        ]);
        expect(deadLetters()[0]?.[DLQ_ATTRIBUTE.ERROR_MESSAGE]).toContain(UpstreamCancelUnconfirmedError.name);
        expect(deadLetters()[0]?.[DLQ_ATTRIBUTE.ERROR_MESSAGE]).toContain(behaviour.reason);
        expect(deadLetters()[0]?.[DLQ_ATTRIBUTE.ERROR_MESSAGE]).not.toContain(API_KEY);
        // The job keeps running, tracked by its poll loop.
        expect(withoutCancelMarker(record)).toEqual(withoutCancelMarker(before));
        expect(published()).toEqual([]);
        expect(visibilityChanges()).toEqual([]);
        return;
    }
  });
});
