import { WATERFLAI_STATUS, type WaterflaiStatus } from '../../lambdas/contract/constants';
import type { ExecutionStatus } from '../../lambdas/contract/waterflai-api';

/** A Waterflai status answer as the client returns it, for poll tests. */
export function execution(status: string, overrides: Partial<ExecutionStatus> = {}): ExecutionStatus {
  const known = (Object.values(WATERFLAI_STATUS) as string[]).includes(status) ? (status as WaterflaiStatus) : null;
  return {
    execution_id: 'wf-exec',
    status,
    known_status: known,
    progress: null,
    current_node: null,
    completed_nodes: null,
    total_nodes: null,
    final_output: undefined,
    error_message: null,
    created_at: null,
    started_at: '2025-03-01T12:00:02.000Z',
    completed_at: null,
    retry_count: null,
    execution_source: null,
    is_temporary: null,
    cleanup_after: null,
    ...overrides,
  };
}
