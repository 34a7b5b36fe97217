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
 * - payloads are parsed defensively: lines and events have byte limits, JSON that does not
 *   parse or fields of the wrong type are ignored, unknown event types are ignored;
 * - nothing here logs, and results carry no body text (only counts and our own reasons).
 *
 * The SSE parser is a small implementation of the WHATWG event-stream format: `data:`,
 * `event:`, `id:` and `retry:` fields, comment lines (`:`), CR, LF and CRLF line ends, a
 * leading BOM, multi-line data joined with `\n`.
 *
 * Progress may come as a fraction (0..1) or a percent (0..100, as in the contract's
 * `{"type": "progress_update", "progress": 50.0}`): events report it as a percent, read
 * with the scale decided so far ({@link ListenOptions.progressScale}, then each event's
 * evidence, see progress-scale.ts), and the listen reports the scale it ends with.
 */
import { inferProgressScale, toPercent, type ProgressScale } from '../domain/progress-scale';

/** Keeps this much of the invocation free after a listen (the status read and records that follow). */
export const DEFAULT_STREAM_RESERVE_MS = 20_000;
/** Default longest wait for the response headers. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Default longest silence (no byte at all, heartbeats included) before giving up on a stream. */
export const DEFAULT_SILENCE_MS = 45_000;
/** Longest line accepted (longer lines are dropped with the event they belong to). */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
/** Largest event data accepted; a larger event counts as a wake-up (the caller reads the status). */
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
// SSE parsing
// ---------------------------------------------------------------------------------------

/** One dispatched server-sent event. */
export interface SseEvent {
  /** The `event:` field, or `message`. */
  readonly event: string;
  /** The `data:` lines joined with `\n`. */
  readonly data: string;
  /** The last `id:` seen (per the spec it persists across events). */
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
  /** An event dropped because a line or its data was too long. */
  oversized?(): void;
}

/**
 * Incremental SSE parser: feed it decoded text chunks in order (split anywhere, even
 * inside a CRLF); it calls the sink for each complete event.
 */
export class SseParser {
  readonly #maxLine: number;
  readonly #maxEvent: number;
  #buffer = '';
  #data: string[] = [];
  #dataLength = 0;
  #eventType = '';
  #lastId = '';
  #dropping = false;
  /** The current line passed the limit: the rest of it is discarded up to its end. */
  #skippingLine = false;
  #sawCr = false;
  #started = false;

