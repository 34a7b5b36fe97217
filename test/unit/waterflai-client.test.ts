import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WATERFLAI_STATUS } from '../../lambdas/contract/constants';
import {
  ConfigurationError,
  InvalidIdentifierError,
  WaterflaiHttpError,
  WaterflaiNetworkError,
  WaterflaiRedirectError,
  WaterflaiResponseError,
} from '../../lambdas/contract/errors';
import { WaterflaiClient, parseRetryAfter, type WaterflaiClientOptions } from '../../lambdas/waterflai/client';
import { cancelResultSchema, executionStatusSchema, startedExecutionSchema } from '../../lambdas/contract/waterflai-api';
import { requestTimeoutFor } from '../../lambdas/domain/request-timeout';

// ---------------------------------------------------------------------------------------
// A real local HTTP server that records every request it receives
// ---------------------------------------------------------------------------------------

interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

type Responder = (req: http.IncomingMessage, res: http.ServerResponse) => void;

class RecordingServer {
  readonly requests: RecordedRequest[] = [];
  responder: Responder = (_req, res) => sendJson(res, 200, {});
  readonly #server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      this.requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      this.responder(req, res);
    });
  });

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  reset(): void {
    this.requests.length = 0;
    this.responder = (_req, res) => sendJson(res, 200, {});
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  sendRaw(res, status, JSON.stringify(body), headers);
}

function sendRaw(res: http.ServerResponse, status: number, body: string | Buffer, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** A port on 127.0.0.1 nothing listens on (a server was there and is closed). */
async function closedPort(): Promise<number> {
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

const API_KEY = 'wf-test-KEY-7c1d9e42ab';
const server = new RecordingServer();
const redirectTarget = new RecordingServer();

function makeClient(overrides: Partial<WaterflaiClientOptions> = {}): WaterflaiClient {
  return new WaterflaiClient({ baseUrl: server.url, apiKey: () => API_KEY, ...overrides });
}

/** Every way an error could be shown or logged. */
function renderings(error: unknown): string[] {
  const out = [String(error), JSON.stringify(error) ?? '', inspect(error, { depth: 10, showHidden: true })];
  if (error instanceof Error) out.push(error.message, error.stack ?? '');
  return out;
}

beforeAll(async () => {
  await Promise.all([server.start(), redirectTarget.start()]);
});

afterAll(async () => {
  await Promise.all([server.stop(), redirectTarget.stop()]);
});

beforeEach(() => {
  server.reset();
  redirectTarget.reset();
});

// ---------------------------------------------------------------------------------------
// startExecution
// ---------------------------------------------------------------------------------------

describe('startExecution', () => {
  it('POSTs input_data as JSON to /v1/executions/{chatbot_id}/async with the key and JSON headers', async () => {
    // Prepare
    server.responder = (_req, res) =>
      sendJson(res, 202, {
        execution_id: 'exec-123',
        status_url: 'https://api.waterflai.ai/v1/executions/exec-123',
        stream_url: 'https://api.waterflai.ai/v1/executions/exec-123/stream',
        cancel_url: 'https://api.waterflai.ai/v1/executions/exec-123',
      });
    const input = { query: 'What is Waterflai?', user_id: 'user-123', nested: { list: [1, 2, 3] } };

    // Act
    const started = await makeClient().startExecution('bot_1-A', input);

    // Assess
    expect(started).toEqual({
      execution_id: 'exec-123',
      status_url: 'https://api.waterflai.ai/v1/executions/exec-123',
      stream_url: 'https://api.waterflai.ai/v1/executions/exec-123/stream',
      cancel_url: 'https://api.waterflai.ai/v1/executions/exec-123',
    });
    expect(server.requests).toHaveLength(1);
    const [request] = server.requests;
    expect(request?.method).toBe('POST');
    expect(request?.url).toBe('/v1/executions/bot_1-A/async');
    expect(request?.headers['x-api-key']).toBe(API_KEY);
    expect(request?.headers.accept).toBe('application/json');
    expect(request?.headers['content-type']).toBe('application/json');
    expect(JSON.parse(request?.body ?? '')).toEqual({ input_data: input });
  });

  describe.each([200, 201, 202])('accepts HTTP %i', (status) => {
    it('returns the execution id', async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, status, { execution_id: `e-${status}` });

      // Act
      const started = await makeClient().startExecution('bot', {});

      // Assess
      expect(started.execution_id).toBe(`e-${status}`);
    });
  });

  it('tolerates unknown fields and nulls tracking URLs of the wrong type', async () => {
    // Prepare
    server.responder = (_req, res) =>
      sendJson(res, 202, { execution_id: 'exec-1', status_url: 42, stream_url: null, new_field: { a: 1 }, another: [1] });

    // Act
    const started = await makeClient().startExecution('bot', {});

    // Assess
    expect(started).toEqual({ execution_id: 'exec-1', status_url: null, stream_url: null, cancel_url: null });
    expect(Object.keys(started)).not.toContain('new_field');
  });

  describe.each([
    { label: 'missing execution_id', body: JSON.stringify({ status_url: 'x' }) },
    { label: 'execution_id null', body: JSON.stringify({ execution_id: null }) },
    { label: 'execution_id a number', body: JSON.stringify({ execution_id: 12 }) },
    { label: 'execution_id empty', body: JSON.stringify({ execution_id: '' }) },
    { label: 'execution_id path traversal', body: JSON.stringify({ execution_id: '../admin' }) },
    { label: 'execution_id with a slash', body: JSON.stringify({ execution_id: 'a/b' }) },
    { label: 'execution_id too long', body: JSON.stringify({ execution_id: 'a'.repeat(129) }) },
    { label: 'invalid JSON', body: '{"execution_id": "abc"' },
    { label: 'HTML', body: '<html>gateway</html>' },
    { label: 'empty body', body: '' },
    { label: 'a JSON array', body: '[{"execution_id":"abc"}]' },
    { label: 'a JSON string', body: '"abc"' },
    { label: 'JSON null', body: 'null' },
  ])('refuses a 2xx with $label', ({ body }) => {
    it('throws a retryable WaterflaiResponseError', async () => {
      // Prepare
      server.responder = (_req, res) => sendRaw(res, 202, body);

      // Act
      const error = await rejectionOf(makeClient().startExecution('bot', {}));

      // Assess
      expect(error).toBeInstanceOf(WaterflaiResponseError);
      expect(error).toMatchObject({ operation: 'start', retryable: true, code: 'INVALID_RESPONSE' });
    });
  });

  it('throws the TypeError of an input that cannot be serialised, before any request', async () => {
    // Prepare
    const input: Record<string, unknown> = {};
    input.self = input;

    // Act
    const error = await rejectionOf(makeClient().startExecution('bot', input));

    // Assess
    expect(error).toBeInstanceOf(TypeError);
    expect(server.requests).toHaveLength(0);
  });

  describe.each([
    { label: 'undefined', value: undefined },
    { label: 'null', value: null },
    { label: 'an array', value: [1, 2] },
    { label: 'a string', value: 'query' },
  ])('input_data that is $label', ({ value }) => {
    it('throws TypeError before any request', async () => {
      // Act (the cast mimics an untyped JavaScript caller)
      const error = await rejectionOf(makeClient().startExecution('bot', value as unknown as Record<string, unknown>));

      // Assess
      expect(error).toBeInstanceOf(TypeError);
      expect(server.requests).toHaveLength(0);
    });
  });
});

