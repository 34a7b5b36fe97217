import * as z from 'zod';
import { InvalidMessageError, type InvalidMessageContext } from './errors';
import { JOB_ID_MAX_LENGTH, JOB_ID_PATTERN, URL_IDENTIFIER_MAX_LENGTH, URL_IDENTIFIER_PATTERN } from './identifiers';

/**
 * Limits that keep every downstream payload inside AWS limits:
 * - the whole message body fits an SQS message (256 KiB) and is checked before parsing;
 * - `input_data` only travels to Waterflai, so it may use most of that;
 * - `metadata` is copied into the job record (DynamoDB, 400 KB), the state machine input
 *   (256 KB) and every outcome event (EventBridge, 256 KB), so it is kept small.
 * Nesting depth is bounded so that no parser or DynamoDB map (32 levels) chokes.
 */
export const JOB_REQUEST_LIMITS = {
  MAX_MESSAGE_BYTES: 256 * 1024,
  MAX_INPUT_DATA_BYTES: 192 * 1024,
  MAX_INPUT_DATA_DEPTH: 32,
  MAX_METADATA_BYTES: 8 * 1024,
  MAX_METADATA_DEPTH: 8,
  MAX_TIMEOUT_SECONDS: 365 * 24 * 3600,
} as const;

/** The job request a producer sends (directly, or as an EventBridge event's `detail`). */
export const jobRequestSchema = z
  .strictObject({
    action: z.literal('start').optional().describe('Optional; "start" is the default action.'),
    job_id: z
      .string()
      .max(JOB_ID_MAX_LENGTH)
      .regex(JOB_ID_PATTERN)
      .optional()
      .describe(
        'Idempotency key of the job. Default: the EventBridge event id when routed by a rule, else the SQS message id. Letters, digits, _ - . : (max 128).',
      ),
    chatbot_id: z
      .string()
      .max(URL_IDENTIFIER_MAX_LENGTH)
      .regex(URL_IDENTIFIER_PATTERN)
      .describe('The Waterflai chatbot (chatflow or workflow) to run. Letters, digits, _ and - (max 128).'),
    input_data: z
      .record(z.string(), z.unknown())
      .describe(
        `Sent to Waterflai as is. A JSON object, at most ${JOB_REQUEST_LIMITS.MAX_INPUT_DATA_BYTES} bytes and ${JOB_REQUEST_LIMITS.MAX_INPUT_DATA_DEPTH} levels deep.`,
      ),
    metadata: z
      .record(z.string(), z.unknown())
      .optional()
      .describe(
        `Opaque to the orchestrator and copied into every outcome event. A JSON object, at most ${JOB_REQUEST_LIMITS.MAX_METADATA_BYTES} bytes and ${JOB_REQUEST_LIMITS.MAX_METADATA_DEPTH} levels deep.`,
      ),
    timeout_seconds: z
      .number()
      .int()
      .positive()
      .max(JOB_REQUEST_LIMITS.MAX_TIMEOUT_SECONDS)
      .optional()
      .describe("Deadline of the job in seconds from acceptance, capped by the deployment's maximum job duration."),
  })
  .describe('A Waterflai job request: the SQS message body, or the detail of an EventBridge event routed to the intake queue.');

export type JobRequestBody = z.infer<typeof jobRequestSchema>;

/** A validated job request with its job id settled. */
export interface JobRequest {
  readonly job_id: string;
  readonly chatbot_id: string;
  readonly input_data: Record<string, unknown>;
  readonly metadata: Record<string, unknown>;
  readonly timeout_seconds?: number;
  /** How the request arrived. */
  readonly delivery: 'sqs' | 'eventbridge';
}

/** `action` of a cancel request. */
export const CANCEL_ACTION = 'cancel';

