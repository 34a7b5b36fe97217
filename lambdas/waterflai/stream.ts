/**
 * Listens on a Waterflai execution's event stream (`GET /v1/executions/{id}/stream`,
 * Server-Sent Events) for a bounded window, to learn the moment the execution ends
 * without polling. The stream is only a wake-up signal: whatever it says, the caller reads
 * the status with a normal GET afterwards, so a lying, truncated or malformed stream can
 * never decide an outcome.
 *
 * Safety properties:
 * - the window, the time to the response headers and the silence between bytes are all
 *   bounded; the connection is always closed before {@link listenToExecution} returns;
 * - redirects are never followed; a non-200 answer, a wrong content type or a transport
 *   error is reported as `unavailable` (never thrown);
 * - payloads are parsed defensively: lines and events have byte limits, counted on the bytes
 *   fed to the SSE parser (so an endless line or event cannot grow memory), JSON that does
 *   not parse or fields of the wrong type are ignored, unknown event types are ignored;
 * - nothing here logs, and results carry no body text (only counts and our own reasons).
 *
 * The SSE framing (the WHATWG event-stream format: `data:`, `event:`, `id:` and `retry:`
 * fields, comment lines, CR, LF and CRLF line ends, multi-line data joined with `\n`) is
 * done by eventsource-parser; {@link SseParser} wraps it with the byte limits. Reading a
 * Waterflai event from an SSE event ({@link parseStreamEvent}) is ours.
 *
 * Progress may come as a fraction (0..1) or a percent (0..100, as in the contract's
 * `{"type": "progress_update", "progress": 50.0}`): events report it as a percent, read
 * with the scale decided so far ({@link ListenOptions.progressScale}, then each event's
 * evidence, see progress-scale.ts), and the listen reports the scale it ends with.
 */
import { createParser, type EventSourceMessage, type EventSourceParser } from 'eventsource-parser';
import { inferProgressScale, toPercent, type ProgressScale } from '../domain/progress-scale';

/** Keeps this much of the invocation free after a listen (the status read and records that follow). */
export const DEFAULT_STREAM_RESERVE_MS = 20_000;
/** Default longest wait for the response headers. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Default longest silence (no byte at all, heartbeats included) before giving up on a stream. */
export const DEFAULT_SILENCE_MS = 45_000;
/** Longest line accepted, in UTF-8 bytes (longer lines are dropped with the event they belong to). */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
/**
 * Largest event accepted, in UTF-8 bytes of its lines (comments excepted); a larger event
 * counts as a wake-up (the caller reads the status).
 */
export const DEFAULT_MAX_EVENT_BYTES = 256 * 1024;
/** Largest delay a timer accepts. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Seconds of listening that fit in an invocation with `remainingMs` left, keeping
 * `reserveMs` free; divided by `timeScale` (a local runtime running faster than real time
 * listens proportionally shorter). Never negative.
 */
export function listenBudgetSeconds(remainingMs: number, reserveMs: number = DEFAULT_STREAM_RESERVE_MS, timeScale = 1): number {
  if (!Number.isFinite(remainingMs) || !Number.isFinite(reserveMs) || !(timeScale > 0)) return 0;
  return Math.max(0, Math.floor((remainingMs - reserveMs) / 1000 / timeScale));
}

// ---------------------------------------------------------------------------------------
// SSE framing: eventsource-parser, with our byte limits around it
// ---------------------------------------------------------------------------------------

/** One dispatched server-sent event. */
export interface SseEvent {
  /** The `event:` field, or `message`. */
  readonly event: string;
  /** The `data:` lines joined with `\n`. */
  readonly data: string;
  /** The last `id:` of a dispatched event (it persists across events; one in an event without data is not seen). */
  readonly id: string;
}

export interface SseParserOptions {
  readonly maxLineBytes?: number;
  readonly maxEventBytes?: number;
}

/** What the parser reports to its owner. */
export interface SseSink {
  event(event: SseEvent): void;
  /** A comment line (`:` ...), e.g. a keep-alive. */
  comment?(): void;
  /** An event dropped because a line of it or the event passed its byte limit (heard where the event ends). */
  oversized?(): void;
}

const LF = 10;
const CR = 13;
const COLON = 58;
const LINE_END = /[\r\n]/g;

/** The index of the first CR or LF at or after `from`, or the text's length. */
function lineEndAt(text: string, from: number): number {
  LINE_END.lastIndex = from;
  return LINE_END.exec(text)?.index ?? text.length;
}

