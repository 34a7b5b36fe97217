/**
 * Typed client for the Waterflai asynchronous execution API (see the contract in
 * `waterflai-async-api.txt`): start, get status, cancel, and the URL of the SSE stream.
 *
 * Safety properties every caller may rely on:
 * - identifiers are checked against {@link URL_IDENTIFIER_PATTERN} before anything else
 *   happens (no API key lookup, no request), and URL-encoded into the path anyway;
 * - every request has a deadline that covers connecting, the headers AND reading the body;
 * - redirects are never followed;
 * - response bodies are read as a stream and refused past a byte limit;
 * - the API key never appears in an error message (it is redacted from server-supplied
 *   error text too).
 */
import type * as z from 'zod';
import { WATERFLAI_STATUS, type WaterflaiStatus } from '../contract/constants';
import {
  ConfigurationError,
  InvalidIdentifierError,
  OrchestratorError,
  WaterflaiHttpError,
  WaterflaiNetworkError,
  WaterflaiRedirectError,
  WaterflaiResponseError,
  type WaterflaiOperation,
} from '../contract/errors';
import { URL_IDENTIFIER_MAX_LENGTH, URL_IDENTIFIER_PATTERN } from '../contract/identifiers';
import { DEFAULT_REQUEST_TIMEOUT_MS } from '../domain/request-timeout';
import {
  cancelResultSchema,
  executionStatusSchema,
  startedExecutionSchema,
  type CancelResult,
  type ExecutionStatus,
  type RequestOptions,
  type StartedExecution,
} from '../contract/waterflai-api';

// ---------------------------------------------------------------------------------------
// Defaults and limits
// ---------------------------------------------------------------------------------------

/** Default largest response body accepted, in bytes (8 MiB). */
export const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
/** Largest error-response body read to extract a detail message (the rest is ignored). */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** Longest server-supplied detail copied into an error message. */
const MAX_DETAIL_LENGTH = 200;
/** Largest delay a timer accepts (larger values fire immediately in Node). */
const MAX_TIMER_MS = 2_147_483_647;

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/** Settings of a {@link WaterflaiClient}. */
export interface WaterflaiClientOptions {
  /**
   * Deploy-time base URL, e.g. `https://api.waterflai.ai`. Must be `https:`; `http:` is
   * allowed only for loopback hosts (127.0.0.0/8, `[::1]`, `localhost`). No credentials,
   * query or fragment. A path prefix (`https://host/prefix`) is kept. Anything else throws
   * {@link ConfigurationError} at construction.
   */
  readonly baseUrl: string;
  /**
   * Returns the API key, sent as `X-API-Key`. Called once per request (cache in the
   * caller). Surrounding whitespace is trimmed; a key that is empty or holds characters
   * other than visible ASCII throws {@link ConfigurationError} (without the key). Errors
   * thrown by this function propagate unchanged.
   */
  readonly apiKey: () => Promise<string> | string;
  /**
   * Re-reads the API key from its source, bypassing any cache read before `notBeforeMs`
   * (when the refused request was sent). When set, a request answered 401 or 403 is sent
   * once more with the fresh key if it differs from the one refused (the key was rotated
   * while the cached copy was still in use). Errors it throws propagate.
   * @default - no refresh: a 401/403 is returned as it is
   */
  readonly refreshApiKey?: (notBeforeMs: number) => Promise<string>;
  /**
   * Per-request deadline in ms, covering connection, headers and body.
   * @default 10_000
   */
  readonly defaultTimeoutMs?: number;
  /**
   * Largest response body accepted, in bytes; a larger 2xx body throws
   * {@link WaterflaiResponseError}.
   * @default 8 MiB (8_388_608)
   */
  readonly maxResponseBytes?: number;
  /**
   * The fetch implementation (tests).
   * @default globalThis.fetch
   */
  readonly fetch?: typeof fetch;
  /**
   * Clock used to turn a `Retry-After` HTTP-date into seconds.
   * @default Date.now
   */
  readonly now?: () => number;
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

interface RawResponse {
  readonly status: number;
  readonly headers: Headers;
  /** The body, or `undefined` for an error response whose body could not be read. */
  readonly body: Uint8Array | undefined;
  /** The key sent, only to redact it from server-supplied error text. */
  readonly apiKey: string;
}

/** Thrown inside body reading when the byte limit is passed (never escapes the module). */
class BodyTooLargeError extends Error {}

/**
 * Client for the Waterflai async API. One instance per Lambda container is fine: it holds
 * no connection state of its own.
 *
 * Every method rejects with:
 * - {@link InvalidIdentifierError} for an unsafe id (before any request);
 * - {@link WaterflaiNetworkError} `TIMEOUT` / `NETWORK_ERROR` (retryable);
 * - {@link WaterflaiRedirectError} for any 3xx (not followed, not retryable);
 * - {@link WaterflaiHttpError} for other non-2xx (retryable for 408/425/429/5xx), with
 *   `retryAfterSeconds` from `Retry-After` and a short safe detail from the body;
 * - {@link WaterflaiResponseError} for a 2xx that is not JSON, too large, or off-contract;
 * - the caller's `signal.reason` when the caller aborts.
 */
export class WaterflaiClient {
  readonly #base: string;
  readonly #apiKey: () => Promise<string> | string;
  readonly #refreshApiKey: ((notBeforeMs: number) => Promise<string>) | undefined;
  readonly #defaultTimeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;

