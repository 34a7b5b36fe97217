import { ERROR_CODE, type ErrorCode } from './constants';

/**
 * Base of every error the orchestrator raises on purpose. `retryable` tells the caller
 * whether trying again later may succeed (transient) or never will (permanent).
 */
export abstract class OrchestratorError extends Error {
  abstract readonly retryable: boolean;
  abstract readonly code: string;

  protected constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A message that is not a valid job request. Permanent. */
export class InvalidMessageError extends OrchestratorError {
  readonly retryable = false;
  readonly code: ErrorCode = ERROR_CODE.INVALID_MESSAGE;

  /**
   * @param message what is wrong, naming the field (never echoing the message body)
   * @param context what could still be read from the message: its job id (when the
   *   message was a JSON object and one could be derived), and its chatbot id and
   *   metadata when those were valid, so that a Failed event can carry them
   */
  constructor(
    message: string,
    readonly context: InvalidMessageContext = {},
  ) {
    super(message);
  }

  get jobId(): string | undefined {
    return this.context.jobId;
  }
}

/** The parts of an invalid message that were valid on their own. */
export interface InvalidMessageContext {
  readonly jobId?: string;
  readonly chatbotId?: string;
  readonly metadata?: Record<string, unknown>;
  readonly delivery?: 'sqs' | 'eventbridge';
}

/** A value that may not be put into a Waterflai URL (chatbot or execution id). Permanent. */
export class InvalidIdentifierError extends OrchestratorError {
  readonly retryable = false;
  readonly code = 'INVALID_IDENTIFIER';

  constructor(kind: 'chatbot_id' | 'execution_id', reason: string) {
    super(`invalid ${kind}: ${reason}`);
  }
}

/** Deploy-time configuration is missing or unsafe (for example an http:// base URL). */
export class ConfigurationError extends OrchestratorError {
  readonly retryable = false;
  readonly code = 'CONFIGURATION_ERROR';

  constructor(message: string) {
    super(message);
  }
}

/** Which Waterflai call failed. */
export type WaterflaiOperation = 'start' | 'get' | 'cancel';

/** Any failure talking to Waterflai. */
export abstract class WaterflaiError extends OrchestratorError {
  protected constructor(
    readonly operation: WaterflaiOperation,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** HTTP statuses worth retrying: timeouts, too early, throttling and server errors. */
const RETRYABLE_HTTP_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);

/** Waterflai answered with a non-success HTTP status. */
export class WaterflaiHttpError extends WaterflaiError {
  readonly retryable: boolean;
  readonly code: string;

  /**
   * @param status the HTTP status
   * @param retryAfterSeconds parsed `Retry-After` (seconds from now), when sent
   * @param detail a short, safe description of the body (never the API key or input)
   */
  constructor(
    operation: WaterflaiOperation,
    readonly status: number,
    readonly retryAfterSeconds?: number,
    detail?: string,
  ) {
    super(operation, `Waterflai ${operation} answered HTTP ${status}${detail ? `: ${detail}` : ''}`);
    this.retryable = RETRYABLE_HTTP_STATUSES.has(status) || status >= 500;
    this.code = `HTTP_${status}`;
  }
}

/** The request did not get an answer: timeout, connection reset, DNS, refused. Retryable. */
export class WaterflaiNetworkError extends WaterflaiError {
  readonly retryable = true;
  readonly code: 'TIMEOUT' | 'NETWORK_ERROR';

  constructor(operation: WaterflaiOperation, kind: 'TIMEOUT' | 'NETWORK_ERROR', message: string, options?: { cause?: unknown }) {
    super(operation, `Waterflai ${operation} ${kind === 'TIMEOUT' ? 'timed out' : 'failed'}: ${message}`, options);
    this.code = kind;
  }
}

/**
 * Waterflai answered 2xx with a body that is not valid JSON or does not match the
 * contract (for example no `execution_id`). Retryable: a proxy or a deploy in progress is
 * the likely cause, and the attempt count is bounded by the caller.
 */
export class WaterflaiResponseError extends WaterflaiError {
  readonly retryable = true;
  readonly code = 'INVALID_RESPONSE';

  constructor(operation: WaterflaiOperation, message: string, options?: { cause?: unknown }) {
    super(operation, `Waterflai ${operation} returned an invalid response: ${message}`, options);
  }
}

/** Waterflai tried to redirect us. Refused, and not retried: it is a configuration problem. */
export class WaterflaiRedirectError extends WaterflaiError {
  readonly retryable = false;
  readonly code = 'REDIRECT_REFUSED';

  constructor(operation: WaterflaiOperation, status: number) {
    super(operation, `Waterflai ${operation} answered a redirect (HTTP ${status}); redirects are refused`);
  }
}

/**
 * Thrown by the poll Lambda for any transient failure so that the state machine's Retry
 * (which matches on this error name) backs off and tries again.
 */
export class TransientPollError extends OrchestratorError {
  readonly retryable = true;
  readonly code = 'TRANSIENT_POLL_ERROR';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Waterflai did not confirm a cancellation (it refused, or kept failing): retryable, so a
 * producer's cancel request comes back later while the poll loop keeps tracking the job.
 */
export class UpstreamCancelUnconfirmedError extends OrchestratorError {
  readonly retryable = true;
  readonly code = 'UPSTREAM_CANCEL_UNCONFIRMED';

  constructor(
    readonly executionId: string,
    reason: string,
  ) {
    super(`Waterflai did not confirm the cancellation of execution ${executionId}: ${reason}`);
  }
}

/** AWS SDK error names that mean "slow down", whatever the service. */
const AWS_THROTTLING_ERRORS = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'RequestThrottledException',
  'LimitExceededException',
]);

/**
 * True for an AWS SDK error that a later attempt may overcome: a server-side fault, a
 * throttle, or one the SDK itself marks retryable (the SDK already retried it a few times).
 */
export function isTransientAwsError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { name, $fault, $retryable } = error as { name?: unknown; $fault?: unknown; $retryable?: unknown };
  return $fault === 'server' || $retryable !== undefined || (typeof name === 'string' && AWS_THROTTLING_ERRORS.has(name));
}

/** True when `error` is one of ours and says a later attempt may succeed. */
export function isRetryable(error: unknown): boolean {
  return error instanceof OrchestratorError ? error.retryable : false;
}

/** A short, loggable description of any thrown value (never includes request bodies). */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
