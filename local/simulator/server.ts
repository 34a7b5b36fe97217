/**
 * A local Waterflai server implementing the asynchronous execution API (see
 * `/work/shared/waterflai-async-api.txt` and `README.md` beside this file), with
 * scenario control per job and seeded fault injection.
 *
 * @example
 * const sim = await startSimulator({ timeScale: 0.1, seed: 42 });
 * const res = await fetch(`${sim.url}/v1/executions/my-bot/async`, {
 *   method: 'POST',
 *   headers: { 'X-API-Key': sim.apiKey, 'Content-Type': 'application/json' },
 *   body: JSON.stringify({ input_data: { query: 'hi', simulate: { outcome: 'failed' } } }),
 * });
 * await sim.close();
 */
import { createHash, randomInt, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WATERFLAI_STATUS } from '../../lambdas/shared/constants';
import { FAULT_KINDS, FaultInjector, type FaultDecision, type FaultKind, type FaultSettings, type RouteName } from './faults';
import { deriveSeed, mulberry32, randomHex } from './prng';
import {
  buildFinalOutput,
  nodeName,
  parseScenario,
  resolveScenario,
  ScenarioValidationError,
  SimulatedExecution,
  type ExecutionStatusBody,
  type Scenario,
  type SimulatedExecutionView,
  type TimelineEvent,
} from './scenario';

export type {
  ExecutionStatusBody,
  ProgressShape,
  Scenario,
  ScenarioOutcome,
  SimulatedExecutionView,
  CancelledBy,
} from './scenario';
export { DEFAULT_SCENARIO } from './scenario';
export type { FaultDecision, FaultKind, FaultRate, FaultSettings, RouteName, ScheduledFault } from './faults';
export { FAULT_KINDS, FAULT_ROUTES, ROUTE_NAMES } from './faults';

/** The API key the simulator accepts unless told otherwise. */
export const DEFAULT_SIMULATOR_API_KEY = 'local-dev-key';
/** The only interface the simulator ever listens on. */
export const SIMULATOR_HOST = '127.0.0.1';

export interface SimulatorOptions {
  /** TCP port. @default 0 (an ephemeral port; read `Simulator.url`) */
  port?: number;
  /** The `X-API-Key` every request must carry (401 otherwise). @default 'local-dev-key' */
  apiKey?: string;
  /** Seed of every random choice (faults, ids). @default a random seed, see `Simulator.seed` */
  seed?: number;
  /** Multiplies every scenario duration (0.1 runs 10x faster). @default 1 */
  timeScale?: number;
  /** Scenario of jobs that do not choose (or only partly choose) one. @default DEFAULT_SCENARIO */
  defaults?: Partial<Scenario>;
  /** Fault injection. @default none */
  faults?: FaultSettings;
  /** One line per request (method, path, status, duration, fault). Never the key or bodies. @default silent */
  log?: (line: string) => void;
  /** Chatbot ids that exist; POSTs to others get 404. @default any chatbot id exists */
  knownChatbots?: readonly string[];
  /** `cleanup_after` = `completed_at` (or `created_at` while unfinished) + this. @default 24 h */
  retentionMs?: number;
  /** Interval of SSE comment lines (`: keep-alive`) on open streams; 0 disables. @default 15000 */
  sseHeartbeatMs?: number;
  /** Largest accepted request body (413 above). @default 5 MiB */
  maxBodyBytes?: number;
}