/** UTF-8 bytes of `text` from `start` to `end` (a surrogate is half of a 4-byte character). */
function utf8Length(text: string, start: number, end: number): number {
  let bytes = 0;
  for (let i = start; i < end; i += 1) {
    const code = text.charCodeAt(i);
    bytes += code < 0x80 ? 1 : code < 0x800 || (code >= 0xd800 && code <= 0xdfff) ? 2 : 3;
  }
  return bytes;
}

/**
 * Incremental SSE parser: feed it decoded text chunks in order (split anywhere, even
 * inside a CRLF); it calls the sink for each complete event.
 *
 * The framing is eventsource-parser's. Around it, this class counts the UTF-8 bytes fed to
 * it per line and per event (comment lines count for their line only, since the library
 * keeps nothing of them), before the library buffers them: once a line passes
 * `maxLineBytes` or an event passes `maxEventBytes`, the library's partial state is dropped
 * (`reset`), nothing more of that event reaches it, and the sink hears `oversized` where
 * the event ends (its blank line). A server that never ends a line or an event therefore
 * cannot grow memory past the limits.
 */
export class SseParser {
  readonly #sink: SseSink;
  readonly #parser: EventSourceParser;
  readonly #maxLine: number;
  readonly #maxEvent: number;
  #lineBytes = 0;
  #eventBytes = 0;
  #inComment = false;
  /** The last character was a CR: an LF right after it belongs to the same line end. */
  #afterCr = false;
  /** The current event passed a limit: the rest of it is not fed to the library. */
  #dropping = false;
  #started = false;
  /** The library reports each event's own `id:`; the format keeps the last one seen. */
  #lastId = '';

  constructor(sink: SseSink, options: SseParserOptions = {}) {
    this.#sink = sink;
    this.#maxLine = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.#maxEvent = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
    this.#parser = createParser({ onEvent: (message) => this.#event(message), onComment: () => this.#sink.comment?.() });
  }

  push(chunk: string): void {
    const text = this.#withoutBom(chunk);
    let from = 0; // the start of what is neither fed nor skipped yet
    let at = 0;
    while (at < text.length) {
      const end = lineEndAt(text, at);
      if (end > at) {
        if (this.#count(text, at, end)) {
          this.#feed(text.slice(from, at));
          this.#drop();
        }
        at = end;
        continue;
      }
      const code = text.charCodeAt(at);
      at += 1;
      if (code === LF && this.#afterCr) {
        this.#afterCr = false;
        if (at - 1 === from) from = at; // its CR went over completed as a CRLF (see below): skip it
        continue;
      }
      this.#afterCr = code === CR;
      if (this.#endLine()) from = at; // a dropped event ended: feeding resumes after it
    }
    if (this.#dropping) return;
    // A CR ending the chunk goes over completed as a CRLF (the LF, if it comes, is skipped
    // above): the library would hold the line back until it saw whether an LF follows.
    const rest = text.slice(from);
    this.#feed(rest.charCodeAt(rest.length - 1) === CR ? `${rest}\n` : rest);
  }

  /** TextDecoder drops a leading BOM already; the library only knows the undecoded one. */
  #withoutBom(chunk: string): string {
    if (this.#started || chunk.length === 0) return chunk;
    this.#started = true;
    return chunk.charCodeAt(0) === 0xfeff ? chunk.slice(1) : chunk;
  }

  /**
   * Counts a run of line content; true when it takes the line or the event over its limit
   * (a dropped event is not counted: only whether its lines are blank matters).
   */
  #count(text: string, start: number, end: number): boolean {
    this.#afterCr = false;
    if (this.#lineBytes === 0 && text.charCodeAt(start) === COLON) this.#inComment = true;
    if (this.#dropping) {
      this.#lineBytes += end - start;
      return false;
    }
    const bytes = utf8Length(text, start, end);
    this.#lineBytes += bytes;
    if (!this.#inComment) this.#eventBytes += bytes;
    return this.#lineBytes > this.#maxLine || this.#eventBytes > this.#maxEvent;
  }

  /** A line ended; a blank one ends the event. True when that ended a dropped event. */
  #endLine(): boolean {
    const blank = this.#lineBytes === 0;
    this.#lineBytes = 0;
    this.#inComment = false;
    if (!blank) return false;
    this.#eventBytes = 0;
    if (!this.#dropping) return false;
    this.#dropping = false;
    this.#sink.oversized?.();
    return true;
  }

  /** Forgets what the library holds of the current event; the rest of it is skipped. */
  #drop(): void {
    this.#parser.reset();
    this.#dropping = true;
  }

  #feed(text: string): void {
    if (text !== '') this.#parser.feed(text);
  }

  #event(message: EventSourceMessage): void {
    if (message.id !== undefined) this.#lastId = message.id;
    this.#sink.event({ event: message.event ?? 'message', data: message.data, id: this.#lastId });
  }
}