// ---------------------------------------------------------------------------------------
// getExecution
// ---------------------------------------------------------------------------------------

describe('getExecution', () => {
  const fullBody = {
    execution_id: 'exec-9',
    status: 'COMPLETED',
    progress: 100,
    current_node: 'llm-1',
    completed_nodes: 4,
    total_nodes: 4,
    final_output: { answer: 'Waterflai is...', sources: [{ id: 1 }] },
    error_message: null,
    created_at: '2025-09-14T04:33:48.102Z',
    started_at: '2025-09-14T04:33:49.000Z',
    completed_at: '2025-09-14T04:34:00.000Z',
    retry_count: 0,
    execution_source: 'CHATBOT',
    is_temporary: true,
    cleanup_after: '2025-09-21T04:33:48.102Z',
  };

  it('GETs /v1/executions/{execution_id} with the key and Accept header, and maps every field', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 200, fullBody);

    // Act
    const status = await makeClient().getExecution('exec-9');

    // Assess
    expect(status).toEqual({ ...fullBody, known_status: 'COMPLETED' });
    expect(server.requests).toHaveLength(1);
    const [request] = server.requests;
    expect(request?.method).toBe('GET');
    expect(request?.url).toBe('/v1/executions/exec-9');
    expect(request?.headers['x-api-key']).toBe(API_KEY);
    expect(request?.headers.accept).toBe('application/json');
    expect(request?.headers['content-type']).toBeUndefined();
    expect(request?.body).toBe('');
  });

  describe.each(Object.values(WATERFLAI_STATUS))('known status %s', (value) => {
    it('is reported as known_status', async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, 200, { status: value });

      // Act
      const status = await makeClient().getExecution('e1');

      // Assess
      expect(status.status).toBe(value);
      expect(status.known_status).toBe(value);
    });
  });

  describe.each(['PAUSED', 'completed', 'Running', '', 'QUEUED '])('unknown status %j', (value) => {
    it('keeps the raw status, sets known_status to null and does not throw', async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, 200, { status: value });

      // Act
      const status = await makeClient().getExecution('e1');

      // Assess
      expect(status.status).toBe(value);
      expect(status.known_status).toBeNull();
    });
  });

  describe.each([
    { label: 'a float', raw: '50.5', expected: 50.5 },
    { label: 'zero', raw: '0', expected: 0 },
    { label: 'one hundred', raw: '100', expected: 100 },
    { label: 'above 100', raw: '150.2', expected: 100 },
    { label: 'negative', raw: '-3', expected: 0 },
    { label: 'a numeric string', raw: '"50"', expected: null },
    { label: 'a boolean', raw: 'true', expected: null },
    { label: 'an object', raw: '{"pct":5}', expected: null },
    { label: 'null', raw: 'null', expected: null },
    { label: 'overflowing to Infinity', raw: '1e999', expected: null },
  ])('progress $label', ({ raw, expected }) => {
    it(`becomes ${String(expected)}`, async () => {
      // Prepare
      server.responder = (_req, res) => sendRaw(res, 200, `{"status":"RUNNING","progress":${raw}}`);

      // Act
      const status = await makeClient().getExecution('e1');

      // Assess
      expect(status.progress).toBe(expected);
    });
  });

  it('reports a missing progress as null', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 200, { status: 'PENDING' });

    // Act
    const status = await makeClient().getExecution('e1');

    // Assess
    expect(status.progress).toBeNull();
  });

  it('turns optional fields of the wrong type into null and drops unknown fields', async () => {
    // Prepare
    server.responder = (_req, res) =>
      sendJson(res, 200, {
        status: 'RUNNING',
        current_node: 7,
        completed_nodes: 'two',
        total_nodes: -1,
        error_message: { text: 'x' },
        created_at: 1_700_000_000,
        started_at: false,
        completed_at: [],
        retry_count: 1.5,
        execution_source: 3,
        is_temporary: 'yes',
        cleanup_after: {},
        brand_new_field: 'hello',
      });

    // Act
    const status = await makeClient().getExecution('e1');

    // Assess
    expect(status).toEqual({
      execution_id: 'e1',
      status: 'RUNNING',
      known_status: 'RUNNING',
      progress: null,
      current_node: null,
      completed_nodes: null,
      total_nodes: null,
      final_output: undefined,
      error_message: null,
      created_at: null,
      started_at: null,
      completed_at: null,
      retry_count: null,
      execution_source: null,
      is_temporary: null,
      cleanup_after: null,
    });
    expect(Object.keys(status)).not.toContain('brand_new_field');
  });

  describe.each([
    { label: 'an object', value: { a: { b: [1, 'two', null] } } },
    { label: 'an array', value: [1, 2, 3] },
    { label: 'a string', value: 'plain text answer' },
    { label: 'a number', value: 42 },
    { label: 'null', value: null },
  ])('final_output as $label', ({ value }) => {
    it('is returned unchanged', async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, 200, { status: 'COMPLETED', final_output: value });

      // Act
      const status = await makeClient().getExecution('e1');

      // Assess
      expect(status.final_output).toEqual(value);
    });
  });

  it('falls back to the requested id when the body has no execution_id', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 200, { status: 'PENDING' });

    // Act
    const status = await makeClient().getExecution('requested-id');

    // Assess
    expect(status.execution_id).toBe('requested-id');
  });

  it("refuses a body about another execution (someone else's result)", async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 200, { execution_id: 'other-exec', status: 'COMPLETED', final_output: 'secret' });

    // Act
    const error = await rejectionOf(makeClient().getExecution('my-exec'));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiResponseError);
    expect(error).toMatchObject({ operation: 'get' });
  });

  describe.each([
    { label: 'no status', body: '{"execution_id":"e1","progress":5}' },
    { label: 'a numeric status', body: '{"status":3}' },
    { label: 'a null status', body: '{"status":null}' },
    { label: 'invalid JSON', body: '{"status":"RUNNING"' },
    { label: 'a JSON array', body: '[]' },
    { label: 'invalid UTF-8', body: Buffer.from([...Buffer.from('{"status":"'), 0xff, 0xfe, ...Buffer.from('"}')]) },
  ])('refuses a 2xx with $label', ({ body }) => {
    it('throws WaterflaiResponseError', async () => {
      // Prepare
      server.responder = (_req, res) => sendRaw(res, 200, body);

      // Act
      const error = await rejectionOf(makeClient().getExecution('e1'));

      // Assess
      expect(error).toBeInstanceOf(WaterflaiResponseError);
    });
  });
});

