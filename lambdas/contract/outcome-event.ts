import * as z from 'zod';
import { CANCEL_REASON, DETAIL_TYPE, EVENT_SOURCE, JOB_STATUS, UPSTREAM_CANCEL, type DetailType, type TerminalStatus } from './constants';
import type { JobRecord } from './job-record';

/** The `detail` of every outcome event. One schema for Completed, Failed and Cancelled. */
export const outcomeDetailSchema = z
  .object({
    event_id: z.string().describe('Stable id of this outcome: the same on every redelivery, for subscribers to de-duplicate.'),
    job_id: z.string(),
    chatbot_id: z.string().nullable().describe('Null only when a rejected message carried no valid chatbot_id.'),
    execution_id: z.string().nullable().describe('The Waterflai execution id; null when the job never reached Waterflai.'),
    status: z.enum([JOB_STATUS.COMPLETED, JOB_STATUS.FAILED, JOB_STATUS.CANCELLED]),
    final_output: z
      .unknown()
      .optional()
      .describe("COMPLETED only: the execution's final output, when it fits inline (else see output_location)."),
    output_location: z
      .object({
        bucket: z.string(),
        key: z.string(),
        size: z.number().int().nonnegative().describe('Bytes of the stored JSON.'),
        sha256: z.string().describe('Hex SHA-256 of the stored bytes.'),
      })
      .optional()
      .describe('COMPLETED only, instead of final_output: where the too-large-to-inline output (JSON) is stored in S3.'),
    error: z
      .object({ code: z.string(), message: z.string() })
      .optional()
      .describe('FAILED only: a machine-readable code and a human-readable message.'),
    reason: z
      .enum([CANCEL_REASON.REQUESTED, CANCEL_REASON.REMOTE, CANCEL_REASON.STOPPED])
      .optional()
      .describe(
        'CANCELLED only: requested (a producer sent a cancel request), remote (cancelled in Waterflai), stopped (an operator stopped the execution).',
      ),
    upstream_cancel: z
      .enum([UPSTREAM_CANCEL.CONFIRMED, UPSTREAM_CANCEL.UNCONFIRMED])
      .optional()
      .describe(
        'Present when the orchestrator ended the job while its Waterflai execution could still run (deadline, given-up polling, stop, cancel request): ' +
          'confirmed (Waterflai confirmed the cancellation, or the execution was gone) or unconfirmed (every attempt failed; the sweeper keeps trying to cancel it).',
      ),
    metadata: z.record(z.string(), z.unknown()).describe("The job request's metadata, passed through."),
    accepted_at: z.string().describe('When the orchestrator accepted the job (ISO 8601).'),
    started_at: z.string().nullable().describe('When Waterflai started running it, if known.'),
    finished_at: z.string().describe('When the orchestrator recorded the outcome.'),
    duration_ms: z.number().int().nonnegative().describe('finished_at - accepted_at.'),
    polls: z.number().int().nonnegative().describe('Status polls made for the job.'),
  })
  .describe('Detail of a "Waterflai Execution Completed|Failed|Cancelled" event (source waterflai.orchestrator).');

export type OutcomeDetail = z.infer<typeof outcomeDetailSchema>;

export interface OutcomeEvent {
  readonly source: typeof EVENT_SOURCE;
  readonly detailType: DetailType;
  readonly detail: OutcomeDetail;
}

/** The stable id of a job's outcome: the same for every publication of it. */
export function outcomeEventId(jobId: string, status: TerminalStatus): string {
  return `${jobId}:${status.toLowerCase()}`;
}

/** Builds the outcome event of a settled job from its record alone (so it is reproducible). */
export function buildOutcomeEvent(record: JobRecord & { status: TerminalStatus }): OutcomeEvent {
  const finishedAt = record.finished_at ?? record.updated_at;
  const duration = Date.parse(finishedAt) - Date.parse(record.accepted_at);
  const detail: OutcomeDetail = {
    event_id: outcomeEventId(record.job_id, record.status),
    job_id: record.job_id,
    chatbot_id: record.chatbot_id ?? null,
    execution_id: record.execution_id ?? null,
    status: record.status,
    ...(record.status === JOB_STATUS.COMPLETED
      ? record.output_location === undefined
        ? { final_output: record.final_output ?? null }
        : { output_location: record.output_location }
      : {}),
    ...(record.status === JOB_STATUS.FAILED
      ? { error: { code: record.error_code ?? 'UNKNOWN_ERROR', message: record.error_message ?? 'no error message was recorded' } }
      : {}),
    ...(record.status === JOB_STATUS.CANCELLED ? { reason: record.cancel_reason ?? CANCEL_REASON.REMOTE } : {}),
    ...(record.upstream_cancel === undefined ? {} : { upstream_cancel: record.upstream_cancel }),
    metadata: record.metadata ?? {},
    accepted_at: record.accepted_at,
    started_at: record.upstream_started_at ?? null,
    finished_at: finishedAt,
    duration_ms: Number.isFinite(duration) && duration > 0 ? duration : 0,
    polls: record.polls ?? 0,
  };
  return { source: EVENT_SOURCE, detailType: DETAIL_TYPE[record.status], detail };
}