// ---------------------------------------------------------------------------------------
// Waterflai stream events
// ---------------------------------------------------------------------------------------

/** Event types of the Waterflai stream this module understands. */
export const STREAM_EVENT_TYPE = {
  NODE_STARTED: 'node_started',
  NODE_COMPLETED: 'node_completed',
  PROGRESS_UPDATE: 'progress_update',
  EXECUTION_COMPLETED: 'execution_completed',
} as const;

/** Progress learned from a stream event (fields of the wrong type are null). */
export interface StreamProgress {
  /** When the listener received it (the listener's clock, epoch ms). */
  readonly receivedAtMs: number;
  readonly type: string;
  readonly status: string | null;
  /**
   * Percent (0..100): the event's `progress` read with {@link progressScale}, so a
   * fraction server's 0.5 is 50 once its scale is known (undecided reads as a percent).
   */
  readonly progress: number | null;
  /**
   * The progress scale decided with this event included (`undefined`: still undecided).
   * Optional so that hand-made events (tests, fakes) need not carry it.
   */
  readonly progressScale?: ProgressScale;
  readonly completedNodes: number | null;
  readonly totalNodes: number | null;
  /** The node a `node_started` / `node_completed` event names, when it is a short string. */
  readonly nodeId: string | null;
}

/** How a listen ended. */
export type ListenOutcome =
  /** `execution_completed` arrived (or an oversized event, which only that one is): read the status now. */
  | 'completed'
  /** The server closed the stream without `execution_completed` (the contract closes it when the job ends): read the status. */
  | 'closed'
  /** The window ran out with the stream healthy. */
  | 'window'
  /** The caller's `keepListening` said to stop. */
  | 'stopped'
  /** No byte (not even a keep-alive) for the silence limit. */
  | 'silent'
  /** The stream could not be opened: non-200, wrong content type, redirect, timeout, network error. */
  | 'unavailable'
  /** The connection broke after it opened. */
  | 'failed'
  /** The caller aborted. */
  | 'aborted';

export interface ListenResult {
  readonly outcome: ListenOutcome;
  /** For `completed`: the status the event announced, when it was a string (informational only). */
  readonly status?: string;
  /** For `unavailable` / `failed`: a short reason built from codes only (never body text). */
  readonly reason?: string;
  /** Valid Waterflai events received. */
  readonly events: number;
  /** Events ignored as malformed (bad JSON, no type, oversized). */
  readonly malformed: number;
  /** Progress-bearing events, in arrival order. */
  readonly progress: readonly StreamProgress[];
  /** How long the listen took, in ms. */
  readonly elapsedMs: number;
  /**
   * The progress scale decided by the end of the listen ({@link ListenOptions.progressScale}
   * updated by every event), absent while undecided: store it with the poll state.
   */
  readonly progressScale?: ProgressScale;
}

export interface ListenOptions {
  /** Absolute stream URL (from `WaterflaiClient.streamUrl`). */
  readonly url: string;
  /** Returns the API key (sent as `X-API-Key`). */
  readonly apiKey: () => Promise<string> | string;
  /** Longest time to listen, in ms. */
  readonly windowMs: number;
  /** @default DEFAULT_CONNECT_TIMEOUT_MS (capped by the window) */
  readonly connectTimeoutMs?: number;
  /** @default DEFAULT_SILENCE_MS */
  readonly silenceMs?: number;
  /** @default DEFAULT_MAX_EVENT_BYTES */
  readonly maxEventBytes?: number;
  /** @default DEFAULT_MAX_LINE_BYTES */
  readonly maxLineBytes?: number;
  /**
   * The scale of this execution's `progress` decided before the listen (the poll state's
   * `progress_scale`); events refine it (see progress-scale.ts).
   * @default undefined (undecided)
   */
  readonly progressScale?: ProgressScale;
  /** Most progress events kept (the latest win). @default 200 */
  readonly maxProgressEvents?: number;
  /** Called with every valid event (execution_completed included), in order. */
  readonly onEvent?: (event: StreamProgress) => void;
  /**
   * Asked after every valid event and every `checkIntervalMs`: `false` ends the listen
   * (outcome `stopped`). @default always true
   */
  readonly keepListening?: () => boolean;
  /** @default 5000 */
  readonly checkIntervalMs?: number;
  readonly signal?: AbortSignal;
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /** @default Date.now */
  readonly now?: () => number;
}