// ---------------------------------------------------------------------------------------
// cancelExecution
// ---------------------------------------------------------------------------------------

describe('cancelExecution', () => {
  it('DELETEs /v1/executions/{execution_id} without a body and reports a cancellation', async () => {
    // Prepare
    server.responder = (_req, res) =>
      sendJson(res, 200, { execution_id: 'exec-5', cancelled: true, message: 'Execution cancelled', previous_status: 'RUNNING', extra: 1 });

    // Act
    const result = await makeClient().cancelExecution('exec-5');

    // Assess
    expect(result).toEqual({
      execution_id: 'exec-5',
      cancelled: true,
      alreadyFinished: false,
      message: 'Execution cancelled',
      previous_status: 'RUNNING',
    });
    const [request] = server.requests;
    expect(server.requests).toHaveLength(1);
    expect(request?.method).toBe('DELETE');
    expect(request?.url).toBe('/v1/executions/exec-5');
    expect(request?.headers['x-api-key']).toBe(API_KEY);
    expect(request?.headers.accept).toBe('application/json');
    expect(request?.headers['content-type']).toBeUndefined();
    expect(request?.body).toBe('');
  });

  describe.each([
    { label: 'previous_status COMPLETED', body: { cancelled: false, previous_status: 'COMPLETED' }, alreadyFinished: true },
    { label: 'previous_status FAILED', body: { cancelled: false, previous_status: 'FAILED' }, alreadyFinished: true },
    { label: 'previous_status CANCELLED', body: { cancelled: false, previous_status: 'CANCELLED' }, alreadyFinished: true },
    { label: 'no previous_status', body: { cancelled: false, message: 'cannot be cancelled' }, alreadyFinished: true },
    { label: 'previous_status RUNNING', body: { cancelled: false, previous_status: 'RUNNING' }, alreadyFinished: false },
    { label: 'previous_status PENDING', body: { cancelled: false, previous_status: 'PENDING' }, alreadyFinished: false },
  ])('HTTP 200 with cancelled:false and $label', ({ body, alreadyFinished }) => {
    it(`returns cancelled:false, alreadyFinished:${String(alreadyFinished)}`, async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, 200, body);

      // Act
      const result = await makeClient().cancelExecution('exec-5');

      // Assess
      expect(result.cancelled).toBe(false);
      expect(result.alreadyFinished).toBe(alreadyFinished);
      expect(result.execution_id).toBe('exec-5');
    });
  });

  it('maps HTTP 409 to a result with alreadyFinished, not an error', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 409, { detail: 'Execution already completed', previous_status: 'COMPLETED' });

    // Act
    const result = await makeClient().cancelExecution('exec-5');

    // Assess
    expect(result).toEqual({
      execution_id: 'exec-5',
      cancelled: false,
      alreadyFinished: true,
      message: 'Execution already completed',
      previous_status: 'COMPLETED',
    });
  });

  it('maps HTTP 409 without a body to a result with a null message', async () => {
    // Prepare
    server.responder = (_req, res) => sendRaw(res, 409, '');

    // Act
    const result = await makeClient().cancelExecution('exec-5');

    // Assess
    expect(result).toEqual({ execution_id: 'exec-5', cancelled: false, alreadyFinished: true, message: null, previous_status: null });
  });

  describe.each([400, 404, 500])('HTTP %i', (status) => {
    it('stays a WaterflaiHttpError', async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, status, { detail: 'nope' });

      // Act
      const error = await rejectionOf(makeClient().cancelExecution('exec-5'));

      // Assess
      expect(error).toBeInstanceOf(WaterflaiHttpError);
      expect(error).toMatchObject({ operation: 'cancel', status });
    });
  });

  describe.each([
    { label: 'no cancelled field', body: { execution_id: 'exec-5', message: 'ok' } },
    { label: 'a string cancelled', body: { cancelled: 'true' } },
    { label: 'another execution id', body: { execution_id: 'exec-6', cancelled: true } },
  ])('a 2xx with $label', ({ body }) => {
    it('throws WaterflaiResponseError', async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, 200, body);

      // Act
      const error = await rejectionOf(makeClient().cancelExecution('exec-5'));

      // Assess
      expect(error).toBeInstanceOf(WaterflaiResponseError);
      expect(error).toMatchObject({ operation: 'cancel' });
    });
  });
});

// ---------------------------------------------------------------------------------------
// streamUrl
// ---------------------------------------------------------------------------------------

