import { afterEach, describe, expect, it } from 'vitest';
import { WATERFLAI_STATUS } from '../../lambdas/contract/constants';
import { parseSimulatorArgs } from '../../local/simulator/cli';
import { mulberry32 } from '../../local/simulator/prng';
import { resolveScenario, SimulatedExecution, type Scenario } from '../../local/simulator/scenario';
import {
  FAULT_KINDS,
  startSimulator,
  type ExecutionStatusBody,
  type FaultSettings,
  type Simulator,
  type SimulatorOptions,
} from '../../local/simulator/server';

const API_KEY = 'test-key';
const ISO_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const running: Simulator[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

/** Starts a simulator that is closed after the test. Fast defaults: 20 ms queue, 80 ms run. */
async function simulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const sim = await startSimulator({
    apiKey: API_KEY,
    seed: 1234,
    defaults: { queue_ms: 20, duration_ms: 80, nodes: 4 },
    ...options,
  });
  running.push(sim);
  return sim;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** JSON headers with an X-API-Key (the test key by default; null = no header at all). */
function headers(key: string | null = API_KEY): Record<string, string> {
  return key === null ? { 'Content-Type': 'application/json' } : { 'Content-Type': 'application/json', 'X-API-Key': key };
}

interface StartBody {
  execution_id: string;
  status_url: string;
  stream_url: string;
  cancel_url: string;
}

function post(
  sim: Simulator,
  chatbotId: string,
  body: unknown,
  init: { key?: string; raw?: string; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(`${sim.url}/v1/executions/${chatbotId}/async`, {
    method: 'POST',
    headers: headers(init.key ?? API_KEY),
    body: init.raw ?? JSON.stringify(body),
    ...(init.signal === undefined ? {} : { signal: init.signal }),
  });
}

async function startJob(sim: Simulator, simulate?: Partial<Scenario>, chatbotId = 'bot-1'): Promise<StartBody> {
  const res = await post(sim, chatbotId, { input_data: { query: 'What is Waterflai?', ...(simulate === undefined ? {} : { simulate }) } });
  expect(res.status).toBe(202);
  return (await res.json()) as StartBody;
}

async function getStatus(sim: Simulator, id: string): Promise<{ status: number; body: ExecutionStatusBody }> {
  const res = await fetch(`${sim.url}/v1/executions/${id}`, { headers: headers() });
  return { status: res.status, body: (await res.json()) as ExecutionStatusBody };
}

async function waitForTerminal(sim: Simulator, id: string, timeoutMs = 5000): Promise<ExecutionStatusBody[]> {
  const seen: ExecutionStatusBody[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await getStatus(sim, id);
    seen.push(body);
    if (body.status === 'COMPLETED' || body.status === 'FAILED' || body.status === 'CANCELLED') return seen;
    if (Date.now() > deadline) throw new Error(`execution ${id} still ${body.status} after ${timeoutMs} ms`);
    await sleep(5);
  }
}

type SseEvent = Record<string, unknown> & { type: string };

/** Reads a whole SSE stream (resolves only when the server closes it). */
async function readStream(url: string, timeoutMs = 5000): Promise<{ contentType: string | null; raw: string; events: SseEvent[] }> {
  const res = await fetch(url, { headers: headers(), signal: AbortSignal.timeout(timeoutMs) });
  expect(res.status).toBe(200);
  const raw = await res.text();
  const events = raw
    .split('\n\n')
    .filter((chunk) => chunk !== '' && !chunk.startsWith(':'))
    .map((chunk) => {
      expect(chunk.startsWith('data: ')).toBe(true);
      return JSON.parse(chunk.slice('data: '.length)) as SseEvent;
    });
  return { contentType: res.headers.get('content-type'), raw, events };
}

function dedupe<T>(values: T[]): T[] {
  return values.filter((v, i) => i === 0 || values[i - 1] !== v);
}

describe('server basics', () => {
  it('listens on 127.0.0.1 only and builds its url from that address', async () => {
    // Prepare / Act
    const sim = await simulator();

    // Assess
    expect(sim.address.address).toBe('127.0.0.1');
    expect(sim.address.port).toBeGreaterThan(0);
    expect(sim.url).toBe(`http://127.0.0.1:${sim.address.port}`);
    expect(sim.apiKey).toBe(API_KEY);
    expect(sim.seed).toBe(1234);
  });

  it('uses local-dev-key when no key is given and answers after close() with a refused connection', async () => {
    // Prepare
    const sim = await startSimulator({ defaults: { queue_ms: 0, duration_ms: 10 } });
    expect(sim.apiKey).toBe('local-dev-key');
    const ok = await post(sim, 'bot', { input_data: {} }, { key: 'local-dev-key' });
    expect(ok.status).toBe(202);

    // Act
    await sim.close();

    // Assess
    await expect(fetch(`${sim.url}/v1/executions/x`, { headers: headers() })).rejects.toThrow();
  });

  it('counts nothing before the first request', async () => {
    const sim = await simulator();
    const stats = sim.stats();
    expect(stats.total_requests).toBe(0);
    expect(stats.starts_by_chatbot).toEqual({});
    expect(stats.faults_total).toBe(0);
    expect(sim.executions()).toEqual([]);
  });
});

describe('POST /v1/executions/{chatbot_id}/async', () => {
  it('answers 202 with a url-safe execution id and absolute urls pointing at the simulator', async () => {
    // Prepare
    const sim = await simulator();

    // Act
    const first = await startJob(sim);
    const second = await startJob(sim);

    // Assess
    expect(first.execution_id).toMatch(/^exec_[0-9a-f]{24}$/);
    expect(second.execution_id).not.toBe(first.execution_id);
    expect(first.status_url).toBe(`${sim.url}/v1/executions/${first.execution_id}`);
    expect(first.cancel_url).toBe(first.status_url);
    expect(first.stream_url).toBe(`${first.status_url}/stream`);
    for (const url of [first.status_url, first.stream_url, first.cancel_url]) {
      expect(new URL(url).host).toBe(`127.0.0.1:${sim.address.port}`);
    }
    const viaUrl = await fetch(first.status_url, { headers: headers() });
    expect(viaUrl.status).toBe(200);
    expect(sim.execution(first.execution_id)?.chatbot_id).toBe('bot-1');
    expect(sim.execution(first.execution_id)?.input_data).toEqual({ query: 'What is Waterflai?' });
  });

  it.each([
    ['invalid JSON', '{"input_data": ', 'not valid JSON'],
    ['an empty body', '', 'not valid JSON'],
    ['no input_data', '{"query": "x"}', 'input_data'],
    ['input_data as an array', '{"input_data": []}', 'input_data'],
    ['input_data as a string', '{"input_data": "hello"}', 'input_data'],
    ['input_data null', '{"input_data": null}', 'input_data'],
    ['a JSON array body', '[]', 'input_data'],
  ])('answers 422 with a detail for %s and creates nothing', async (_name, raw, expected) => {
    // Prepare
    const sim = await simulator();

    // Act
    const res = await post(sim, 'bot-1', undefined, { raw });

    // Assess
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toContain('application/json');
    const body = (await res.json()) as { detail: string };
    expect(body.detail).toContain(expected);
    expect(sim.executions()).toHaveLength(0);
    expect(sim.stats().executions_created).toBe(0);
  });

  it.each([
    ['a negative duration', { duration_ms: -1 }, 'input_data.simulate.duration_ms'],
    ['zero nodes', { nodes: 0 }, 'input_data.simulate.nodes'],
    ['fractional nodes', { nodes: 1.5 }, 'input_data.simulate.nodes'],
    ['an unknown outcome', { outcome: 'exploded' }, 'input_data.simulate.outcome'],
    ['an unknown progress shape', { progress: 'zigzag' }, 'input_data.simulate.progress'],
    ['a misspelt field', { duraton_ms: 100 }, 'duraton_ms'],
    ['a string duration', { duration_ms: '100' }, 'input_data.simulate.duration_ms'],
    ['an array output', { output: [1, 2] }, 'input_data.simulate.output'],
    ['both output and output_bytes', { output: {}, output_bytes: 10 }, 'either output or output_bytes'],
    ['simulate not an object', 'fast', 'input_data.simulate must be a JSON object'],
  ])('answers 422 naming the field for %s', async (_name, simulate, expected) => {
    // Prepare
    const sim = await simulator();

    // Act
    const res = await post(sim, 'bot-1', { input_data: { simulate } });

    // Assess
    expect(res.status).toBe(422);
    expect(((await res.json()) as { detail: string }).detail).toContain(expected);
    expect(sim.stats().executions_created).toBe(0);
  });

  it('answers 404 for a chatbot outside knownChatbots', async () => {
    const sim = await simulator({ knownChatbots: ['known-bot'] });

    const unknown = await post(sim, 'other-bot', { input_data: {} });
    const known = await post(sim, 'known-bot', { input_data: {} });

    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { detail: string }).detail).toContain('other-bot');
    expect(known.status).toBe(202);
    expect(sim.stats().executions_by_chatbot).toEqual({ 'known-bot': 1 });
  });

  it('answers 413 to a body above maxBodyBytes', async () => {
    const sim = await simulator({ maxBodyBytes: 100 });

    const res = await post(sim, 'bot-1', { input_data: { text: 'x'.repeat(500) } });

    expect(res.status).toBe(413);
    expect(sim.executions()).toHaveLength(0);
  });
});