function finiteOrNull(value: unknown, min: number, max: number): number | null {
  return typeof value === 'number' && Number.isFinite(value) && value >= min && value <= max ? value : null;
}

function countOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

function stringOrNull(value: unknown, maxLength = 64): string | null {
  return typeof value === 'string' && value.length > 0 && value.length <= maxLength ? value : null;
}

/**
 * A Waterflai stream event read defensively from one SSE event, or undefined when it is not
 * one. `progressScale` is the scale decided before this event; the result carries the
 * scale decided with it (`progressScale`) and its progress as a percent under that scale.
 */
export function parseStreamEvent(event: SseEvent, receivedAtMs: number, progressScale?: ProgressScale): StreamProgress | undefined {
  let json: unknown;
  try {
    json = JSON.parse(event.data);
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const body = json as Record<string, unknown>;
  const type = stringOrNull(body.type) ?? (event.event !== 'message' ? stringOrNull(event.event) : null);
  if (type === null) return undefined;
  const raw = finiteOrNull(body.progress, 0, 100);
  const total = countOrNull(body.total_nodes);
  const totalNodes = total === 0 ? null : total;
  const completedNodes = countOrNull(body.completed_nodes);
  const status = stringOrNull(body.status);
  const scale = inferProgressScale(progressScale, { progress: raw, completedNodes, totalNodes, status });
  return {
    receivedAtMs,
    type,
    status,
    progress: toPercent(raw, scale),
    ...(scale === undefined ? {} : { progressScale: scale }),
    completedNodes,
    totalNodes,
    nodeId: stringOrNull(body.node_id, 256),
  };
}

function checkApiKey(value: unknown): string | undefined {
  const key = typeof value === 'string' ? value.trim() : '';
  return /^[\x21-\x7e]+$/.test(key) ? key : undefined;
}

/** A description of a transport failure from error codes only (no raw text). */
function describeFailure(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,40}$/.test(code)) return `connection failed (${code})`;
    current = (current as { cause?: unknown }).cause;
  }
  return 'connection failed';
}

/** Why a listen stopped (the first reason wins). */
interface Stop {
  readonly outcome: ListenOutcome;
  readonly reason?: string;
}

/** The listen's time limits, with the defaults applied and capped to what a timer accepts. */
interface ListenTimes {
  readonly windowMs: number;
  readonly silenceMs: number;
  readonly connectMs: number;
  readonly checkMs: number;
}

function listenTimes(options: ListenOptions): ListenTimes {
  const windowMs = Math.max(0, Math.min(options.windowMs, MAX_TIMER_MS));
  return {
    windowMs,
    silenceMs: Math.max(1, Math.min(options.silenceMs ?? DEFAULT_SILENCE_MS, MAX_TIMER_MS)),
    connectMs: Math.max(1, Math.min(options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, windowMs, MAX_TIMER_MS)),
    checkMs: Math.max(10, Math.min(options.checkIntervalMs ?? 5_000, MAX_TIMER_MS)),
  };
}

/** The checked API key, or why the listen cannot start. */
async function readApiKey(apiKey: ListenOptions['apiKey']): Promise<string | Stop> {
  try {
    return checkApiKey(await apiKey()) ?? { outcome: 'unavailable', reason: 'invalid API key' };
  } catch {
    return { outcome: 'unavailable', reason: 'no API key' };
  }
}

/**
 * The answer's body when it is an event stream; otherwise why not (the body is cancelled
 * unread: its text never reaches the result).
 */
function eventStreamBody(response: Response): ReadableStream<Uint8Array> | Stop {
  const contentType = response.headers.get('content-type') ?? '';
  const isStream = /^text\/event-stream\b/i.test(contentType.trim());
  if (response.status === 200 && isStream && response.body !== null) return response.body;
  response.body?.cancel().catch(() => undefined);
  return { outcome: 'unavailable', reason: response.status === 200 ? 'not an event stream' : `HTTP ${response.status}` };
}

