import { describe, expect, it } from 'vitest';
import { ERROR_CODE, JOB_STATUS, WATERFLAI_STATUS, type WaterflaiStatus } from '../../lambdas/contract/constants';
import { MAX_ERROR_MESSAGE_CHARS, MAX_NODE_NAME_CHARS, MAX_OUTPUT_DEPTH, mapExecutionStatus } from '../../lambdas/domain/status-mapping';
import type { ExecutionStatus } from '../../lambdas/contract/waterflai-api';

const OBSERVED_AT = '2025-03-01T12:00:00.000Z';
const LIMIT = 1024;

function execution(overrides: Partial<ExecutionStatus> = {}): ExecutionStatus {
  const status = overrides.status ?? 'RUNNING';
  const known = (Object.values(WATERFLAI_STATUS) as string[]).includes(status) ? (status as WaterflaiStatus) : null;
  return {
    execution_id: 'exec-1',
    status,
    known_status: known,
    progress: 40,
    current_node: 'summarise',
    completed_nodes: 2,
    total_nodes: 5,
    final_output: undefined,
    error_message: null,
    created_at: '2025-03-01T11:59:00.000Z',
    started_at: '2025-03-01T11:59:01.000Z',
    completed_at: null,
    retry_count: 0,
    execution_source: 'api',
    is_temporary: false,
    cleanup_after: null,
    ...overrides,
  };
}