describe('authentication, unknown routes and methods', () => {
  const routes = [
    ['start', 'POST', '/v1/executions/bot-1/async'],
    ['get', 'GET', '/v1/executions/exec_x'],
    ['cancel', 'DELETE', '/v1/executions/exec_x'],
    ['stream', 'GET', '/v1/executions/exec_x/stream'],
  ] as const;

  describe.each(routes)('%s (%s %s)', (route, method, path) => {
    it.each([
      ['without X-API-Key', null],
      ['with a wrong X-API-Key', 'wrong-key'],
      ['with an empty X-API-Key', ''],
    ])('answers 401 JSON %s', async (_name, key) => {
      // Prepare
      const sim = await simulator();

      // Act
      const res = await fetch(`${sim.url}${path}`, {
        method,
        headers: headers(key),
        ...(method === 'POST' ? { body: JSON.stringify({ input_data: {} }) } : {}),
      });

      // Assess
      expect(res.status).toBe(401);
      expect(((await res.json()) as { detail: string }).detail).toMatch(/X-API-Key/);
      const stats = sim.stats();
      expect(stats.unauthorized).toBe(1);
      expect(stats.by_route[route]).toBe(1);
      expect(stats.by_status[401]).toBe(1);
      expect(stats.executions_created).toBe(0);
    });
  });

  it.each([
    ['GET', '/v1/executions/exec_doesnotexist'],
    ['DELETE', '/v1/executions/exec_doesnotexist'],
    ['GET', '/v1/executions/exec_doesnotexist/stream'],
    ['GET', '/v2/executions/exec_1'],
    ['GET', '/v1/executions/exec_1/logs'],
    ['GET', '/v1/executions/a/b/c'],
    ['GET', '/'],
  ])('answers 404 JSON to %s %s', async (method, path) => {
    const sim = await simulator();

    const res = await fetch(`${sim.url}${path}`, { method, headers: headers() });

    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(typeof ((await res.json()) as { detail: unknown }).detail).toBe('string');
  });

  it.each([
    ['PUT', '/v1/executions/exec_1', 'GET, DELETE'],
    ['POST', '/v1/executions/exec_1', 'GET, DELETE'],
    ['GET', '/v1/executions/bot-1/async', 'POST'],
    ['DELETE', '/v1/executions/bot-1/async', 'POST'],
    ['POST', '/v1/executions/exec_1/stream', 'GET'],
  ])('answers 405 to %s %s with Allow: %s', async (method, path, allow) => {
    const sim = await simulator();

    const res = await fetch(`${sim.url}${path}`, { method, headers: headers() });

    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe(allow);
    expect(typeof ((await res.json()) as { detail: unknown }).detail).toBe('string');
    expect(sim.stats().by_route.other).toBe(1);
  });
});