/**
 * Decides when a listen stops: the window, the wait for the headers, the silence between
 * bytes, the caller's abort and `keepListening`, and what the other steps conclude. The
 * first reason wins. Stopping aborts the request and cancels the reader, which settles a
 * pending read: the read loop needs no race (a race per read against a long-pending
 * promise would keep every chunk alive until the end of the listen).
 */
class ListenStopper {
  readonly controller = new AbortController();
  /** Settles once the listen is stopped. */
  readonly stopped: Promise<void>;
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #stop: Stop | undefined;
  #wake: () => void = () => undefined;
  readonly #times: ListenTimes;
  readonly #signal: AbortSignal | undefined;
  readonly #keepListening: (() => boolean) | undefined;
  readonly #onCallerAbort = (): void => this.halt({ outcome: 'aborted' });
  readonly #windowTimer: NodeJS.Timeout;
  readonly #connectTimer: NodeJS.Timeout;
  readonly #checkTimer: NodeJS.Timeout | undefined;
  #silenceTimer: NodeJS.Timeout | undefined;

  constructor(options: ListenOptions, times: ListenTimes) {
    this.#times = times;
    this.#signal = options.signal;
    this.#keepListening = options.keepListening;
    this.stopped = new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
    this.#signal?.addEventListener('abort', this.#onCallerAbort, { once: true });
    this.#windowTimer = setTimeout(() => this.halt({ outcome: 'window' }), times.windowMs);
    const noAnswer = { outcome: 'unavailable', reason: `no answer within ${times.connectMs} ms` } as const;
    this.#connectTimer = setTimeout(() => this.halt(noAnswer), times.connectMs);
    this.#checkTimer = this.#keepListening === undefined ? undefined : setInterval(() => this.checkWanted(), times.checkMs);
  }

  /** Why the listen stopped, once it did. */
  get stop(): Stop | undefined {
    return this.#stop;
  }

