import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { dynamoDocumentClient, eventBridge } from '../shared/aws-clients';
import { positiveIntEnv, requireEnv } from '../shared/config';
import { ENV } from '../shared/constants';
import { JobStore } from '../shared/job-store';
import { createLogger } from '../shared/logger';
import { OutcomePublisher } from '../shared/outcome-event';
import { waterflaiClientFromEnv } from '../shared/waterflai-from-env';
import { JobSweeper, type SweepReport } from './sweep-jobs';

/** sweep Lambda: run on a schedule; settles jobs left unfinished past their deadline. */
const logger = createLogger();
const sweeper = new JobSweeper(
  {
    store: new JobStore(dynamoDocumentClient(), requireEnv(ENV.JOB_TABLE_NAME)),
    publisher: new OutcomePublisher(eventBridge(), requireEnv(ENV.EVENT_BUS_NAME)),
    waterflai: waterflaiClientFromEnv(),
    logger,
  },
  { graceSeconds: positiveIntEnv(ENV.SWEEP_GRACE_SECONDS, 300), maxJobsPerRun: 500 },
);

const lambdaHandler = async (): Promise<SweepReport> => sweeper.sweep();

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger, { logEvent: false }));
