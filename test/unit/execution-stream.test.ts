import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listenBudgetSeconds,
  listenToExecution,
  parseStreamEvent,
  SseParser,
  type ListenOptions,
  type SseEvent,
  type StreamProgress,
} from '../../lambdas/waterflai/stream';

const API_KEY = 'stream-key-0123456789';

/** How the test server answers `GET /stream/<name>`. */
type Script = (request: IncomingMessage, response: ServerResponse) => void | Promise<void>;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const data = (payload: unknown): string => `data: ${JSON.stringify(payload)}\n\n`;

const SCRIPTS: Record<string, Script> = {
  /** Progress in chunks split mid-line and mid-CRLF (and a multi-byte character split), then the end. */
  async chunked(_request, response) {
    response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    const text =
      data({ type: 'progress_update', status: 'RUNNING', progress: 25, completed_nodes: 1, total_nodes: 4 }).replace(/\n/g, '\r\n') +
      data({ type: 'node_started', node_id: 'résumé', total_nodes: 4 }) +
      data({ type: 'node_completed', node_id: 'résumé', completed_nodes: 2, total_nodes: 4 }) +
      data({ type: 'execution_completed', status: 'COMPLETED', progress: 100, final_output: { answer: 'x' } });
    const bytes = Buffer.from(text, 'utf8');
    for (let i = 0; i < bytes.length; i += 7) {
      response.write(bytes.subarray(i, i + 7));
      await sleep(1);
    }
    response.end();
  },
  /** Only keep-alive comments, forever. */
  heartbeats(_request, response) {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.write(': connected\n\n');
    const timer = setInterval(() => response.write(': keep-alive\n\n'), 20);
    response.on('close', () => clearInterval(timer));
  },
  /** Malformed lines and events, then a valid completion. */
  malformed(_request, response) {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.write('data: {not json\n\n');
    response.write('data: [1,2,3]\n\n');
    response.write('data: {"no_type": true}\n\n');
    response.write('data: {"type": "progress_update", "progress": "fifty", "completed_nodes": -1, "total_nodes": 0}\n\n');
    response.write('garbage line without colon\nretry: 10\nid: 7\n\n');
    response.write(data({ type: 'something_new', progress: 50 }));
    response.end(data({ type: 'execution_completed', status: 'FAILED' }));
  },
  /** One progress event, then the server closes without execution_completed. */
  early(_request, response) {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.end(data({ type: 'progress_update', progress: 10 }));
  },
  /** Headers, then nothing at all. */
  silent(_request, response) {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.flushHeaders();
  },
  unavailable(_request, response) {
    response.writeHead(503, { 'content-type': 'application/json' });
    response.end('{"detail": "overloaded, key stream-key-0123456789"}');
  },
  redirect(_request, response) {
    response.writeHead(302, { location: 'https://elsewhere.example/stream' });
    response.end();
  },
  json(_request, response) {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end('{"status": "RUNNING"}');
  },
  /** The socket is destroyed after one event. */
  reset(_request, response) {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.write(data({ type: 'progress_update', progress: 30 }));
    setTimeout(() => response.socket?.destroy(), 20);
  },
  /** Never answers (not even headers). */
  hang() {
    // nothing
  },
  /** A huge execution_completed (a large final_output). */
  oversized(_request, response) {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.write(data({ type: 'progress_update', progress: 90 }));
    response.end(data({ type: 'execution_completed', status: 'COMPLETED', final_output: 'x'.repeat(400_000) }));
  },
  /** Node events every 20 ms, never ending. */
  ticking(_request, response) {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    let n = 0;
    const timer = setInterval(() => {
      n += 1;
      response.write(data({ type: 'node_completed', node_id: `node-${n}`, completed_nodes: n, total_nodes: 100 }));
    }, 20);
    response.on('close', () => clearInterval(timer));
  },
};

let server: Server;
let baseUrl: string;
const requests: Array<{ url: string; apiKey: string | undefined; accept: string | undefined }> = [];
const sockets = new Set<Socket>();