  halt(why: Stop): void {
    if (this.#stop !== undefined) return;
    this.#stop = why;
    this.controller.abort();
    this.reader?.cancel().catch(() => undefined);
    this.#wake();
  }

  /** The headers came (or the request ended): the connect timeout is over. */
  answered(): void {
    clearTimeout(this.#connectTimer);
  }

  /** A byte arrived (keep-alives included): the silence starts again. */
  heard(): void {
    if (this.#silenceTimer !== undefined) clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => this.halt({ outcome: 'silent' }), this.#times.silenceMs);
  }

  /** Stops when the caller no longer wants to listen (a `keepListening` that throws means no). */
  checkWanted(): void {
    let wanted: boolean;
    try {
      wanted = this.#keepListening?.() ?? true;
    } catch {
      wanted = false;
    }
    if (!wanted) this.halt({ outcome: 'stopped' });
  }

  /** Clears every timer and listener and closes the connection. */
  dispose(): void {
    clearTimeout(this.#windowTimer);
    clearTimeout(this.#connectTimer);
    if (this.#checkTimer !== undefined) clearInterval(this.#checkTimer);
    if (this.#silenceTimer !== undefined) clearTimeout(this.#silenceTimer);
    this.#signal?.removeEventListener('abort', this.#onCallerAbort);
    this.controller.abort();
    this.reader?.cancel().catch(() => undefined);
  }
}

/** One listen: what it heard so far, and the steps from the request to the result. */
class Listen {
  readonly #options: ListenOptions;
  readonly #now: () => number;
  readonly #startedAt: number;
  readonly #times: ListenTimes;
  readonly #progress: StreamProgress[] = [];
  #events = 0;
  #malformed = 0;
  #scale: ProgressScale | undefined;
  #completedStatus: string | undefined;

  constructor(options: ListenOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
    this.#times = listenTimes(options);
    this.#scale = options.progressScale;
  }

  async run(): Promise<ListenResult> {
    if (this.#options.signal?.aborted) return this.#result({ outcome: 'aborted' });
    if (this.#times.windowMs <= 0) return this.#result({ outcome: 'window' });
    const apiKey = await readApiKey(this.#options.apiKey);
    if (typeof apiKey !== 'string') return this.#result(apiKey);
    const stopper = new ListenStopper(this.#options, this.#times);
    let stop: Stop;
    try {
      stop = await this.#listen(apiKey, stopper);
    } finally {
      stopper.dispose();
    }
    return this.#result(stop);
  }

  /** Opens the stream, checks the answer and reads it until the listen stops; returns why it stopped. */
  async #listen(apiKey: string, stopper: ListenStopper): Promise<Stop> {
    try {
      const response = await this.#open(apiKey, stopper);
      stopper.answered();
      if (response === undefined) return stopper.stop ?? { outcome: 'aborted' };
      const body = eventStreamBody(response);
      if ('outcome' in body) return body;
      await this.#read(body, stopper);
    } catch (error) {
      stopper.halt({ outcome: stopper.reader === undefined ? 'unavailable' : 'failed', reason: describeFailure(error) });
    }
    return stopper.stop ?? { outcome: 'closed' };
  }

  /** Sends the GET (redirects are not followed); undefined when the listen stopped before the headers came. */
  #open(apiKey: string, stopper: ListenStopper): Promise<Response | undefined> {
    const doFetch = this.#options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const response = doFetch(this.#options.url, {
      method: 'GET',
      headers: { 'X-API-Key': apiKey, Accept: 'text/event-stream', 'Cache-Control': 'no-cache' },
      redirect: 'manual',
      signal: stopper.controller.signal,
    });
    response.catch(() => undefined);
    return Promise.race([response, stopper.stopped.then(() => undefined)]);
  }

  /** Reads the body, decoding UTF-8 across chunks, and frames it into events until it ends or the listen stops. */
  async #read(body: ReadableStream<Uint8Array>, stopper: ListenStopper): Promise<void> {
    const parser = new SseParser(
      { event: (event) => this.#dispatch(event, stopper), oversized: () => this.#oversized(stopper) },
      {
        maxEventBytes: this.#options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES,
        maxLineBytes: this.#options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
      },
    );
    const decoder = new TextDecoder('utf-8');
    stopper.heard();
    const reader = body.getReader();
    stopper.reader = reader;
    while (stopper.stop === undefined) {
      const chunk = await reader.read();
      if (stopper.stop !== undefined) return;
      if (chunk.done) {
        // An unterminated last event is discarded, as the SSE format requires.
        parser.push(decoder.decode());
        stopper.halt({ outcome: 'closed' });
        return;
      }
      stopper.heard();
      parser.push(decoder.decode(chunk.value, { stream: true }));
    }
  }

  /** One SSE event: read as a Waterflai event, counted, passed on; it may end the listen. */
  #dispatch(event: SseEvent, stopper: ListenStopper): void {
    const parsed = parseStreamEvent(event, this.#now(), this.#scale);
    if (parsed === undefined) {
      this.#malformed += 1;
      return;
    }
    this.#events += 1;
    this.#scale = parsed.progressScale;
    try {
      this.#options.onEvent?.(parsed);
    } catch {
      // The caller's bookkeeping must not break the listen.
    }
    if (parsed.type === STREAM_EVENT_TYPE.EXECUTION_COMPLETED) {
      this.#completedStatus = parsed.status ?? undefined;
      stopper.halt({ outcome: 'completed' });
      return;
    }
    this.#keepProgress(parsed);
    stopper.checkWanted();
  }

  /** Only execution_completed carries a large payload (final_output): an oversized event is the wake-up. */
  #oversized(stopper: ListenStopper): void {
    this.#malformed += 1;
    stopper.halt({ outcome: 'completed' });
  }

  /** Keeps a progress-bearing event (the latest `maxProgressEvents`). */
  #keepProgress(event: StreamProgress): void {
    if (event.progress === null && event.completedNodes === null && event.status === null && event.nodeId === null) return;
    this.#progress.push(event);
    if (this.#progress.length > (this.#options.maxProgressEvents ?? 200)) this.#progress.shift();
  }

  #result(stop: Stop): ListenResult {
    const status = stop.outcome === 'completed' ? this.#completedStatus : undefined;
    const reason = stop.outcome === 'completed' ? undefined : stop.reason;
    return {
      outcome: stop.outcome,
      ...(status === undefined ? {} : { status }),
      ...(reason === undefined ? {} : { reason }),
      events: this.#events,
      malformed: this.#malformed,
      progress: this.#progress,
      elapsedMs: Math.max(0, this.#now() - this.#startedAt),
      ...(this.#scale === undefined ? {} : { progressScale: this.#scale }),
    };
  }
}

/**
 * Opens the stream and listens until `execution_completed`, the end of the stream, the
 * window, a silence, a failure or the caller's abort, whichever comes first. Never throws
 * for anything the server or the network does; the connection is closed on return.
 */
export async function listenToExecution(options: ListenOptions): Promise<ListenResult> {
  return new Listen(options).run();
}
