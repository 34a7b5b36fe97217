import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { dynamoDocumentClient, eventBridge } from '../aws/clients';
import { requireEnv, setting } from '../platform/env';
import { ENV } from '../contract/constants';
import { JobStore } from '../aws/job-store';
import { createLogger } from '../platform/logger';
import { OutcomePublisher } from '../aws/outcome-publisher';
import { outputPlacementFromEnv } from '../platform/outputs-from-env';
import { waterflaiClientFromEnv } from '../platform/waterflai-from-env';
import { JobSweeper, type SweepReport } from './sweep-jobs';

/** sweep Lambda: run on a schedule; settles overdue jobs, announces lost outcomes, cancels pending executions. */
const logger = createLogger();
const sweeper = new JobSweeper(
  {
    store: new JobStore(dynamoDocumentClient(), requireEnv(ENV.JOB_TABLE_NAME)),
    publisher: new OutcomePublisher(eventBridge(), requireEnv(ENV.EVENT_BUS_NAME)),
    waterflai: waterflaiClientFromEnv(),
    logger,
    // An overdue job whose execution had completed is recorded with its output.
    outputPlacement: outputPlacementFromEnv(),
  },
  { graceSeconds: setting(ENV.SWEEP_GRACE_SECONDS), maxJobsPerRun: 500 },
);

const lambdaHandler = async (_event: unknown, context: Context): Promise<SweepReport> =>
  sweeper.sweep(() => context.getRemainingTimeInMillis());

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger, { logEvent: false }));
