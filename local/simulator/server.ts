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
import { WATERFLAI_STATUS } from '../../lambdas/contract/constants';
import {
  FAULT_KINDS,
  FaultInjector,
  OUTAGE_ANSWERS,
  type FaultDecision,
  type FaultKind,
  type FaultSettings,
  type FinishedCancelAnswer,
  type OutageAnswer,
  type OutageWindow,
  type RouteName,
  type ScheduledOutage,
} from './faults';
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
export type {
  FaultDecision,
  FaultKind,
  FaultRate,
  FaultSettings,
  FinishedCancelAnswer,
  OutageAnswer,
  OutageWindow,
  RouteName,
  ScheduledFault,
  ScheduledOutage,
} from './faults';
export { FAULT_KINDS, FAULT_ROUTES, FINISHED_CANCEL_ANSWERS, OUTAGE_ANSWERS, ROUTE_NAMES } from './faults';

/** The API key the simulator accepts unless told otherwise. */
export const DEFAULT_SIMULATOR_API_KEY = 'local-dev-key';
/** The only interface the simulator ever listens on. */
export const SIMULATOR_HOST = '127.0.0.1';

export interface SimulatorOptions {
  /** TCP port. @default 0 (an ephemeral port; read `Simulator.url`) */
  port?: number;
  /** The `X-API-Key` every request must carry (401 otherwise). @default 'local-dev-key' */
  apiKey?: string;
  /** More keys accepted besides `apiKey` (e.g. the next key of a rotation). @default none */
  apiKeys?: readonly string[];
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
  /** 401 answers (missing or wrong `X-API-Key`, revoked keys included). */
  unauthorized: number;
  /** Of those, 401 answers to a key that was accepted before and has been revoked (a rotation). */
  revoked_key: number;
  /** Requests failed by an outage window. */
  outage_requests: number;
  /** The same, by how they failed. */
  outage_by_answer: Record<OutageAnswer, number>;
  /** DELETEs of finished executions, by the answer given (`409`, `400`, `404`, `200`). */
  finished_cancel_answers: Record<string, number>;
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
  /** The current key (the newest one accepted; `rotateApiKey` changes it). */
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
  /**
   * Adds an outage window beginning `window.startMs` (default 0) after now: every request to
   * its routes fails until it ends (kept until the next `setFaults`). Open streams on
   * affected routes are cut when it begins. @throws on an invalid window
   */
  scheduleOutage(window: OutageWindow): ScheduledOutage;
  /** Every outage window so far (absolute epoch ms). */
  outages(): readonly ScheduledOutage[];
  /** Accepts one more API key and makes it the current one (`apiKey`). */
  acceptApiKey(key: string): void;
  /** Refuses a key from now on: requests carrying it get 401 (counted in `revoked_key`). */
  revokeApiKey(key: string): void;
  /**
   * A key rotation: accepts `newKey` at once (the current key from now on), and refuses every
   * other key `revokeOldAfterMs` later (real ms; default 0 = at once).
   */
  rotateApiKey(newKey: string, options?: { revokeOldAfterMs?: number }): void;
  close(): Promise<void>;
}

