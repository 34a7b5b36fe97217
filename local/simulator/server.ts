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
import { randomInt } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiKeys } from './api-keys';
import {
  FaultInjector,
  type FaultDecision,
  type FaultSettings,
  type FinishedCancelAnswer,
  type OutageAnswer,
  type OutageWindow,
  type RouteName,
  type ScheduledOutage,
} from './faults';
import { isPlainObject, malformedBody, matchRoute, readBody, sendJson, sendRaw, type RouteMatch } from './http';
import { deriveSeed, mulberry32, randomHex, type RandomSource } from './prng';
import {
  buildFinalOutput,
  parseScenario,
  resolveScenario,
  ScenarioValidationError,
  SimulatedExecution,
  type ExecutionStatusBody,
  type Scenario,
  type SimulatedExecutionView,
} from './scenario';
import { emptyStats, increment, type SimulatorStats } from './stats';
import { ExecutionStreams } from './streams';

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
export type { SimulatorStats } from './stats';

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

/** Starts a simulator on 127.0.0.1. Resolves once it listens. */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const server = new SimulatorServer(simulatorSettings(options), options.faults);
  await server.listen(options.port ?? 0);
  server.cutStreamsAtOutages();
  return server.api();
}

/** The options, checked, with their defaults. */
interface SimulatorSettings {
  readonly apiKey: string;
  readonly apiKeys: readonly string[];
  readonly timeScale: number;
  readonly seed: number;
  readonly defaults: Partial<Scenario>;
  readonly retentionMs: number;
  readonly heartbeatMs: number;
  readonly maxBodyBytes: number;
  readonly knownChatbots: ReadonlySet<string> | undefined;
  readonly log: (line: string) => void;
}

/** @throws on an empty key, a bad time scale or invalid scenario defaults */
function simulatorSettings(options: SimulatorOptions): SimulatorSettings {
  const apiKey = options.apiKey ?? DEFAULT_SIMULATOR_API_KEY;
  if (apiKey === '') throw new Error('apiKey must not be empty');
  if ((options.apiKeys ?? []).some((key) => key === '')) throw new Error('apiKeys must not contain an empty key');
  const timeScale = options.timeScale ?? 1;
  if (!Number.isFinite(timeScale) || timeScale < 0) throw new Error(`timeScale must be a finite number >= 0, got ${timeScale}`);
  const seed = (options.seed ?? randomInt(0, 2 ** 32)) >>> 0;
  return {
    apiKey,
    apiKeys: options.apiKeys ?? [],
    timeScale,
    seed,
    defaults: options.defaults === undefined ? {} : parseScenario(options.defaults, 'defaults'),
    retentionMs: options.retentionMs ?? 24 * 3600 * 1000,
    heartbeatMs: options.sseHeartbeatMs ?? 15_000,
    maxBodyBytes: options.maxBodyBytes ?? 5 * 1024 * 1024,
    knownChatbots: options.knownChatbots === undefined ? undefined : new Set(options.knownChatbots),
    log: options.log ?? (() => undefined),
  };
}

const now = (): number => Date.now();

/** Timers the simulator owns (cleared on close). */
class Timers {
  readonly #timers = new Set<NodeJS.Timeout>();

  /** Runs `fn` after `ms` (clamped to what `setTimeout` accepts). */
  later(ms: number, fn: () => void): void {
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        fn();
      },
      Math.min(Math.max(0, ms), 2 ** 31 - 1),
    );
    this.#timers.add(timer);
  }

  clear(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}

/** One request while it is handled: what its log line needs. */
interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly receivedAt: number;
  readonly method: string;
  readonly pathname: string;
  /** ` fault=<kind>` once a fault really struck (the log line names only those). */
  faultNote: string;
}

/**
 * The simulator: its executions, keys, faults and counters, and the request pipeline
 * (count, route, outage, key, fault, then the route's handler).
 */
