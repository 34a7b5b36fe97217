import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { dynamoDocumentClient, eventBridge } from '../aws/clients';
import { requireEnv } from '../platform/env';
import { ENV } from '../contract/constants';
import { JobStore } from '../aws/job-store';
import { createLogger } from '../platform/logger';
import { OutcomePublisher } from '../aws/outcome-publisher';
import type { FinishInput, FinishOutput } from '../domain/workflow';
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
