import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { EventBridgeEvent } from 'aws-lambda';
import { dynamoDocumentClient, eventBridge } from '../shared/aws-clients';
import { requireEnv } from '../shared/config';
import { ENV } from '../shared/constants';
import { JobStore } from '../shared/job-store';
import { createLogger } from '../shared/logger';
import { OutcomePublisher } from '../shared/outcome-event';
import { waterflaiClientFromEnv } from '../shared/waterflai-from-env';
import { ExecutionReconciler, type ExecutionStatusChange, type ReconcileResult } from './reconcile-job';

/**
 * reconcile Lambda: target of a rule on the default bus for the poll state machine's
 * "Step Functions Execution Status Change" events (ABORTED, TIMED_OUT, FAILED).
 * EventBridge retries it when it throws.
 */
const logger = createLogger();
const reconciler = new ExecutionReconciler({
  store: new JobStore(dynamoDocumentClient(), requireEnv(ENV.JOB_TABLE_NAME)),
  publisher: new OutcomePublisher(eventBridge(), requireEnv(ENV.EVENT_BUS_NAME)),
  waterflai: waterflaiClientFromEnv(),
  logger,
});

const lambdaHandler = async (event: EventBridgeEvent<'Step Functions Execution Status Change', ExecutionStatusChange>): Promise<ReconcileResult> =>
  reconciler.reconcile(event.detail);

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger, { logEvent: false }));
