import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { dynamoDocumentClient, eventBridge } from '../shared/aws-clients';
import { requireEnv } from '../shared/config';
import { ENV } from '../shared/constants';
import { JobStore } from '../shared/job-store';
import { createLogger } from '../shared/logger';
import { OutcomePublisher } from '../shared/outcome-event';
import type { FinishInput, FinishOutput } from '../shared/workflow';
import { JobFinisher } from './finish-job';

/** finish Lambda: announces a settled job's outcome (and settles it FAILED on the Catch path). */
const logger = createLogger();
const finisher = new JobFinisher({
  store: new JobStore(dynamoDocumentClient(), requireEnv(ENV.JOB_TABLE_NAME)),
  publisher: new OutcomePublisher(eventBridge(), requireEnv(ENV.EVENT_BUS_NAME)),
  logger,
});

const lambdaHandler = async (input: FinishInput): Promise<FinishOutput> => finisher.finish(input);

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger, { logEvent: false }));