describe('GET /v1/executions/{execution_id}', () => {
  it('returns every documented field with the documented types', async () => {
    // Prepare
    const sim = await simulator({ defaults: { queue_ms: 10_000, duration_ms: 1000 } });
    const { execution_id } = await startJob(sim);

    // Act
    const { status, body } = await getStatus(sim, execution_id);

    // Assess
    expect(status).toBe(200);
    expect(Object.keys(body).sort()).toEqual(
      [
        'execution_id',
        'status',
        'progress',
        'current_node',
        'completed_nodes',
        'total_nodes',
        'final_output',
        'error_message',
        'created_at',
        'started_at',
        'completed_at',
        'retry_count',
        'execution_source',
        'is_temporary',
        'cleanup_after',
      ].sort(),
    );
    expect(body).toMatchObject({
      execution_id,
      status: WATERFLAI_STATUS.PENDING,
      progress: 0,
      current_node: null,
      completed_nodes: 0,
      total_nodes: 4,
      final_output: null,
      error_message: null,
      started_at: null,
      completed_at: null,
      retry_count: 0,
      execution_source: 'CHATBOT',
      is_temporary: true,
    });
    expect(body.created_at).toMatch(ISO_PATTERN);
    expect(body.cleanup_after).toMatch(ISO_PATTERN);
    expect(Date.parse(body.cleanup_after)).toBeGreaterThan(Date.parse(body.created_at));
  });

  it('moves PENDING -> RUNNING -> COMPLETED with nodes and progress advancing, then final_output', async () => {
    // Prepare
    const sim = await simulator();
    const { execution_id } = await startJob(sim, { queue_ms: 150, duration_ms: 600, nodes: 3 });

    // Act
    const seen = await waitForTerminal(sim, execution_id);

    // Assess
    expect(dedupe(seen.map((b) => b.status))).toEqual(['PENDING', 'RUNNING', 'COMPLETED']);
    const progress = seen.map((b) => b.progress ?? -1);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const completedNodes = seen.map((b) => b.completed_nodes ?? -1);
    expect(completedNodes).toEqual([...completedNodes].sort((a, b) => a - b));
    const runningNodes = new Set(seen.filter((b) => b.status === 'RUNNING').map((b) => b.current_node));
    expect([...runningNodes].sort()).toEqual(['node-1', 'node-2', 'node-3']);
    expect(seen.some((b) => b.status === 'RUNNING' && (b.progress ?? 0) > 0 && (b.progress ?? 100) < 100)).toBe(true);
    for (const b of seen.filter((s) => s.status === 'RUNNING')) {
      expect(b.started_at).toMatch(ISO_PATTERN);
      expect(b.completed_at).toBeNull();
      expect(b.final_output).toBeNull();
    }
    const last = seen.at(-1);
    expect(last).toMatchObject({
      status: 'COMPLETED',
      progress: 100,
      completed_nodes: 3,
      total_nodes: 3,
      current_node: null,
      error_message: null,
      final_output: { answer: 'Simulated answer from chatbot bot-1', execution_id },
    });
    const created = Date.parse(last?.created_at ?? '');
    const started = Date.parse(last?.started_at ?? '');
    const completed = Date.parse(last?.completed_at ?? '');
    expect(started - created).toBeGreaterThanOrEqual(149);
    expect(completed - started).toBeGreaterThanOrEqual(599);
    expect(Date.parse(last?.cleanup_after ?? '')).toBe(completed + 24 * 3600 * 1000);
  });

  it('ends FAILED with error_message and no final_output', async () => {
    const sim = await simulator();
    const { execution_id } = await startJob(sim, { outcome: 'failed', nodes: 3 });

    const last = (await waitForTerminal(sim, execution_id)).at(-1);

    expect(last).toMatchObject({
      status: 'FAILED',
      final_output: null,
      error_message: 'Simulated failure in node-3',
      current_node: 'node-3',
      completed_nodes: 2,
      total_nodes: 3,
    });
    expect(last?.completed_at).toMatch(ISO_PATTERN);
    expect(last?.progress).toBeLessThan(100);
  });

  it('uses the error_message and the output a job asks for', async () => {
    const sim = await simulator();
    const failed = await startJob(sim, { outcome: 'failed', error_message: 'LLM quota exhausted' });
    const completed = await startJob(sim, { output: { answer: 42, nested: { ok: true } } });

    const failedLast = (await waitForTerminal(sim, failed.execution_id)).at(-1);
    const completedLast = (await waitForTerminal(sim, completed.execution_id)).at(-1);

    expect(failedLast?.error_message).toBe('LLM quota exhausted');
    expect(completedLast?.final_output).toEqual({ answer: 42, nested: { ok: true } });
  });

  it.each([100, 5000, 200_000])('makes a final_output of %i bytes when output_bytes asks for it', async (bytes) => {
    const sim = await simulator();
    const { execution_id } = await startJob(sim, { output_bytes: bytes, duration_ms: 10, queue_ms: 0 });

    const last = (await waitForTerminal(sim, execution_id)).at(-1);

    expect(JSON.stringify(last?.final_output).length).toBe(bytes);
  });

  it('reports null progress and node counts for progress "none"', async () => {
    const sim = await simulator();
    const { execution_id } = await startJob(sim, { progress: 'none' });

    const seen = await waitForTerminal(sim, execution_id);

    expect(seen.length).toBeGreaterThan(1);
    for (const body of seen) {
      expect(body.progress).toBeNull();
      expect(body.completed_nodes).toBeNull();
      expect(body.total_nodes).toBeNull();
    }
    expect(seen.at(-1)?.status).toBe('COMPLETED');
  });

  it('ends CANCELLED when the scenario cancels remotely (cancel_after_ms, outcome cancelled)', async () => {
    const sim = await simulator();
    const early = await startJob(sim, { queue_ms: 0, duration_ms: 5000, cancel_after_ms: 60 });
    const atEnd = await startJob(sim, { outcome: 'cancelled', duration_ms: 60 });

    const earlyLast = (await waitForTerminal(sim, early.execution_id)).at(-1);
    const atEndLast = (await waitForTerminal(sim, atEnd.execution_id)).at(-1);

    expect(earlyLast).toMatchObject({ status: 'CANCELLED', final_output: null, error_message: null });
    expect(Date.parse(earlyLast?.completed_at ?? '') - Date.parse(earlyLast?.created_at ?? '')).toBeLessThan(100);
    expect(atEndLast).toMatchObject({ status: 'CANCELLED', final_output: null });
    expect(sim.execution(early.execution_id)?.cancelled_by).toBe('remote');
  });

  it('multiplies every scenario duration by timeScale', async () => {
    const sim = await simulator({ timeScale: 0.1 });
    const { execution_id } = await startJob(sim, { queue_ms: 1000, duration_ms: 2000 });

    const last = (await waitForTerminal(sim, execution_id, 2000)).at(-1);

    const created = Date.parse(last?.created_at ?? '');
    expect(Date.parse(last?.started_at ?? '') - created).toBeGreaterThanOrEqual(99);
    expect(Date.parse(last?.started_at ?? '') - created).toBeLessThanOrEqual(101);
    expect(Date.parse(last?.completed_at ?? '') - created).toBeGreaterThanOrEqual(299);
    expect(Date.parse(last?.completed_at ?? '') - created).toBeLessThanOrEqual(301);
  });

  it('applies options.defaults and lets the job override them', async () => {
    const sim = await simulator({ defaults: { nodes: 7, queue_ms: 10_000 } });
    const byDefault = await startJob(sim);
    const overridden = await startJob(sim, { nodes: 2 });

    expect((await getStatus(sim, byDefault.execution_id)).body.total_nodes).toBe(7);
    expect((await getStatus(sim, overridden.execution_id)).body.total_nodes).toBe(2);
  });

  it('refuses invalid defaults and time scales at start', async () => {
    await expect(startSimulator({ defaults: { nodes: 0 } })).rejects.toThrow(/defaults\.nodes/);
    await expect(startSimulator({ timeScale: -1 })).rejects.toThrow(/timeScale/);
  });
});

describe('cancellation', () => {
  it('DELETE on a RUNNING execution answers 200 cancelled:true with previous_status RUNNING, then GET says CANCELLED', async () => {
    // Prepare
    const sim = await simulator();
    const { execution_id, cancel_url } = await startJob(sim, { queue_ms: 0, duration_ms: 10_000 });
    await sleep(10);

    // Act
    const res = await fetch(cancel_url, { method: 'DELETE', headers: headers() });

    // Assess
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({ execution_id, cancelled: true, message: expect.any(String) as unknown, previous_status: 'RUNNING' });
    const after = await getStatus(sim, execution_id);
    expect(after.body.status).toBe('CANCELLED');
    expect(after.body.completed_at).toMatch(ISO_PATTERN);
    expect(sim.execution(execution_id)?.cancelled_by).toBe('api');
  });

  it('DELETE on a PENDING execution reports previous_status PENDING and leaves started_at null', async () => {
    const sim = await simulator();
    const { execution_id, cancel_url } = await startJob(sim, { queue_ms: 10_000 });

    const res = await fetch(cancel_url, { method: 'DELETE', headers: headers() });

    expect(res.status).toBe(200);
    expect(((await res.json()) as { previous_status: string }).previous_status).toBe('PENDING');
    const after = await getStatus(sim, execution_id);
    expect(after.body).toMatchObject({ status: 'CANCELLED', started_at: null });
  });

  it.each([
    ['COMPLETED', { outcome: 'completed' }],
    ['FAILED', { outcome: 'failed' }],
  ] as const)('DELETE on a %s execution answers 409 cancelled:false', async (status, simulate) => {
    // Prepare
    const sim = await simulator();
    const { execution_id, cancel_url } = await startJob(sim, { ...simulate, queue_ms: 0, duration_ms: 10 });
    await waitForTerminal(sim, execution_id);

    // Act
    const res = await fetch(cancel_url, { method: 'DELETE', headers: headers() });

    // Assess
    expect(res.status).toBe(409);
    const body = (await res.json()) as { execution_id: string; cancelled: boolean; message: string; previous_status: string };
    expect(body).toMatchObject({ execution_id, cancelled: false, previous_status: status });
    expect(body.message).toContain('cannot be cancelled');
    expect((await getStatus(sim, execution_id)).body.status).toBe(status);
  });

  it('a second DELETE answers 409 with previous_status CANCELLED', async () => {
    const sim = await simulator();
    const { cancel_url } = await startJob(sim, { queue_ms: 10_000 });

    const first = await fetch(cancel_url, { method: 'DELETE', headers: headers() });
    const second = await fetch(cancel_url, { method: 'DELETE', headers: headers() });

    expect(first.status).toBe(200);
    expect(second.status).toBe(409);
    expect(((await second.json()) as { previous_status: string }).previous_status).toBe('CANCELLED');
  });

  it('cancelRemotely() cancels a running execution and refuses unknown or finished ones', async () => {
    const sim = await simulator();
    const longJob = await startJob(sim, { duration_ms: 10_000 });
    const shortJob = await startJob(sim, { queue_ms: 0, duration_ms: 5 });
    await waitForTerminal(sim, shortJob.execution_id);

    expect(sim.cancelRemotely(longJob.execution_id)).toBe(true);
    expect(sim.cancelRemotely(shortJob.execution_id)).toBe(false);
    expect(sim.cancelRemotely('exec_nope')).toBe(false);

    expect((await getStatus(sim, longJob.execution_id)).body.status).toBe('CANCELLED');
    expect(sim.execution(longJob.execution_id)).toMatchObject({ status: 'CANCELLED', cancelled_by: 'remote' });
    expect((await getStatus(sim, shortJob.execution_id)).body.status).toBe('COMPLETED');
  });
});

