import { Logger } from '@aws-lambda-powertools/logger';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ExecutionStatusChange, ReconcileResult } from '../../lambdas/reconcile/reconcile-job';
import { EXECUTION_STATUS_CHANGE } from '../../lambdas/contract/constants';
import { MalformedStatusChangeError, parseStatusChangeBody } from '../../lambdas/reconcile/status-change-record';
import { ENV } from '../../lambdas/contract/constants';
import { sqsRecord } from '../support/sqs-record';

/**
 * The real reconcile handler module (middy + Powertools batch + env wiring) with the domain
 * reconciler replaced: what the SQS adapter does with each record of a batch.
 */
const reconcile = vi.hoisted(() => vi.fn<(change: ExecutionStatusChange) => Promise<ReconcileResult>>());
vi.mock('../../lambdas/reconcile/reconcile-job', () => ({
  ExecutionReconciler: class {
    reconcile = reconcile;
  },
}));

const EXECUTION_ARN = 'arn:aws:states:us-east-1:123456789012:execution:poll-loop:job-1';

function statusChangeEvent(detail: Partial<ExecutionStatusChange> = {}, envelope: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: '0',
    id: 'evt-1',
    'detail-type': EXECUTION_STATUS_CHANGE.DETAIL_TYPE,
    source: EXECUTION_STATUS_CHANGE.SOURCE,
    account: '123456789012',
    time: '2025-03-01T12:00:00Z',
    region: 'us-east-1',
    resources: [EXECUTION_ARN],
    detail: {
      executionArn: EXECUTION_ARN,
      stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:poll-loop',
      name: 'job-1',
      status: 'ABORTED',
      startDate: 1_740_830_400_000,
      stopDate: 1_740_830_460_000,
      input: JSON.stringify({ job_id: 'job-1' }),
      output: null,
      inputDetails: { included: true },
      outputDetails: null,
      error: null,
      cause: null,
      ...detail,
    },
    ...envelope,
  };
}

const context = {
  functionName: 'reconcile',
  awsRequestId: 'req-1',
  getRemainingTimeInMillis: () => 55_000,
} as unknown as Context; // only the fields the handler and Powertools read

let handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

beforeAll(async () => {
  Object.assign(process.env, {
    [ENV.JOB_TABLE_NAME]: 'jobs',
    [ENV.EVENT_BUS_NAME]: 'bus',
    [ENV.WATERFLAI_BASE_URL]: 'http://127.0.0.1:9',
    [ENV.WATERFLAI_API_KEY_SECRET_ID]: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:waterflai-key',
  });
  ({ handler } = await import('../../lambdas/reconcile/handler'));
});

afterEach(() => {
  reconcile.mockReset();
  vi.restoreAllMocks();
});

describe('parseStatusChangeBody', () => {
  it('reads the detail and the event id of a status-change event', () => {
    // Act
    const parsed = parseStatusChangeBody(
      JSON.stringify(statusChangeEvent({ status: 'FAILED', error: 'States.TaskFailed', cause: 'boom' })),
    );

    // Assess
    expect(parsed.eventId).toBe('evt-1');
    expect(parsed.change).toEqual({
      executionArn: EXECUTION_ARN,
      stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:poll-loop',
      name: 'job-1',
      status: 'FAILED',
      input: JSON.stringify({ job_id: 'job-1' }),
      error: 'States.TaskFailed',
      cause: 'boom',
    });
  });

  it('accepts a detail without input, error or cause (Step Functions may leave them out)', () => {
    const parsed = parseStatusChangeBody(
      JSON.stringify({
        source: 'aws.states',
        'detail-type': EXECUTION_STATUS_CHANGE.DETAIL_TYPE,
        detail: { executionArn: EXECUTION_ARN, status: 'TIMED_OUT' },
      }),
    );
    expect(parsed.change).toEqual({ executionArn: EXECUTION_ARN, status: 'TIMED_OUT' });
    expect(parsed.eventId).toBeUndefined();
  });

  describe.each([
    ['not JSON', '{"source": "aws.states", ', /not JSON/],
    ['an empty body', '', /not JSON/],
    ['a JSON array', '[]', /not a "Step Functions Execution Status Change" event/],
    ['JSON null', 'null', /\(body\)/],
    ['another source', JSON.stringify(statusChangeEvent({}, { source: 'com.example' })), /source/],
    ['another detail-type', JSON.stringify(statusChangeEvent({}, { 'detail-type': 'Scheduled Event' })), /detail-type/],
    ['a detail without executionArn', JSON.stringify(statusChangeEvent({ executionArn: undefined })), /detail\.executionArn/],
    ['a numeric status', JSON.stringify(statusChangeEvent({ status: 3 as unknown as string })), /detail\.status/],
    ['a job request sent to the wrong queue', JSON.stringify({ job_id: 'j', chatbot_id: 'bot', input_data: {} }), /source/],
  ])('refuses %s with MalformedStatusChangeError', (_name, body, message) => {
    it('names the problem', () => {
      expect(() => parseStatusChangeBody(body)).toThrow(MalformedStatusChangeError);
      expect(() => parseStatusChangeBody(body)).toThrow(message);
    });
  });
});