class SimulatorServer {
  #stats = emptyStats();
  readonly #executions = new Map<string, SimulatedExecution>();
  readonly #idRandom: RandomSource;
  readonly #faults: FaultInjector;
  readonly #keys: ApiKeys;
  readonly #timers = new Timers();
  readonly #streams: ExecutionStreams;
  /** Notes added to a request's log line while it is handled (a finished-cancel variant, ...). */
  readonly #notes = new WeakMap<ServerResponse, string>();
  readonly #server: Server;
  #closing = false;
  #baseUrl = '';
  #address: AddressInfo | undefined;

  constructor(
    private readonly settings: SimulatorSettings,
    faults: FaultSettings | undefined,
  ) {
    this.#keys = new ApiKeys(settings.apiKey, settings.apiKeys);
    this.#idRandom = mulberry32(deriveSeed(settings.seed, 'ids'));
    this.#faults = new FaultInjector(
      mulberry32(deriveSeed(settings.seed, 'faults')),
      (kind) => {
        this.#stats.faults[kind] += 1;
        this.#stats.faults_total += 1;
      },
      faults,
      { behaviourRandom: mulberry32(deriveSeed(settings.seed, 'behaviour')) },
    );
    this.#streams = new ExecutionStreams({ heartbeatMs: settings.heartbeatMs, stats: () => this.#stats, now });
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  async listen(port: number): Promise<void> {
    const server = this.#server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, SIMULATOR_HOST, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#address = server.address() as AddressInfo; // listen() on a TCP port always yields AddressInfo
    this.#baseUrl = `http://${SIMULATOR_HOST}:${this.#address.port}`;
  }