describe('GET /v1/executions/{execution_id}/stream (SSE)', () => {
  it('streams node_started, node_completed, progress_update and execution_completed in order, then closes', async () => {
    // Prepare
    const sim = await simulator();
    const { stream_url, execution_id } = await startJob(sim, { queue_ms: 300, duration_ms: 240, nodes: 3 });

    // Act
    const { contentType, raw, events } = await readStream(stream_url);

    // Assess
    expect(contentType).toMatch(/^text\/event-stream/);
    expect(raw.endsWith('\n\n')).toBe(true);
    expect(events.map((e) => e.type)).toEqual([
      'progress_update',
      'node_started',
      'node_completed',
      'progress_update',
      'node_started',
      'node_completed',
      'progress_update',
      'node_started',
      'node_completed',
      'progress_update',
      'execution_completed',
    ]);
    expect(events[0]).toMatchObject({ status: 'PENDING', progress: 0 });
    expect(events.filter((e) => e.type === 'node_started').map((e) => e.node_id)).toEqual(['node-1', 'node-2', 'node-3']);
    expect(events.filter((e) => e.type === 'progress_update').map((e) => e.progress)).toEqual([0, 33.33, 66.67, 100]);
    expect(events.at(-1)).toMatchObject({
      type: 'execution_completed',
      execution_id,
      status: 'COMPLETED',
      progress: 100,
      final_output: { answer: 'Simulated answer from chatbot bot-1', execution_id },
    });
    expect(events.every((e) => e.execution_id === execution_id)).toBe(true);
    expect(sim.stats().open_streams).toBe(0);
  });

  it('sends only execution_completed for an execution that already ended, then closes', async () => {
    const sim = await simulator();
    const { stream_url, execution_id } = await startJob(sim, { queue_ms: 0, duration_ms: 5 });
    await waitForTerminal(sim, execution_id);

    const { events } = await readStream(stream_url);

    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'execution_completed', status: 'COMPLETED', progress: 100 });
  });

  it('starts with the current progress, without replaying earlier node events', async () => {
    const sim = await simulator();
    const { stream_url, execution_id } = await startJob(sim, { queue_ms: 0, duration_ms: 1000, nodes: 2 });
    await sleep(650);

    const { events } = await readStream(stream_url);

    expect(events[0]).toMatchObject({ type: 'progress_update', status: 'RUNNING', progress: 50, current_node: 'node-2' });
    expect(events.map((e) => e.type)).toEqual(['progress_update', 'node_completed', 'progress_update', 'execution_completed']);
    expect(events.at(-1)).toMatchObject({ status: 'COMPLETED', execution_id });
  });

  it('ends with execution_completed status FAILED and the error_message', async () => {
    const sim = await simulator();
    const { stream_url } = await startJob(sim, { outcome: 'failed', nodes: 2, queue_ms: 300, duration_ms: 60 });

    const { events } = await readStream(stream_url);

    expect(events.map((e) => e.type)).toEqual([
      'progress_update',
      'node_started',
      'node_completed',
      'progress_update',
      'node_started',
      'execution_completed',
    ]);
    expect(events.at(-1)).toMatchObject({ status: 'FAILED', error_message: 'Simulated failure in node-2', final_output: null });
  });

  it('pushes execution_completed status CANCELLED as soon as a DELETE arrives, then closes', async () => {
    // Prepare
    const sim = await simulator();
    const { stream_url, cancel_url } = await startJob(sim, { queue_ms: 0, duration_ms: 60_000, nodes: 2 });
    const streaming = readStream(stream_url);
    await sleep(50);

    // Act
    const cancelledAt = Date.now();
    const res = await fetch(cancel_url, { method: 'DELETE', headers: headers() });
    const { events } = await streaming;

    // Assess
    expect(res.status).toBe(200);
    expect(Date.now() - cancelledAt).toBeLessThan(1000);
    expect(events.at(-1)).toMatchObject({ type: 'execution_completed', status: 'CANCELLED', final_output: null });
  });

  it('sends null progress and no progress_update after the first event for progress "none"', async () => {
    const sim = await simulator();
    const { stream_url } = await startJob(sim, { progress: 'none', nodes: 2, queue_ms: 300, duration_ms: 40 });

    const { events } = await readStream(stream_url);

    expect(events.map((e) => e.type)).toEqual([
      'progress_update',
      'node_started',
      'node_completed',
      'node_started',
      'node_completed',
      'execution_completed',
    ]);
    expect(events[0]?.progress).toBeNull();
    expect(events.at(-1)?.progress).toBeNull();
  });

  it('writes keep-alive comments on long streams', async () => {
    const sim = await simulator({ sseHeartbeatMs: 20 });
    const { stream_url } = await startJob(sim, { queue_ms: 0, duration_ms: 120, nodes: 1 });

    const { raw, events } = await readStream(stream_url);

    expect(raw).toContain(': keep-alive\n\n');
    expect(events.at(-1)?.type).toBe('execution_completed');
  });
});