describe('streamUrl', () => {
  it('is the absolute stream URL of the execution, made without any request', () => {
    // Prepare
    const client = makeClient();

    // Act
    const url = client.streamUrl('exec-7');

    // Assess
    expect(url).toBe(`${server.url}/v1/executions/exec-7/stream`);
    expect(server.requests).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------

describe('identifiers', () => {
  const hostile = [
    { label: 'path traversal ../x', value: '../x' },
    { label: 'a query a?b', value: 'a?b' },
    { label: 'an encoded slash %2F', value: '%2F' },
    { label: 'a slash a/b', value: 'a/b' },
    { label: 'a fragment a#b', value: 'a#b' },
    { label: 'encoded dots %2e%2e', value: '%2e%2e' },
    { label: 'a NUL byte', value: 'a\u0000b' },
    { label: 'a Cyrillic look-alike', value: '\u0430bc' },
    { label: 'fullwidth letters', value: '\uff41\uff42\uff43' },
    { label: 'a zero-width space', value: 'ab\u200bc' },
    { label: 'a fullwidth solidus', value: 'a\uff0fb' },
    { label: 'an empty string', value: '' },
    { label: '10 KB', value: 'a'.repeat(10 * 1024) },
    { label: '129 characters', value: 'a'.repeat(129) },
    { label: 'a dot', value: '.' },
    { label: 'a leading dash', value: '-abc' },
    { label: 'whitespace', value: 'a b' },
    { label: 'a trailing newline', value: 'abc\n' },
    { label: 'a backslash', value: 'a\\b' },
  ];

  const operations = [
    { name: 'startExecution', call: (client: WaterflaiClient, id: string) => client.startExecution(id, { q: 1 }), kind: 'chatbot_id' },
    { name: 'getExecution', call: (client: WaterflaiClient, id: string) => client.getExecution(id), kind: 'execution_id' },
    { name: 'cancelExecution', call: (client: WaterflaiClient, id: string) => client.cancelExecution(id), kind: 'execution_id' },
  ];

  describe.each(operations)('$name', ({ call, kind }) => {
    describe.each(hostile)('with $label', ({ value }) => {
      it('throws InvalidIdentifierError without a request or an API key lookup', async () => {
        // Prepare
        let keyLookups = 0;
        const client = makeClient({
          apiKey: () => {
            keyLookups += 1;
            return API_KEY;
          },
        });

        // Act
        const error = await rejectionOf(call(client, value));

        // Assess
        expect(error).toBeInstanceOf(InvalidIdentifierError);
        expect(error).toMatchObject({ retryable: false, code: 'INVALID_IDENTIFIER' });
        expect((error as Error).message).toContain(kind);
        expect(server.requests).toHaveLength(0);
        expect(keyLookups).toBe(0);
      });
    });
  });

  describe.each(hostile)('streamUrl with $label', ({ value }) => {
    it('throws InvalidIdentifierError', () => {
      // Prepare
      const client = makeClient();

      // Act
      const act = () => client.streamUrl(value);

      // Assess
      expect(act).toThrow(InvalidIdentifierError);
    });
  });

  it('never echoes a hostile identifier into the error message', async () => {
    // Prepare
    const value = '../../etc/passwd?token=abc';

    // Act
    const error = await rejectionOf(makeClient().getExecution(value));

    // Assess
    expect((error as Error).message).not.toContain('passwd');
  });

  describe.each(['A', 'Z9', 'abc_DEF-123', '0-_', 'a'.repeat(128)])('a valid identifier %s', (id) => {
    it('arrives unchanged (URL-encoded form) in the request path', async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, 200, { status: 'RUNNING' });

      // Act
      await makeClient().getExecution(id);

      // Assess
      expect(server.requests.map((request) => request.url)).toEqual([`/v1/executions/${encodeURIComponent(id)}`]);
    });
  });
});

// ---------------------------------------------------------------------------------------
// Base URL and options
// ---------------------------------------------------------------------------------------

describe('base URL', () => {
  describe.each([
    { label: 'http on a public host', baseUrl: 'http://api.waterflai.ai' },
    { label: 'http on a private address', baseUrl: 'http://10.0.0.1' },
    { label: 'http on 128.0.0.1', baseUrl: 'http://128.0.0.1' },
    { label: 'http on a host that starts with localhost', baseUrl: 'http://localhost.evil.example' },
    { label: 'http on a host that starts with 127.0.0.1', baseUrl: 'http://127.0.0.1.nip.io' },
    { label: 'userinfo with a password', baseUrl: 'https://user:hunter2@api.waterflai.ai' },
    { label: 'a user name', baseUrl: 'https://user@api.waterflai.ai' },
    { label: 'an empty userinfo', baseUrl: 'https://@api.waterflai.ai' },
    { label: 'a query', baseUrl: 'https://api.waterflai.ai/?x=1' },
    { label: 'an empty query', baseUrl: 'https://api.waterflai.ai?' },
    { label: 'a fragment', baseUrl: 'https://api.waterflai.ai/#top' },
    { label: 'ftp', baseUrl: 'ftp://api.waterflai.ai' },
    { label: 'a file URL', baseUrl: 'file:///etc/passwd' },
    { label: 'a javascript URL', baseUrl: 'javascript:alert(1)' },
    { label: 'garbage', baseUrl: 'not a url' },
    { label: 'no scheme', baseUrl: 'api.waterflai.ai' },
    { label: 'a protocol-relative URL', baseUrl: '//api.waterflai.ai' },
    { label: 'an empty string', baseUrl: '' },
    { label: 'https without a host', baseUrl: 'https://' },
  ])('rejects $label', ({ baseUrl }) => {
    it('throws ConfigurationError at construction, without echoing credentials', () => {
      // Prepare
      const options = { baseUrl, apiKey: () => API_KEY };

      // Act
      const act = () => new WaterflaiClient(options);

      // Assess
      expect(act).toThrow(ConfigurationError);
      expect(act).not.toThrow(/hunter2/);
    });
  });

  describe.each([
    { baseUrl: 'https://api.waterflai.ai', stream: 'https://api.waterflai.ai/v1/executions/e1/stream' },
    { baseUrl: 'https://api.waterflai.ai/', stream: 'https://api.waterflai.ai/v1/executions/e1/stream' },
    { baseUrl: 'HTTPS://API.Waterflai.AI:443', stream: 'https://api.waterflai.ai/v1/executions/e1/stream' },
    { baseUrl: 'https://gw.example.com/prefix', stream: 'https://gw.example.com/prefix/v1/executions/e1/stream' },
    { baseUrl: 'https://gw.example.com/a/b/', stream: 'https://gw.example.com/a/b/v1/executions/e1/stream' },
    { baseUrl: 'http://127.0.0.1:8080', stream: 'http://127.0.0.1:8080/v1/executions/e1/stream' },
    { baseUrl: 'http://127.5.6.7', stream: 'http://127.5.6.7/v1/executions/e1/stream' },
    { baseUrl: 'http://localhost:3000', stream: 'http://localhost:3000/v1/executions/e1/stream' },
    { baseUrl: 'http://[::1]:9000', stream: 'http://[::1]:9000/v1/executions/e1/stream' },
  ])('accepts $baseUrl', ({ baseUrl, stream }) => {
    it('builds URLs under it', () => {
      // Prepare
      const client = new WaterflaiClient({ baseUrl, apiKey: () => API_KEY });

      // Act
      const url = client.streamUrl('e1');

      // Assess
      expect(url).toBe(stream);
    });
  });

  it('keeps a path prefix in real requests', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 200, { status: 'RUNNING' });
    const client = makeClient({ baseUrl: `${server.url}/waterflai/api/` });

    // Act
    await client.getExecution('e1');

    // Assess
    expect(server.requests.map((request) => request.url)).toEqual(['/waterflai/api/v1/executions/e1']);
  });

  describe.each([
    { label: 'defaultTimeoutMs 0', options: { defaultTimeoutMs: 0 } },
    { label: 'defaultTimeoutMs NaN', options: { defaultTimeoutMs: Number.NaN } },
    { label: 'defaultTimeoutMs Infinity', options: { defaultTimeoutMs: Number.POSITIVE_INFINITY } },
    { label: 'maxResponseBytes 0', options: { maxResponseBytes: 0 } },
    { label: 'maxResponseBytes 1.5', options: { maxResponseBytes: 1.5 } },
  ])('rejects $label', ({ options }) => {
    it('throws ConfigurationError', () => {
      // Act
      const act = () => makeClient(options);

      // Assess
      expect(act).toThrow(ConfigurationError);
    });
  });

  it('refuses a per-request timeoutMs below 1 ms before any request', async () => {
    // Act
    const error = await rejectionOf(makeClient().getExecution('e1', { timeoutMs: 0 }));

    // Assess
    expect(error).toBeInstanceOf(RangeError);
    expect(server.requests).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------------------

describe.each([301, 302, 303, 307, 308])('a %i redirect', (status) => {
  it('is refused with WaterflaiRedirectError and never followed', async () => {
    // Prepare
    server.responder = (_req, res) => {
      res.writeHead(status, { location: `${redirectTarget.url}/v1/executions/e1` });
      res.end();
    };

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1'));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiRedirectError);
    expect(error).toMatchObject({ operation: 'get', retryable: false, code: 'REDIRECT_REFUSED' });
    expect(server.requests).toHaveLength(1);
    expect(redirectTarget.requests).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------
// HTTP errors
// ---------------------------------------------------------------------------------------

describe('HTTP error answers', () => {
  describe.each([
    { status: 400, retryable: false },
    { status: 401, retryable: false },
    { status: 403, retryable: false },
    { status: 404, retryable: false },
    { status: 409, retryable: false },
    { status: 422, retryable: false },
    { status: 408, retryable: true },
    { status: 429, retryable: true },
    { status: 500, retryable: true },
    { status: 502, retryable: true },
    { status: 503, retryable: true },
    { status: 504, retryable: true },
  ])('HTTP $status', ({ status, retryable }) => {
    it(`throws WaterflaiHttpError with retryable=${String(retryable)}`, async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, status, { message: `problem ${status}` });

      // Act
      const error = await rejectionOf(makeClient().getExecution('e1'));

      // Assess
      expect(error).toBeInstanceOf(WaterflaiHttpError);
      expect(error).toMatchObject({ operation: 'get', status, retryable, code: `HTTP_${status}`, retryAfterSeconds: undefined });
      expect((error as Error).message).toBe(`Waterflai get answered HTTP ${status}: problem ${status}`);
    });
  });

  it('names the start operation for a rejected start', async () => {
    // Prepare
    server.responder = (_req, res) =>
      sendJson(res, 422, { detail: [{ loc: ['body', 'input_data'], msg: 'field required', type: 'missing' }] });

    // Act
    const error = await rejectionOf(makeClient().startExecution('bot', {}));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiHttpError);
    expect(error).toMatchObject({ operation: 'start', status: 422, retryable: false });
    expect((error as Error).message).toBe('Waterflai start answered HTTP 422: field required');
  });

  describe.each([
    { label: 'message', body: { message: 'from message' }, detail: 'from message' },
    { label: 'detail', body: { detail: 'from detail' }, detail: 'from detail' },
    { label: 'error', body: { error: 'from error' }, detail: 'from error' },
    { label: 'error.message', body: { error: { message: 'nested' } }, detail: 'nested' },
    { label: 'control characters', body: { message: 'line1\nline2\u0000\u202e' }, detail: 'line1 line2' },
  ])('detail from $label', ({ body, detail }) => {
    it('is put, cleaned, in the message', async () => {
      // Prepare
      server.responder = (_req, res) => sendJson(res, 500, body);

      // Act
      const error = await rejectionOf(makeClient().getExecution('e1'));

      // Assess
      expect((error as Error).message).toBe(`Waterflai get answered HTTP 500: ${detail}`);
    });
  });

  describe.each([
    { label: 'plain text', body: 'Internal Server Error: stack trace here' },
    { label: 'HTML', body: '<html><body>Bad gateway</body></html>' },
    { label: 'JSON without a message', body: '{"code": 17}' },
    { label: 'empty', body: '' },
  ])('an error body that is $label', ({ body }) => {
    it('gives no detail', async () => {
      // Prepare
      server.responder = (_req, res) => sendRaw(res, 502, body, { 'content-type': 'text/plain' });

      // Act
      const error = await rejectionOf(makeClient().getExecution('e1'));

      // Assess
      expect((error as Error).message).toBe('Waterflai get answered HTTP 502');
    });
  });

  it('keeps the message short for a huge error message', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 500, { message: 'x'.repeat(20_000) });

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1'));

    // Assess
    expect((error as Error).message.length).toBeLessThan(300);
    expect((error as Error).message).toContain('xxxx');
  });

  it('gives no detail for an error body larger than the error-body cap (and does not hang)', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 503, { message: 'big', padding: 'p'.repeat(200_000) });

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1'));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiHttpError);
    expect((error as Error).message).toBe('Waterflai get answered HTTP 503');
  });

  it('reports the HTTP status even when the error body never finishes', async () => {
    // Prepare
    server.responder = (_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.write('{"message":');
    };

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1', { timeoutMs: 200 }));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiHttpError);
    expect(error).toMatchObject({ status: 500 });
  });

  describe.each([
    { label: 'delay-seconds', header: '120', now: 0, expected: 120 },
    { label: 'zero seconds', header: '0', now: 0, expected: 0 },
    { label: 'an HTTP-date 30 s ahead', header: 'Wed, 21 Oct 2015 07:28:00 GMT', now: Date.UTC(2015, 9, 21, 7, 27, 30), expected: 30 },
    { label: 'an HTTP-date in the past', header: 'Wed, 21 Oct 2015 07:28:00 GMT', now: Date.UTC(2016, 0, 1), expected: 0 },
    { label: 'garbage', header: 'soon', now: 0, expected: undefined },
    { label: 'a negative number', header: '-5', now: 0, expected: undefined },
    { label: 'a fraction', header: '1.5', now: 0, expected: undefined },
    { label: 'a bare year', header: '2030', now: 0, expected: 2030 },
    { label: 'a loose date', header: '2030-01-01', now: 0, expected: undefined },
  ])('Retry-After as $label', ({ header, now, expected }) => {
    describe.each([429, 503, 400])('on HTTP %i', (status) => {
      it(`gives retryAfterSeconds ${String(expected)}`, async () => {
        // Prepare
        server.responder = (_req, res) => sendJson(res, status, {}, { 'retry-after': header });

        // Act
        const error = await rejectionOf(makeClient({ now: () => now }).getExecution('e1'));

        // Assess
        expect(error).toBeInstanceOf(WaterflaiHttpError);
        expect((error as WaterflaiHttpError).retryAfterSeconds).toBe(expected);
      });
    });
  });
});

// ---------------------------------------------------------------------------------------
// Timeouts, network failures, caller abort
// ---------------------------------------------------------------------------------------

describe('timeouts and network failures', () => {
  it('times out when the headers never come', async () => {
    // Prepare
    server.responder = () => undefined; // never answers
    const startedAt = Date.now();

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1', { timeoutMs: 200 }));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiNetworkError);
    expect(error).toMatchObject({ code: 'TIMEOUT', retryable: true, operation: 'get' });
    expect(Date.now() - startedAt).toBeLessThan(2_000);
  });

  it('uses the client default timeout when the call gives none', async () => {
    // Prepare
    server.responder = () => undefined;
    const startedAt = Date.now();

    // Act
    const error = await rejectionOf(makeClient({ defaultTimeoutMs: 200 }).cancelExecution('e1'));

    // Assess
    expect(error).toMatchObject({ code: 'TIMEOUT', operation: 'cancel' });
    expect(Date.now() - startedAt).toBeLessThan(2_000);
  });

  it('times out when the body hangs after the headers', async () => {
    // Prepare
    server.responder = (_req, res) => {
      res.writeHead(202, { 'content-type': 'application/json' });
      res.write('{"execution_id":');
    };
    const startedAt = Date.now();

    // Act
    const error = await rejectionOf(makeClient().startExecution('bot', {}, { timeoutMs: 200 }));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiNetworkError);
    expect(error).toMatchObject({ code: 'TIMEOUT', retryable: true, operation: 'start' });
    expect(Date.now() - startedAt).toBeLessThan(2_000);
  });

  it('times out on a body that trickles in slower than the deadline (the deadline covers the whole body)', async () => {
    // Prepare
    server.responder = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":"RUNNING","pad":"');
      const interval = setInterval(() => res.write('x'), 20);
      res.on('close', () => clearInterval(interval));
    };
    const startedAt = Date.now();

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1', { timeoutMs: 300 }));

    // Assess
    expect(error).toMatchObject({ code: 'TIMEOUT' });
    expect(Date.now() - startedAt).toBeLessThan(2_000);
  });

  it('times out on a hanging body even when the fetch implementation ignores the signal for the body', async () => {
    // Prepare: an injected fetch whose body stream never ends and never looks at the signal
    let fetchCalls = 0;
    const stubbornFetch: typeof fetch = async () => {
      fetchCalls += 1;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"status":'));
        },
      });
      return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
    };
    const startedAt = Date.now();

    // Act
    const error = await rejectionOf(makeClient({ fetch: stubbornFetch }).getExecution('e1', { timeoutMs: 200 }));

    // Assess
    expect(fetchCalls).toBe(1);
    expect(error).toBeInstanceOf(WaterflaiNetworkError);
    expect(error).toMatchObject({ code: 'TIMEOUT' });
    expect(Date.now() - startedAt).toBeLessThan(2_000);
  });

  it('reports a connection reset before the answer as a retryable NETWORK_ERROR', async () => {
    // Prepare
    server.responder = (req) => req.socket.destroy();

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1'));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiNetworkError);
    expect(error).toMatchObject({ code: 'NETWORK_ERROR', retryable: true, operation: 'get' });
  });

  it('reports a connection reset in the middle of the body as a NETWORK_ERROR', async () => {
    // Prepare
    server.responder = (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 500 });
      res.write('{"status":"RUN');
      setTimeout(() => req.socket.destroy(), 20);
    };

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1'));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiNetworkError);
    expect(error).toMatchObject({ code: 'NETWORK_ERROR', retryable: true });
  });

  it('reports a refused connection as a retryable NETWORK_ERROR', async () => {
    // Prepare
    const port = await closedPort();
    const client = makeClient({ baseUrl: `http://127.0.0.1:${port}` });

    // Act
    const error = await rejectionOf(client.startExecution('bot', {}));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiNetworkError);
    expect(error).toMatchObject({ code: 'NETWORK_ERROR', retryable: true, operation: 'start' });
    expect((error as Error).message).toContain('ECONNREFUSED');
  });

  it("rejects with the caller's abort reason when the caller aborts mid-request", async () => {
    // Prepare
    server.responder = () => undefined;
    const controller = new AbortController();
    const reason = new Error('lambda is shutting down');
    setTimeout(() => controller.abort(reason), 50);
    const startedAt = Date.now();

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1', { timeoutMs: 10_000, signal: controller.signal }));

    // Assess
    expect(error).toBe(reason);
    expect(server.requests).toHaveLength(1);
    expect(Date.now() - startedAt).toBeLessThan(2_000);
  });

  it("rejects with the caller's abort reason when the caller aborts while the body is read", async () => {
    // Prepare
    server.responder = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":');
    };
    const controller = new AbortController();
    const reason = new Error('stop');
    setTimeout(() => controller.abort(reason), 100);

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1', { timeoutMs: 10_000, signal: controller.signal }));

    // Assess
    expect(error).toBe(reason);
  });

  it('makes no request when the caller signal is already aborted', async () => {
    // Prepare
    const reason = new Error('already gone');

    // Act
    const error = await rejectionOf(makeClient().cancelExecution('e1', { signal: AbortSignal.abort(reason) }));

    // Assess
    expect(error).toBe(reason);
    expect(server.requests).toHaveLength(0);
  });

  it('still succeeds with a caller signal that is never aborted', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 200, { status: 'PENDING' });

    // Act
    const status = await makeClient().getExecution('e1', { signal: new AbortController().signal });

    // Assess
    expect(status.known_status).toBe('PENDING');
  });
});

