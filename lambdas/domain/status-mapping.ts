import { CANCEL_REASON, ERROR_CODE, JOB_STATUS, type ErrorCode, type JobStatus } from '../contract/constants';
import { jsonDepth } from '../contract/job-request';
import type { StatusFields } from '../contract/job-record';
import { toPercent, type ProgressScale } from './progress-scale';
import type { ExecutionStatus } from '../contract/waterflai-api';

/** Longest error message and node name stored (they flow into DynamoDB and events). */
export const MAX_ERROR_MESSAGE_CHARS = 4_096;
export const MAX_NODE_NAME_CHARS = 256;
/** Deepest `final_output` accepted (serialising deeper JSON could overflow the stack). */
export const MAX_OUTPUT_DEPTH = 512;

/** A Waterflai status mapped onto the orchestrator's job model. */
export interface MappedStatus {
  readonly status: JobStatus;
  readonly fields: StatusFields;
  /** COMPLETED only: size of `final_output` as JSON, in bytes. */
  readonly outputBytes?: number;
}

/**
 * Maps what Waterflai reported onto a job status and the fields to record. Pure and
 * total: any input yields a status (an unknown one becomes `UNKNOWN`, non-terminal).
 *
 * @param finishedAt when the orchestrator observed the outcome (used for terminal statuses)
 * @param maxOutputBytes largest `final_output` (JSON bytes) the orchestrator accepts; a
 *   larger one settles the job FAILED with `OUTPUT_TOO_LARGE`. Outputs below it but too
 *   large to carry inline are the caller's to store elsewhere (see the poll Lambda).
 * @param progressScale the scale of Waterflai's `progress` for this execution, decided with
 *   this status included (`inferProgressScale(state.progress_scale, progressSampleOf(execution))`,
 *   see progress-scale.ts); the recorded `progress` is always a percent (0..100, two
 *   decimals). @default undefined: undecided, read as a percent
 *
 * A COMPLETED execution without an output whose `cleanup_after` has passed settles FAILED
 * with `OUTPUT_EXPIRED`: Waterflai already deleted the result.
 */
export function mapExecutionStatus(
  execution: ExecutionStatus,
  finishedAt: string,
  maxOutputBytes: number,
  progressScale?: ProgressScale,
): MappedStatus {
  const percent = toPercent(execution.progress, progressScale);
  const progressFields: StatusFields = {
    progress: percent === null ? null : Math.round(percent * 100) / 100,
    current_node: execution.current_node === null ? null : execution.current_node.slice(0, MAX_NODE_NAME_CHARS),
    completed_nodes: execution.completed_nodes,
    total_nodes: execution.total_nodes,
    upstream_started_at: execution.started_at,
    cleanup_after: execution.cleanup_after,
  };
  const failed = (code: ErrorCode, message: string): MappedStatus => ({
    status: JOB_STATUS.FAILED,
    fields: { ...progressFields, finished_at: finishedAt, error_code: code, error_message: message.slice(0, MAX_ERROR_MESSAGE_CHARS) },
  });
  switch (execution.known_status) {
    case null:
      return { status: JOB_STATUS.UNKNOWN, fields: progressFields };
    case 'PENDING':
    case 'RUNNING':
      return { status: execution.known_status, fields: progressFields };
    case 'COMPLETED': {
      const output = execution.final_output === undefined ? null : execution.final_output;
      const depth = jsonDepth(output);
      if (depth > MAX_OUTPUT_DEPTH) {
        return failed(
          ERROR_CODE.OUTPUT_TOO_LARGE,
          `the execution completed but its final_output is nested ${depth} levels deep, over the limit of ${MAX_OUTPUT_DEPTH}`,
        );
      }
      if (output === null && execution.cleanup_after !== null && Date.parse(execution.cleanup_after) <= Date.parse(finishedAt)) {
        return failed(
          ERROR_CODE.OUTPUT_EXPIRED,
          `the execution completed but Waterflai already cleaned up its output (cleanup_after ${execution.cleanup_after})`,
        );
      }
      const bytes = Buffer.byteLength(JSON.stringify(output) ?? 'null', 'utf8');
      if (bytes > maxOutputBytes) {
        return failed(
          ERROR_CODE.OUTPUT_TOO_LARGE,
          `the execution completed but its final_output is ${bytes} bytes, over the ${maxOutputBytes} byte limit`,
        );
      }
      return {
        status: JOB_STATUS.COMPLETED,
        fields: { ...progressFields, finished_at: finishedAt, final_output: output },
        outputBytes: bytes,
      };
    }
    case 'FAILED':
      return failed(
        ERROR_CODE.EXECUTION_FAILED,
        execution.error_message ?? 'Waterflai reported the execution as FAILED without an error message',
      );
    case 'CANCELLED':
      return { status: JOB_STATUS.CANCELLED, fields: { ...progressFields, finished_at: finishedAt, cancel_reason: CANCEL_REASON.REMOTE } };
  }
}