describe('fault injection, scheduled (failNext)', () => {
  async function simWithFaults(faults: FaultSettings): Promise<{ sim: Simulator; job: StartBody }> {
    const sim = await simulator({ defaults: { queue_ms: 0, duration_ms: 10_000 } });
    const job = await startJob(sim);
    sim.setFaults(faults);
    return { sim, job };
  }

  it('error5xx answers the chosen 5xx status for the next `count` requests, then recovers', async () => {
    const { sim, job } = await simWithFaults({ failNext: [{ route: 'get', kind: 'error5xx', count: 2, status: 503 }] });

    const statuses = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await fetch(job.status_url, { headers: headers() })).status);

    expect(statuses).toEqual([503, 503, 200]);
    expect(sim.stats().faults.error5xx).toBe(2);
    expect(sim.stats().by_status[503]).toBe(2);
  });

  it('a faulted POST (error5xx) creates no execution', async () => {
    const sim = await simulator();
    sim.setFaults({ failNext: [{ kind: 'error5xx', route: 'start' }] });

    const res = await post(sim, 'bot-x', { input_data: {} });

    expect([500, 502, 503]).toContain(res.status);
    expect(typeof ((await res.json()) as { detail: unknown }).detail).toBe('string');
    expect(sim.executions()).toHaveLength(0);
    expect(sim.stats().starts_by_chatbot).toEqual({ 'bot-x': 1 });
    expect(sim.stats().executions_by_chatbot).toEqual({});
  });

  it.each([
    [{}, '1'],
    [{ retryAfterSeconds: 7 }, '7'],
  ])('rateLimit answers 429 with Retry-After in seconds (%o)', async (extra, expected) => {
    const { sim, job } = await simWithFaults({ ...extra, failNext: [{ kind: 'rateLimit' }] });

    const res = await fetch(job.status_url, { headers: headers() });

    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe(expected);
    expect(sim.stats().faults.rateLimit).toBe(1);
  });

  it('rateLimit can give Retry-After as an HTTP date', async () => {
    const { job } = await simWithFaults({ retryAfterFormat: 'http-date', retryAfterSeconds: 30, failNext: [{ kind: 'rateLimit' }] });

    const res = await fetch(job.status_url, { headers: headers() });

    const retryAfter = res.headers.get('retry-after') ?? '';
    expect(res.status).toBe(429);
    expect(retryAfter).toMatch(/GMT$/);
    const delta = Date.parse(retryAfter) - Date.now();
    expect(delta).toBeGreaterThan(25_000);
    expect(delta).toBeLessThanOrEqual(31_000);
  });

  it('reset drops the connection without an answer, and a reset POST creates nothing', async () => {
    const sim = await simulator();
    sim.setFaults({ failNext: [{ kind: 'reset', route: 'start' }] });

    await expect(post(sim, 'bot-1', { input_data: {} })).rejects.toThrow();

    await expect.poll(() => sim.stats().no_response).toBe(1);
    expect(sim.stats().faults.reset).toBe(1);
    expect(sim.stats().by_route.start).toBe(1); // fetch did not retry behind our back
    expect(sim.executions()).toHaveLength(0);
  });

  it('slow answers normally after slowMs', async () => {
    const { sim, job } = await simWithFaults({ slowMs: 150, failNext: [{ kind: 'slow' }] });

    const before = Date.now();
    const res = await fetch(job.status_url, { headers: headers() });

    expect(res.status).toBe(200);
    expect(Date.now() - before).toBeGreaterThanOrEqual(140);
    expect(sim.stats().faults.slow).toBe(1);
  });

  it('hang never answers until the client gives up, and a hung POST creates nothing', async () => {
    const sim = await simulator();
    sim.setFaults({ failNext: [{ kind: 'hang', route: 'start' }] });

    await expect(post(sim, 'bot-1', { input_data: {} }, { signal: AbortSignal.timeout(200) })).rejects.toThrow();

    expect(sim.stats().faults.hang).toBe(1);
    expect(sim.executions()).toHaveLength(0);
    await expect.poll(() => sim.stats().no_response).toBe(1);
  });

  it.each(['start', 'get', 'cancel'] as const)('malformedJson answers 200 with invalid JSON on %s and changes nothing', async (route) => {
    const { sim, job } = await simWithFaults({ failNext: [{ kind: 'malformedJson', route }] });
    const request =
      route === 'start'
        ? post(sim, 'bot-1', { input_data: {} })
        : fetch(job.status_url, { method: route === 'get' ? 'GET' : 'DELETE', headers: headers() });

    const res = await request;

    expect(res.status).toBe(200);
    const text = await res.text();
    expect(() => JSON.parse(text) as unknown).toThrow();
    expect(sim.stats().faults.malformedJson).toBe(1);
    expect(sim.executions()).toHaveLength(1);
    expect(sim.execution(job.execution_id)?.status).toBe('RUNNING');
  });

  it('malformedJson on the stream sends one truncated event and closes', async () => {
    const { job } = await simWithFaults({ failNext: [{ kind: 'malformedJson', route: 'stream' }] });

    const res = await fetch(job.stream_url, { headers: headers() });

    const text = await res.text();
    expect(text.startsWith('data: ')).toBe(true);
    expect(() => JSON.parse(text.slice('data: '.length)) as unknown).toThrow();
  });

  it('unknownStatus reports an unknown status in the answer only', async () => {
    const { sim, job } = await simWithFaults({ failNext: [{ kind: 'unknownStatus' }] });

    const faulted = await getStatus(sim, job.execution_id);
    const next = await getStatus(sim, job.execution_id);

    expect(faulted.status).toBe(200);
    expect(faulted.body.status).toBe('QUEUED_FOR_REVIEW');
    expect(faulted.body.execution_id).toBe(job.execution_id);
    expect(next.body.status).toBe('RUNNING');
    expect(sim.execution(job.execution_id)?.status).toBe('RUNNING');
    expect(sim.stats().faults.unknownStatus).toBe(1);
  });

  it('statusRegression answers RUNNING for a COMPLETED execution, without changing its state', async () => {
    // Prepare
    const sim = await simulator();
    const job = await startJob(sim, { queue_ms: 0, duration_ms: 20 });
    await waitForTerminal(sim, job.execution_id);
    sim.setFaults({ failNext: [{ kind: 'statusRegression' }] });

    // Act
    const stale = await getStatus(sim, job.execution_id);
    const fresh = await getStatus(sim, job.execution_id);

    // Assess
    expect(stale.body).toMatchObject({ status: 'RUNNING', completed_at: null, final_output: null });
    expect(fresh.body.status).toBe('COMPLETED');
    expect(sim.execution(job.execution_id)?.status).toBe('COMPLETED');
    expect(sim.stats().faults.statusRegression).toBe(1);
  });

  it('statusRegression answers PENDING for a RUNNING execution, and waits while nothing can regress', async () => {
    const sim = await simulator();
    const pending = await startJob(sim, { queue_ms: 10_000 });
    const runningJob = await startJob(sim, { queue_ms: 0, duration_ms: 10_000 });
    sim.setFaults({ failNext: [{ kind: 'statusRegression' }] });

    const pendingAnswer = await getStatus(sim, pending.execution_id);
    expect(sim.stats().faults.statusRegression).toBe(0);
    const runningAnswer = await getStatus(sim, runningJob.execution_id);

    expect(pendingAnswer.body.status).toBe('PENDING');
    expect(runningAnswer.body).toMatchObject({ status: 'PENDING', started_at: null });
    expect(sim.stats().faults.statusRegression).toBe(1);
  });

  it('acceptThenFail (error) creates the execution, then answers 500', async () => {
    const sim = await simulator();
    sim.setFaults({ failNext: [{ kind: 'acceptThenFail', mode: 'error' }] });

    const res = await post(sim, 'dup-bot', { input_data: {} });

    expect(res.status).toBe(500);
    expect(sim.executions()).toHaveLength(1);
    expect(sim.executions()[0]?.chatbot_id).toBe('dup-bot');
    expect(sim.stats()).toMatchObject({ executions_by_chatbot: { 'dup-bot': 1 }, starts_by_chatbot: { 'dup-bot': 1 } });
    expect(sim.stats().faults.acceptThenFail).toBe(1);
  });

  it('acceptThenFail (reset) creates the execution, then drops the connection', async () => {
    const sim = await simulator();
    sim.setFaults({ failNext: [{ kind: 'acceptThenFail', mode: 'reset' }] });

    await expect(post(sim, 'dup-bot', { input_data: {} })).rejects.toThrow();

    expect(sim.executions()).toHaveLength(1);
    expect(sim.stats().faults.acceptThenFail).toBe(1);
  });

  it('acceptThenFail does not strike an invalid POST and stays queued for the next valid one', async () => {
    const sim = await simulator();
    sim.setFaults({ failNext: [{ kind: 'acceptThenFail', mode: 'error' }] });

    const invalid = await post(sim, 'bot-1', undefined, { raw: '{' });
    const valid = await post(sim, 'bot-1', { input_data: {} });

    expect(invalid.status).toBe(422);
    expect(valid.status).toBe(500);
    expect(sim.stats().faults.acceptThenFail).toBe(1);
    expect(sim.executions()).toHaveLength(1);
  });

  it('takes scheduled faults in order, each only by its route', async () => {
    const { sim, job } = await simWithFaults({
      failNext: [
        { kind: 'error5xx', route: 'cancel', status: 502 },
        { kind: 'rateLimit', route: 'get' },
        { kind: 'error5xx', route: 'get', status: 500 },
      ],
    });

    const get1 = await fetch(job.status_url, { headers: headers() });
    const get2 = await fetch(job.status_url, { headers: headers() });
    const cancel = await fetch(job.cancel_url, { method: 'DELETE', headers: headers() });
    const get3 = await fetch(job.status_url, { headers: headers() });

    expect([get1.status, get2.status, cancel.status, get3.status]).toEqual([429, 500, 502, 200]);
    expect(sim.stats().faults_total).toBe(3);
  });

  it('never faults unauthorized requests', async () => {
    const { sim, job } = await simWithFaults({ error5xx: 1 });

    const res = await fetch(job.status_url, { headers: headers('wrong') });

    expect(res.status).toBe(401);
    expect(sim.stats().faults_total).toBe(0);
  });

  it.each([
    [{ error5xx: 1.5 }, 'faults.error5xx'],
    [{ failNext: [{ kind: 'unknownStatus', route: 'start' }] }, 'faults.failNext.0'],
    [{ failNext: [{ kind: 'teapot' }] }, 'faults.failNext.0.kind'],
    [{ routes: ['post'] }, 'faults.routes.0'],
  ])('setFaults refuses %o', async (settings, expected) => {
    const sim = await simulator();
    // Invalid on purpose: the settings arrive from untyped callers too.
    expect(() => sim.setFaults(settings as FaultSettings)).toThrow(expected);
  });
});

