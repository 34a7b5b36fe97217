/**
 * The Waterflai response catalogue: every answer Waterflai (or a proxy in front of it) may
 * give, on each of the three calls the orchestrator makes, with the behaviour the
 * orchestrator shows for it. Waterflai is a scripted node:http server on 127.0.0.1, reached
 * through the real WaterflaiClient; DynamoDB is dynalite; Step Functions, SQS and
 * EventBridge are mocked at the SDK level.
 *
 * - start (JobStarter, a job request): rejected at once (Failed event + DLQ) or retried
 *   through SQS visibility (the server's Retry-After, else backoff with jitter);
 * - poll (JobPoller): a permanent error for the state machine's Catch, a TransientPollError
 *   for its Retry, or a longer wait for a 429;
 * - cancel (JobStarter, a cancel request for a running job): settled CANCELLED, left to the
 *   poll loop, retried, or dead-lettered.
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
import { CANCEL_REASON, DETAIL_TYPE, DLQ_ATTRIBUTE, ERROR_CODE, JOB_STATUS } from '../../lambdas/contract/constants';
import {
  TransientPollError,
  type WaterflaiError,
  WaterflaiHttpError,
  WaterflaiNetworkError,
  WaterflaiRedirectError,
  WaterflaiResponseError,
} from '../../lambdas/contract/errors';
import { JobStore } from '../../lambdas/aws/job-store';
import type { AppLogger } from '../../lambdas/platform/logger';
import { OutcomePublisher } from '../../lambdas/aws/outcome-publisher';
import { MAX_RETRY_AFTER_SECONDS, type FixedIntervalSettings } from '../../lambdas/contract/settings';
import { WaterflaiClient } from '../../lambdas/waterflai/client';
import type { PollState } from '../../lambdas/domain/workflow';
import { JobPoller } from '../../lambdas/poll/poll-job';
import { JobStarter } from '../../lambdas/start-execution/start-job';
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
/** Per-request deadline the handlers get: `requestTimeoutFor` keeps 3 s of the remaining time free. */
const REQUEST_TIMEOUT_MS = 600;
const remaining = (): number => 3_000 + REQUEST_TIMEOUT_MS;
/** With random() = 0.5 and a first receive, the start backoff is ceil(0.5 * 5 s). */
const BACKOFF_SECONDS = 3;
const EXECUTION_ID = 'exec_1';

type Answer = (request: IncomingMessage, response: ServerResponse) => void;

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

const RETRY_AFTER_SECONDS = 7;
/** An HTTP-date 45 s after NOW_MS. */
const RETRY_AFTER_DATE = new Date(NOW_MS + 45_000).toUTCString();
const RETRY_AFTER_DATE_SECONDS = 45;

let server: Server;
let baseUrl: string;
let answer: Answer = error(500);
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

const quietLogger: AppLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

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
    requests.push({ method: request.method ?? '', url: request.url ?? '', apiKey: request.headers['x-api-key'] as string | undefined });
    answer(request, response);
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

  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
  const waterflai = new WaterflaiClient({ baseUrl, apiKey: () => API_KEY, now: () => NOW_MS });
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
    logger: quietLogger,
    settings,
    now: () => NOW_MS,
    random: () => 0.5,
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

/** The Waterflai error class an answer becomes (what the retry decisions are made on). */
type ErrorShape = { readonly type: new (...args: never[]) => WaterflaiError; readonly code: string };
const HTTP = (status: number): ErrorShape => ({ type: WaterflaiHttpError, code: `HTTP_${status}` });
const TIMEOUT: ErrorShape = { type: WaterflaiNetworkError, code: 'TIMEOUT' };
const NETWORK: ErrorShape = { type: WaterflaiNetworkError, code: 'NETWORK_ERROR' };
const INVALID: ErrorShape = { type: WaterflaiResponseError, code: 'INVALID_RESPONSE' };
const REDIRECT: ErrorShape = { type: WaterflaiRedirectError, code: 'REDIRECT_REFUSED' };

// ---------------------------------------------------------------------------------------
// start
// ---------------------------------------------------------------------------------------