  /** Cuts the open streams when each outage covering the stream route begins. */
  cutStreamsAtOutages(): void {
    for (const outage of this.#faults.outages()) this.#cutStreamsAt(outage);
  }

  /** The simulator as its users hold it. */
  api(): Simulator {
    const server = this;
    const executions = this.#executions;
    return {
      url: this.#baseUrl,
      get apiKey() {
        return server.#keys.current;
      },
      seed: this.settings.seed,
      address: { ...(this.#address as AddressInfo) },
      stats: () => structuredClone(this.#stats),
      resetStats: () => this.#resetStats(),
      execution: (id) => {
        const execution = executions.get(id);
        return execution === undefined ? undefined : view(execution);
      },
      executions: () => [...executions.values()].map(view),
      setFaults: (settings) => {
        this.#faults.set(settings);
        this.cutStreamsAtOutages();
      },
      cancelRemotely: (id) => executions.get(id)?.cancel(now(), 'remote').cancelled ?? false,
      scheduleOutage: (window) => {
        const outage = this.#faults.scheduleOutage(window);
        this.#cutStreamsAt(outage);
        return outage;
      },
      outages: () => this.#faults.outages(),
      acceptApiKey: (key) => this.#keys.accept(key),
      revokeApiKey: (key) => this.#keys.revoke(key),
      rotateApiKey: (newKey, rotation = {}) => {
        const revokeOld = this.#keys.rotate(newKey);
        const after = rotation.revokeOldAfterMs ?? 0;
        if (after <= 0) revokeOld();
        else this.#timers.later(after, revokeOld);
      },
      close: () => this.#close(),
    };
  }

  #resetStats(): void {
    const openStreams = this.#stats.open_streams;
    this.#stats = emptyStats();
    this.#stats.open_streams = openStreams;
  }

  async #close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#streams.closeAll();
    this.#timers.clear();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  // -------------------------------------------------------------------------------------
  // The request pipeline
  // -------------------------------------------------------------------------------------

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const exchange = this.#receive(req, res);
    const match = matchRoute(exchange.method, exchange.pathname);
    if (match.kind !== 'route') {
      this.#answerUnrouted(match, res);
      return;
    }
    const { route, param } = match;
    this.#stats.by_route[route] += 1;
    if (route === 'start') increment(this.#stats.starts_by_chatbot, param);
    // An outage comes before the key check: nothing behind it answers.
    if (this.#failedByOutage(exchange, route) || !this.#authorized(exchange)) return;
    const fault = this.#drawFault(exchange, route);
    if (fault !== undefined && this.#applyEarlyFault(fault, route, param, req, res)) return;
    if (fault?.kind === 'slow') {
      this.#delay(exchange, fault, () => this.#run(route, param, fault, exchange));
      return;
    }
    this.#run(route, param, fault, exchange);
  }

  /** Counts the request, and logs one line for it once it is closed. */
  #receive(req: IncomingMessage, res: ServerResponse): Exchange {
    const exchange: Exchange = {
      req,
      res,
      receivedAt: now(),
      method: req.method ?? 'GET',
      pathname: new URL(req.url ?? '/', 'http://localhost').pathname,
      faultNote: '',
    };
    this.#stats.total_requests += 1;
    increment(this.#stats.by_method, exchange.method);
    res.on('close', () => {
      if (!res.headersSent) this.#stats.no_response += 1;
      const outcome = res.headersSent ? String(res.statusCode) : 'no response';
      this.settings.log(
        `${exchange.method} ${exchange.pathname} -> ${outcome} ${now() - exchange.receivedAt}ms${exchange.faultNote}${this.#notes.get(res) ?? ''}`,
      );
    });
    return exchange;
  }

  /** 404 for an unknown path, 405 with `Allow` for a known path with the wrong method. */
  #answerUnrouted(match: Exclude<RouteMatch, { kind: 'route' }>, res: ServerResponse): void {
    this.#stats.by_route.other += 1;
    if (match.kind === 'not_found') sendJson(res, this.#stats, 404, { detail: 'Not Found' });
    else sendJson(res, this.#stats, 405, { detail: 'Method Not Allowed' }, { Allow: match.allow });
  }

  /** True when an outage window answered the request. */
  #failedByOutage(exchange: Exchange, route: RouteName): boolean {
    const outage = this.#faults.outageAt(route, exchange.receivedAt);
    if (outage === undefined) return false;
    exchange.faultNote = ` fault=outage:${outage}`;
    this.#failForOutage(outage, exchange.req, exchange.res);
    return true;
  }

  /** Applies an outage answer to a request. */
  #failForOutage(answer: OutageAnswer, req: IncomingMessage, res: ServerResponse): void {
    this.#stats.outage_requests += 1;
    this.#stats.outage_by_answer[answer] += 1;
    switch (answer) {
      case 'error5xx':
        sendJson(res, this.#stats, 503, { detail: 'Service temporarily unavailable' });
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'hang':
        // Never answered: the client times out, or close() destroys the connection.
        return;
    }
  }

  /** True when the request carries an accepted key; otherwise it is answered 401. */
  #authorized(exchange: Exchange): boolean {
    const auth = this.#keys.authorize(exchange.req.headers['x-api-key']);
    if (auth === 'ok') return true;
    this.#stats.unauthorized += 1;
    if (auth === 'revoked') {
      this.#stats.revoked_key += 1;
      this.#addNote(exchange.res, 'auth=revoked-key');
    }
    sendJson(exchange.res, this.#stats, 401, {
      detail: auth === 'revoked' ? 'Invalid X-API-Key: the key has been revoked' : 'Missing or invalid X-API-Key',
    });
    return false;
  }

  /** The fault drawn for the request, if any; the log line names it only once it really strikes (commit). */
  #drawFault(exchange: Exchange, route: RouteName): FaultDecision | undefined {
    const drawn = this.#faults.decide(route);
    if (drawn === undefined) return undefined;
    return {
      ...drawn,
      commit: () => {
        exchange.faultNote = ` fault=${drawn.kind}`;
        drawn.commit();
      },
    };
  }

  /** Applies a fault that strikes before processing. Returns true when the request is done. */
  #applyEarlyFault(fault: FaultDecision, route: RouteName, param: string, req: IncomingMessage, res: ServerResponse): boolean {
    switch (fault.kind) {
      case 'error5xx': {
        fault.commit();
        const status = fault.status ?? 500;
        sendJson(res, this.#stats, status, { detail: `Simulated server error (${status})` });
        return true;
      }
      case 'rateLimit': {
        fault.commit();
        const seconds = this.#faults.retryAfterSeconds();
        const retryAfter =
          this.#faults.retryAfterFormat() === 'http-date' ? new Date(now() + seconds * 1000).toUTCString() : String(seconds);
        sendJson(res, this.#stats, 429, { detail: 'Rate limit exceeded' }, { 'Retry-After': retryAfter });
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
        sendRaw(res, this.#stats, 200, route === 'stream' ? 'text/event-stream' : 'application/json', malformedBody(route, param));
        return true;
      case 'slow':
      case 'unknownStatus':
      case 'statusRegression':
      case 'acceptThenFail':
      case 'refuseCancel':
        return false;
    }
  }

  /** The `slow` fault: handled after `slowMs`, unless the client gave up meanwhile. */
  #delay(exchange: Exchange, fault: FaultDecision, run: () => void): void {
    fault.commit();
    const { req, res } = exchange;
    this.#timers.later(this.#faults.slowMs(), () => {
      // A client that gave up during the delay gets nothing, and nothing is processed.
      if (!this.#closing && !res.destroyed && !req.socket.destroyed) run();
    });
  }

  #run(route: RouteName, param: string, fault: FaultDecision | undefined, exchange: Exchange): void {
    const { req, res } = exchange;
    this.#dispatch(route, param, fault, req, res).catch((error: unknown) => {
      this.settings.log(`internal error: ${error instanceof Error ? error.message : String(error)}`);
      sendJson(res, this.#stats, 500, { detail: 'Simulator internal error' });
    });
  }

  async #dispatch(
    route: RouteName,
    param: string,
    fault: FaultDecision | undefined,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    if (route === 'start') {
      await this.#handleStart(param, fault, req, res);
      return;
    }
    const execution = this.#executions.get(param);
    if (execution === undefined || execution.isCleanedUpAt(now())) {
      sendJson(res, this.#stats, 404, { detail: `Execution ${JSON.stringify(param)} not found` });
      return;
    }
    if (route === 'get') this.#handleGet(execution, fault, res);
    else if (route === 'cancel') this.#handleCancel(execution, fault, res);
    else this.#streams.open(execution, res);
  }

  #addNote(res: ServerResponse, note: string): void {
    this.#notes.set(res, `${this.#notes.get(res) ?? ''} ${note}`);
  }