  constructor(
    private readonly sink: SseSink,
    options: SseParserOptions = {},
  ) {
    this.#maxLine = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.#maxEvent = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  }

  push(chunk: string): void {
    let text = chunk;
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text.length; i += 1) {
      const code = text.charCodeAt(i);
      if (code !== 10 && code !== 13) continue;
      if (code === 10 && this.#sawCr && i === start && this.#buffer === '') {
        // The LF of a CRLF split across chunks (or right after a CR): already ended the line.
        this.#sawCr = false;
        start = i + 1;
        continue;
      }
      if (this.#skippingLine) this.#skippingLine = false;
      else this.#line(this.#buffer + text.slice(start, i));
      this.#buffer = '';
      this.#sawCr = code === 13;
      if (code === 13 && text.charCodeAt(i + 1) === 10) {
        i += 1;
        this.#sawCr = false;
      }
      start = i + 1;
    }
    if (start < text.length) {
      this.#sawCr = false;
      if (!this.#skippingLine) this.#buffer += text.slice(start);
      if (this.#buffer.length > this.#maxLine) {
        // A runaway line: drop it (up to its end) and the event it belongs to.
        this.#buffer = '';
        this.#skippingLine = true;
        this.#dropping = true;
      }
    }
  }

  #line(line: string): void {
    if (line.length > this.#maxLine) {
      this.#dropping = true;
      return;
    }
    if (line === '') {
      this.#dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) {
      this.sink.comment?.();
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'data':
        this.#dataLength += value.length + 1;
        if (this.#dataLength > this.#maxEvent) this.#dropping = true;
        else this.#data.push(value);
        break;
      case 'event':
        this.#eventType = value;
        break;
      case 'id':
        if (!value.includes('\u0000')) this.#lastId = value;
        break;
      default:
        // `retry` (reconnection is not used here) and unknown fields are ignored.
        break;
    }
  }

  #dispatch(): void {
    const dropped = this.#dropping;
    const data = this.#data.join('\n');
    const hadData = this.#data.length > 0;
    const type = this.#eventType === '' ? 'message' : this.#eventType;
    this.#data = [];
    this.#dataLength = 0;
    this.#eventType = '';
    this.#dropping = false;
    if (dropped) {
      this.sink.oversized?.();
      return;
    }
    if (!hadData) return;
    this.sink.event({ event: type, data, id: this.#lastId });
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

/**
 * Opens the stream and listens until `execution_completed`, the end of the stream, the
 * window, a silence, a failure or the caller's abort, whichever comes first. Never throws
 * for anything the server or the network does; the connection is closed on return.
 */
export async function listenToExecution(options: ListenOptions): Promise<ListenResult> {
  const now = options.now ?? Date.now;
  const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const startedAt = now();
  const windowMs = Math.max(0, Math.min(options.windowMs, MAX_TIMER_MS));
  const silenceMs = Math.max(1, Math.min(options.silenceMs ?? DEFAULT_SILENCE_MS, MAX_TIMER_MS));
  const connectMs = Math.max(1, Math.min(options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, windowMs, MAX_TIMER_MS));
  const keep = options.maxProgressEvents ?? 200;
  const progress: StreamProgress[] = [];
  let events = 0;
  let malformed = 0;
  let scale = options.progressScale;

  const result = (outcome: ListenOutcome, extra: { status?: string; reason?: string } = {}): ListenResult => ({
    outcome,
    ...extra,
    events,
    malformed,
    progress,
    elapsedMs: Math.max(0, now() - startedAt),
    ...(scale === undefined ? {} : { progressScale: scale }),
  });

  if (options.signal?.aborted) return result('aborted');
  if (windowMs <= 0) return result('window');

  let apiKey: string | undefined;
  try {
    apiKey = checkApiKey(await options.apiKey());
  } catch {
    return result('unavailable', { reason: 'no API key' });
  }
  if (apiKey === undefined) return result('unavailable', { reason: 'invalid API key' });

  const controller = new AbortController();
  type Stop = { outcome: ListenOutcome; reason?: string };
  let stop: Stop | undefined;
  let wake: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    wake = resolve;
  });
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  // Stopping aborts the request and cancels the reader, which settles a pending read: the
  // read loop needs no race (a race per read against a long-pending promise would keep
  // every chunk alive until the end of the listen).
  const halt = (why: Stop): void => {
    if (stop !== undefined) return;
    stop = why;
    controller.abort();
    reader?.cancel().catch(() => undefined);
    wake();
  };
  const onCallerAbort = (): void => halt({ outcome: 'aborted' });
  options.signal?.addEventListener('abort', onCallerAbort, { once: true });

  const windowTimer = setTimeout(() => halt({ outcome: 'window' }), windowMs);
  let silenceTimer: NodeJS.Timeout | undefined;
  const heard = (): void => {
    if (silenceTimer !== undefined) clearTimeout(silenceTimer);
    silenceTimer = setTimeout(() => halt({ outcome: 'silent' }), silenceMs);
  };
  const connectTimer = setTimeout(() => halt({ outcome: 'unavailable', reason: `no answer within ${connectMs} ms` }), connectMs);
  const stillWanted = (): boolean => {
    try {
      return options.keepListening?.() ?? true;
    } catch {
      return false;
    }
  };
  const checkTimer =
    options.keepListening === undefined
      ? undefined
      : setInterval(
          () => {
            if (!stillWanted()) halt({ outcome: 'stopped' });
          },
          Math.max(10, Math.min(options.checkIntervalMs ?? 5_000, MAX_TIMER_MS)),
        );

  let completedStatus: string | undefined;
  const parser = new SseParser(
    {
      event(event) {
        const parsed = parseStreamEvent(event, now(), scale);
        if (parsed === undefined) {
          malformed += 1;
          return;
        }
        events += 1;
        scale = parsed.progressScale;
        try {
          options.onEvent?.(parsed);
        } catch {
          // The caller's bookkeeping must not break the listen.
        }
        if (parsed.type === STREAM_EVENT_TYPE.EXECUTION_COMPLETED) {
          completedStatus = parsed.status ?? undefined;
          halt({ outcome: 'completed' });
          return;
        }
        if (parsed.progress !== null || parsed.completedNodes !== null || parsed.status !== null || parsed.nodeId !== null) {
          progress.push(parsed);
          if (progress.length > keep) progress.shift();
        }
        if (!stillWanted()) halt({ outcome: 'stopped' });
      },
      oversized() {
        // Only execution_completed carries a large payload (final_output): treat it as the wake-up.
        malformed += 1;
        halt({ outcome: 'completed' });
      },
    },
    { maxEventBytes: options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES, maxLineBytes: options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES },
  );

  try {
    const responsePromise = doFetch(options.url, {
      method: 'GET',
      headers: { 'X-API-Key': apiKey, Accept: 'text/event-stream', 'Cache-Control': 'no-cache' },
      redirect: 'manual',
      signal: controller.signal,
    });
    responsePromise.catch(() => undefined);
    const response = await Promise.race([responsePromise, stopped.then(() => undefined)]);
    clearTimeout(connectTimer);
    if (response === undefined) return result(stop?.outcome ?? 'aborted', stop?.reason === undefined ? {} : { reason: stop.reason });
    if (response.status !== 200) {
      response.body?.cancel().catch(() => undefined);
      return result('unavailable', { reason: `HTTP ${response.status}` });
    }
    const contentType = response.headers.get('content-type') ?? '';
    if (!/^text\/event-stream\b/i.test(contentType.trim()) || response.body === null) {
      response.body?.cancel().catch(() => undefined);
      return result('unavailable', { reason: 'not an event stream' });
    }
    heard();
    reader = response.body.getReader();
    const decoder = new TextDecoder('utf-8');
    for (;;) {
      if (stop !== undefined) break;
      const chunk = await reader.read();
      if (stop !== undefined) break;
      if (chunk.done) {
        // An unterminated last event is discarded, as the SSE format requires.
        parser.push(decoder.decode());
        if (stop === undefined) halt({ outcome: 'closed' });
        break;
      }
      heard();
      parser.push(decoder.decode(chunk.value, { stream: true }));
      if (stop !== undefined) break;
    }
  } catch (error) {
    if (stop === undefined) {
      const opened = reader !== undefined;
      halt({ outcome: opened ? 'failed' : 'unavailable', reason: describeFailure(error) });
    }
  } finally {
    clearTimeout(windowTimer);
    clearTimeout(connectTimer);
    if (checkTimer !== undefined) clearInterval(checkTimer);
    if (silenceTimer !== undefined) clearTimeout(silenceTimer);
    options.signal?.removeEventListener('abort', onCallerAbort);
    controller.abort();
    reader?.cancel().catch(() => undefined);
  }
  const final = stop ?? { outcome: 'closed' as const };
  if (final.outcome === 'completed') return result('completed', completedStatus === undefined ? {} : { status: completedStatus });
  return result(final.outcome, final.reason === undefined ? {} : { reason: final.reason });
}