// ---------------------------------------------------------------------------------------
// Response size
// ---------------------------------------------------------------------------------------

describe('response size limit', () => {
  it('refuses a 2xx whose Content-Length exceeds maxResponseBytes', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 200, { status: 'COMPLETED', final_output: 'y'.repeat(5_000) });

    // Act
    const error = await rejectionOf(makeClient({ maxResponseBytes: 1_024 }).getExecution('e1'));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiResponseError);
    expect((error as Error).message).toContain('1024 bytes');
  });

  it('refuses a chunked 2xx (no Content-Length) that grows past maxResponseBytes', async () => {
    // Prepare
    let written = 0;
    server.responder = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":"COMPLETED","final_output":"');
      const interval = setInterval(() => {
        written += 512;
        res.write('z'.repeat(512));
        if (written > 1_000_000) {
          clearInterval(interval);
          res.end('"}');
        }
      }, 1);
      res.on('close', () => clearInterval(interval));
    };

    // Act
    const error = await rejectionOf(makeClient({ maxResponseBytes: 4_096 }).getExecution('e1'));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiResponseError);
    expect(written).toBeLessThan(1_000_000);
  });

  it('accepts a body exactly at the limit', async () => {
    // Prepare
    const body = JSON.stringify({ status: 'COMPLETED', final_output: 'k' });
    server.responder = (_req, res) => sendRaw(res, 200, body);

    // Act
    const status = await makeClient({ maxResponseBytes: Buffer.byteLength(body) }).getExecution('e1');

    // Assess
    expect(status.final_output).toBe('k');
  });

  it('refuses a body one byte over the limit', async () => {
    // Prepare
    const body = JSON.stringify({ status: 'COMPLETED', final_output: 'k' });
    server.responder = (_req, res) => sendRaw(res, 200, body);

    // Act
    const error = await rejectionOf(makeClient({ maxResponseBytes: Buffer.byteLength(body) - 1 }).getExecution('e1'));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiResponseError);
  });
});