type StartBehaviour =
  | { readonly kind: 'rejected: FAILED, Failed event and DLQ (WATERFLAI_REJECTED), not retried'; readonly error: ErrorShape }
  | { readonly kind: 'retried: deferred by Retry-After'; readonly error: ErrorShape; readonly seconds: number }
  | { readonly kind: 'retried: deferred with backoff'; readonly error: ErrorShape }
  | { readonly kind: 'given up on the last receive: FAILED, Failed event and DLQ (START_RETRIES_EXHAUSTED)'; readonly error: ErrorShape }
  | { readonly kind: 'started' };

interface StartRow {
  readonly response: string;
  readonly answer: Answer;
  readonly receiveCount?: number;
  readonly behaviour: StartBehaviour;
}

const rejected = (status: number): StartBehaviour => ({
  kind: 'rejected: FAILED, Failed event and DLQ (WATERFLAI_REJECTED), not retried',
  error: HTTP(status),
});
const backoff = (error: ErrorShape): StartBehaviour => ({ kind: 'retried: deferred with backoff', error });

const START_ROWS: readonly StartRow[] = [
  { response: '202 with an execution_id', answer: json(202, started), behaviour: { kind: 'started' } },
  { response: '401 Unauthorized', answer: error(401), behaviour: rejected(401) },
  { response: '403 Forbidden', answer: error(403), behaviour: rejected(403) },
  { response: '404 Not Found (unknown chatbot)', answer: error(404), behaviour: rejected(404) },
  { response: '409 Conflict', answer: error(409), behaviour: rejected(409) },
  {
    response: '422 Unprocessable Entity',
    answer: json(422, { detail: [{ loc: ['body', 'input_data'], msg: 'field required', input: {} }] }),
    behaviour: rejected(422),
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
  {
    response: '302 redirect',
    answer: json(302, {}, { location: 'https://elsewhere.example/' }),
    behaviour: { kind: 'rejected: FAILED, Failed event and DLQ (WATERFLAI_REJECTED), not retried', error: REDIRECT },
  },
  {
    response: '503 on the last receive',
    answer: error(503),
    receiveCount: settings.maxReceiveCount,
    behaviour: { kind: 'given up on the last receive: FAILED, Failed event and DLQ (START_RETRIES_EXHAUSTED)', error: HTTP(503) },
  },
];

describe.each(START_ROWS)('start: Waterflai answers $response', (row) => {
  it(`→ ${row.behaviour.kind}`, async () => {
    // Prepare
    answer = row.answer;
    const { behaviour } = row;

    // Act
    const outcome = await starter.handleRecord(sqsRecord(startBody, row.receiveCount), remaining).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );

    // Assess: exactly one POST, to the configured server, with the key.
    expect(requests).toEqual([{ method: 'POST', url: '/v1/executions/bot-1/async', apiKey: API_KEY }]);
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
      case 'rejected: FAILED, Failed event and DLQ (WATERFLAI_REJECTED), not retried':
      case 'given up on the last receive: FAILED, Failed event and DLQ (START_RETRIES_EXHAUSTED)': {
        const code = behaviour.kind.startsWith('rejected') ? ERROR_CODE.WATERFLAI_REJECTED : ERROR_CODE.START_RETRIES_EXHAUSTED;
        expect(outcome).toBeUndefined();
        expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: code, rejected_at_intake: true });
        expect(record?.error_message).toContain(
          behaviour.error.type === WaterflaiRedirectError ? 'redirect' : behaviour.error.code.replace('HTTP_', 'HTTP '),
        );
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
  | { readonly kind: 'transient: TransientPollError for the Retry'; readonly error: ErrorShape }
  | { readonly kind: 'wait: the next poll after Retry-After, no error'; readonly seconds: number }
  | { readonly kind: 'recorded'; readonly status: string }
  | { readonly kind: 'settled FAILED (OUTPUT_EXPIRED)' };

interface PollRow {
  readonly response: string;
  readonly answer: Answer;
  readonly state?: Partial<PollState>;
  readonly behaviour: PollBehaviour;
}

const permanent = (error: ErrorShape): PollBehaviour => ({
  kind: 'permanent: the Waterflai error goes to the Catch (POLL_FAILED), no retry',
  error,
});
const transient = (error: ErrorShape): PollBehaviour => ({ kind: 'transient: TransientPollError for the Retry', error });

const POLL_ROWS: readonly PollRow[] = [
  { response: '200 RUNNING', answer: json(200, status()), behaviour: { kind: 'recorded', status: JOB_STATUS.RUNNING } },
  { response: '401 Unauthorized', answer: error(401), behaviour: permanent(HTTP(401)) },
  { response: '403 Forbidden', answer: error(403), behaviour: permanent(HTTP(403)) },
  { response: '404 Not Found', answer: error(404), behaviour: permanent(HTTP(404)) },
  {
    response: '404 Not Found after the result was cleaned up',
    answer: error(404),
    state: { cleanup_after: new Date(NOW_MS - 1_000).toISOString() },
    behaviour: { kind: 'settled FAILED (OUTPUT_EXPIRED)' },
  },
  { response: '409 Conflict', answer: error(409), behaviour: permanent(HTTP(409)) },
  { response: '422 Unprocessable Entity', answer: error(422), behaviour: permanent(HTTP(422)) },
  {
    response: '429 with Retry-After in seconds',
    answer: error(429, { 'retry-after': String(RETRY_AFTER_SECONDS) }),
    behaviour: { kind: 'wait: the next poll after Retry-After, no error', seconds: RETRY_AFTER_SECONDS },
  },
  {
    response: '429 with Retry-After as an HTTP-date',
    answer: error(429, { 'retry-after': RETRY_AFTER_DATE }),
    behaviour: { kind: 'wait: the next poll after Retry-After, no error', seconds: RETRY_AFTER_DATE_SECONDS },
  },
  { response: '500 Internal Server Error', answer: error(500), behaviour: transient(HTTP(500)) },
  {
    response: '502 Bad Gateway (an HTML page)',
    answer: raw(502, '<html><body>Bad Gateway</body></html>'),
    behaviour: transient(HTTP(502)),
  },
  { response: '503 Service Unavailable', answer: error(503), behaviour: transient(HTTP(503)) },
  { response: 'no answer (hang until the deadline)', answer: hang, behaviour: transient(TIMEOUT) },
  { response: 'connection reset', answer: reset, behaviour: transient(NETWORK) },
  {
    response: 'a slow body finishing after the deadline',
    answer: slowBody(200, status(), REQUEST_TIMEOUT_MS * 3),
    behaviour: transient(TIMEOUT),
  },
  {
    response: 'a slow body finishing before the deadline',
    answer: slowBody(200, status(), REQUEST_TIMEOUT_MS / 4),
    behaviour: { kind: 'recorded', status: JOB_STATUS.RUNNING },
  },
  {
    response: '200 with invalid JSON',
    answer: raw(200, `{"execution_id": "${EXECUTION_ID}", "status": "RUNN`),
    behaviour: transient(INVALID),
  },
  {
    response: '200 without execution_id (the requested id is assumed)',
    answer: json(200, { status: 'RUNNING', progress: 10 }),
    behaviour: { kind: 'recorded', status: JOB_STATUS.RUNNING },
  },
  { response: '200 without status', answer: json(200, { execution_id: EXECUTION_ID, progress: 10 }), behaviour: transient(INVALID) },
  { response: "200 with another execution's id", answer: json(200, status({ execution_id: 'exec_other' })), behaviour: transient(INVALID) },
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
    const state = { ...(await runningJob()), ...row.state };
    const before = await store.get('job-1');
    answer = row.answer;
    const { behaviour } = row;

    // Act
    const outcome = await poller.poll(state, remaining).then(
      (next) => ({ next }),
      (thrown: unknown) => ({ thrown }),
    );

    // Assess
    expect(requests).toEqual([{ method: 'GET', url: `/v1/executions/${EXECUTION_ID}`, apiKey: API_KEY }]);
    const record = await store.get('job-1');
    switch (behaviour.kind) {
      case 'permanent: the Waterflai error goes to the Catch (POLL_FAILED), no retry':
        expect('thrown' in outcome).toBe(true);
        if (!('thrown' in outcome)) return;
        expect(outcome.thrown).not.toBeInstanceOf(TransientPollError);
        expect(outcome.thrown).toBeInstanceOf(behaviour.error.type);
        expect((outcome.thrown as WaterflaiError).code).toBe(behaviour.error.code);
        expect((outcome.thrown as WaterflaiError).retryable).toBe(false);
        expect(withoutCancelMarker(record)).toEqual(withoutCancelMarker(before));
        return;
      case 'transient: TransientPollError for the Retry':
        expect('thrown' in outcome).toBe(true);
        if (!('thrown' in outcome)) return;
        expect(outcome.thrown).toBeInstanceOf(TransientPollError);
        // The state machine's Retry matches on the error name.
        expect((outcome.thrown as Error).name).toBe('TransientPollError');
        expect((outcome.thrown as TransientPollError).cause).toBeInstanceOf(behaviour.error.type);
        expect(((outcome.thrown as TransientPollError).cause as WaterflaiError).code).toBe(behaviour.error.code);
        expect((outcome.thrown as Error).message).not.toContain(API_KEY);
        expect(withoutCancelMarker(record)).toEqual(withoutCancelMarker(before));
        return;
      case 'wait: the next poll after Retry-After, no error':
        expect('next' in outcome).toBe(true);
        if (!('next' in outcome)) return;
        expect(outcome.next).toMatchObject({ status: JOB_STATUS.PENDING, poll_count: 1 });
        expect(outcome.next.next_poll_seconds).toBeGreaterThanOrEqual(behaviour.seconds);
        expect(outcome.next.next_poll_seconds).toBeLessThanOrEqual(MAX_RETRY_AFTER_SECONDS);
        expect(withoutCancelMarker(record)).toEqual(withoutCancelMarker(before));
        return;
      case 'recorded':
        expect('next' in outcome).toBe(true);
        if (!('next' in outcome)) return;
        expect(outcome.next.status).toBe(behaviour.status);
        expect(record?.status).toBe(behaviour.status);
        expect(record?.version).toBe(before!.version + 1);
        return;
      case 'settled FAILED (OUTPUT_EXPIRED)':
        expect('next' in outcome).toBe(true);
        if (!('next' in outcome)) return;
        expect(outcome.next.status).toBe(JOB_STATUS.FAILED);
        expect(record).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.OUTPUT_EXPIRED });
        return;
    }
  });
});