describe('mapExecutionStatus', () => {
  describe.each([WATERFLAI_STATUS.PENDING, WATERFLAI_STATUS.RUNNING])('non-terminal status %s', (status) => {
    it('is mirrored with the progress fields and no terminal fields', () => {
      // Prepare
      const given = execution({ status, known_status: status });

      // Act
      const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

      // Assess
      expect(mapped).toEqual({
        status,
        fields: {
          progress: 40,
          current_node: 'summarise',
          completed_nodes: 2,
          total_nodes: 5,
          upstream_started_at: '2025-03-01T11:59:01.000Z',
          cleanup_after: null,
        },
      });
    });
  });

  it('maps COMPLETED with finished_at and the final output', () => {
    // Prepare
    const given = execution({ status: 'COMPLETED', known_status: 'COMPLETED', progress: 100, final_output: { answer: 42 } });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.status).toBe(JOB_STATUS.COMPLETED);
    expect(mapped.fields).toMatchObject({ finished_at: OBSERVED_AT, final_output: { answer: 42 }, progress: 100 });
    expect(mapped.fields.error_code).toBeUndefined();
    expect(mapped.fields.cancel_reason).toBeUndefined();
  });

  it('maps COMPLETED without a final_output to a null output', () => {
    // Prepare
    const given = execution({ status: 'COMPLETED', known_status: 'COMPLETED', final_output: undefined });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.status).toBe(JOB_STATUS.COMPLETED);
    expect(mapped.fields).toHaveProperty('final_output', null);
  });

  it("maps FAILED with EXECUTION_FAILED and Waterflai's error message", () => {
    // Prepare
    const given = execution({ status: 'FAILED', known_status: 'FAILED', error_message: 'node summarise crashed' });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.status).toBe(JOB_STATUS.FAILED);
    expect(mapped.fields).toMatchObject({
      finished_at: OBSERVED_AT,
      error_code: ERROR_CODE.EXECUTION_FAILED,
      error_message: 'node summarise crashed',
    });
    expect(mapped.fields).not.toHaveProperty('final_output');
  });

  it('maps FAILED without an error message to a default message', () => {
    // Prepare
    const given = execution({ status: 'FAILED', known_status: 'FAILED', error_message: null });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.fields.error_code).toBe(ERROR_CODE.EXECUTION_FAILED);
    expect(mapped.fields.error_message).toBe('Waterflai reported the execution as FAILED without an error message');
  });

  it('truncates a FAILED error message to MAX_ERROR_MESSAGE_CHARS', () => {
    // Prepare
    const given = execution({ status: 'FAILED', known_status: 'FAILED', error_message: 'e'.repeat(MAX_ERROR_MESSAGE_CHARS + 500) });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.fields.error_message).toHaveLength(MAX_ERROR_MESSAGE_CHARS);
  });

  it('maps CANCELLED with the reason "remote"', () => {
    // Prepare
    const given = execution({ status: 'CANCELLED', known_status: 'CANCELLED' });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.status).toBe(JOB_STATUS.CANCELLED);
    expect(mapped.fields).toMatchObject({ finished_at: OBSERVED_AT, cancel_reason: 'remote' });
    expect(mapped.fields).not.toHaveProperty('error_code');
  });

  it.each(['PAUSED', 'completed', '', 'QUEUED_FOR_RETRY'])('maps the unknown status "%s" to UNKNOWN without terminal fields', (status) => {
    // Prepare
    const given = execution({ status, known_status: null });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.status).toBe(JOB_STATUS.UNKNOWN);
    expect(mapped.fields).not.toHaveProperty('finished_at');
    expect(mapped.fields.progress).toBe(40);
  });

  it.each([
    { progress: 33.3333, expected: 33.33 },
    { progress: 66.666, expected: 66.67 },
    { progress: 0, expected: 0 },
    { progress: 100, expected: 100 },
    { progress: 50.5, expected: 50.5 },
    { progress: null, expected: null },
  ])('records progress $progress as $expected (two decimals, null kept)', ({ progress, expected }) => {
    // Prepare
    const given = execution({ progress });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.fields.progress).toBe(expected);
  });

  it.each([
    {
      name: 'a node name longer than the limit is truncated',
      node: 'n'.repeat(MAX_NODE_NAME_CHARS + 44),
      expected: 'n'.repeat(MAX_NODE_NAME_CHARS),
    },
    { name: 'a node name at the limit is kept', node: 'm'.repeat(MAX_NODE_NAME_CHARS), expected: 'm'.repeat(MAX_NODE_NAME_CHARS) },
    { name: 'a null node stays null', node: null, expected: null },
  ])('$name', ({ node, expected }) => {
    // Prepare
    const given = execution({ current_node: node });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.fields.current_node).toBe(expected);
  });

  describe('final output size', () => {
    // JSON.stringify of a string of n ASCII chars is n + 2 bytes (the quotes).
    it('accepts an output of exactly maxInlineOutputBytes', () => {
      // Prepare
      const given = execution({ status: 'COMPLETED', known_status: 'COMPLETED', final_output: 'x'.repeat(LIMIT - 2) });

      // Act
      const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

      // Assess
      expect(mapped.status).toBe(JOB_STATUS.COMPLETED);
      expect(mapped.fields.final_output).toBe('x'.repeat(LIMIT - 2));
    });

    it('settles an output one byte over the limit as FAILED OUTPUT_TOO_LARGE without the output', () => {
      // Prepare
      const given = execution({ status: 'COMPLETED', known_status: 'COMPLETED', final_output: 'x'.repeat(LIMIT - 1) });

      // Act
      const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

      // Assess
      expect(mapped.status).toBe(JOB_STATUS.FAILED);
      expect(mapped.fields.error_code).toBe(ERROR_CODE.OUTPUT_TOO_LARGE);
      expect(mapped.fields.error_message).toBe(
        `the execution completed but its final_output is ${LIMIT + 1} bytes, over the ${LIMIT} byte limit`,
      );
      expect(mapped.fields.finished_at).toBe(OBSERVED_AT);
      expect(mapped.fields).not.toHaveProperty('final_output');
    });

    it('measures the output in UTF-8 bytes, not characters', () => {
      // Prepare: 400 three-byte characters are 1202 JSON bytes but only 402 JSON characters
      const given = execution({ status: 'COMPLETED', known_status: 'COMPLETED', final_output: '€'.repeat(400) });

      // Act
      const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

      // Assess
      expect(mapped.status).toBe(JOB_STATUS.FAILED);
      expect(mapped.fields.error_code).toBe(ERROR_CODE.OUTPUT_TOO_LARGE);
    });
  });
});

describe('mapExecutionStatus: outputs too deep to serialise', () => {
  it('settles a COMPLETED output nested deeper than MAX_OUTPUT_DEPTH as FAILED OUTPUT_TOO_LARGE instead of overflowing the stack', () => {
    // Prepare
    let deep: unknown = 'leaf';
    for (let i = 0; i < 20_000; i += 1) deep = [deep];
    const given = execution({ status: 'COMPLETED', known_status: WATERFLAI_STATUS.COMPLETED, final_output: deep });

    // Act
    const mapped = mapExecutionStatus(given, OBSERVED_AT, LIMIT);

    // Assess
    expect(mapped.status).toBe(JOB_STATUS.FAILED);
    expect(mapped.fields.error_code).toBe(ERROR_CODE.OUTPUT_TOO_LARGE);
    expect(mapped.fields.error_message).toMatch(new RegExp(`nested 20000 levels deep, over the limit of ${MAX_OUTPUT_DEPTH}`));
  });
});
