import type { UpstreamExecutions } from '../../lambdas/domain/upstream-cancel';
import type { CancelResult, ExecutionStatus, RequestOptions } from '../../lambdas/contract/waterflai-api';

/** A DELETE answer as the client returns it. */
export function cancelResult(cancelled: boolean, overrides: Partial<CancelResult> = {}): CancelResult {
  return {
    execution_id: 'wf-exec',
    cancelled,
    alreadyFinished: false,
    message: null,
    previous_status: cancelled ? 'RUNNING' : null,
    ...overrides,
  };
}

/**
 * A Waterflai stand-in for the poll and lifecycle tests: status reads answer from `script`
 * (a status to return or an error to throw), DELETEs from `cancels` (a result or an error;
 * `cancelled: true` once the list is used up, or `cancelError` when set).
 */
export class ScriptedWaterflai implements UpstreamExecutions {
  readonly reads: Array<{ executionId: string; options: RequestOptions | undefined }> = [];
  readonly cancelled: Array<{ executionId: string; options: RequestOptions | undefined }> = [];
  /** Thrown by every DELETE when set (after `cancels` is used up). */
  cancelError: Error | undefined;

  constructor(
    private readonly script: Array<ExecutionStatus | Error>,
    private readonly cancels: Array<CancelResult | Error> = [],
  ) {}

  async getExecution(executionId: string, options?: RequestOptions): Promise<ExecutionStatus> {
    this.reads.push({ executionId, options });
    const next = this.script.shift();
    if (next === undefined) throw new Error('the scripted Waterflai ran out of answers');
    if (next instanceof Error) throw next;
    return next;
  }

  async cancelExecution(executionId: string, options?: RequestOptions): Promise<CancelResult> {
    this.cancelled.push({ executionId, options });
    const next = this.cancels.shift();
    if (next instanceof Error) throw next;
    if (next !== undefined) return next;
    if (this.cancelError) throw this.cancelError;
    return cancelResult(true, { execution_id: executionId });
  }
}