describe('fault injection, probabilistic', () => {
  async function statusSequence(seed: number, faults: FaultSettings, count: number): Promise<Array<number | 'reset'>> {
    const sim = await simulator({ seed, faults });
    const out: Array<number | 'reset'> = [];
    for (let i = 0; i < count; i += 1) {
      try {
        out.push((await fetch(`${sim.url}/v1/executions/exec_none`, { headers: headers() })).status);
      } catch {
        out.push('reset');
      }
    }
    return out;
  }

  it('gives the same fault sequence for the same seed, and another for another seed', async () => {
    const faults: FaultSettings = { error5xx: 0.3, rateLimit: 0.2, reset: 0.1 };

    const a = await statusSequence(99, faults, 40);
    const b = await statusSequence(99, faults, 40);
    const c = await statusSequence(100, faults, 40);

    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
    expect(a).toContain(404);
    expect(a).toContain(429);
    expect(a).toContain('reset');
    expect(a.some((s) => s === 500 || s === 502 || s === 503)).toBe(true);
  });

  it('strikes at about the configured rate and counts every fault', async () => {
    const sim = await simulator({ seed: 7, faults: { error5xx: 0.5 } });

    const statuses: number[] = [];
    for (let i = 0; i < 200; i += 1) statuses.push((await fetch(`${sim.url}/v1/executions/exec_none`, { headers: headers() })).status);

    const faulted = statuses.filter((s) => s >= 500).length;
    expect(faulted).toBeGreaterThan(70);
    expect(faulted).toBeLessThan(130);
    expect(sim.stats().faults.error5xx).toBe(faulted);
    expect(sim.stats().by_status[404]).toBe(200 - faulted);
    expect(new Set(statuses.filter((s) => s >= 500))).toEqual(new Set([500, 502, 503]));
  });

  it('limits faults to the configured routes', async () => {
    const sim = await simulator({ faults: { error5xx: 1, routes: ['get'], rateLimit: { probability: 1, routes: ['cancel'] } } });

    const start = await post(sim, 'bot-1', { input_data: {} });
    const { status_url } = (await start.json()) as StartBody;
    const get = await fetch(status_url, { headers: headers() });
    const cancel = await fetch(status_url, { method: 'DELETE', headers: headers() });

    expect(start.status).toBe(202);
    expect(get.status).toBeGreaterThanOrEqual(500);
    expect(cancel.status).toBe(429);
  });

  it('produces every fault kind from probabilities alone', async () => {
    // Prepare: one kind at a time, probability 1, on the route it applies to.
    const sim = await simulator({ defaults: { queue_ms: 0, duration_ms: 10_000 }, faults: { slowMs: 10 } });
    const job = await startJob(sim);
    const produced: string[] = [];
    for (const kind of FAULT_KINDS) {
      sim.setFaults({ [kind]: 1, slowMs: 10 });
      const signal = AbortSignal.timeout(300);
      try {
        if (kind === 'acceptThenFail') await post(sim, 'bot-1', { input_data: {} }, { signal });
        else if (kind === 'refuseCancel') await fetch(job.cancel_url, { method: 'DELETE', headers: headers(), signal });
        else await fetch(job.status_url, { headers: headers(), signal });
      } catch {
        // reset, hang and acceptThenFail-with-reset reject: expected.
      }
      produced.push(kind);
    }
    sim.setFaults({});

    // Assess
    for (const kind of FAULT_KINDS) expect(sim.stats().faults[kind], kind).toBe(1);
    expect(sim.stats().faults_total).toBe(FAULT_KINDS.length);
    expect(produced).toEqual([...FAULT_KINDS]);
  });
});

describe('stats', () => {
  it('counts requests by route, method and status, POSTs by chatbot, and resets', async () => {
    // Prepare
    const sim = await simulator();

    // Act
    const job = await startJob(sim, { duration_ms: 10_000 }, 'chatbot-x');
    await fetch(job.status_url, { headers: headers() });
    await fetch(job.status_url, { headers: headers() });
    await fetch(job.cancel_url, { method: 'DELETE', headers: headers() });
    await fetch(`${sim.url}/nope`, { headers: headers() });

    // Assess
    const stats = sim.stats();
    expect(stats.total_requests).toBe(5);
    expect(stats.by_route).toEqual({ start: 1, get: 2, cancel: 1, stream: 0, other: 1 });
    expect(stats.by_method).toEqual({ POST: 1, GET: 3, DELETE: 1 });
    expect(stats.by_status).toEqual({ 202: 1, 200: 3, 404: 1 });
    expect(stats.starts_by_chatbot).toEqual({ 'chatbot-x': 1 });
    expect(stats.executions_created).toBe(1);
    sim.resetStats();
    expect(sim.stats().total_requests).toBe(0);
    expect(sim.executions()).toHaveLength(1);
  });

  it('returns copies that later requests do not change', async () => {
    const sim = await simulator();
    const before = sim.stats();

    await startJob(sim);

    expect(before.total_requests).toBe(0);
    expect(sim.stats().total_requests).toBe(1);
  });

  it('logs one line per request without the API key', async () => {
    const lines: string[] = [];
    const sim = await simulator({ log: (line) => lines.push(line) });

    const job = await startJob(sim);
    await fetch(job.status_url, { headers: headers() });

    await expect.poll(() => lines.length).toBe(2);
    expect(lines[0]).toMatch(/^POST \/v1\/executions\/bot-1\/async -> 202 \d+ms$/);
    expect(lines.join('\n')).not.toContain(API_KEY);
  });
});

describe('scenario timeline (pure, no server)', () => {
  function execution(scenario: Partial<Scenario>): SimulatedExecution {
    const resolved = resolveScenario({}, { queue_ms: 100, duration_ms: 1000, nodes: 5, ...scenario });
    return new SimulatedExecution('exec_t', 'bot', {}, resolved, 0, { createdAt: 0, queueMs: 100, durationMs: 1000 }, {}, 1000);
  }
  const progressAt = (e: SimulatedExecution, t: number): number | null => e.bodyAt(t).progress;

  it('front_loaded progresses faster early than linear, back_loaded slower', () => {
    const front = execution({ progress: 'front_loaded' });
    const linear = execution({ progress: 'linear' });
    const back = execution({ progress: 'back_loaded' });

    const t = 100 + 450;
    expect(progressAt(front, t)).toBeGreaterThan(progressAt(linear, t) ?? 100);
    expect(progressAt(back, t)).toBeLessThan(progressAt(linear, t) ?? 0);
    for (const e of [front, linear, back]) expect(progressAt(e, 1100)).toBe(100);
  });

  it('stall keeps progress still for most of the run', () => {
    const stall = execution({ progress: 'stall' });

    const samples = [200, 400, 600, 800].map((t) => progressAt(stall, 100 + t));

    expect(new Set(samples).size).toBe(1);
    expect(samples[0]).toBe(40);
  });

  it('is a pure function of the clock', () => {
    const e = execution({});

    expect(e.bodyAt(50).status).toBe('PENDING');
    expect(e.bodyAt(100)).toMatchObject({ status: 'RUNNING', current_node: 'node-1', completed_nodes: 0 });
    expect(e.bodyAt(700)).toMatchObject({ status: 'RUNNING', current_node: 'node-4', completed_nodes: 3, progress: 60 });
    expect(e.bodyAt(1100)).toMatchObject({ status: 'COMPLETED', completed_at: '1970-01-01T00:00:01.100Z' });
    expect(e.bodyAt(700)).toEqual(e.bodyAt(700));
  });
});

