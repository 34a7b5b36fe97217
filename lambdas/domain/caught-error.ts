import { MAX_ERROR_MESSAGE_CHARS } from './status-mapping';
import type { CaughtError } from './workflow';

/**
 * A readable message from a Step Functions caught error. A Lambda error's `Cause` is JSON
 * (`{"errorType", "errorMessage", "trace"}`): only type and message are kept, never the trace.
 */
export function describeCaughtError(error: CaughtError): string {
  let detail = error.Cause ?? '';
  try {
    const cause: unknown = JSON.parse(detail);
    if (typeof cause === 'object' && cause !== null) {
      // A JSON Cause may carry a stack trace: keep only its message (or type), never the rest.
      const { errorMessage, errorType } = cause as { errorMessage?: unknown; errorType?: unknown };
      detail = typeof errorMessage === 'string' ? errorMessage : typeof errorType === 'string' ? errorType : '';
    }
  } catch {
    // Not JSON: a States.* error's Cause is plain text.
  }
  const text = detail ? `${error.Error}: ${detail}` : error.Error;
  return text.slice(0, MAX_ERROR_MESSAGE_CHARS);
}
