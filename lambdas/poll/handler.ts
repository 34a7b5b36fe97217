import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { dynamoDocumentClient } from '../shared/aws-clients';
import { DEFAULT_MAX_INLINE_OUTPUT_BYTES, positiveIntEnv, readPollSettings, requireEnv } from '../shared/config';
import { ENV } from '../shared/constants';
import { JobStore } from '../shared/job-store';
import { createLogger } from '../shared/logger';
import { waterflaiClientFromEnv } from '../shared/waterflai-from-env';
import type { PollState } from '../shared/workflow';
import { JobPoller } from './poll-job';

/** poll Lambda: one iteration of the state machine's poll loop. Configured once per container. */
const logger = createLogger();

const poller = new JobPoller({
  store: new JobStore(dynamoDocumentClient(), requireEnv(ENV.JOB_TABLE_NAME)),
  waterflai: waterflaiClientFromEnv(),
  logger,
  pollSettings: readPollSettings(),
  maxInlineOutputBytes: positiveIntEnv(ENV.MAX_INLINE_OUTPUT_BYTES, DEFAULT_MAX_INLINE_OUTPUT_BYTES),
});

const lambdaHandler = async (state: PollState, context: Context): Promise<PollState> =>
  poller.poll(state, () => context.getRemainingTimeInMillis());

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger, { logEvent: false }));
