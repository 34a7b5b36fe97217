/**
 * The Waterflai asynchronous execution API as the orchestrator reads it (see the contract in
 * `waterflai-async-api.txt` and docs/waterflai-contract.md): the bodies of its answers, as
 * tolerant zod schemas (unknown fields pass, wrong optional fields become null), and the
 * small, predictable result types the client returns.
 */
import * as z from 'zod';
import { WATERFLAI_STATUS, type WaterflaiStatus } from './constants';
import { URL_IDENTIFIER_MAX_LENGTH, URL_IDENTIFIER_PATTERN } from './identifiers';

// ---------------------------------------------------------------------------------------
// Response schemas (tolerant: unknown fields pass, wrong optional fields become null)
// ---------------------------------------------------------------------------------------

/** An optional field: a wrong type, `null` or absence all become `null`. */
function tolerant<T extends z.ZodType>(schema: T) {
  return schema.nullable().catch(null);
}

/**
 * Body of `POST /v1/executions/{chatbot_id}/async`. Only `execution_id` is required, and
 * it must be a safe URL identifier because it is later put into URLs. Unknown fields pass
 * through; a tracking URL of the wrong type becomes `null`.
 */
export const startedExecutionSchema = z.looseObject({
  execution_id: z.string().max(URL_IDENTIFIER_MAX_LENGTH).regex(URL_IDENTIFIER_PATTERN),
  status_url: tolerant(z.string()),
  stream_url: tolerant(z.string()),
  cancel_url: tolerant(z.string()),
});
/** What {@link startedExecutionSchema} produces (unknown fields included). */
export type StartedExecutionBody = z.output<typeof startedExecutionSchema>;

const count = () => tolerant(z.number().int().nonnegative());

/**
 * Body of `GET /v1/executions/{execution_id}`. Only `status` (any string) is required.
 * `progress` accepts any finite number and is clamped to [0, 100], a range that holds both
 * scales Waterflai may use (fraction 0..1 or percent 0..100); which one is decided later,
 * from the data (see progress-scale.ts). Every other field of the wrong type becomes
 * `null`. `final_output` is any JSON value (absent stays absent). Unknown fields pass
 * through.
 */
export const executionStatusSchema = z.looseObject({
  execution_id: tolerant(z.string()),
  status: z.string(),
  progress: tolerant(z.number()).transform((value) => (value === null ? null : Math.min(100, Math.max(0, value)))),
  current_node: tolerant(z.string()),
  completed_nodes: count(),
  total_nodes: count(),
  final_output: z.unknown().optional(),
  error_message: tolerant(z.string()),
  created_at: tolerant(z.string()),
  started_at: tolerant(z.string()),
  completed_at: tolerant(z.string()),
  retry_count: count(),
  execution_source: tolerant(z.string()),
  is_temporary: tolerant(z.boolean()),
  cleanup_after: tolerant(z.string()),
});
/** What {@link executionStatusSchema} produces (unknown fields included). */
export type ExecutionStatusBody = z.output<typeof executionStatusSchema>;

/**
 * Body of `DELETE /v1/executions/{execution_id}`. `cancelled` (boolean) is required;
 * everything else is optional and tolerant. Unknown fields pass through.
 */
export const cancelResultSchema = z.looseObject({
  execution_id: tolerant(z.string()),
  cancelled: z.boolean(),
  message: tolerant(z.string()),
  previous_status: tolerant(z.string()),
});
/** What {@link cancelResultSchema} produces (unknown fields included). */
export type CancelResultBody = z.output<typeof cancelResultSchema>;

// ---------------------------------------------------------------------------------------
// Result types (known fields only, so they are small and predictable to store)
// ---------------------------------------------------------------------------------------

/** An execution Waterflai accepted. */
export interface StartedExecution {
  /** Safe to put into a URL (matches {@link URL_IDENTIFIER_PATTERN}). */
  readonly execution_id: string;
  readonly status_url: string | null;
  readonly stream_url: string | null;
  readonly cancel_url: string | null;
}

/** The state of an execution as Waterflai reports it. */
export interface ExecutionStatus {
  /** From the body, or the requested id when the body has none. */
  readonly execution_id: string;
  /** The status string exactly as sent. */
  readonly status: string;
  /** `status` when it is one of {@link WATERFLAI_STATUS}, else `null` (never throws). */
  readonly known_status: WaterflaiStatus | null;
  /**
   * As sent, clamped to [0, 100]; `null` when absent or not a number. Either a fraction
   * (0..1) or a percent: the scale is decided later, from the data (`inferProgressScale`
   * and `toPercent` in progress-scale.ts; `mapExecutionStatus` records a percent).
   */
  readonly progress: number | null;
  readonly current_node: string | null;
  readonly completed_nodes: number | null;
  readonly total_nodes: number | null;
  /** Any JSON value; `undefined` when the body has no `final_output`. */
  readonly final_output: unknown;
  readonly error_message: string | null;
  readonly created_at: string | null;
  readonly started_at: string | null;
  readonly completed_at: string | null;
  readonly retry_count: number | null;
  readonly execution_source: string | null;
  readonly is_temporary: boolean | null;
  readonly cleanup_after: string | null;
}

/**
 * Outcome of a cancel request. See {@link WaterflaiClient.cancelExecution} for how an
 * execution that had already finished is reported.
 */
export interface CancelResult {
  /** From the body, or the requested id when the body has none. */
  readonly execution_id: string;
  /** True only when Waterflai says this request cancelled the execution. */
  readonly cancelled: boolean;
  /**
   * True when the execution could not be cancelled because it had already finished
   * (COMPLETED, FAILED or CANCELLED): HTTP 409, or a 2xx with `cancelled: false` whose
   * `previous_status` is not PENDING/RUNNING. Poll the execution to learn its real state.
   */
  readonly alreadyFinished: boolean;
  readonly message: string | null;
  readonly previous_status: string | null;
}

/** Per-call settings. */
export interface RequestOptions {
  /**
   * Deadline of this request in ms (connection, headers and body), at least 1.
   * @default the client's `defaultTimeoutMs`
   */
  readonly timeoutMs?: number;
  /**
   * Aborts the request. When it fires, the call rejects with the signal's `reason`
   * unchanged (not wrapped), and an already-aborted signal prevents the request.
   */
  readonly signal?: AbortSignal;
}