// ---------------------------------------------------------------------------------------
// API key
// ---------------------------------------------------------------------------------------

describe('API key', () => {
  it('is asked for on every request (async providers supported)', async () => {
    // Prepare
    const keys = ['key-one', 'key-two'];
    let calls = 0;
    server.responder = (_req, res) => sendJson(res, 200, { status: 'RUNNING' });
    const client = makeClient({ apiKey: async () => keys[calls++ % keys.length] ?? '' });

    // Act
    await client.getExecution('e1');
    await client.getExecution('e1');

    // Assess
    expect(calls).toBe(2);
    expect(server.requests.map((request) => request.headers['x-api-key'])).toEqual(['key-one', 'key-two']);
  });

  it('is sent without surrounding whitespace (a secret stored with a trailing newline)', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 200, { status: 'RUNNING' });

    // Act
    await makeClient({ apiKey: () => `${API_KEY}\n` }).getExecution('e1');

    // Assess
    expect(server.requests[0]?.headers['x-api-key']).toBe(API_KEY);
  });

  describe.each([
    { label: 'empty', key: '' },
    { label: 'only spaces', key: '   ' },
    { label: 'a header injection', key: 'abc\r\nX-Evil: 1' },
    { label: 'an inner space', key: 'abc def' },
    { label: 'non-ASCII', key: 'clé-secrète' },
  ])('a key that is $label', ({ key }) => {
    it('throws ConfigurationError without the key and without a request', async () => {
      // Act
      const error = await rejectionOf(makeClient({ apiKey: () => key }).getExecution('e1'));

      // Assess
      expect(error).toBeInstanceOf(ConfigurationError);
      if (key.trim() !== '') for (const text of renderings(error)) expect(text).not.toContain(key.trim());
      expect(server.requests).toHaveLength(0);
    });
  });

  const scenarios: { label: string; responder: Responder; options?: Partial<WaterflaiClientOptions>; timeoutMs?: number }[] = [
    { label: '401 echoing the key', responder: (_req, res) => sendJson(res, 401, { message: `invalid API key ${API_KEY}` }) },
    { label: '403 with the key in detail', responder: (_req, res) => sendJson(res, 403, { detail: `key=${API_KEY};` }) },
    { label: '500 with the key in error', responder: (_req, res) => sendJson(res, 500, { error: { message: API_KEY } }) },
    { label: 'a redirect', responder: (_req, res) => sendRaw(res, 302, '', { location: `${redirectTarget.url}/?k=${API_KEY}` }) },
    { label: 'invalid JSON with the key', responder: (_req, res) => sendRaw(res, 200, `{"k":"${API_KEY}"`) },
    { label: 'a schema mismatch with the key', responder: (_req, res) => sendJson(res, 200, { status: 1, execution_id: API_KEY }) },
    {
      label: 'an oversized body',
      responder: (_req, res) => sendJson(res, 200, { k: API_KEY.repeat(100) }),
      options: { maxResponseBytes: 256 },
    },
    { label: 'a timeout', responder: () => undefined, timeoutMs: 150 },
    { label: 'a reset', responder: (req) => req.socket.destroy() },
  ];

  describe.each(scenarios)('after $label', ({ responder, options, timeoutMs }) => {
    it('never appears in the thrown error, however it is rendered', async () => {
      // Prepare
      server.responder = responder;
      const client = makeClient(options);

      // Act
      const error = await rejectionOf(client.getExecution('e1', timeoutMs === undefined ? {} : { timeoutMs }));

      // Assess
      expect(error).toBeInstanceOf(Error);
      for (const text of renderings(error)) expect(text).not.toContain(API_KEY);
    });
  });

  it('redacts the key but keeps the rest of the server message', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 401, { message: `invalid API key ${API_KEY}` });

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1'));

    // Assess
    expect((error as Error).message).toBe('Waterflai get answered HTTP 401: invalid API key [REDACTED]');
  });

  it('is redacted from the message of a 409 cancel result', async () => {
    // Prepare
    server.responder = (_req, res) => sendJson(res, 409, { message: `already done for ${API_KEY}` });

    // Act
    const result = await makeClient().cancelExecution('e1');

    // Assess
    expect(result.message).toBe('already done for [REDACTED]');
  });

  it('never appears in the error after a refused connection', async () => {
    // Prepare
    const client = makeClient({ baseUrl: `http://127.0.0.1:${await closedPort()}` });

    // Act
    const error = await rejectionOf(client.getExecution('e1'));

    // Assess
    expect(error).toBeInstanceOf(WaterflaiNetworkError);
    for (const text of renderings(error)) expect(text).not.toContain(API_KEY);
  });
});

