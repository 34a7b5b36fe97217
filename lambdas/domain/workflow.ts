import type { JobStatus } from '../contract/constants';
import type { PollIncident } from '../contract/job-record';
import type { StrategyMemory } from './poll-strategy';

/**
 * The state that flows through the poll loop (state machine input, the poll Lambda's
 * input and output, and the finish Lambda's input). Kept small on purpose: metadata,
 * input and output live in the job record, never in the execution history.
 *
 * The start Lambda builds the initial state only from values stored in the job record,
 * so a retried StartExecution sends byte-identical input.
 */
export interface PollState {
  readonly job_id: string;
  readonly chatbot_id: string;
  readonly execution_id: string;
  /** When the orchestrator accepted the job (ISO 8601). */
  readonly accepted_at: string;
  /** When the job must have ended (ISO 8601): accepted_at + min(timeout_seconds, max job duration). */
  readonly deadline_at: string;
  /** The last status written to the job record. */
  readonly status: JobStatus;
  /** The last progress written (0-100), or null when Waterflai reported none. */
  readonly progress: number | null;
  /** The last current node written, or null. */
  readonly current_node: string | null;
  /** Number of status polls made so far. */
  readonly poll_count: number;
  /** Seconds the Wait state waits before the next poll (read with `SecondsPath`). */
  readonly next_poll_seconds: number;
  /** Generation of this execution: 0 for the first, +1 for each successor (continue-as-new). */
  readonly generation?: number;
  /** Polls made by this execution (the history budget counts these; reset by a hand-over). */
  readonly execution_polls?: number;
  /** When Waterflai deletes the result, as last reported (ISO 8601), or null. */
  readonly cleanup_after?: string | null;
  /** Set by the poll that handed the job over to a successor execution: this execution ends. */
  readonly handed_over?: boolean;
  /**
   * What the poll strategy remembers between polls (run start, last progress changes,
   * stream health, history budget): a handful of short numeric fields, absent for
   * strategies that remember nothing. See `StrategyMemory` in poll-strategy.ts.
   */
  readonly poll_memo?: StrategyMemory;
  /**
   * The scale Waterflai's `progress` was found to use for this execution (`fraction`: 0..1,
   * `percent`: 0..100), once the data decided it; absent while undecided. See progress-scale.ts.
   */
  readonly progress_scale?: 'fraction' | 'percent';
  /**
   * An upstream incident under way for this job (Waterflai unreachable, 5xx, key refused):
   * the loop keeps polling with backoff until the deadline (auth: the grace period).
   */
  readonly incident?: PollIncident;
  /** Set once a status read of this execution succeeded (a later 404 means it went away). */
  readonly upstream_seen?: boolean;
  /** Past the deadline: cancel rounds that could not confirm the cancellation yet. */
  readonly deadline_cancel_rounds?: number;
}

/** The error the state machine's Catch puts at `$.error` before the failure-recording step. */
export interface CaughtError {
  readonly Error: string;
  readonly Cause?: string;
}

/** Input of the finish Lambda: the loop state, plus the caught error on the failure path. */
export interface FinishInput extends PollState {
  readonly error?: CaughtError;
}

/** Output of the finish Lambda. */
export interface FinishOutput {
  readonly job_id: string;
  readonly status: JobStatus;
  readonly event_id: string;
}
