/**
 * A job as the job table holds it (one item per job, keyed by `job_id`): the shape shared by
 * the functions, the local runtime, the chaos checks and operators' tools.
 */
import { TERMINAL_RANK, type CancelReason, type JobStatus, type TerminalStatus, type UpstreamCancel } from './constants';

/** An upstream incident a poll loop is riding out (see `PollState.incident`). */
export interface PollIncident {
  /** `transient`: 5xx, 408, 429 without end, timeouts, resets; `auth`: 401/403 after a fresh key. */
  readonly kind: 'transient' | 'auth';
  /** When the first failed poll of the incident was made (ISO 8601). */
  readonly since: string;
  /** Failed polls in a row. */
  readonly failures: number;
  /** The last error, short and secret-free. */
  readonly last_error: string;
}

/** Where a final output too large to carry inline was stored. */
export interface OutputLocation {
  readonly bucket: string;
  readonly key: string;
  /** Bytes of the stored JSON. */
  readonly size: number;
  /** Hex SHA-256 of the stored bytes. */
  readonly sha256: string;
}

/** A job as stored in the job table (one item per job, keyed by `job_id`). */
export interface JobRecord {
  readonly job_id: string;
  /** Absent only for a rejected message whose chatbot id was not valid. */
  readonly chatbot_id?: string;
  readonly status: JobStatus;
  readonly status_rank: number;
  /** Incremented by every write; readers can order the record's states by it. */
  readonly version: number;
  readonly accepted_at: string;
  readonly updated_at: string;
  readonly deadline_at: string;
  /** Epoch seconds; DynamoDB's TTL removes the record after it. */
  readonly expires_at: number;
  readonly metadata: Record<string, unknown>;
  readonly source_message_id: string;
  readonly delivery: 'sqs' | 'eventbridge';
  /** Epoch ms until which the claimant owns the Waterflai start (0: released). */
  readonly claim_expires_at?: number;
  /**
   * Random per start attempt: lets an attempt recognise its own claim when the answer to
   * its write was lost (the SDK's retry then finds the record "already there").
   */
  readonly claim_token?: string;
  readonly execution_id?: string;
  readonly state_machine_execution_name?: string;
  readonly state_machine_execution_arn?: string;
  readonly progress?: number | null;
  readonly current_node?: string | null;
  readonly completed_nodes?: number | null;
  readonly total_nodes?: number | null;
  /** When the poll that produced the stored status was made (stale writes are refused). */
  readonly observed_at?: string;
  readonly polls?: number;
  readonly upstream_started_at?: string | null;
  readonly finished_at?: string;
  readonly final_output?: unknown;
  readonly output_location?: OutputLocation;
  /** When Waterflai deletes the execution's result (from its status). */
  readonly cleanup_after?: string | null;
  readonly error_code?: string;
  readonly error_message?: string;
  readonly cancel_reason?: CancelReason;
  /**
   * Set by a producer's cancel request before the DELETE goes to Waterflai: whoever then
   * records the job CANCELLED (the cancel itself, or the poll loop that sees Waterflai's
   * CANCELLED first) records this reason.
   */
  readonly requested_cancel_reason?: CancelReason;
  readonly cancel_requested_at?: string;
  /** Generation of the state machine execution following the job (0, then +1 per hand-over). */
  readonly generation?: number;
  /** Set when the job failed at intake (invalid message, rejected start): the message goes to the DLQ. */
  readonly rejected_at_intake?: boolean;
  readonly dead_lettered_at?: string;
  readonly outcome_event_id?: string;
  readonly event_published_at?: string;
  /** Whether the Waterflai execution of a job the orchestrator ended was confirmed stopped (see UPSTREAM_CANCEL). */
  readonly upstream_cancel?: UpstreamCancel;
  /**
   * Waterflai executions of this job still to cancel (the job's own after an unconfirmed
   * cancel, or superfluous ones a start could not stop): the sweeper keeps trying.
   */
  readonly pending_cancels?: ReadonlySet<string>;
  /** Present (`pending`) while `pending_cancels` is not empty: puts the job in the sparse pending-cancels index. */
  readonly cancel_pending?: string;
  /** Why the last cancel attempt of a pending execution failed. */
  readonly last_cancel_error?: string;
  /**
   * Set when a pending execution turned out to have finished on its own (COMPLETED or
   * FAILED) before a cancel took effect: the job's `upstream_cancel` then stays `unconfirmed`.
   */
  readonly pending_cancel_finished?: boolean;
  /** An upstream incident the poll loop is riding out (null once Waterflai answers again). */
  readonly incident?: PollIncident | null;
}

/** What a new job's record starts with. */
export interface NewJob {
  readonly job_id: string;
  readonly chatbot_id: string;
  readonly metadata: Record<string, unknown>;
  readonly source_message_id: string;
  readonly delivery: 'sqs' | 'eventbridge';
  readonly accepted_at: string;
  readonly deadline_at: string;
  readonly expires_at: number;
  readonly state_machine_execution_name: string;
  readonly claim_expires_at: number;
  readonly claim_token?: string;
}

/** A failed job that never reached Waterflai (or that Waterflai refused). */
export interface RejectedJob {
  readonly job_id: string;
  readonly chatbot_id?: string;
  readonly metadata: Record<string, unknown>;
  readonly source_message_id: string;
  readonly delivery: 'sqs' | 'eventbridge';
  readonly at: string;
  readonly expires_at: number;
  readonly error_code: string;
  readonly error_message: string;
}

/** Fields a status update may set, besides the status itself. */
export type StatusFields = Pick<
  JobRecord,
  | 'progress'
  | 'current_node'
  | 'completed_nodes'
  | 'total_nodes'
  | 'polls'
  | 'upstream_started_at'
  | 'finished_at'
  | 'final_output'
  | 'output_location'
  | 'cleanup_after'
  | 'error_code'
  | 'error_message'
  | 'cancel_reason'
  | 'upstream_cancel'
  | 'incident'
>;

/** True when the record's status is terminal. */
export function isSettled(record: JobRecord): record is JobRecord & { status: TerminalStatus } {
  return record.status_rank >= TERMINAL_RANK;
}