// ---------------------------------------------------------------------------------------
// cancel
// ---------------------------------------------------------------------------------------

type CancelBehaviour =
  | { readonly kind: 'settled: CANCELLED (requested) with a Cancelled event' }
  | { readonly kind: 'left to the poll loop: Waterflai says it already finished' }
  | { readonly kind: 'retried: deferred by Retry-After'; readonly error: ErrorShape; readonly seconds: number }
  | { readonly kind: 'retried: deferred with backoff'; readonly error: ErrorShape }
  | { readonly kind: 'dead-lettered, the job left running'; readonly code: string };

interface CancelRow {
  readonly response: string;
  readonly answer: Answer;
  readonly receiveCount?: number;
  readonly behaviour: CancelBehaviour;
}

const SETTLED: CancelBehaviour = { kind: 'settled: CANCELLED (requested) with a Cancelled event' };
const LEFT_TO_POLL_LOOP: CancelBehaviour = { kind: 'left to the poll loop: Waterflai says it already finished' };
const cancelRejected: CancelBehaviour = { kind: 'dead-lettered, the job left running', code: ERROR_CODE.WATERFLAI_REJECTED };
const cancelBackoff = (error: ErrorShape): CancelBehaviour => ({ kind: 'retried: deferred with backoff', error });

const CANCEL_ROWS: readonly CancelRow[] = [
  { response: '200 cancelled', answer: json(200, cancelled), behaviour: SETTLED },
  { response: '200 cancelled, without execution_id', answer: json(200, { cancelled: true }), behaviour: SETTLED },
  {
    response: '200 not cancelled, previous status COMPLETED',
    answer: json(200, { ...cancelled, cancelled: false, previous_status: 'COMPLETED' }),
    behaviour: LEFT_TO_POLL_LOOP,
  },
  { response: '401 Unauthorized', answer: error(401), behaviour: cancelRejected },
  { response: '403 Forbidden', answer: error(403), behaviour: cancelRejected },
  { response: '404 Not Found (nothing left to stop)', answer: error(404), behaviour: SETTLED },
  {
    response: '409 Conflict (already finished)',
    answer: json(409, { ...cancelled, cancelled: false, previous_status: 'COMPLETED' }),
    behaviour: LEFT_TO_POLL_LOOP,
  },
  { response: '422 Unprocessable Entity', answer: error(422), behaviour: cancelRejected },
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
  { response: '500 Internal Server Error', answer: error(500), behaviour: cancelBackoff(HTTP(500)) },
  {
    response: '502 Bad Gateway (an HTML page)',
    answer: raw(502, '<html><body>Bad Gateway</body></html>'),
    behaviour: cancelBackoff(HTTP(502)),
  },
  { response: '503 Service Unavailable', answer: error(503), behaviour: cancelBackoff(HTTP(503)) },
  { response: 'no answer (hang until the deadline)', answer: hang, behaviour: cancelBackoff(TIMEOUT) },
  { response: 'connection reset', answer: reset, behaviour: cancelBackoff(NETWORK) },
  {
    response: 'a slow body finishing after the deadline',
    answer: slowBody(200, cancelled, REQUEST_TIMEOUT_MS * 3),
    behaviour: cancelBackoff(TIMEOUT),
  },
  { response: 'a slow body finishing before the deadline', answer: slowBody(200, cancelled, REQUEST_TIMEOUT_MS / 4), behaviour: SETTLED },
  {
    response: '200 with invalid JSON',
    answer: raw(200, `{"execution_id": "${EXECUTION_ID}", "cancelled": tr`),
    behaviour: cancelBackoff(INVALID),
  },
  {
    response: '200 without cancelled',
    answer: json(200, { execution_id: EXECUTION_ID, message: 'ok' }),
    behaviour: cancelBackoff(INVALID),
  },
  { response: '302 redirect', answer: json(302, {}, { location: 'https://elsewhere.example/' }), behaviour: cancelRejected },
  {
    response: '503 on the last receive',
    answer: error(503),
    receiveCount: settings.maxReceiveCount,
    behaviour: { kind: 'dead-lettered, the job left running', code: ERROR_CODE.START_RETRIES_EXHAUSTED },
  },
];