  /** Cuts the open streams when an outage covering the stream route begins. */
  #cutStreamsAt(outage: ScheduledOutage): void {
    if (!outage.routes.includes('stream') || outage.until <= outage.from) return;
    this.#timers.later(outage.from - now(), () => this.#streams.cutAll());
  }

  // -------------------------------------------------------------------------------------
  // The routes
  // -------------------------------------------------------------------------------------

  /** `POST /v1/executions/{chatbot_id}/async`. */
  async #handleStart(chatbotId: string, fault: FaultDecision | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { knownChatbots } = this.settings;
    if (knownChatbots !== undefined && !knownChatbots.has(chatbotId)) {
      sendJson(res, this.#stats, 404, { detail: `Chatbot ${JSON.stringify(chatbotId)} not found` });
      return;
    }
    const request = await this.#readStartRequest(req, res);
    if (request === undefined) return;
    const execution = this.#createExecution(chatbotId, request.inputData, request.scenario);
    if (fault?.kind === 'acceptThenFail') {
      fault.commit();
      if (fault.mode === 'reset') req.socket.destroy();
      else sendJson(res, this.#stats, fault.status ?? 500, { detail: 'Internal Server Error' });
      return;
    }
    const statusUrl = `${this.#baseUrl}/v1/executions/${encodeURIComponent(execution.id)}`;
    execution.startAcknowledged = sendJson(res, this.#stats, 202, {
      execution_id: execution.id,
      status_url: statusUrl,
      stream_url: `${statusUrl}/stream`,
      cancel_url: statusUrl,
    });
  }

  /** The body of a start request and its scenario; undefined when the request was answered (413, 422) or aborted. */
  async #readStartRequest(
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<{ inputData: Record<string, unknown>; scenario: Scenario } | undefined> {
    const body = await readBody(req, this.settings.maxBodyBytes);
    if (body === 'aborted') return undefined;
    if (body === 'too_large') {
      sendJson(res, this.#stats, 413, { detail: `Request body larger than ${this.settings.maxBodyBytes} bytes` }, { Connection: 'close' });
      return undefined;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      sendJson(res, this.#stats, 422, { detail: 'Request body is not valid JSON' });
      return undefined;
    }
    if (!isPlainObject(parsed) || !isPlainObject(parsed.input_data)) {
      sendJson(res, this.#stats, 422, { detail: 'input_data is required and must be a JSON object' });
      return undefined;
    }
    const inputData = parsed.input_data;
    try {
      const own = inputData.simulate === undefined ? {} : parseScenario(inputData.simulate, 'input_data.simulate');
      return { inputData, scenario: resolveScenario(this.settings.defaults, own) };
    } catch (error) {
      if (error instanceof ScenarioValidationError) {
        sendJson(res, this.#stats, 422, { detail: error.message });
        return undefined;
      }
      throw error;
    }
  }

  /** A new execution on the simulator's clock, every duration scaled by the time scale. */
  #createExecution(chatbotId: string, inputData: Record<string, unknown>, scenario: Scenario): SimulatedExecution {
    const { timeScale, retentionMs } = this.settings;
    const id = this.#newExecutionId();
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
    this.#executions.set(id, execution);
    this.#stats.executions_created += 1;
    increment(this.#stats.executions_by_chatbot, chatbotId);
    return execution;
  }

  #newExecutionId(): string {
    for (;;) {
      const id = `exec_${randomHex(this.#idRandom, 24)}`;
      if (!this.#executions.has(id)) return id;
    }
  }

  /** `GET /v1/executions/{execution_id}`. */
  #handleGet(execution: SimulatedExecution, fault: FaultDecision | undefined, res: ServerResponse): void {
    const t = now();
    let body: ExecutionStatusBody = execution.bodyAt(t);
    if (fault?.kind === 'unknownStatus') {
      fault.commit();
      // The wire value is deliberately outside WaterflaiStatus: that is the point of the fault.
      body = { ...body, status: this.#faults.unknownStatusValue() as ExecutionStatusBody['status'] };
    } else if (fault?.kind === 'statusRegression') {
      const stale = execution.staleBodyAt(t);
      if (stale !== undefined) {
        fault.commit();
        body = stale;
      }
    }
    sendJson(res, this.#stats, 200, body);
  }

  /** `DELETE /v1/executions/{execution_id}`. */
  #handleCancel(execution: SimulatedExecution, fault: FaultDecision | undefined, res: ServerResponse): void {
    const t = now();
    if (fault?.kind === 'refuseCancel' && !execution.isTerminalAt(t)) {
      // Answered like a success, but nothing is cancelled: the execution goes on.
      fault.commit();
      sendJson(res, this.#stats, 200, {
        execution_id: execution.id,
        cancelled: false,
        message: `Execution ${execution.id} could not be cancelled`,
        previous_status: execution.statusAt(t),
      });
      return;
    }
    const { cancelled, previousStatus } = execution.cancel(t, 'api');
    if (cancelled) {
      sendJson(res, this.#stats, 200, {
        execution_id: execution.id,
        cancelled: true,
        message: `Execution ${execution.id} cancelled`,
        previous_status: previousStatus,
      });
      return;
    }
    this.#answerFinishedCancel(execution, previousStatus, res);
  }

  /** A DELETE of a finished execution: 409 by default, or another reading (`finishedCancelAnswer`). */
  #answerFinishedCancel(execution: SimulatedExecution, previousStatus: string, res: ServerResponse): void {
    const answer: FinishedCancelAnswer = this.#faults.finishedCancelAnswer();
    increment(this.#stats.finished_cancel_answers, String(answer));
    this.#addNote(res, `finished-cancel=${answer}`);
    const message = `Execution ${execution.id} is ${previousStatus} and cannot be cancelled`;
    switch (answer) {
      case 409:
      case 200:
        sendJson(res, this.#stats, answer, { execution_id: execution.id, cancelled: false, message, previous_status: previousStatus });
        return;
      case 400:
        sendJson(res, this.#stats, 400, { detail: message });
        return;
      case 404:
        sendJson(res, this.#stats, 404, { detail: `No cancellable execution ${JSON.stringify(execution.id)} found` });
        return;
    }
  }
}

/** A deep copy: callers may mutate what they get without touching the simulator's state. */
function view(execution: SimulatedExecution): SimulatedExecutionView {
  return structuredClone(execution.viewAt(now()));
}