describe('reconcile handler (SQS batch)', () => {
  it('hands a status-change event to the reconciler and acknowledges the record', async () => {
    // Prepare
    reconcile.mockResolvedValue('settled');

    // Act
    const response = await handler({ Records: [sqsRecord(JSON.stringify(statusChangeEvent()), { messageId: 'ok' })] }, context);

    // Assess
    expect(response).toEqual({ batchItemFailures: [] });
    expect(reconcile).toHaveBeenCalledTimes(1);
    expect(reconcile).toHaveBeenCalledWith(
      expect.objectContaining({ executionArn: EXECUTION_ARN, status: 'ABORTED', input: JSON.stringify({ job_id: 'job-1' }) }),
    );
  });

  it('logs a malformed body at ERROR and acknowledges it: never retried, the rest of the batch proceeds', async () => {
    // Prepare
    reconcile.mockResolvedValue('settled');
    const logged = vi.spyOn(Logger.prototype, 'error');

    // Act
    const response = await handler(
      {
        Records: [
          sqsRecord('not json at all', { messageId: 'garbage', receiveCount: 1 }),
          sqsRecord(JSON.stringify(statusChangeEvent({}, { source: 'com.example' })), { messageId: 'foreign' }),
          sqsRecord(JSON.stringify(statusChangeEvent()), { messageId: 'good' }),
        ],
      },
      context,
    );

    // Assess
    expect(response).toEqual({ batchItemFailures: [] });
    expect(reconcile).toHaveBeenCalledTimes(1);
    const malformed = logged.mock.calls.filter(
      ([message]) => typeof message === 'string' && message.includes('not an execution status-change event'),
    );
    expect(malformed.map(([, extra]) => (extra as { message_id: string }).message_id).sort()).toEqual(['foreign', 'garbage']);
    expect(JSON.stringify(malformed)).not.toContain('not json at all'); // the body itself is not logged
  });

  it('reports only the record whose reconciliation failed in batchItemFailures', async () => {
    // Prepare: DynamoDB (or Waterflai) fails for one execution only
    reconcile.mockImplementation(async (change) => {
      if (change.executionArn.endsWith(':flaky')) throw new Error('ProvisionedThroughputExceededException');
      return 'settled';
    });
    const records = ['first', 'flaky', 'last'].map((name) =>
      sqsRecord(JSON.stringify(statusChangeEvent({ executionArn: `${EXECUTION_ARN.replace(/job-1$/, '')}${name}` })), {
        messageId: `msg-${name}`,
      }),
    );

    // Act
    const response = await handler({ Records: records }, context);

    // Assess
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'msg-flaky' }] });
    expect(reconcile).toHaveBeenCalledTimes(3);
  });

  it('reports every record when all fail, without throwing (the whole batch comes back)', async () => {
    reconcile.mockRejectedValue(new Error('network down'));
    const records = ['a', 'b'].map((id) => sqsRecord(JSON.stringify(statusChangeEvent()), { messageId: id }));

    const response = await handler({ Records: records }, context);

    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier).sort()).toEqual(['a', 'b']);
  });

  it('returns an empty failure list for an empty batch', async () => {
    await expect(handler({ Records: [] }, context)).resolves.toEqual({ batchItemFailures: [] });
    expect(reconcile).not.toHaveBeenCalled();
  });
});