/** A producer's request to cancel a job (sent to the same intake queue). */
export const cancelRequestSchema = z
  .strictObject({
    action: z.literal(CANCEL_ACTION),
    job_id: z.string().max(JOB_ID_MAX_LENGTH).regex(JOB_ID_PATTERN).describe('The job to cancel.'),
  })
  .describe('Cancels a job: a running execution is cancelled in Waterflai; a job not started yet never starts.');

/** What an intake message asks for. */
export type IntakeMessage =
  | { readonly kind: 'start'; readonly request: JobRequest }
  | { readonly kind: 'cancel'; readonly job_id: string; readonly delivery: JobRequest['delivery'] };

/** The fields of an EventBridge event that a rule delivered to the queue. */
const eventBridgeEnvelopeSchema = z.object({
  id: z.string().max(JOB_ID_MAX_LENGTH).regex(JOB_ID_PATTERN),
  'detail-type': z.string(),
  source: z.string(),
  detail: z.record(z.string(), z.unknown()),
});

const MAX_ERROR_MESSAGE_LENGTH = 300;

/**
 * Parses an SQS message body into a job request.
 *
 * @param body the raw SQS message body
 * @param messageId the SQS message id (the default job id)
 * @throws InvalidMessageError naming the offending field; its `jobId` is set when the body
 *   was a JSON object, so that a Failed event can be announced for it
 */
export function parseJobMessage(body: string, messageId: string): JobRequest {
  const message = parseIntakeMessage(body, messageId);
  if (message.kind !== 'start')
    throw new InvalidMessageError('expected a job request, got a cancel request', { jobId: message.job_id, delivery: message.delivery });
  return message.request;
}

/**
 * Parses an SQS message body from the intake queue: a job request, or a cancel request
 * (`{"action": "cancel", "job_id": ...}`), either of them directly or as the detail of an
 * EventBridge event that a rule delivered to the queue.
 *
 * @throws InvalidMessageError as {@link parseJobMessage}
 */
