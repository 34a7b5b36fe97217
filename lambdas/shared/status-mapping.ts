import { ERROR_CODE, JOB_STATUS, type JobStatus } from './constants';
import type { StatusFields } from './job-store';
import type { ExecutionStatus } from './waterflai-client';

/** Longest error message and node name stored (they flow into DynamoDB and events). */
export const MAX_ERROR_MESSAGE_CHARS = 4_096;
export const MAX_NODE_NAME_CHARS = 256;

/** A Waterflai status mapped onto the orchestrator's job model. */
export interface MappedStatus {
  readonly status: JobStatus;
  readonly fields: StatusFields;
}

/**
 * Maps what Waterflai reported onto a job status and the fields to record. Pure and
 * total: any input yields a status (an unknown one becomes `UNKNOWN`, non-terminal).
 *
 * @param finishedAt when the orchestrator observed the outcome (used for terminal statuses)
 * @param maxInlineOutputBytes largest `final_output` (JSON bytes) accepted inline; a larger
 *   one settles the job FAILED with `OUTPUT_TOO_LARGE` instead of breaking the 256 KB and
 *   400 KB limits of the next hops
 */
export function mapExecutionStatus(execution: ExecutionStatus, finishedAt: string, maxInlineOutputBytes: number): MappedStatus {
  const progressFields: StatusFields = {
    progress: execution.progress === null ? null : Math.round(execution.progress * 100) / 100,
    current_node: execution.current_node === null ? null : execution.current_node.slice(0, MAX_NODE_NAME_CHARS),
    completed_nodes: execution.completed_nodes,
    total_nodes: execution.total_nodes,
    upstream_started_at: execution.started_at,
  };
  switch (execution.known_status) {
    case null:
      return { status: JOB_STATUS.UNKNOWN, fields: progressFields };
    case 'PENDING':
    case 'RUNNING':
      return { status: execution.known_status, fields: progressFields };
    case 'COMPLETED': {
      const output = execution.final_output === undefined ? null : execution.final_output;
      const bytes = Buffer.byteLength(JSON.stringify(output) ?? 'null', 'utf8');
      if (bytes > maxInlineOutputBytes) {
        return {
          status: JOB_STATUS.FAILED,
          fields: {
            ...progressFields,
            finished_at: finishedAt,
            error_code: ERROR_CODE.OUTPUT_TOO_LARGE,
            error_message: `the execution completed but its final_output is ${bytes} bytes, over the ${maxInlineOutputBytes} byte limit`,
          },
        };
      }
      return { status: JOB_STATUS.COMPLETED, fields: { ...progressFields, finished_at: finishedAt, final_output: output } };
    }
    case 'FAILED':
      return {
        status: JOB_STATUS.FAILED,
        fields: {
          ...progressFields,
          finished_at: finishedAt,
          error_code: ERROR_CODE.EXECUTION_FAILED,
          error_message: (execution.error_message ?? 'Waterflai reported the execution as FAILED without an error message').slice(0, MAX_ERROR_MESSAGE_CHARS),
        },
      };
    case 'CANCELLED':
      return { status: JOB_STATUS.CANCELLED, fields: { ...progressFields, finished_at: finishedAt, cancel_reason: 'remote' } };
  }
}