  /** @throws ConfigurationError when the base URL or a setting is unsafe or invalid */
  constructor(options: WaterflaiClientOptions) {
    this.#base = validateBaseUrl(options.baseUrl);
    if (typeof options.apiKey !== 'function') throw new ConfigurationError('Waterflai apiKey must be a function returning the key');
    this.#apiKey = options.apiKey;
    this.#refreshApiKey = options.refreshApiKey;
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!isValidTimeout(this.#defaultTimeoutMs)) {
      throw new ConfigurationError(
        `Waterflai defaultTimeoutMs must be a finite number of at least 1, got ${String(this.#defaultTimeoutMs)}`,
      );
    }
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    if (!Number.isSafeInteger(this.#maxResponseBytes) || this.#maxResponseBytes < 1) {
      throw new ConfigurationError(`Waterflai maxResponseBytes must be a positive integer, got ${String(this.#maxResponseBytes)}`);
    }
    // Resolved at call time so that a later replacement of globalThis.fetch is honoured.
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#now = options.now ?? Date.now;
  }

  /**
   * Starts an execution: `POST /v1/executions/{chatbot_id}/async` with
   * `{"input_data": inputData}`. Any 2xx (the contract says 202; 200 and 201 are
   * accepted too) whose body has a safe `execution_id` succeeds.
   *
   * `inputData` must be a plain object and is serialised with `JSON.stringify`; anything
   * else, or a value it cannot serialise (cycle, BigInt), throws a `TypeError` before any
   * request.
   */
  async startExecution(chatbotId: string, inputData: Record<string, unknown>, options: RequestOptions = {}): Promise<StartedExecution> {
    const operation: WaterflaiOperation = 'start';
    const id = checkIdentifier('chatbot_id', chatbotId);
    if (!isRecord(inputData)) throw new TypeError('inputData must be a JSON object');
    const body = JSON.stringify({ input_data: inputData });
    const response = await this.#exchange(operation, 'POST', `/v1/executions/${encodeURIComponent(id)}/async`, body, options);
    if (!isSuccess(response.status)) throw this.#httpError(operation, response);
    const parsed = parseBody(operation, startedExecutionSchema, response.body);
    return {
      execution_id: parsed.execution_id,
      status_url: parsed.status_url,
      stream_url: parsed.stream_url,
      cancel_url: parsed.cancel_url,
    };
  }

  /**
   * Reads an execution's state: `GET /v1/executions/{execution_id}`. An unknown status
   * string is returned with `known_status: null` rather than thrown. A body whose
   * `execution_id` differs from the requested one is refused ({@link WaterflaiResponseError}):
   * it would mean someone else's result.
   */
  async getExecution(executionId: string, options: RequestOptions = {}): Promise<ExecutionStatus> {
    const operation: WaterflaiOperation = 'get';
    const id = checkIdentifier('execution_id', executionId);
    const response = await this.#exchange(operation, 'GET', `/v1/executions/${encodeURIComponent(id)}`, undefined, options);
    if (!isSuccess(response.status)) throw this.#httpError(operation, response);
    const parsed = parseBody(operation, executionStatusSchema, response.body);
    checkSameExecution(operation, id, parsed.execution_id);
    return {
      execution_id: id,
      status: parsed.status,
      known_status: knownStatus(parsed.status),
      progress: parsed.progress,
      current_node: parsed.current_node,
      completed_nodes: parsed.completed_nodes,
      total_nodes: parsed.total_nodes,
      final_output: parsed.final_output,
      error_message: parsed.error_message,
      created_at: parsed.created_at,
      started_at: parsed.started_at,
      completed_at: parsed.completed_at,
      retry_count: parsed.retry_count,
      execution_source: parsed.execution_source,
      is_temporary: parsed.is_temporary,
      cleanup_after: parsed.cleanup_after,
    };
  }

  /**
   * Asks Waterflai to cancel an execution: `DELETE /v1/executions/{execution_id}`.
   *
   * An execution that already finished "cannot be cancelled again" (contract). That is
   * reported as a result, not an error:
   * - 2xx `{"cancelled": true}` → `{cancelled: true, alreadyFinished: false}`;
   * - 2xx `{"cancelled": false}` → `{cancelled: false, alreadyFinished: true}`, unless
   *   `previous_status` is PENDING or RUNNING (then `alreadyFinished: false`);
   * - HTTP 409 Conflict → `{cancelled: false, alreadyFinished: true}` with the server's
   *   message (if any) and `previous_status` (if the body has one).
   *
   * Every other non-2xx is a {@link WaterflaiHttpError} as usual: 404 (unknown execution)
   * and 400 (ambiguous: could be a malformed request) are NOT treated as "already
   * finished". A 2xx without a boolean `cancelled` is a {@link WaterflaiResponseError}.
   * In every non-cancelled case, poll the execution to learn its real final state.
   */
  async cancelExecution(executionId: string, options: RequestOptions = {}): Promise<CancelResult> {
    const operation: WaterflaiOperation = 'cancel';
    const id = checkIdentifier('execution_id', executionId);
    const response = await this.#exchange(operation, 'DELETE', `/v1/executions/${encodeURIComponent(id)}`, undefined, options);
    if (response.status === 409) {
      const json = response.body ? tryParseJson(response.body) : undefined;
      const previous = isRecord(json) && typeof json.previous_status === 'string' ? json.previous_status : null;
      return {
        execution_id: id,
        cancelled: false,
        alreadyFinished: true,
        message: errorDetail(response) ?? null,
        previous_status: previous,
      };
    }
    if (!isSuccess(response.status)) throw this.#httpError(operation, response);
    const parsed = parseBody(operation, cancelResultSchema, response.body);
    checkSameExecution(operation, id, parsed.execution_id);
    const stillActive = parsed.previous_status === WATERFLAI_STATUS.PENDING || parsed.previous_status === WATERFLAI_STATUS.RUNNING;
    return {
      execution_id: id,
      cancelled: parsed.cancelled,
      alreadyFinished: !parsed.cancelled && !stillActive,
      message: parsed.message,
      previous_status: parsed.previous_status,
    };
  }

  /**
   * Absolute URL of `GET /v1/executions/{execution_id}/stream` (Server-Sent Events), for
   * a caller that opens the stream itself (send `X-API-Key`, refuse redirects).
   * @throws InvalidIdentifierError for an unsafe id
   */
  streamUrl(executionId: string): string {
    const id = checkIdentifier('execution_id', executionId);
    return `${this.#base}/v1/executions/${encodeURIComponent(id)}/stream`;
  }

  /**
   * One HTTP exchange (see {@link WaterflaiClient.#send}); a 401 or 403 is sent once more
   * with a freshly read key when the key source gives a different one (key rotation). A
   * POST is repeated too: a refused key means Waterflai did not accept the execution.
   */
  async #exchange(
    operation: WaterflaiOperation,
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body: string | undefined,
    options: RequestOptions,
  ): Promise<RawResponse> {
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    if (!isValidTimeout(timeoutMs)) throw new RangeError(`timeoutMs must be a finite number of at least 1, got ${String(timeoutMs)}`);
    options.signal?.throwIfAborted();
    const apiKey = checkApiKey(await this.#apiKey());
    const sentAt = this.#now();
    const first = await this.#send(operation, method, path, body, options, apiKey);
    if ((first.status !== 401 && first.status !== 403) || this.#refreshApiKey === undefined) return first;
    const fresh = checkApiKey(await this.#refreshApiKey(sentAt));
    if (fresh === first.apiKey) return first;
    return this.#send(operation, method, path, body, options, fresh);
  }

  /** One HTTP exchange with deadline, no redirects, and a bounded, fully read body. */
  async #send(
    operation: WaterflaiOperation,
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body: string | undefined,
    options: RequestOptions,
    apiKey: string,
  ): Promise<RawResponse> {
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    if (!isValidTimeout(timeoutMs)) throw new RangeError(`timeoutMs must be a finite number of at least 1, got ${String(timeoutMs)}`);
    const callerSignal = options.signal;
    callerSignal?.throwIfAborted();

    const headers: Record<string, string> = { 'X-API-Key': apiKey, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';

    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new DOMException(`Waterflai request exceeded ${timeoutMs} ms`, 'TimeoutError')),
      Math.min(Math.ceil(timeoutMs), MAX_TIMER_MS),
    );
    const signal = callerSignal ? AbortSignal.any([deadline.signal, callerSignal]) : deadline.signal;
    const fail = (error: unknown): unknown => {
      if (error instanceof OrchestratorError) return error;
      if (deadline.signal.aborted) {
        return new WaterflaiNetworkError(operation, 'TIMEOUT', `no complete answer within ${timeoutMs} ms`, { cause: error });
      }
      if (callerSignal?.aborted) return callerSignal.reason;
      return new WaterflaiNetworkError(operation, 'NETWORK_ERROR', describeNetworkFailure(error), { cause: error });
    };

    try {
      let response: Response;
      try {
        response = await this.#fetch(`${this.#base}${path}`, {
          method,
          headers,
          ...(body === undefined ? {} : { body }),
          redirect: 'manual',
          signal,
        });
      } catch (error) {
        throw fail(error);
      }

      if (response.type === 'opaqueredirect' || (response.status >= 300 && response.status < 400)) {
        discard(response);
        throw new WaterflaiRedirectError(operation, response.status);
      }

      if (isSuccess(response.status)) {
        try {
          const bytes = await readBody(response, this.#maxResponseBytes, signal);
          return { status: response.status, headers: response.headers, body: bytes, apiKey };
        } catch (error) {
          if (error instanceof BodyTooLargeError) {
            throw new WaterflaiResponseError(operation, `body is larger than ${this.#maxResponseBytes} bytes`);
          }
          throw fail(error);
        }
      }

      // An error answer: its body is only used for a short detail, so any trouble reading
      // it (too large, reset, deadline) just means no detail. The HTTP status is the news.
      let bytes: Uint8Array | undefined;
      try {
        bytes = await readBody(response, Math.min(this.#maxResponseBytes, MAX_ERROR_BODY_BYTES), signal);
      } catch {
        bytes = undefined;
      }
      return { status: response.status, headers: response.headers, body: bytes, apiKey };
    } finally {
      clearTimeout(timer);
    }
  }

  #httpError(operation: WaterflaiOperation, response: RawResponse): WaterflaiHttpError {
    const retryAfter = parseRetryAfter(response.headers.get('retry-after'), this.#now());
    return new WaterflaiHttpError(operation, response.status, retryAfter, errorDetail(response));
  }
}

// ---------------------------------------------------------------------------------------
// Helpers for Lambdas
// ---------------------------------------------------------------------------------------

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;
const MONTH = `(${MONTHS.join('|')})`;
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';
/** IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT` */
const IMF_FIXDATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`);
/** Obsolete RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT` */
const RFC850_DATE = new RegExp(`^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`);
/** Obsolete asctime: `Sun Nov  6 08:49:37 1994` */
const ASCTIME_DATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`);

/**
 * Parses an HTTP `Retry-After` value (RFC 9110 §10.2.3) into whole seconds from `nowMs`.
 * Accepts delay-seconds (`120`) and HTTP-dates in all three RFC forms (a date in the
 * past gives 0; a future one is rounded up). Returns `undefined` for a missing, empty,
 * negative, fractional, absurdly large or otherwise malformed value. Never negative.
 */
export function parseRetryAfter(header: string | null, nowMs: number): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (value === '') return undefined;
  if (/^\d+$/.test(value)) {
    const seconds = Number(value);
    return Number.isSafeInteger(seconds) ? seconds : undefined;
  }
  const dateMs = parseHttpDate(value, nowMs);
  if (dateMs === undefined || !Number.isFinite(nowMs)) return undefined;
  return Math.max(0, Math.ceil((dateMs - nowMs) / 1000));
}

function parseHttpDate(value: string, nowMs: number): number | undefined {
  let parts: { day: string; month: string; year: number; time: readonly string[] };
  const imf = IMF_FIXDATE.exec(value);
  const rfc850 = imf === null ? RFC850_DATE.exec(value) : null;
  const asctime = imf === null && rfc850 === null ? ASCTIME_DATE.exec(value) : null;
  if (imf !== null) {
    const [, day = '', month = '', year = '', ...time] = imf;
    parts = { day, month, year: Number(year), time };
  } else if (rfc850 !== null) {
    const [, day = '', month = '', yy = '', ...time] = rfc850;
    // RFC 9110: a two-digit year more than 50 years in the future means the past century.
    const currentYear = new Date(Number.isFinite(nowMs) ? nowMs : 0).getUTCFullYear();
    let year = Math.floor(currentYear / 100) * 100 + Number(yy);
    if (year > currentYear + 50) year -= 100;
    parts = { day, month, year, time };
  } else if (asctime !== null) {
    const [, month = '', day = '', hh = '', mm = '', ss = '', year = ''] = asctime;
    parts = { day, month, year: Number(year), time: [hh, mm, ss] };
  } else {
    return undefined;
  }
  const monthIndex = MONTHS.indexOf(parts.month as (typeof MONTHS)[number]);
  const day = Number(parts.day.trim());
  const [hours, minutes, seconds] = parts.time.map(Number);
  if (hours === undefined || minutes === undefined || seconds === undefined) return undefined;
  if (monthIndex < 0 || day < 1 || day > 31 || hours > 23 || minutes > 59 || seconds > 60) return undefined;
  const ms = Date.UTC(parts.year, monthIndex, day, hours, minutes, Math.min(seconds, 59));
  // Refuse dates that do not exist (Feb 31 would otherwise roll over into March).
  if (new Date(ms).getUTCDate() !== day) return undefined;
  return ms;
}

// ---------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------

function isValidTimeout(value: number): boolean {
  return typeof value === 'number' && Number.isFinite(value) && value >= 1;
}

function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

function isLoopbackHost(hostname: string): boolean {
  // WHATWG URL has already normalised IPv4 forms (127.1, 0x7f.0.0.1) to dotted quads.
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** Checks the base URL and returns `origin + path prefix` without a trailing slash. */
function validateBaseUrl(baseUrl: unknown): string {
  if (typeof baseUrl !== 'string' || baseUrl.trim() === '') throw new ConfigurationError('Waterflai base URL is missing');
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new ConfigurationError('Waterflai base URL is not a valid absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigurationError(`Waterflai base URL must use https (got ${url.protocol})`);
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new ConfigurationError('Waterflai base URL must use https (http is allowed only for loopback hosts)');
  }
  // Never echo the URL itself in these messages: userinfo may hold a secret.
  if (url.username !== '' || url.password !== '' || /^[^/]*\/\/[^/?#]*@/.test(baseUrl.trim())) {
    throw new ConfigurationError('Waterflai base URL must not contain credentials');
  }
  if (url.search !== '' || baseUrl.includes('?')) throw new ConfigurationError('Waterflai base URL must not contain a query');
  if (url.hash !== '' || baseUrl.includes('#')) throw new ConfigurationError('Waterflai base URL must not contain a fragment');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** Returns the identifier when it may go into a URL path, else throws (never echoing it). */
function checkIdentifier(kind: 'chatbot_id' | 'execution_id', value: unknown): string {
  if (typeof value !== 'string') throw new InvalidIdentifierError(kind, 'not a string');
  if (value.length === 0) throw new InvalidIdentifierError(kind, 'empty');
  if (value.length > URL_IDENTIFIER_MAX_LENGTH)
    throw new InvalidIdentifierError(kind, `longer than ${URL_IDENTIFIER_MAX_LENGTH} characters`);
  if (!URL_IDENTIFIER_PATTERN.test(value)) {
    throw new InvalidIdentifierError(kind, 'only ASCII letters, digits, _ and - are allowed, starting with a letter or digit');
  }
  return value;
}

function checkApiKey(value: unknown): string {
  const key = typeof value === 'string' ? value.trim() : '';
  if (!/^[\x21-\x7e]+$/.test(key)) {
    throw new ConfigurationError('Waterflai API key is empty or holds characters not allowed in an HTTP header');
  }
  return key;
}

function knownStatus(status: string): WaterflaiStatus | null {
  return (Object.values(WATERFLAI_STATUS) as string[]).includes(status) ? (status as WaterflaiStatus) : null;
}

function checkSameExecution(operation: WaterflaiOperation, requested: string, reported: string | null): void {
  if (reported !== null && reported !== requested) {
    throw new WaterflaiResponseError(operation, 'execution_id in the body differs from the requested one');
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function tryParseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as unknown;
  } catch {
    return undefined;
  }
}

function parseBody<T extends z.ZodType>(operation: WaterflaiOperation, schema: T, bytes: Uint8Array | undefined): z.output<T> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes ?? new Uint8Array(0))) as unknown;
  } catch {
    throw new WaterflaiResponseError(operation, 'body is not valid JSON');
  }
  if (!isRecord(json)) throw new WaterflaiResponseError(operation, 'body is not a JSON object');
  const result = schema.safeParse(json);
  if (!result.success) {
    // Paths and zod's messages only: they name the field and expected type, never the value.
    const summary = result.error.issues
      .slice(0, 3)
      .map((issue) => `${issue.path.map(String).join('.') || '(body)'}: ${issue.message}`)
      .join('; ');
    throw new WaterflaiResponseError(operation, summary.slice(0, MAX_DETAIL_LENGTH));
  }
  return result.data;
}

/** First message-like string of a JSON error body (`message`, `detail`, `error`, ...). */
function extractMessage(json: unknown): string | undefined {
  if (!isRecord(json)) return undefined;
  for (const key of ['message', 'detail', 'error', 'error_message']) {
    const value = json[key];
    if (typeof value === 'string') return value;
    // FastAPI-style validation errors: {"detail": [{"loc": [...], "msg": "...", ...}]}
    if (Array.isArray(value) && isRecord(value[0]) && typeof value[0].msg === 'string') return value[0].msg;
    if (isRecord(value) && typeof value.message === 'string') return value.message;
  }
  return undefined;
}

/** A short, single-line, key-free summary of an error body's message, if it has one. */
function errorDetail(response: RawResponse): string | undefined {
  if (!response.body || response.body.byteLength === 0) return undefined;
  const text = extractMessage(tryParseJson(response.body));
  return text === undefined ? undefined : sanitizeDetail(text, response.apiKey);
}

function sanitizeDetail(text: string, apiKey: string): string | undefined {
  let clean = text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, ' ');
  if (apiKey !== '') clean = clean.split(apiKey).join('[REDACTED]');
  clean = clean.replace(/\s+/g, ' ').trim();
  if (clean === '') return undefined;
  return clean.length > MAX_DETAIL_LENGTH ? `${clean.slice(0, MAX_DETAIL_LENGTH)}…` : clean;
}

/** A description of a transport failure from error codes only (no raw text, no headers). */
function describeNetworkFailure(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,40}$/.test(code)) return `connection failed (${code})`;
    current = (current as { cause?: unknown }).cause;
  }
  return 'connection failed';
}

/** Releases a response body we will not read. */
function discard(response: Response): void {
  response.body?.cancel().catch(() => undefined);
}

/**
 * Reads the whole body, refusing more than `maxBytes` (Content-Length is checked first,
 * but the count while streaming is what counts), and giving up when `signal` aborts even
 * if the underlying stream does not.
 */
async function readBody(response: Response, maxBytes: number, signal: AbortSignal): Promise<Uint8Array> {
  const declared = response.headers.get('content-length');
  if (declared !== null && /^\s*\d+\s*$/.test(declared) && Number(declared) > maxBytes) {
    discard(response);
    throw new BodyTooLargeError();
  }
  const stream = response.body;
  if (stream === null) return new Uint8Array(0);
  if (signal.aborted) {
    discard(response);
    throw signal.reason;
  }

  const reader = stream.getReader();
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined); // only observed through the race below

  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const chunk = await Promise.race([reader.read(), aborted]);
      if (chunk.done) break;
      total += chunk.value.byteLength;
      if (total > maxBytes) throw new BodyTooLargeError();
      chunks.push(chunk.value);
    }
  } catch (error) {
    reader.cancel().catch(() => undefined);
    throw error;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }

  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