describe('seeded random source', () => {
  it('mulberry32 repeats for a seed and stays in [0, 1)', () => {
    const a = mulberry32(5);
    const b = mulberry32(5);
    const xs = Array.from({ length: 100 }, () => a());

    expect(Array.from({ length: 100 }, () => b())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(xs).size).toBe(100);
  });
});

describe('incidents: outage windows', () => {
  /** One GET of an unknown execution: its status, or `reset` / `timeout` when no answer came. */
  async function attempt(
    sim: Simulator,
    route: 'get' | 'start' = 'get',
    key: string | null = API_KEY,
  ): Promise<number | 'reset' | 'timeout'> {
    try {
      const signal = AbortSignal.timeout(150);
      const res =
        route === 'get'
          ? await fetch(`${sim.url}/v1/executions/exec_none`, { headers: headers(key), signal })
          : await fetch(`${sim.url}/v1/executions/bot-1/async`, {
              method: 'POST',
              headers: headers(key),
              body: JSON.stringify({ input_data: {} }),
              signal,
            });
      return res.status;
    } catch (error) {
      return error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError') ? 'timeout' : 'reset';
    }
  }

  it('fails every request to its routes while it lasts (before the key check), then recovers', async () => {
    // Prepare: an outage of GETs from 100 ms to 400 ms
    const sim = await simulator({ faults: { outages: [{ startMs: 100, durationMs: 300, routes: ['get'] }] } });

    // Act
    const before = await attempt(sim);
    await sleep(150);
    const during = [await attempt(sim), await attempt(sim, 'get', 'wrong-key'), await attempt(sim, 'start')];
    await sleep(300);
    const after = await attempt(sim);

    // Assess: 404 (unknown id) outside the window; 503 inside, even without a valid key; POST unaffected
    expect(before).toBe(404);
    expect(during).toEqual([503, 503, 202]);
    expect(after).toBe(404);
    expect(sim.stats()).toMatchObject({
      outage_requests: 2,
      outage_by_answer: { error5xx: 2, reset: 0, hang: 0 },
      unauthorized: 0,
      faults_total: 0,
    });
    expect(sim.outages()).toHaveLength(1);
  });

  it('mixes 503, resets and timeouts as weighted, the same way for the same seed', async () => {
    const sequence = async (seed: number): Promise<Array<number | 'reset' | 'timeout'>> => {
      const sim = await simulator({ seed });
      sim.scheduleOutage({ durationMs: 60_000, answers: { error5xx: 2, reset: 1, hang: 1 } });
      const out: Array<number | 'reset' | 'timeout'> = [];
      for (let i = 0; i < 24; i += 1) out.push(await attempt(sim));
      return out;
    };

    const a = await sequence(5);
    const b = await sequence(5);

    expect(a).toEqual(b);
    expect(new Set(a)).toEqual(new Set([503, 'reset', 'timeout']));
  });

  it('does not shift the random faults: the same requests get the same faults with or without an outage of another route', async () => {
    const statuses = async (outage: boolean): Promise<number[]> => {
      const sim = await simulator({
        seed: 77,
        faults: {
          error5xx: 0.4,
          ...(outage ? { outages: [{ durationMs: 60_000, routes: ['cancel'], answers: { error5xx: 1, reset: 1 } }] } : {}),
        },
      });
      const out: number[] = [];
      for (let i = 0; i < 20; i += 1) {
        out.push((await fetch(`${sim.url}/v1/executions/exec_none`, { headers: headers() })).status);
        if (outage) await fetch(`${sim.url}/v1/executions/exec_none`, { method: 'DELETE', headers: headers() }).catch(() => undefined);
      }
      return out;
    };

    expect(await statuses(true)).toEqual(await statuses(false));
  });

  it('cuts open streams when it begins', async () => {
    // Prepare
    const sim = await simulator({ defaults: { queue_ms: 0, duration_ms: 10_000 } });
    const job = await startJob(sim);
    const res = await fetch(job.stream_url, { headers: headers() });
    expect(res.status).toBe(200);

    // Act
    sim.scheduleOutage({ startMs: 20, durationMs: 1_000, routes: ['stream'] });
    const outcome = await res.text().then(
      () => 'clean end',
      () => 'cut',
    );

    // Assess
    expect(outcome).toBe('cut');
    expect(await fetch(job.stream_url, { headers: headers() }).then((r) => r.status)).toBe(503);
  });

  it('refuses an invalid window', () => {
    return simulator().then((sim) => {
      expect(() => sim.scheduleOutage({ durationMs: -1 })).toThrow('durationMs');
      expect(() => sim.scheduleOutage({ durationMs: 1, answers: { error5xx: 0 } })).toThrow('positive weight');
    });
  });
});

describe('incidents: key rotation', () => {
  it('accepts the new key at once and refuses the old one (401) once revokeOldAfterMs has passed', async () => {
    // Prepare
    const sim = await simulator();
    const job = await startJob(sim, { queue_ms: 0, duration_ms: 10_000 });
    const statusWith = async (key: string): Promise<number> => (await fetch(job.status_url, { headers: headers(key) })).status;

    // Act
    sim.rotateApiKey('next-key', { revokeOldAfterMs: 150 });
    const inGrace = [await statusWith(API_KEY), await statusWith('next-key')];
    await sleep(200);
    const afterRevocation = [await statusWith(API_KEY), await statusWith('next-key'), await statusWith('never-valid')];

    // Assess
    expect(sim.apiKey).toBe('next-key');
    expect(inGrace).toEqual([200, 200]);
    expect(afterRevocation).toEqual([401, 200, 401]);
    expect(sim.stats()).toMatchObject({ unauthorized: 2, revoked_key: 1 });
  });

  it('accepts the keys of options.apiKeys besides apiKey, and revokes one key on request', async () => {
    const sim = await simulator({ apiKeys: ['second-key'] });
    const get = async (key: string): Promise<number> =>
      (await fetch(`${sim.url}/v1/executions/exec_none`, { headers: headers(key) })).status;

    expect([await get(API_KEY), await get('second-key')]).toEqual([404, 404]);
    sim.revokeApiKey('second-key');
    expect([await get(API_KEY), await get('second-key')]).toEqual([404, 401]);
    sim.acceptApiKey('second-key');
    expect(await get('second-key')).toBe(404);
  });
});

