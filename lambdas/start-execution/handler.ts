import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { dynamoDocumentClient, eventBridge, sqs, stepFunctions } from '../aws/clients';
import { readPollSettings, requireEnv, setting } from '../platform/env';
import { ENV } from '../contract/constants';
import { JobStore } from '../aws/job-store';
import { createLogger } from '../platform/logger';
import { OutcomePublisher } from '../aws/outcome-publisher';
import { nextPollSeconds } from '../domain/poll-strategy';
import { waterflaiClientFromEnv } from '../platform/waterflai-from-env';
import { JobStarter } from './start-job';

/**
 * start-execution Lambda: fed by the intake queue (SQS event source with
 * ReportBatchItemFailures). Everything is configured once per container; a missing
 * setting fails the cold start.
 */
const logger = createLogger();
const pollSettings = readPollSettings();

const starter = new JobStarter({
  store: new JobStore(dynamoDocumentClient(), requireEnv(ENV.JOB_TABLE_NAME)),
  waterflai: waterflaiClientFromEnv(),
  sfn: stepFunctions(),
  sqs: sqs(),
  publisher: new OutcomePublisher(eventBridge(), requireEnv(ENV.EVENT_BUS_NAME)),
  logger,
  settings: {
    stateMachineArn: requireEnv(ENV.STATE_MACHINE_ARN),
    intakeQueueUrl: requireEnv(ENV.INTAKE_QUEUE_URL),
    deadLetterQueueUrl: requireEnv(ENV.DLQ_URL),
    maxJobDurationSeconds: setting(ENV.MAX_JOB_DURATION_SECONDS),
    retentionDays: setting(ENV.JOB_RETENTION_DAYS),
    maxReceiveCount: setting(ENV.MAX_RECEIVE_COUNT),
    maxInlineOutputBytes: setting(ENV.MAX_INLINE_OUTPUT_BYTES),
    firstPollSeconds: nextPollSeconds(pollSettings),
    claimLeaseMs: 120_000,
  },
});

const processor = new BatchProcessor(EventType.SQS);

const lambdaHandler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  const recordHandler = (record: SQSRecord): Promise<void> => starter.handleRecord(record, () => context.getRemainingTimeInMillis());
  return processPartialResponse(event, recordHandler, processor, { context, throwOnFullBatchFailure: false });
};

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger, { logEvent: false }));