export function parseIntakeMessage(body: string, messageId: string): IntakeMessage {
  const bytes = Buffer.byteLength(body, 'utf8');
  if (bytes === 0) throw new InvalidMessageError('message body is empty');
  if (bytes > JOB_REQUEST_LIMITS.MAX_MESSAGE_BYTES) {
    throw new InvalidMessageError(`message body is ${bytes} bytes, over the ${JOB_REQUEST_LIMITS.MAX_MESSAGE_BYTES} byte limit`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new InvalidMessageError('message body is not valid JSON');
  }
  if (!isPlainObject(parsed)) {
    throw new InvalidMessageError(`message body must be a JSON object, got ${describeJsonType(parsed)}`);
  }

  let request: Record<string, unknown> = parsed;
  let delivery: JobRequest['delivery'] = 'sqs';
  let defaultJobId = messageId;
  if ('detail-type' in parsed || ('detail' in parsed && 'source' in parsed)) {
    const envelope = eventBridgeEnvelopeSchema.safeParse(parsed);
    if (!envelope.success) {
      throw new InvalidMessageError(`malformed EventBridge envelope: ${formatIssues(envelope.error)}`, {
        ...optional('jobId', jobIdOf(parsed, messageId)),
        delivery: 'eventbridge',
      });
    }
    request = parsed.detail as Record<string, unknown>; // the parsed object, not zod's copy (see below)
    delivery = 'eventbridge';
    defaultJobId = envelope.data.id;
  }

  if (request.action === CANCEL_ACTION) {
    const cancel = cancelRequestSchema.safeParse(request);
    if (!cancel.success) {
      throw new InvalidMessageError(`invalid cancel request: ${formatIssues(cancel.error)}`, {
        ...optional('jobId', jobIdOf(request, undefined)),
        delivery,
      });
    }
    return { kind: 'cancel', job_id: cancel.data.job_id, delivery };
  }

  const context = salvageContext(request, defaultJobId, delivery);
  const result = jobRequestSchema.safeParse(request);
  if (!result.success) throw new InvalidMessageError(formatIssues(result.error), context);
  const data = result.data;

  const sizeError =
    checkJsonSize('input_data', data.input_data, JOB_REQUEST_LIMITS.MAX_INPUT_DATA_BYTES, JOB_REQUEST_LIMITS.MAX_INPUT_DATA_DEPTH) ??
    checkJsonSize('metadata', data.metadata ?? {}, JOB_REQUEST_LIMITS.MAX_METADATA_BYTES, JOB_REQUEST_LIMITS.MAX_METADATA_DEPTH);
  if (sizeError) throw new InvalidMessageError(sizeError, context);

  return {
    kind: 'start',
    request: {
      job_id: data.job_id ?? defaultJobId,
      chatbot_id: data.chatbot_id,
      // The objects as parsed, not zod's copies: a copy loses keys such as "__proto__", and
      // input_data must reach Waterflai unchanged.
      input_data: request.input_data as Record<string, unknown>,
      metadata: (request.metadata as Record<string, unknown> | undefined) ?? {},
      ...optional('timeout_seconds', data.timeout_seconds),
      delivery,
    },
  };
}

/**
 * What an invalid request still tells us, each part only when valid on its own: the job
 * id (its own valid `job_id`, else the default when no `job_id` was given), the chatbot id
 * and the metadata.
 */
function salvageContext(request: Record<string, unknown>, defaultJobId: string, delivery: JobRequest['delivery']): InvalidMessageContext {
  const { chatbot_id: chatbotId, metadata } = request;
  const validMetadata =
    isPlainObject(metadata) &&
    checkJsonSize('metadata', metadata, JOB_REQUEST_LIMITS.MAX_METADATA_BYTES, JOB_REQUEST_LIMITS.MAX_METADATA_DEPTH) === undefined;
  return {
    ...optional('jobId', jobIdOf(request, defaultJobId)),
    ...optional('chatbotId', typeof chatbotId === 'string' && URL_IDENTIFIER_PATTERN.test(chatbotId) ? chatbotId : undefined),
    ...(validMetadata ? { metadata } : {}),
    delivery,
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

/** The job id to report for a request object: its own valid `job_id`, else the default. */
function jobIdOf(request: Record<string, unknown>, fallback: string | undefined): string | undefined {
  const own = request.job_id;
  if (own === undefined) return fallback !== undefined && JOB_ID_PATTERN.test(fallback) ? fallback : undefined;
  return typeof own === 'string' && JOB_ID_PATTERN.test(own) ? own : undefined;
}

/** Says what is wrong with a JSON value's depth or size, or undefined when it fits. */
function checkJsonSize(field: string, value: unknown, maxBytes: number, maxDepth: number): string | undefined {
  const depth = jsonDepth(value);
  if (depth > maxDepth) return `${field} is nested ${depth} levels deep, over the limit of ${maxDepth}`;
  const bytes = Buffer.byteLength(JSON.stringify(value), 'utf8');
  if (bytes > maxBytes) return `${field} is ${bytes} bytes, over the limit of ${maxBytes}`;
  return undefined;
}

/** Nesting depth of a JSON value (a scalar is 0, `{}` is 1), computed without recursion. */
export function jsonDepth(value: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [current, depth] = next;
    if (current === null || typeof current !== 'object') {
      max = Math.max(max, depth);
      continue;
    }
    max = Math.max(max, depth + 1);
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
  return max;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeJsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** Field-naming error text that never echoes submitted values. */
function formatIssues(error: z.ZodError): string {
  const text = error.issues
    .map((issue) => {
      const path = issue.path.length > 0 ? issue.path.join('.') : 'message';
      return `${path}: ${issue.message}`;
    })
    .join('; ');
  return text.length > MAX_ERROR_MESSAGE_LENGTH ? `${text.slice(0, MAX_ERROR_MESSAGE_LENGTH - 3)}...` : text;
}