describe('cancels: refused, and the answer for finished executions', () => {
  it('refuseCancel answers 200 cancelled:false with the real previous_status and cancels nothing', async () => {
    // Prepare
    const sim = await simulator();
    const job = await startJob(sim, { queue_ms: 0, duration_ms: 10_000 });
    await sleep(10);
    sim.setFaults({ failNext: [{ kind: 'refuseCancel' }] });

    // Act
    const refused = await fetch(job.cancel_url, { method: 'DELETE', headers: headers() });
    const refusedBody = (await refused.json()) as Record<string, unknown>;
    const statusAfterRefusal = (await getStatus(sim, job.execution_id)).body.status;
    const accepted = await fetch(job.cancel_url, { method: 'DELETE', headers: headers() });

    // Assess
    expect(refused.status).toBe(200);
    expect(refusedBody).toMatchObject({ execution_id: job.execution_id, cancelled: false, previous_status: 'RUNNING' });
    expect(statusAfterRefusal).toBe('RUNNING');
    expect(accepted.status).toBe(200);
    expect(((await accepted.json()) as { cancelled: boolean }).cancelled).toBe(true);
    expect(sim.stats().faults.refuseCancel).toBe(1);
  });

  it('refuseCancel does not strike a DELETE of a finished execution (it stays queued)', async () => {
    const sim = await simulator();
    const job = await startJob(sim, { queue_ms: 0, duration_ms: 5 });
    await waitForTerminal(sim, job.execution_id);
    sim.setFaults({ failNext: [{ kind: 'refuseCancel' }] });

    const res = await fetch(job.cancel_url, { method: 'DELETE', headers: headers() });

    expect(res.status).toBe(409);
    expect(sim.stats().faults.refuseCancel).toBe(0);
  });

  it.each([
    [409, { execution_id: expect.any(String) as unknown, cancelled: false, previous_status: 'COMPLETED' }],
    [400, { detail: expect.stringContaining('cannot be cancelled') as unknown }],
    [404, { detail: expect.any(String) as unknown }],
    [200, { execution_id: expect.any(String) as unknown, cancelled: false, previous_status: 'COMPLETED' }],
  ] as const)('finishedCancelAnswer %i: a DELETE of a COMPLETED execution gets that answer, and nothing changes', async (answer, body) => {
    // Prepare
    const sim = await simulator({ faults: { finishedCancelAnswer: answer } });
    const job = await startJob(sim, { queue_ms: 0, duration_ms: 5 });
    await waitForTerminal(sim, job.execution_id);

    // Act
    const res = await fetch(job.cancel_url, { method: 'DELETE', headers: headers() });

    // Assess
    expect(res.status).toBe(answer);
    expect(await res.json()).toMatchObject(body);
    expect((await getStatus(sim, job.execution_id)).body.status).toBe('COMPLETED');
    expect(sim.stats().finished_cancel_answers).toEqual({ [answer]: 1 });
  });

  it('a list of finished-cancel answers is drawn from per request, reproducibly', async () => {
    const answers = async (seed: number): Promise<number[]> => {
      const sim = await simulator({ seed, faults: { finishedCancelAnswer: [409, 400, 404, 200] } });
      const job = await startJob(sim, { queue_ms: 0, duration_ms: 5 });
      await waitForTerminal(sim, job.execution_id);
      const out: number[] = [];
      for (let i = 0; i < 24; i += 1) out.push((await fetch(job.cancel_url, { method: 'DELETE', headers: headers() })).status);
      return out;
    };

    const a = await answers(3);

    expect(a).toEqual(await answers(3));
    expect(new Set(a)).toEqual(new Set([409, 400, 404, 200]));
  });
});

describe('start_acknowledged', () => {
  it('is true when the POST answered 202 with the id, false for the crash window', async () => {
    const sim = await simulator();
    const acknowledged = await startJob(sim, {}, 'ack-bot');
    sim.setFaults({ failNext: [{ kind: 'acceptThenFail', mode: 'error' }] });
    const lost = await post(sim, 'lost-bot', { input_data: {} });

    expect(lost.status).toBe(500);
    expect(sim.execution(acknowledged.execution_id)?.start_acknowledged).toBe(true);
    expect(sim.executions().find((execution) => execution.chatbot_id === 'lost-bot')?.start_acknowledged).toBe(false);
  });
});

describe('CLI arguments', () => {
  it('maps flags to simulator options', () => {
    const parsed = parseSimulatorArgs(
      [
        '--port',
        '0',
        '--seed',
        '3',
        '--time-scale',
        '0.5',
        '--fault-5xx',
        '0.2',
        '--fault-429',
        '0.1',
        '--fault-reset',
        '0.05',
        '--fault-routes',
        'get,stream',
        '--outcome',
        'failed',
        '--retry-after-format',
        'http-date',
      ],
      {},
    );

    expect(parsed).toMatchObject({
      help: false,
      options: {
        port: 0,
        seed: 3,
        timeScale: 0.5,
        apiKey: 'local-dev-key',
        defaults: { outcome: 'failed' },
        faults: { error5xx: 0.2, rateLimit: 0.1, reset: 0.05, routes: ['get', 'stream'], retryAfterFormat: 'http-date' },
      },
    });
  });

  it('maps the incident flags: refused cancels, an outage window, finished-cancel answers', () => {
    const parsed = parseSimulatorArgs(
      [
        '--fault-refuse-cancel',
        '0.3',
        '--outage-at',
        '1000',
        '--outage-for',
        '120000',
        '--outage-routes',
        'get,cancel',
        '--outage-answers',
        'error5xx,hang',
        '--finished-cancel',
        '409,404',
      ],
      {},
    );

    expect(parsed).toMatchObject({
      help: false,
      options: {
        faults: {
          refuseCancel: 0.3,
          outages: [{ startMs: 1000, durationMs: 120_000, routes: ['get', 'cancel'], answers: { error5xx: 1, hang: 1 } }],
          finishedCancelAnswer: [409, 404],
        },
      },
    });
    expect(parseSimulatorArgs(['--finished-cancel', '400'], {})).toMatchObject({ options: { faults: { finishedCancelAnswer: 400 } } });
  });

  it('defaults to port 8787 and the WATERFLAI_API_KEY environment variable', () => {
    const parsed = parseSimulatorArgs([], { WATERFLAI_API_KEY: 'from-env' });

    expect(parsed).toMatchObject({ help: false, options: { port: 8787, apiKey: 'from-env' } });
  });

  it.each([
    [['--fault-5xx', '2'], '--fault-5xx'],
    [['--port', 'abc'], '--port'],
    [['--outcome', 'boom'], '--outcome'],
    [['--fault-routes', 'get,post'], '--fault-routes'],
    [['--nope'], 'nope'],
    [['--outage-at', '5'], '--outage-for'],
    [['--outage-for', '5', '--outage-answers', 'boom'], '--outage-answers'],
    [['--finished-cancel', '418'], '--finished-cancel'],
  ])('refuses %o', (argv, expected) => {
    expect(() => parseSimulatorArgs(argv, {})).toThrow(expected);
  });

  it('recognises --help', () => {
    expect(parseSimulatorArgs(['--help'], {})).toEqual({ help: true });
  });
});

describe('cleanup after retention_ms', () => {
  it('answers 404 for a finished execution once its cleanup_after has passed, and not before', async () => {
    // Prepare
    const sim = await startSimulator({ timeScale: 1 });
    try {
      const headers = { 'x-api-key': sim.apiKey, 'content-type': 'application/json' };
      const started = await fetch(`${sim.url}/v1/executions/bot/async`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ input_data: { simulate: { duration_ms: 20, queue_ms: 0, nodes: 1, retention_ms: 150 } } }),
      });
      const { execution_id: id } = (await started.json()) as { execution_id: string };
      await new Promise((resolve) => setTimeout(resolve, 60));

      // Act
      const whileKept = await fetch(`${sim.url}/v1/executions/${id}`, { headers });
      const body = (await whileKept.json()) as { status: string; cleanup_after: string };
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(body.cleanup_after) - Date.now()) + 30));
      const afterCleanup = await fetch(`${sim.url}/v1/executions/${id}`, { headers });

      // Assess
      expect(whileKept.status).toBe(200);
      expect(body.status).toBe('COMPLETED');
      expect(afterCleanup.status).toBe(404);
    } finally {
      await sim.close();
    }
  });
});
