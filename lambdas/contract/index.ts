/**
 * The event contract, as the package exports it (`waterflai-orchestrator/events`): what
 * producers send (the job and cancel request schemas and their limits) and what subscribers
 * receive (the outcome detail schema, the source, the detail-types, error codes and cancel
 * reasons). The JSON Schemas in `events/schemas/` are generated from the same zod schemas.
 */
export {
  CANCEL_REASON,
  type CancelReason,
  DETAIL_TYPE,
  type DetailType,
  DLQ_ATTRIBUTE,
  ERROR_CODE,
  type ErrorCode,
  EVENT_SOURCE,
  isTerminalStatus,
  JOB_STATUS,
  type JobStatus,
  TERMINAL_STATUSES,
  type TerminalStatus,
  UPSTREAM_CANCEL,
  type UpstreamCancel,
} from './constants';
export { JOB_ID_MAX_LENGTH, JOB_ID_PATTERN, URL_IDENTIFIER_MAX_LENGTH, URL_IDENTIFIER_PATTERN } from './identifiers';
export { CANCEL_ACTION, cancelRequestSchema, JOB_REQUEST_LIMITS, type JobRequestBody, jobRequestSchema } from './job-request';
export { type OutcomeDetail, type OutcomeEvent, outcomeDetailSchema, outcomeEventId } from './outcome-event';