/** Request counters. Every field is a plain copy: safe to keep and compare. */
export interface SimulatorStats {
  /** Every request received (any path, any method, faulted or not). */
  total_requests: number;
  /** Requests matching a route and method; `other` = unknown path (404) or wrong method (405). */
  by_route: Record<RouteName | 'other', number>;
  /** Requests by HTTP method, e.g. `{ GET: 3, POST: 1 }`. */
  by_method: Record<string, number>;
  /** Answers by HTTP status code, e.g. `{ 202: 1, 200: 3 }` (counted when the head is sent). */
  by_status: Record<number, number>;
  /** Requests closed without any answer (`reset`, `hang`, client gone during `slow`). */
  no_response: number;
  /** 401 answers (missing or wrong `X-API-Key`). */
  unauthorized: number;
  /** Faults that really struck, by kind. */
  faults: Record<FaultKind, number>;
  faults_total: number;
  /** POST requests to `/v1/executions/{chatbot_id}/async` by chatbot id, whatever their answer. */
  starts_by_chatbot: Record<string, number>;
  /** Executions created (accepted), by chatbot id. */
  executions_by_chatbot: Record<string, number>;
  executions_created: number;
  /** SSE streams currently open. */
  open_streams: number;
}

export interface Simulator {
  /** Base URL, e.g. `http://127.0.0.1:8787` (no trailing slash). */
  readonly url: string;
  readonly apiKey: string;
  /** The seed in use (given or drawn), to reproduce a run. */
  readonly seed: number;
  /** The bound address; always 127.0.0.1. */
  readonly address: AddressInfo;
  stats(): SimulatorStats;
  /** Zeroes every counter (executions are kept). */
  resetStats(): void;
  execution(id: string): SimulatedExecutionView | undefined;
  /** Every execution, oldest first. */
  executions(): SimulatedExecutionView[];
  /** Replaces the fault settings (and the `failNext` queue). @throws on invalid settings */
  setFaults(faults: FaultSettings): void;
  /** Cancels as someone else would (status becomes CANCELLED). False if unknown or already finished. */
  cancelRemotely(id: string): boolean;
  close(): Promise<void>;
}

type RouteMatch =
  | { kind: 'route'; route: RouteName; param: string }
  | { kind: 'wrong_method'; allow: string }
  | { kind: 'not_found' };

const EXECUTIONS_PREFIX = '/v1/executions/';

function matchRoute(method: string, pathname: string): RouteMatch {
  if (!pathname.startsWith(EXECUTIONS_PREFIX)) return { kind: 'not_found' };
  const segments = pathname.slice(EXECUTIONS_PREFIX.length).split('/');
  let decoded: string[];
  try {
    decoded = segments.map((s) => decodeURIComponent(s));
  } catch {
    return { kind: 'not_found' };
  }
  const [first, second, ...rest] = decoded;
  if (first === undefined || first === '' || rest.length > 0) return { kind: 'not_found' };
  if (second === undefined) {
    if (method === 'GET') return { kind: 'route', route: 'get', param: first };
    if (method === 'DELETE') return { kind: 'route', route: 'cancel', param: first };
    return { kind: 'wrong_method', allow: 'GET, DELETE' };
  }
  if (second === 'async') {
    return method === 'POST' ? { kind: 'route', route: 'start', param: first } : { kind: 'wrong_method', allow: 'POST' };
  }
  if (second === 'stream') {
    return method === 'GET' ? { kind: 'route', route: 'stream', param: first } : { kind: 'wrong_method', allow: 'GET' };
  }
  return { kind: 'not_found' };
}

function emptyStats(): SimulatorStats {
  return {
    total_requests: 0,
    by_route: { start: 0, get: 0, cancel: 0, stream: 0, other: 0 },
    by_method: {},
    by_status: {},
    no_response: 0,
    unauthorized: 0,
    faults: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
    faults_total: 0,
    starts_by_chatbot: {},
    executions_by_chatbot: {},
    executions_created: 0,
    open_streams: 0,
  };
}