describe.each(CANCEL_ROWS)('cancel: Waterflai answers $response', (row) => {
  it(`→ ${row.behaviour.kind}`, async () => {
    // Prepare
    await runningJob();
    const before = await store.get('job-1');
    answer = row.answer;
    const { behaviour } = row;

    // Act
    const outcome = await starter.handleRecord(sqsRecord(cancelBody, row.receiveCount), remaining).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );

    // Assess
    expect(requests).toEqual([{ method: 'DELETE', url: `/v1/executions/${EXECUTION_ID}`, apiKey: API_KEY }]);
    const record = await store.get('job-1');
    switch (behaviour.kind) {
      case 'settled: CANCELLED (requested) with a Cancelled event':
        expect(outcome).toBeUndefined();
        expect(record).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: CANCEL_REASON.REQUESTED });
        expect(published()).toEqual([
          {
            detailType: DETAIL_TYPE.CANCELLED,
            detail: expect.objectContaining({ job_id: 'job-1', reason: CANCEL_REASON.REQUESTED, execution_id: EXECUTION_ID }),
          },
        ]);
        expect(deadLetters()).toEqual([]);
        expect(visibilityChanges()).toEqual([]);
        return;
      case 'left to the poll loop: Waterflai says it already finished':
        expect(outcome).toBeUndefined();
        expect(withoutCancelMarker(record)).toEqual(withoutCancelMarker(before));
        expect(published()).toEqual([]);
        expect(deadLetters()).toEqual([]);
        expect(visibilityChanges()).toEqual([]);
        return;
      case 'retried: deferred by Retry-After':
      case 'retried: deferred with backoff':
        expect(outcome).toBeInstanceOf(behaviour.error.type);
        expect((outcome as WaterflaiError).code).toBe(behaviour.error.code);
        expect(visibilityChanges()).toEqual([behaviour.kind === 'retried: deferred by Retry-After' ? behaviour.seconds : BACKOFF_SECONDS]);
        expect(withoutCancelMarker(record)).toEqual(withoutCancelMarker(before));
        expect(published()).toEqual([]);
        expect(deadLetters()).toEqual([]);
        return;
      case 'dead-lettered, the job left running':
        expect(outcome).toBeUndefined();
        expect(deadLetters()).toEqual([
          expect.objectContaining({
            [DLQ_ATTRIBUTE.ERROR_CODE]: behaviour.code,
            [DLQ_ATTRIBUTE.JOB_ID]: 'job-1',
            [DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]: 'msg-1',
          }),
        ]);
        expect(deadLetters()[0]?.[DLQ_ATTRIBUTE.ERROR_MESSAGE]).not.toContain(API_KEY);
        expect(withoutCancelMarker(record)).toEqual(withoutCancelMarker(before));
        expect(published()).toEqual([]);
        expect(visibilityChanges()).toEqual([]);
        return;
    }
  });
});
