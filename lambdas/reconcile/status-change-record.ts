import type { SQSRecord } from 'aws-lambda';
import * as z from 'zod';
import { describeError } from '../contract/errors';
import type { AppLogger } from '../platform/logger';
import type { ExecutionReconciler, ExecutionStatusChange, ReconcileResult } from './reconcile-job';
import { EXECUTION_STATUS_CHANGE } from '../contract/constants';

/**
 * A reconcile-queue record whose body is not a Step Functions status-change event. Retrying
 * cannot fix it, so it is logged and acknowledged (never retried, never dead-lettered).
 */
export class MalformedStatusChangeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedStatusChangeError';
  }
}

const optionalText = z.string().nullish();

/** The parts of the EventBridge event the reconciler reads; anything else is ignored. */
const statusChangeEventSchema = z.object({
  id: z.string().optional(),
  source: z.literal(EXECUTION_STATUS_CHANGE.SOURCE),
  'detail-type': z.literal(EXECUTION_STATUS_CHANGE.DETAIL_TYPE),
  detail: z.object({
    executionArn: z.string().min(1),
    stateMachineArn: z.string().optional(),
    name: z.string().optional(),
    status: z.string().min(1),
    input: optionalText,
    error: optionalText,
    cause: optionalText,
  }),
});

/** A status-change event read from a record body. */
export interface StatusChangeEvent {
  /** The EventBridge event id (stable across redeliveries), when the body has one. */
  readonly eventId?: string;
  readonly change: ExecutionStatusChange;
}

/**
 * Reads the body of a reconcile-queue record: the EventBridge event JSON, as an SQS rule
 * target receives it.
 * @throws MalformedStatusChangeError naming what is wrong (not JSON, not a status-change
 *   event, a detail without `executionArn` or `status`)
 */
export function parseStatusChangeBody(body: string): StatusChangeEvent {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new MalformedStatusChangeError(`the body is not JSON (${body.length} characters)`);
  }
  const parsed = statusChangeEventSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`).join('; ');
    throw new MalformedStatusChangeError(
      `the body is not a "${EXECUTION_STATUS_CHANGE.DETAIL_TYPE}" event from ${EXECUTION_STATUS_CHANGE.SOURCE}: ${problems}`,
    );
  }
  const { id, detail } = parsed.data;
  return { ...(id === undefined ? {} : { eventId: id }), change: detail };
}

/** What became of one record. */
export type StatusChangeRecordOutcome = ReconcileResult | 'malformed';

export interface StatusChangeRecordHandlerDeps {
  readonly reconciler: Pick<ExecutionReconciler, 'reconcile'>;
  readonly logger: AppLogger;
}

/**
 * Handles one record of the reconcile queue. A malformed body is logged at ERROR and
 * acknowledged (returns `'malformed'`): a poison message must not loop through retries. Any
 * failure of the reconciler (DynamoDB, Waterflai, EventBridge) is thrown, so the record is
 * reported as a batch item failure, retried after the visibility timeout and dead-lettered
 * after the queue's maxReceiveCount.
 */
export class StatusChangeRecordHandler {
  constructor(private readonly deps: StatusChangeRecordHandlerDeps) {}

  async handleRecord(record: SQSRecord): Promise<StatusChangeRecordOutcome> {
    const { logger, reconciler } = this.deps;
    let event: StatusChangeEvent;
    try {
      event = parseStatusChangeBody(record.body);
    } catch (error) {
      if (!(error instanceof MalformedStatusChangeError)) throw error;
      logger.error('reconcile queue record is not an execution status-change event; acknowledged without retry', {
        message_id: record.messageId,
        receive_count: record.attributes.ApproximateReceiveCount,
        reason: error.message,
      });
      return 'malformed';
    }
    const context = {
      message_id: record.messageId,
      event_id: event.eventId,
      execution_arn: event.change.executionArn,
      status: event.change.status,
    };
    try {
      const result = await reconciler.reconcile(event.change);
      logger.info('execution status change reconciled', { ...context, result });
      return result;
    } catch (error) {
      logger.warn('reconciling an execution status change failed; the record will be retried', {
        ...context,
        receive_count: record.attributes.ApproximateReceiveCount,
        error: describeError(error),
      });
      throw error;
    }
  }
}