type RouteMatch = { kind: 'route'; route: RouteName; param: string } | { kind: 'wrong_method'; allow: string } | { kind: 'not_found' };

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
    revoked_key: 0,
    outage_requests: 0,
    outage_by_answer: Object.fromEntries(OUTAGE_ANSWERS.map((answer) => [answer, 0])) as Record<OutageAnswer, number>,
    finished_cancel_answers: {},
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
  if ((options.apiKeys ?? []).some((key) => key === '')) throw new Error('apiKeys must not contain an empty key');
  const timeScale = options.timeScale ?? 1;
  if (!Number.isFinite(timeScale) || timeScale < 0) throw new Error(`timeScale must be a finite number >= 0, got ${timeScale}`);
  const seed = (options.seed ?? randomInt(0, 2 ** 32)) >>> 0;
  const defaults = options.defaults === undefined ? {} : parseScenario(options.defaults, 'defaults');
  const retentionMs = options.retentionMs ?? 24 * 3600 * 1000;
  const heartbeatMs = options.sseHeartbeatMs ?? 15_000;
  const maxBodyBytes = options.maxBodyBytes ?? 5 * 1024 * 1024;
  const knownChatbots = options.knownChatbots === undefined ? undefined : new Set(options.knownChatbots);
  const log = options.log ?? (() => undefined);
  /** Accepted keys by their digest (never the key itself), and keys refused after a rotation. */
  const acceptedKeys: Buffer[] = [digest(apiKey), ...(options.apiKeys ?? []).map(digest)];
  const revokedKeys: Buffer[] = [];
  let currentKey = apiKey;

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
    { behaviourRandom: mulberry32(deriveSeed(seed, 'behaviour')) },
  );
  const timers = new Set<NodeJS.Timeout>();
  const streamClosers = new Set<() => void>();
  /** Open streams, to cut (destroy, no clean end) when an outage begins. */
  const streamCutters = new Set<() => void>();
  /** Notes added to a request's log line while it is handled (a finished-cancel variant, ...). */
  const requestNotes = new WeakMap<ServerResponse, string>();
  const addNote = (res: ServerResponse, note: string): void => {
    requestNotes.set(res, `${requestNotes.get(res) ?? ''} ${note}`);
  };
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
    const timer = setTimeout(
      () => {
        timers.delete(timer);
        fn();
      },
      Math.min(Math.max(0, ms), 2 ** 31 - 1),
    );
    timers.add(timer);
  }

  /** Sends a JSON answer; false when it could not be sent (the client is gone, or an answer went out already). */
  function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): boolean {
    if (res.headersSent || res.destroyed) return false;
    const text = JSON.stringify(body);
    increment(stats.by_status, status);
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': String(Buffer.byteLength(text)),
      ...headers,
    });
    res.end(text);
    return true;
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
        const retryAfter = faults.retryAfterFormat() === 'http-date' ? new Date(now() + seconds * 1000).toUTCString() : String(seconds);
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
      case 'refuseCancel':
        return false;
    }
  }

  async function handleStart(
    chatbotId: string,
    fault: FaultDecision | undefined,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
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
    if (!isPlainObject(parsed) || !isPlainObject(parsed.input_data)) {
      sendJson(res, 422, { detail: 'input_data is required and must be a JSON object' });
      return;
    }
    const inputData = parsed.input_data;
    let scenario: Scenario;
    try {
      const own = inputData.simulate === undefined ? {} : parseScenario(inputData.simulate, 'input_data.simulate');
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
    execution.startAcknowledged = sendJson(res, 202, {
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

  function handleCancel(execution: SimulatedExecution, fault: FaultDecision | undefined, res: ServerResponse): void {
    const t = now();
    if (fault?.kind === 'refuseCancel' && !execution.isTerminalAt(t)) {
      // Answered like a success, but nothing is cancelled: the execution goes on.
      fault.commit();
      sendJson(res, 200, {
        execution_id: execution.id,
        cancelled: false,
        message: `Execution ${execution.id} could not be cancelled`,
        previous_status: execution.statusAt(t),
      });
      return;
    }
    const { cancelled, previousStatus } = execution.cancel(t, 'api');
    if (cancelled) {
      sendJson(res, 200, {
        execution_id: execution.id,
        cancelled: true,
        message: `Execution ${execution.id} cancelled`,
        previous_status: previousStatus,
      });
      return;
    }
    const answer: FinishedCancelAnswer = faults.finishedCancelAnswer();
    increment(stats.finished_cancel_answers, String(answer));
    addNote(res, `finished-cancel=${answer}`);
    const message = `Execution ${execution.id} is ${previousStatus} and cannot be cancelled`;
    switch (answer) {
      case 409:
      case 200:
        sendJson(res, answer, { execution_id: execution.id, cancelled: false, message, previous_status: previousStatus });
        return;
      case 400:
        sendJson(res, 400, { detail: message });
        return;
      case 404:
        sendJson(res, 404, { detail: `No cancellable execution ${JSON.stringify(execution.id)} found` });
        return;
    }
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
    const cut = (): void => {
      streamCutters.delete(cut);
      res.destroy();
    };
    streamCutters.add(cut);
    res.on('close', () => streamCutters.delete(cut));
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

  /** `ok`, `revoked` (a key refused since a rotation) or `invalid` (missing or unknown). */
  function authorize(req: IncomingMessage): 'ok' | 'revoked' | 'invalid' {
    const given = req.headers['x-api-key'];
    if (typeof given !== 'string' || given === '') return 'invalid';
    const hash = digest(given);
    // Every comparison is made, so the time taken does not tell which key matched.
    const accepted = acceptedKeys.reduce((found, key) => timingSafeEqual(hash, key) || found, false);
    if (accepted) return 'ok';
    return revokedKeys.reduce((found, key) => timingSafeEqual(hash, key) || found, false) ? 'revoked' : 'invalid';
  }

  function revoke(hash: Buffer): void {
    const index = acceptedKeys.findIndex((key) => key.equals(hash));
    if (index < 0) return;
    acceptedKeys.splice(index, 1);
    revokedKeys.push(hash);
  }

  function accept(key: string): void {
    if (key === '') throw new Error('an API key must not be empty');
    const hash = digest(key);
    if (!acceptedKeys.some((accepted) => accepted.equals(hash))) acceptedKeys.push(hash);
    const revokedIndex = revokedKeys.findIndex((revoked) => revoked.equals(hash));
    if (revokedIndex >= 0) revokedKeys.splice(revokedIndex, 1);
    currentKey = key;
  }

  /** Applies an outage answer to a request. */
  function failForOutage(answer: OutageAnswer, req: IncomingMessage, res: ServerResponse): void {
    stats.outage_requests += 1;
    stats.outage_by_answer[answer] += 1;
    switch (answer) {
      case 'error5xx':
        sendJson(res, 503, { detail: 'Service temporarily unavailable' });
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'hang':
        // Never answered: the client times out, or close() destroys the connection.
        return;
    }
  }

  /** Cuts the open streams when an outage covering the stream route begins. */
  function cutStreamsAt(outage: ScheduledOutage): void {
    if (!outage.routes.includes('stream') || outage.until <= outage.from) return;
    later(outage.from - now(), () => {
      for (const cut of [...streamCutters]) cut();
    });
  }

  async function dispatch(
    route: RouteName,
    param: string,
    fault: FaultDecision | undefined,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
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
    else if (route === 'cancel') handleCancel(execution, fault, res);
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
      log(`${method} ${pathname} -> ${outcome} ${now() - receivedAt}ms${faultNote}${requestNotes.get(res) ?? ''}`);
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
    // An outage comes before the key check: nothing behind it answers.
    const outage = faults.outageAt(route, receivedAt);
    if (outage !== undefined) {
      faultNote = ` fault=outage:${outage}`;
      failForOutage(outage, req, res);
      return;
    }
    const auth = authorize(req);
    if (auth !== 'ok') {
      stats.unauthorized += 1;
      if (auth === 'revoked') {
        stats.revoked_key += 1;
        addNote(res, 'auth=revoked-key');
      }
      sendJson(res, 401, { detail: auth === 'revoked' ? 'Invalid X-API-Key: the key has been revoked' : 'Missing or invalid X-API-Key' });
      return;
    }
    const drawn = faults.decide(route);
    // The log line names a fault only once it really struck (commit).
    const fault: FaultDecision | undefined =
      drawn === undefined
        ? undefined
        : {
            ...drawn,
            commit: () => {
              faultNote = ` fault=${drawn.kind}`;
              drawn.commit();
            },
          };
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

  for (const outage of faults.outages()) cutStreamsAt(outage);

  return {
    url: baseUrl,
    get apiKey() {
      return currentKey;
    },
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
    setFaults: (settings) => {
      faults.set(settings);
      for (const outage of faults.outages()) cutStreamsAt(outage);
    },
    cancelRemotely: (id) => executions.get(id)?.cancel(now(), 'remote').cancelled ?? false,
    scheduleOutage: (window) => {
      const outage = faults.scheduleOutage(window);
      cutStreamsAt(outage);
      return outage;
    },
    outages: () => faults.outages(),
    acceptApiKey: accept,
    revokeApiKey: (key) => revoke(digest(key)),
    rotateApiKey(newKey, rotation = {}) {
      accept(newKey);
      const keep = digest(newKey);
      const old = acceptedKeys.filter((key) => !key.equals(keep));
      const revokeOld = (): void => {
        for (const key of old) revoke(key);
      };
      const after = rotation.revokeOldAfterMs ?? 0;
      if (after <= 0) revokeOld();
      else later(after, revokeOld);
    },
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
