/**
 * The one source of truth for names shared by the Lambdas, the state machine's Choice
 * states, the JSON Schemas in `events/`, the local runtime and the tests.
 */

/** Statuses Waterflai reports for an execution (from the async API contract). */
export const WATERFLAI_STATUS = {
  PENDING: 'PENDING',
  RUNNING: 'RUNNING',
  COMPLETED: 'COMPLETED',
  FAILED: 'FAILED',
  CANCELLED: 'CANCELLED',
} as const;
export type WaterflaiStatus = (typeof WATERFLAI_STATUS)[keyof typeof WATERFLAI_STATUS];

/**
 * Statuses of a job as the orchestrator records it.
 * - `SUBMITTING`: the job is claimed and the Waterflai POST is under way.
 * - `PENDING` / `RUNNING`: mirrored from Waterflai.
 * - `UNKNOWN`: Waterflai reported a status this version does not know; treated as
 *   non-terminal (the poll loop goes on, bounded by the job's deadline).
 * - `COMPLETED` / `FAILED` / `CANCELLED`: terminal, never overwritten.
 */
export const JOB_STATUS = {
  SUBMITTING: 'SUBMITTING',
  PENDING: 'PENDING',
  RUNNING: 'RUNNING',
  UNKNOWN: 'UNKNOWN',
  COMPLETED: 'COMPLETED',
  FAILED: 'FAILED',
  CANCELLED: 'CANCELLED',
} as const;
export type JobStatus = (typeof JOB_STATUS)[keyof typeof JOB_STATUS];

export const TERMINAL_STATUSES = [JOB_STATUS.COMPLETED, JOB_STATUS.FAILED, JOB_STATUS.CANCELLED] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

/**
 * Rank of each status. A record's status may only move to an equal or higher rank, and a
 * terminal rank is final. `UNKNOWN` ranks with `RUNNING`: an unrecognised status seen
 * while running neither moves the job back nor forward.
 */
export const STATUS_RANK: Readonly<Record<JobStatus, number>> = {
  SUBMITTING: 0,
  PENDING: 1,
  RUNNING: 2,
  UNKNOWN: 2,
  COMPLETED: 3,
  FAILED: 3,
  CANCELLED: 3,
};
export const TERMINAL_RANK = 3;