// ---------------------------------------------------------------------------------------
// Exported schemas
// ---------------------------------------------------------------------------------------

describe('exported schemas', () => {
  it('accept the contract examples and keep unknown fields', () => {
    // Act
    const started = startedExecutionSchema.parse({ execution_id: 'text', status_url: 'https://example.com', extra: 1 });
    const status = executionStatusSchema.parse({
      execution_id: 'text',
      status: 'PENDING',
      progress: 1,
      final_output: { any: 'thing' },
      extra: 2,
    });
    const cancelled = cancelResultSchema.parse({
      execution_id: 'text',
      cancelled: true,
      message: 'text',
      previous_status: 'PENDING',
      extra: 3,
    });

    // Assess
    expect(started).toMatchObject({ execution_id: 'text', status_url: 'https://example.com', stream_url: null, extra: 1 });
    expect(status).toMatchObject({ status: 'PENDING', progress: 1, final_output: { any: 'thing' }, extra: 2 });
    expect(cancelled).toMatchObject({ cancelled: true, previous_status: 'PENDING', extra: 3 });
  });

  it('refuse bodies without their required field', () => {
    // Act
    const results = [startedExecutionSchema.safeParse({}), executionStatusSchema.safeParse({}), cancelResultSchema.safeParse({})];

    // Assess
    expect(results.map((result) => result.success)).toEqual([false, false, false]);
  });
});

// ---------------------------------------------------------------------------------------
// parseRetryAfter
// ---------------------------------------------------------------------------------------

describe('parseRetryAfter', () => {
  const now = Date.UTC(2025, 8, 14, 4, 33, 48, 0);

  describe.each([
    { label: 'null', header: null, expected: undefined },
    { label: 'empty', header: '', expected: undefined },
    { label: 'blank', header: '   ', expected: undefined },
    { label: 'integer seconds', header: '120', expected: 120 },
    { label: 'zero', header: '0', expected: 0 },
    { label: 'seconds with surrounding spaces', header: ' 7 ', expected: 7 },
    { label: 'leading zeros', header: '007', expected: 7 },
    { label: 'a negative number', header: '-1', expected: undefined },
    { label: 'a fraction', header: '2.5', expected: undefined },
    { label: 'a plus sign', header: '+5', expected: undefined },
    { label: 'exponent notation', header: '1e3', expected: undefined },
    { label: 'hex', header: '0x10', expected: undefined },
    { label: 'a number too large to be exact', header: '9'.repeat(30), expected: undefined },
    { label: 'words', header: 'tomorrow', expected: undefined },
    { label: 'IMF-fixdate 90 s ahead', header: 'Sun, 14 Sep 2025 04:35:18 GMT', expected: 90 },
    { label: 'IMF-fixdate 0.5 s ahead rounded up', header: 'Sun, 14 Sep 2025 04:33:49 GMT', expected: 1 },
    { label: 'IMF-fixdate now', header: 'Sun, 14 Sep 2025 04:33:48 GMT', expected: 0 },
    { label: 'IMF-fixdate in the past', header: 'Sat, 13 Sep 2025 04:33:48 GMT', expected: 0 },
    { label: 'RFC 850 date 60 s ahead', header: 'Sunday, 14-Sep-25 04:34:48 GMT', expected: 60 },
    { label: 'asctime date 60 s ahead', header: 'Sun Sep 14 04:34:48 2025', expected: 60 },
    { label: 'asctime date with a padded day', header: 'Mon Sep  1 00:00:00 2025', expected: 0 },
    { label: 'a date that does not exist', header: 'Fri, 31 Feb 2025 00:00:00 GMT', expected: undefined },
    { label: 'an hour out of range', header: 'Sun, 14 Sep 2025 25:00:00 GMT', expected: undefined },
    { label: 'a non-GMT zone', header: 'Sun, 14 Sep 2025 04:35:18 PST', expected: undefined },
    { label: 'an ISO date', header: '2025-09-14T04:35:18Z', expected: undefined },
    { label: 'a bare year is delay-seconds', header: '2026', expected: 2026 },
    { label: 'a lowercase month', header: 'Sun, 14 sep 2025 04:35:18 GMT', expected: undefined },
  ])('$label', ({ header, expected }) => {
    it(`gives ${String(expected)}`, () => {
      // Act
      const seconds = parseRetryAfter(header, now);

      // Assess
      expect(seconds).toBe(expected);
    });
  });

  it('gives an IMF-fixdate relative to the injected clock', () => {
    // Prepare
    const header = 'Sun, 14 Sep 2025 04:35:18 GMT';

    // Act
    const early = parseRetryAfter(header, now - 10_000);
    const late = parseRetryAfter(header, now + 80_000);

    // Assess
    expect(early).toBe(100);
    expect(late).toBe(10);
  });
});