function increment(record: Record<string | number, number>, key: string | number): void {
  record[key] = (record[key] ?? 0) + 1;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Truncated JSON bodies served by the `malformedJson` fault. */
function malformedBody(route: RouteName, param: string): string {
  switch (route) {
    case 'start':
      return '{"execution_id": "exec_';
    case 'get':
      return `{"execution_id": ${JSON.stringify(param)}, "status": "RUNN`;
    case 'cancel':
      return `{"execution_id": ${JSON.stringify(param)}, "cancelled": tr`;
    case 'stream':
      return 'data: {"type": "progress_update", "progress": 5\n\n';
  }
}

/** Starts a simulator on 127.0.0.1. Resolves once it listens. */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const apiKey = options.apiKey ?? DEFAULT_SIMULATOR_API_KEY;
  if (apiKey === '') throw new Error('apiKey must not be empty');
  const timeScale = options.timeScale ?? 1;
  if (!Number.isFinite(timeScale) || timeScale < 0) throw new Error(`timeScale must be a finite number >= 0, got ${timeScale}`);
  const seed = (options.seed ?? randomInt(0, 2 ** 32)) >>> 0;
  const defaults = options.defaults === undefined ? {} : parseScenario(options.defaults, 'defaults');
  const retentionMs = options.retentionMs ?? 24 * 3600 * 1000;
  const heartbeatMs = options.sseHeartbeatMs ?? 15_000;
  const maxBodyBytes = options.maxBodyBytes ?? 5 * 1024 * 1024;
  const knownChatbots = options.knownChatbots === undefined ? undefined : new Set(options.knownChatbots);
  const log = options.log ?? (() => undefined);
  const expectedKey = digest(apiKey);

  let stats = emptyStats();
  const executions = new Map<string, SimulatedExecution>();
  const idRandom = mulberry32(deriveSeed(seed, 'ids'));
  const faults = new FaultInjector(
    mulberry32(deriveSeed(seed, 'faults')),
    (kind) => {
      stats.faults[kind] += 1;
      stats.faults_total += 1;
    },
    options.faults,
  );
  const timers = new Set<NodeJS.Timeout>();
  const streamClosers = new Set<() => void>();
  let closing = false;
  let baseUrl = '';

  const now = (): number => Date.now();

  function newExecutionId(): string {
    for (;;) {
      const id = `exec_${randomHex(idRandom, 24)}`;
      if (!executions.has(id)) return id;
    }
  }

  function later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, Math.min(Math.max(0, ms), 2 ** 31 - 1));
    timers.add(timer);
  }

  function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(body);
    increment(stats.by_status, status);
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': String(Buffer.byteLength(text)),
      ...headers,
    });
    res.end(text);
  }

  function sendRaw(res: ServerResponse, status: number, contentType: string, text: string): void {
    if (res.headersSent || res.destroyed) return;
    increment(stats.by_status, status);
    res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(Buffer.byteLength(text)) });
    res.end(text);
  }

  function readBody(req: IncomingMessage): Promise<Buffer | 'too_large' | 'aborted'> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooLarge = false;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBodyBytes) tooLarge = true;
        else chunks.push(chunk);
      });
      req.on('end', () => resolve(tooLarge ? 'too_large' : Buffer.concat(chunks)));
      req.on('error', () => resolve('aborted'));
      req.on('close', () => {
        if (!req.complete) resolve('aborted');
      });
    });
  }

  /** Applies a fault that strikes before processing. Returns true when the request is done. */
  function applyEarlyFault(fault: FaultDecision, route: RouteName, param: string, req: IncomingMessage, res: ServerResponse): boolean {
    switch (fault.kind) {
      case 'error5xx': {
        fault.commit();
        const status = fault.status ?? 500;
        sendJson(res, status, { detail: `Simulated server error (${status})` });
        return true;
      }
      case 'rateLimit': {
        fault.commit();
        const seconds = faults.retryAfterSeconds();
        const retryAfter =
          faults.retryAfterFormat() === 'http-date' ? new Date(now() + seconds * 1000).toUTCString() : String(seconds);
        sendJson(res, 429, { detail: 'Rate limit exceeded' }, { 'Retry-After': retryAfter });
        return true;
      }
      case 'reset':
        fault.commit();
        req.socket.destroy();
        return true;
      case 'hang':
        fault.commit();
        // Never answered: the client gives up, or close() destroys the connection.
        return true;
      case 'malformedJson':
        fault.commit();
        sendRaw(res, 200, route === 'stream' ? 'text/event-stream' : 'application/json', malformedBody(route, param));
        return true;
      case 'slow':
      case 'unknownStatus':
      case 'statusRegression':
      case 'acceptThenFail':
        return false;
    }
  }

  async function handleStart(chatbotId: string, fault: FaultDecision | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (knownChatbots !== undefined && !knownChatbots.has(chatbotId)) {
      sendJson(res, 404, { detail: `Chatbot ${JSON.stringify(chatbotId)} not found` });
      return;
    }
    const body = await readBody(req);
    if (body === 'aborted') return;
    if (body === 'too_large') {
      sendJson(res, 413, { detail: `Request body larger than ${maxBodyBytes} bytes` }, { Connection: 'close' });
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      sendJson(res, 422, { detail: 'Request body is not valid JSON' });
      return;
    }
    if (!isPlainObject(parsed) || !isPlainObject(parsed['input_data'])) {
      sendJson(res, 422, { detail: 'input_data is required and must be a JSON object' });
      return;
    }
    const inputData = parsed['input_data'];
    let scenario: Scenario;
    try {
      const own = inputData['simulate'] === undefined ? {} : parseScenario(inputData['simulate'], 'input_data.simulate');
      scenario = resolveScenario(defaults, own);
    } catch (error) {
      if (error instanceof ScenarioValidationError) {
        sendJson(res, 422, { detail: error.message });
        return;
      }
      throw error;
    }
    const id = newExecutionId();
    const createdAt = now();
    const execution = new SimulatedExecution(
      id,
      chatbotId,
      inputData,
      scenario,
      createdAt,
      {
        createdAt,
        queueMs: scenario.queue_ms * timeScale,
        durationMs: scenario.duration_ms * timeScale,
        ...(scenario.cancel_after_ms === undefined ? {} : { cancelAfterMs: scenario.cancel_after_ms * timeScale }),
      },
      buildFinalOutput(scenario, id, chatbotId),
      scenario.retention_ms === undefined ? retentionMs : scenario.retention_ms * timeScale,
    );
    executions.set(id, execution);
    stats.executions_created += 1;
    increment(stats.executions_by_chatbot, chatbotId);

    if (fault?.kind === 'acceptThenFail') {
      fault.commit();
      if (fault.mode === 'reset') req.socket.destroy();
      else sendJson(res, fault.status ?? 500, { detail: 'Internal Server Error' });
      return;
    }
    const statusUrl = `${baseUrl}/v1/executions/${encodeURIComponent(id)}`;
    sendJson(res, 202, {
      execution_id: id,
      status_url: statusUrl,
      stream_url: `${statusUrl}/stream`,
      cancel_url: statusUrl,
    });
  }

  function handleGet(execution: SimulatedExecution, fault: FaultDecision | undefined, res: ServerResponse): void {
    const t = now();
    let body: ExecutionStatusBody = execution.bodyAt(t);
    if (fault?.kind === 'unknownStatus') {
      fault.commit();
      // The wire value is deliberately outside WaterflaiStatus: that is the point of the fault.
      body = { ...body, status: faults.unknownStatusValue() as ExecutionStatusBody['status'] };
    } else if (fault?.kind === 'statusRegression') {
      const stale = execution.staleBodyAt(t);
      if (stale !== undefined) {
        fault.commit();
        body = stale;
      }
    }
    sendJson(res, 200, body);
  }

  function handleCancel(execution: SimulatedExecution, res: ServerResponse): void {
    const { cancelled, previousStatus } = execution.cancel(now(), 'api');
    if (cancelled) {
      sendJson(res, 200, {
        execution_id: execution.id,
        cancelled: true,
        message: `Execution ${execution.id} cancelled`,
        previous_status: previousStatus,
      });
      return;
    }
    sendJson(res, 409, {
      execution_id: execution.id,
      cancelled: false,
      message: `Execution ${execution.id} is ${previousStatus} and cannot be cancelled`,
      previous_status: previousStatus,
    });
  }

  function eventPayload(execution: SimulatedExecution, event: TimelineEvent): Record<string, unknown> {
    const reportsProgress = execution.scenario.progress !== 'none';
    const total = reportsProgress ? execution.scenario.nodes : null;
    const base = { execution_id: execution.id, timestamp: new Date(Math.floor(event.at)).toISOString() };
    switch (event.type) {
      case 'node_started':
        return { type: 'node_started', ...base, node_id: nodeName(event.node), total_nodes: total };
      case 'node_completed':
        return {
          type: 'node_completed',
          ...base,
          node_id: nodeName(event.node),
          completed_nodes: reportsProgress ? event.completed : null,
          total_nodes: total,
        };
      case 'progress_update':
        return {
          type: 'progress_update',
          ...base,
          status: WATERFLAI_STATUS.RUNNING,
          progress: Math.round((event.completed / execution.scenario.nodes) * 10_000) / 100,
          completed_nodes: event.completed,
          total_nodes: total,
        };
    }
  }

  function completedPayload(execution: SimulatedExecution, t: number): Record<string, unknown> {
    const body = execution.bodyAt(t);
    return {
      type: 'execution_completed',
      execution_id: execution.id,
      timestamp: body.completed_at,
      status: body.status,
      progress: body.progress,
      completed_nodes: body.completed_nodes,
      total_nodes: body.total_nodes,
      final_output: body.final_output,
      error_message: body.error_message,
      completed_at: body.completed_at,
    };
  }

  function handleStream(execution: SimulatedExecution, res: ServerResponse): void {
    increment(stats.by_status, 200);
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    stats.open_streams += 1;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    let heartbeat: NodeJS.Timeout | undefined;
    const send = (payload: Record<string, unknown>): void => {
      res.write(`data: ${JSON.stringify(payload)}\n\n`);
    };
    const finish = (): void => {
      if (done) return;
      done = true;
      stats.open_streams -= 1;
      if (timer !== undefined) clearTimeout(timer);
      if (heartbeat !== undefined) clearInterval(heartbeat);
      unsubscribe();
      streamClosers.delete(finish);
      if (!res.writableEnded) res.end();
    };
    let cursor = now();
    const schedule = (t: number): void => {
      const next = execution.nextChangeAfter(t);
      if (next === undefined) return;
      if (timer !== undefined) clearTimeout(timer);
      // +1: wake just after the event's millisecond, Date.now() may lag a timer by a fraction.
      timer = setTimeout(pump, Math.min(Math.max(1, Math.ceil(next - t) + 1), 2 ** 31 - 1));
    };
    function pump(): void {
      if (done) return;
      const t = now();
      for (const event of execution.effectiveEvents()) {
        if (event.at > cursor && event.at <= t) send(eventPayload(execution, event));
      }
      cursor = t;
      if (execution.isTerminalAt(t)) {
        send(completedPayload(execution, t));
        finish();
        return;
      }
      schedule(t);
    }
    const unsubscribe = execution.subscribe(pump);
    streamClosers.add(finish);
    // Not req.on('close'): since Node 16 it fires once the request is read, not on disconnect.
    res.on('close', finish);

    if (execution.isTerminalAt(cursor)) {
      send(completedPayload(execution, cursor));
      finish();
      return;
    }
    const body = execution.bodyAt(cursor);
    send({
      type: 'progress_update',
      execution_id: execution.id,
      timestamp: new Date(cursor).toISOString(),
      status: body.status,
      progress: body.progress,
      completed_nodes: body.completed_nodes,
      total_nodes: body.total_nodes,
      current_node: body.current_node,
    });
    if (heartbeatMs > 0) heartbeat = setInterval(() => res.write(': keep-alive\n\n'), heartbeatMs);
    schedule(cursor);
  }

  function isAuthorized(req: IncomingMessage): boolean {
    const given = req.headers['x-api-key'];
    if (typeof given !== 'string' || given === '') return false;
    return timingSafeEqual(digest(given), expectedKey);
  }

  async function dispatch(route: RouteName, param: string, fault: FaultDecision | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (route === 'start') {
      await handleStart(param, fault, req, res);
      return;
    }
    const execution = executions.get(param);
    if (execution === undefined || execution.isCleanedUpAt(now())) {
      sendJson(res, 404, { detail: `Execution ${JSON.stringify(param)} not found` });
      return;
    }
    if (route === 'get') handleGet(execution, fault, res);
    else if (route === 'cancel') handleCancel(execution, res);
    else handleStream(execution, res);
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const receivedAt = now();
    const method = req.method ?? 'GET';
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    stats.total_requests += 1;
    increment(stats.by_method, method);
    let faultNote = '';
    res.on('close', () => {
      if (!res.headersSent) stats.no_response += 1;
      const outcome = res.headersSent ? String(res.statusCode) : 'no response';
      log(`${method} ${pathname} -> ${outcome} ${now() - receivedAt}ms${faultNote}`);
    });

    const match = matchRoute(method, pathname);
    if (match.kind === 'not_found') {
      stats.by_route.other += 1;
      sendJson(res, 404, { detail: 'Not Found' });
      return;
    }
    if (match.kind === 'wrong_method') {
      stats.by_route.other += 1;
      sendJson(res, 405, { detail: 'Method Not Allowed' }, { Allow: match.allow });
      return;
    }
    const { route, param } = match;
    stats.by_route[route] += 1;
    if (route === 'start') increment(stats.starts_by_chatbot, param);
    if (!isAuthorized(req)) {
      stats.unauthorized += 1;
      sendJson(res, 401, { detail: 'Missing or invalid X-API-Key' });
      return;
    }
    const fault = faults.decide(route);
    if (fault !== undefined) faultNote = ` fault=${fault.kind}`;
    const run = (): void => {
      dispatch(route, param, fault, req, res).catch((error: unknown) => {
        log(`internal error: ${error instanceof Error ? error.message : String(error)}`);
        sendJson(res, 500, { detail: 'Simulator internal error' });
      });
    };
    if (fault !== undefined && applyEarlyFault(fault, route, param, req, res)) return;
    if (fault?.kind === 'slow') {
      fault.commit();
      later(faults.slowMs(), () => {
        // A client that gave up during the delay gets nothing, and nothing is processed.
        if (!closing && !res.destroyed && !req.socket.destroyed) run();
      });
      return;
    }
    run();
  }

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, SIMULATOR_HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo; // listen() on a TCP port always yields AddressInfo
  baseUrl = `http://${SIMULATOR_HOST}:${address.port}`;

  // A deep copy: callers may mutate what they get without touching the simulator's state.
  const view = (execution: SimulatedExecution): SimulatedExecutionView => structuredClone(execution.viewAt(now()));

  return {
    url: baseUrl,
    apiKey,
    seed,
    address: { ...address },
    stats: () => structuredClone(stats),
    resetStats: () => {
      const openStreams = stats.open_streams;
      stats = emptyStats();
      stats.open_streams = openStreams;
    },
    execution: (id) => {
      const execution = executions.get(id);
      return execution === undefined ? undefined : view(execution);
    },
    executions: () => [...executions.values()].map(view),
    setFaults: (settings) => faults.set(settings),
    cancelRemotely: (id) => executions.get(id)?.cancel(now(), 'remote').cancelled ?? false,
    close: async () => {
      if (closing) return;
      closing = true;
      for (const finish of [...streamClosers]) finish();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