export function isTerminalStatus(status: string): status is TerminalStatus {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

/** EventBridge `source` of every outcome event. */
export const EVENT_SOURCE = 'waterflai.orchestrator';

/** EventBridge `detail-type` of each outcome event, by terminal status. */
export const DETAIL_TYPE = {
  COMPLETED: 'Waterflai Execution Completed',
  FAILED: 'Waterflai Execution Failed',
  CANCELLED: 'Waterflai Execution Cancelled',
} as const satisfies Record<TerminalStatus, string>;
export type DetailType = (typeof DETAIL_TYPE)[keyof typeof DETAIL_TYPE];

/**
 * Machine-readable error codes carried in `error.code` of Failed events, in DLQ message
 * attributes and in job records.
 */
export const ERROR_CODE = {
  /** The SQS message is not a valid job request (see `error.message` for the field). */
  INVALID_MESSAGE: 'INVALID_MESSAGE',
  /** Waterflai refused to start the execution with a 4xx answer (not retried). */
  WATERFLAI_REJECTED: 'WATERFLAI_REJECTED',
  /** Waterflai reported the execution as FAILED. */
  EXECUTION_FAILED: 'EXECUTION_FAILED',
  /** Polling failed after all retries (the state machine's Catch). */
  POLL_FAILED: 'POLL_FAILED',
  /** The final output is larger than the orchestrator can deliver. */
  OUTPUT_TOO_LARGE: 'OUTPUT_TOO_LARGE',
  /** Starting the execution kept failing with transient errors until the retry budget ran out. */
  START_RETRIES_EXHAUSTED: 'START_RETRIES_EXHAUSTED',
  /** The job ran past its deadline (`timeout_seconds`, capped by the maximum job duration); it was cancelled upstream. */
  TIMED_OUT: 'TIMED_OUT',
  /** Waterflai reported COMPLETED but had already cleaned up the result (`cleanup_after` passed). */
  OUTPUT_EXPIRED: 'OUTPUT_EXPIRED',
  /** The job's state machine execution failed or timed out outside the poll loop's own handling. */
  ORCHESTRATION_FAILED: 'ORCHESTRATION_FAILED',
  /**
   * Waterflai answered 404 for an execution it had reported before, with no sign that its
   * result was cleaned up (when cleanup is the likely cause the code is OUTPUT_EXPIRED).
   */
  EXECUTION_NOT_FOUND: 'EXECUTION_NOT_FOUND',
} as const;
export type ErrorCode = (typeof ERROR_CODE)[keyof typeof ERROR_CODE];

/**
 * Why a job was cancelled (the `reason` of a Cancelled event):
 * - `requested`: a producer sent a cancel request for the job;
 * - `remote`: Waterflai reported the execution CANCELLED (cancelled outside the orchestrator);
 * - `stopped`: an operator stopped the job's state machine execution.
 */
export const CANCEL_REASON = {
  REQUESTED: 'requested',
  REMOTE: 'remote',
  STOPPED: 'stopped',
} as const;
export type CancelReason = (typeof CANCEL_REASON)[keyof typeof CANCEL_REASON];

/**
 * Whether the orchestrator made sure the Waterflai execution of a job it ended (deadline,
 * given-up polling, stop, producer cancel) no longer runs: the `upstream_cancel` field of the
 * job record and of the outcome event.
 * - `confirmed`: Waterflai confirmed the cancellation, or reported the execution finished;
 * - `unconfirmed`: every attempt failed; the sweeper keeps trying to cancel it.
 * Absent when the execution ended on its own (nothing had to be cancelled).
 */
export const UPSTREAM_CANCEL = {
  CONFIRMED: 'confirmed',
  UNCONFIRMED: 'unconfirmed',
} as const;
export type UpstreamCancel = (typeof UPSTREAM_CANCEL)[keyof typeof UPSTREAM_CANCEL];

/** Names of the DLQ message attributes written for permanently failed messages. */
export const DLQ_ATTRIBUTE = {
  ERROR_CODE: 'error_code',
  ERROR_MESSAGE: 'error_message',
  JOB_ID: 'job_id',
  SOURCE_MESSAGE_ID: 'source_message_id',
  FAILED_AT: 'failed_at',
} as const;

/**
 * Step Functions execution statuses that end a poll loop without the loop settling its job
 * (stopped by an operator, timed out, failed): the reconciler settles those jobs.
 */
export const RECONCILED_EXECUTION_STATUSES = ['ABORTED', 'TIMED_OUT', 'FAILED'] as const;

/** The event Step Functions puts on the default bus when an execution changes status (the reconciler's input). */
export const EXECUTION_STATUS_CHANGE = {
  SOURCE: 'aws.states',
  DETAIL_TYPE: 'Step Functions Execution Status Change',
} as const;

/** Names of the job table's attributes and index (shared by Lambdas, construct, tests). */
export const JOB_TABLE = {
  PARTITION_KEY: 'job_id',
  TTL_ATTRIBUTE: 'expires_at',
  STATUS_INDEX: 'by-status',
  STATUS_INDEX_PARTITION_KEY: 'status',
  STATUS_INDEX_SORT_KEY: 'updated_at',
  /**
   * Sparse index of the jobs with Waterflai executions still to cancel (an unconfirmed
   * cancel): only items holding `cancel_pending` are in it, so the sweeper's query costs
   * what is pending, not what the table holds.
   */
  PENDING_CANCEL_INDEX: 'pending-cancels',
  PENDING_CANCEL_INDEX_PARTITION_KEY: 'cancel_pending',
  PENDING_CANCEL_INDEX_SORT_KEY: 'updated_at',
  /** The one value of `cancel_pending` (the index's partition). */
  PENDING_CANCEL_VALUE: 'pending',
} as const;

/**
 * Names of the state machine's states. The local runtime routes Tasks to handler code by
 * these names, so they are part of the contract.
 */
export const STATE_NAME = {
  WAIT: 'WaitBeforePoll',
  POLL: 'PollExecution',
  CHOICE: 'IsExecutionFinished',
  FINISH: 'PublishOutcome',
  GIVE_UP: 'GiveUpPolling',
  RECORD_FAILURE: 'RecordPollFailure',
  HANDED_OVER: 'HandedOverToSuccessor',
  SUCCEED: 'Done',
  FAIL: 'PollingFailed',
} as const;

/** Environment variable names read by the Lambdas (set by the construct). */
export const ENV = {
  WATERFLAI_BASE_URL: 'WATERFLAI_BASE_URL',
  WATERFLAI_API_KEY_SECRET_ID: 'WATERFLAI_API_KEY_SECRET_ID',
  JOB_TABLE_NAME: 'JOB_TABLE_NAME',
  STATE_MACHINE_ARN: 'STATE_MACHINE_ARN',
  EVENT_BUS_NAME: 'EVENT_BUS_NAME',
  DLQ_URL: 'DLQ_URL',
  INTAKE_QUEUE_URL: 'INTAKE_QUEUE_URL',
  MAX_RECEIVE_COUNT: 'MAX_RECEIVE_COUNT',
  MAX_INLINE_OUTPUT_BYTES: 'MAX_INLINE_OUTPUT_BYTES',
  OUTPUT_BUCKET_NAME: 'OUTPUT_BUCKET_NAME',
  MAX_POLLS_PER_EXECUTION: 'MAX_POLLS_PER_EXECUTION',
  SWEEP_GRACE_SECONDS: 'SWEEP_GRACE_SECONDS',
  MAX_JOB_DURATION_SECONDS: 'MAX_JOB_DURATION_SECONDS',
  POLL_MIN_SECONDS: 'POLL_MIN_SECONDS',
  POLL_MAX_SECONDS: 'POLL_MAX_SECONDS',
  POLL_INTERVAL_SECONDS: 'POLL_INTERVAL_SECONDS',
  JOB_RETENTION_DAYS: 'JOB_RETENTION_DAYS',
  /** Seconds a poll loop keeps retrying after Waterflai refuses the API key (401/403), within the deadline. */
  AUTH_GRACE_SECONDS: 'AUTH_GRACE_SECONDS',
} as const;