beforeAll(async () => {
  server = createServer((request, response) => {
    requests.push({ url: request.url ?? '', apiKey: request.headers['x-api-key'] as string | undefined, accept: request.headers.accept });
    const script = SCRIPTS[(request.url ?? '').replace('/stream/', '')];
    if (script === undefined) {
      response.writeHead(404).end();
      return;
    }
    void script(request, response);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function listen(name: string, overrides: Partial<ListenOptions> = {}) {
  return listenToExecution({
    url: `${baseUrl}/stream/${name}`,
    apiKey: () => API_KEY,
    windowMs: 2_000,
    silenceMs: 1_000,
    connectTimeoutMs: 1_000,
    ...overrides,
  });
}

describe('listenToExecution against a local SSE server', () => {
  it('reads events split across chunks (CRLF and UTF-8 split too) and returns at execution_completed', async () => {
    // Prepare
    const seen: StreamProgress[] = [];

    // Act
    const result = await listen('chunked', { onEvent: (event) => seen.push(event) });

    // Assess
    expect(result).toMatchObject({ outcome: 'completed', status: 'COMPLETED', events: 4, malformed: 0 });
    expect(seen.map((event) => event.type)).toEqual(['progress_update', 'node_started', 'node_completed', 'execution_completed']);
    expect(seen[0]).toMatchObject({ status: 'RUNNING', progress: 25, completedNodes: 1, totalNodes: 4 });
    expect(seen[1]).toMatchObject({ nodeId: 'résumé' });
    expect(result.progress.map((event) => event.type)).toEqual(['progress_update', 'node_started', 'node_completed']);
    expect(requests.at(-1)).toEqual({ url: '/stream/chunked', apiKey: API_KEY, accept: 'text/event-stream' });
  });

  it('keeps a stream of keep-alive comments open until the window closes', async () => {
    const result = await listen('heartbeats', { windowMs: 150, silenceMs: 100 });
    expect(result).toMatchObject({ outcome: 'window', events: 0, malformed: 0 });
    expect(result.elapsedMs).toBeGreaterThanOrEqual(140);
  });

  it('ignores malformed lines and events (bad JSON, no type, wrong field types, unknown types) and still hears the end', async () => {
    // Prepare
    const seen: StreamProgress[] = [];

    // Act
    const result = await listen('malformed', { onEvent: (event) => seen.push(event) });

    // Assess
    expect(result).toMatchObject({ outcome: 'completed', status: 'FAILED', malformed: 3 });
    expect(seen.find((event) => event.type === 'progress_update')).toMatchObject({
      progress: null,
      completedNodes: null,
      totalNodes: null,
    });
    expect(seen.map((event) => event.type)).toContain('something_new');
  });

  it('reports an early close without execution_completed as closed', async () => {
    const result = await listen('early');
    expect(result).toMatchObject({ outcome: 'closed', events: 1 });
  });

  it('gives up on a silent stream after the silence limit', async () => {
    const result = await listen('silent', { silenceMs: 100 });
    expect(result.outcome).toBe('silent');
    expect(result.elapsedMs).toBeLessThan(1_000);
  });

  it.each([
    ['unavailable', 'HTTP 503'],
    ['redirect', 'HTTP 302'],
    ['json', 'not an event stream'],
  ])('reports %s as unavailable (%s), without the body', async (name, reason) => {
    const result = await listen(name);
    expect(result).toMatchObject({ outcome: 'unavailable', reason, events: 0 });
    expect(JSON.stringify(result)).not.toContain(API_KEY);
  });

  it('reports a refused connection as unavailable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const result = await listenToExecution({ url: `http://127.0.0.1:${port}/stream`, apiKey: () => API_KEY, windowMs: 1_000 });

    expect(result).toMatchObject({ outcome: 'unavailable', reason: expect.stringContaining('connection failed') });
  });

  it('reports a connection reset after the stream opened as failed', async () => {
    const result = await listen('reset');
    expect(result).toMatchObject({ outcome: 'failed', events: 1 });
  });

  it('gives up when not even the headers arrive in time', async () => {
    const result = await listen('hang', { connectTimeoutMs: 100 });
    expect(result).toMatchObject({ outcome: 'unavailable', reason: 'no answer within 100 ms' });
  });

  it('treats an event too large to read as the end (only execution_completed carries a large payload)', async () => {
    const result = await listen('oversized', { maxEventBytes: 64 * 1024 });
    expect(result).toMatchObject({ outcome: 'completed', malformed: 1 });
  });

  it('stops when the caller no longer wants to listen, checking after each event', async () => {
    // Prepare
    let heard = 0;

    // Act
    const result = await listen('ticking', { onEvent: () => (heard += 1), keepListening: () => heard < 3, checkIntervalMs: 1_000 });

    // Assess
    expect(result.outcome).toBe('stopped');
    expect(heard).toBe(3);
  });

  it('stops when the caller no longer wants to listen, checking periodically without events', async () => {
    const started = Date.now();
    const result = await listen('heartbeats', { keepListening: () => Date.now() - started < 60, checkIntervalMs: 20 });
    expect(result.outcome).toBe('stopped');
  });

  it('ends at once when the caller aborts', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const result = await listen('heartbeats', { signal: controller.signal });
    expect(result.outcome).toBe('aborted');
  });

  it('makes no request with an invalid API key or an empty window', async () => {
    const before = requests.length;
    expect(await listen('chunked', { apiKey: () => 'bad key\r\nX-Injected: 1' })).toMatchObject({
      outcome: 'unavailable',
      reason: 'invalid API key',
    });
    expect(await listen('chunked', { apiKey: () => Promise.reject(new Error('secrets down')) })).toMatchObject({
      outcome: 'unavailable',
      reason: 'no API key',
    });
    expect(await listen('chunked', { windowMs: 0 })).toMatchObject({ outcome: 'window' });
    expect(requests.length).toBe(before);
  });
});

describe('SseParser', () => {
  function parse(chunks: readonly string[], options = {}): { events: SseEvent[]; comments: number; oversized: number } {
    const events: SseEvent[] = [];
    let comments = 0;
    let oversized = 0;
    const parser = new SseParser(
      { event: (event) => events.push(event), comment: () => (comments += 1), oversized: () => (oversized += 1) },
      options,
    );
    for (const chunk of chunks) parser.push(chunk);
    return { events, comments, oversized };
  }

  it('handles LF, CRLF and CR line ends, a BOM, multi-line data, event and id fields', () => {
    const { events, comments } = parse(['\uFEFFdata: a\r', '\ndata: b\r\rid: 9\nevent: custom\ndata:c\n\n: ping\n\n']);
    expect(events).toEqual([
      { event: 'message', data: 'a\nb', id: '' },
      { event: 'custom', data: 'c', id: '9' },
    ]);
    expect(comments).toBe(1);
  });

  it('does not dispatch an event without data, nor one left unterminated', () => {
    expect(parse(['event: x\n\n', 'data: late']).events).toEqual([]);
  });

  it('discards the whole of an overlong line, however it is split, and the event it belongs to', () => {
    // The overlong line is cut at the limit; neither its tail nor the rest of its event is read.
    const long = `data: ${'x'.repeat(100)}\ndata: injected`;
    const result = parse([long.slice(0, 30), long.slice(30, 60), long.slice(60, 90), `${long.slice(90)}\n\ndata: next\n\n`], {
      maxLineBytes: 40,
    });
    expect(result.events).toEqual([{ event: 'message', data: 'next', id: '' }]);
    expect(result.oversized).toBe(1);
  });

  it('drops lines and events over the limits', () => {
    const result = parse([`data: ${'x'.repeat(50)}\n\n`, `data: ${'y'.repeat(10)}\n\n`], { maxLineBytes: 40, maxEventBytes: 30 });
    expect(result.events).toEqual([{ event: 'message', data: 'y'.repeat(10), id: '' }]);
    expect(result.oversized).toBe(1);
  });
});

describe('parseStreamEvent', () => {
  const at = 1_000;
  const event = (data: string, type = 'message'): SseEvent => ({ event: type, data, id: '' });

  it.each([
    ['not JSON', '{'],
    ['an array', '[]'],
    ['no type', '{"progress": 5}'],
    ['an empty type', '{"type": ""}'],
  ])('refuses %s', (_name, data) => {
    expect(parseStreamEvent(event(data), at)).toBeUndefined();
  });

  it('reads the known fields and nulls the wrong ones', () => {
    expect(
      parseStreamEvent(
        event('{"type":"progress_update","progress":150,"completed_nodes":2.5,"total_nodes":4,"status":7,"node_id":"n"}'),
        at,
      ),
    ).toEqual({
      receivedAtMs: at,
      type: 'progress_update',
      status: null,
      progress: null,
      completedNodes: null,
      totalNodes: 4,
      nodeId: 'n',
    });
  });

  it('takes the type from the event field when the data has none... only if it is named', () => {
    expect(parseStreamEvent(event('{"status":"COMPLETED"}', 'execution_completed'), at)?.type).toBe('execution_completed');
  });
});

describe('listenBudgetSeconds', () => {
  it.each([
    [600_000, 20_000, 1, 580],
    [600_000, 20_000, 0.05, 11_600],
    [10_000, 20_000, 1, 0],
    [Number.NaN, 20_000, 1, 0],
    [600_000, 20_000, 0, 0],
  ])('with %s ms left, %s ms reserved, time scale %s: %s s', (remaining, reserve, scale, expected) => {
    expect(listenBudgetSeconds(remaining, reserve, scale)).toBe(expected);
  });
});