// ---------------------------------------------------------------------------------------
// requestTimeoutFor
// ---------------------------------------------------------------------------------------

describe('requestTimeoutFor', () => {
  describe.each([
    { label: 'plenty of time left', remaining: 60_000, settings: undefined, expected: 10_000 },
    { label: 'less than max + margin left', remaining: 8_000, settings: undefined, expected: 5_000 },
    { label: 'exactly the margin left', remaining: 3_000, settings: undefined, expected: 1 },
    { label: 'less than the margin left', remaining: 1_000, settings: undefined, expected: 1 },
    { label: 'nothing left', remaining: 0, settings: undefined, expected: 1 },
    { label: 'negative remaining', remaining: -500, settings: undefined, expected: 1 },
    { label: 'a fractional result', remaining: 4_500.9, settings: undefined, expected: 1_500 },
    { label: 'infinite remaining', remaining: Number.POSITIVE_INFINITY, settings: undefined, expected: 10_000 },
    { label: 'a custom margin', remaining: 8_000, settings: { marginMs: 500 }, expected: 7_500 },
    { label: 'a custom max', remaining: 60_000, settings: { maxMs: 25_000 }, expected: 25_000 },
    { label: 'no margin', remaining: 900, settings: { marginMs: 0, maxMs: 5_000 }, expected: 900 },
  ])('with $label', ({ remaining, settings, expected }) => {
    it(`gives ${expected} ms`, () => {
      // Act
      const timeout = requestTimeoutFor(remaining, settings);

      // Assess
      expect(timeout).toBe(expected);
    });
  });

  describe.each([
    { label: 'NaN remaining', remaining: Number.NaN, settings: {} },
    { label: 'a negative margin', remaining: 10_000, settings: { marginMs: -1 } },
    { label: 'a zero max', remaining: 10_000, settings: { maxMs: 0 } },
    { label: 'an infinite max', remaining: 10_000, settings: { maxMs: Number.POSITIVE_INFINITY } },
  ])('with $label', ({ remaining, settings }) => {
    it('throws RangeError', () => {
      // Act
      const act = () => requestTimeoutFor(remaining, settings);

      // Assess
      expect(act).toThrow(RangeError);
    });
  });

  it('produces a deadline the client enforces', async () => {
    // Prepare
    server.responder = () => undefined;
    const timeoutMs = requestTimeoutFor(3_200); // 200 ms after the 3 s margin
    const startedAt = Date.now();

    // Act
    const error = await rejectionOf(makeClient().getExecution('e1', { timeoutMs }));

    // Assess
    expect(timeoutMs).toBe(200);
    expect(error).toMatchObject({ code: 'TIMEOUT' });
    expect(Date.now() - startedAt).toBeLessThan(2_000);
  });
});

describe('WaterflaiClient: a refused key is read again (key rotation)', () => {
  const OLD_KEY = 'wf-old-key-1';
  const NEW_KEY = 'wf-new-key-2';
  const acceptOnly =
    (key: string): Responder =>
    (req, res) =>
      req.headers['x-api-key'] === key ? sendJson(res, 200, { status: 'RUNNING' }) : sendJson(res, 401, { message: 'invalid key' });

  it.each([401, 403])('a %i is sent once more with the freshly read key, and succeeds', async (status) => {
    server.responder = (req, res) =>
      req.headers['x-api-key'] === NEW_KEY ? sendJson(res, 200, { status: 'RUNNING' }) : sendJson(res, status, {});
    let refreshes = 0;
    const client = makeClient({
      apiKey: () => OLD_KEY,
      refreshApiKey: async () => {
        refreshes += 1;
        return NEW_KEY;
      },
    });

    const result = await client.getExecution('exec-1');

    expect(result.status).toBe('RUNNING');
    expect(refreshes).toBe(1);
    expect(server.requests.map((request) => request.headers['x-api-key'])).toEqual([OLD_KEY, NEW_KEY]);
  });

  it('a fresh key equal to the refused one is not sent again: the 401 is the answer', async () => {
    server.responder = acceptOnly(NEW_KEY);
    const client = makeClient({ apiKey: () => OLD_KEY, refreshApiKey: async () => OLD_KEY });

    const error = await rejectionOf(client.getExecution('exec-1'));

    expect(error).toBeInstanceOf(WaterflaiHttpError);
    expect((error as WaterflaiHttpError).status).toBe(401);
    expect(server.requests).toHaveLength(1);
  });

  it('without a refresh function a 401 is returned as it is', async () => {
    server.responder = acceptOnly(NEW_KEY);
    const client = makeClient({ apiKey: () => OLD_KEY });

    expect(await rejectionOf(client.cancelExecution('exec-1'))).toMatchObject({ status: 401 });
    expect(server.requests).toHaveLength(1);
  });

  it('retries at most once: a second 401 with the fresh key is the answer', async () => {
    server.responder = (_req, res) => sendJson(res, 401, {});
    const client = makeClient({ apiKey: () => OLD_KEY, refreshApiKey: async () => NEW_KEY });

    expect(await rejectionOf(client.startExecution('bot', { q: 1 }))).toMatchObject({ status: 401 });
    expect(server.requests).toHaveLength(2);
  });

  it('other errors never read the key again', async () => {
    server.responder = (_req, res) => sendJson(res, 503, {});
    let refreshes = 0;
    const client = makeClient({
      apiKey: () => OLD_KEY,
      refreshApiKey: async () => {
        refreshes += 1;
        return NEW_KEY;
      },
    });

    await rejectionOf(client.getExecution('exec-1'));

    expect(refreshes).toBe(0);
    expect(server.requests).toHaveLength(1);
  });
});
