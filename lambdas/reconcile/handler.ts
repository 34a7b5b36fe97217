import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { dynamoDocumentClient, eventBridge } from '../aws/clients';
import { requireEnv } from '../platform/env';
import { ENV } from '../contract/constants';
import { JobStore } from '../aws/job-store';
import { createLogger } from '../platform/logger';
import { OutcomePublisher } from '../aws/outcome-publisher';
import { outputPlacementFromEnv } from '../platform/outputs-from-env';
import { waterflaiClientFromEnv } from '../platform/waterflai-from-env';
import { ExecutionReconciler } from './reconcile-job';
import { StatusChangeRecordHandler, type StatusChangeRecordOutcome } from './status-change-record';

/**
 * reconcile Lambda: fed by the reconcile queue (SQS event source with
 * ReportBatchItemFailures), which a rule on the default bus fills with the poll state
 * machine's "Step Functions Execution Status Change" events (ABORTED, TIMED_OUT, FAILED).
 * Each record's body is one EventBridge event. A malformed body is logged and acknowledged;
 * a record whose reconciliation fails is reported as a batch item failure, so SQS retries it
 * and dead-letters it after maxReceiveCount.
 */
const logger = createLogger();
const records = new StatusChangeRecordHandler({
  reconciler: new ExecutionReconciler({
    store: new JobStore(dynamoDocumentClient(), requireEnv(ENV.JOB_TABLE_NAME)),
    publisher: new OutcomePublisher(eventBridge(), requireEnv(ENV.EVENT_BUS_NAME)),
    waterflai: waterflaiClientFromEnv(),
    logger,
    // A stopped job whose execution had completed is recorded with its output.
    outputPlacement: outputPlacementFromEnv(),
  }),
  logger,
});

const processor = new BatchProcessor(EventType.SQS);

const recordHandler = (record: SQSRecord): Promise<StatusChangeRecordOutcome> => records.handleRecord(record);

const lambdaHandler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  processPartialResponse(event, recordHandler, processor, { context, throwOnFullBatchFailure: false });

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger, { logEvent: false }));
