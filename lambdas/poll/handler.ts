import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { cachedApiKey } from '../aws/api-key';
import { dynamoDocumentClient, secretsManager, stepFunctions } from '../aws/clients';
import { readPollSettings, readWaterflaiSettings, requireEnv, setting } from '../platform/env';
import { ENV } from '../contract/constants';
import { ConfigurationError } from '../contract/errors';
import { listenToExecution } from '../waterflai/stream';
import { JobStore } from '../aws/job-store';
import { createLogger } from '../platform/logger';
import { outputPlacementFromEnv } from '../platform/outputs-from-env';
import { adaptiveStrategy, DEFAULT_ADAPTIVE_SETTINGS } from '../domain/poll-strategy';
import { startSuccessorExecution } from '../aws/successor';
import { waterflaiClientFromEnv } from '../platform/waterflai-from-env';
import type { FinishInput, PollState } from '../domain/workflow';
import { hostClock } from '../platform/clock';
import { JobPoller, type ExecutionStreamListener } from './poll-job';

/** poll Lambda: one iteration of the state machine's poll loop. Configured once per container. */
const logger = createLogger();
const stateMachineArn = requireEnv(ENV.STATE_MACHINE_ARN);
// The stream is opened outside the client (it is read as it arrives), with the same key cache.
const apiKey = cachedApiKey(secretsManager(), readWaterflaiSettings().apiKeySecretId);
const waterflai = waterflaiClientFromEnv(process.env, apiKey);
const pollSettings = readPollSettings();

/** The execution's SSE stream, for the strategy's stream finish. */
const stream: ExecutionStreamListener = {
  listen: (executionId, options) => listenToExecution({ url: waterflai.streamUrl(executionId), apiKey, ...options }),
};

/**
 * `POLL_STRATEGY`: `adaptive` (the default: progress-based waits and the stream finish) or
 * `fixed` (every pollIntervalSeconds, no stream): an operator's escape hatch, e.g. when the
 * stream misbehaves in some deployment. Set it through `functionProps.environment`.
 */
const strategyName = process.env.POLL_STRATEGY?.trim() || 'adaptive';
if (strategyName !== 'adaptive' && strategyName !== 'fixed')
  throw new ConfigurationError(`environment variable POLL_STRATEGY must be adaptive or fixed, got "${strategyName}"`);

const poller = new JobPoller({
  store: new JobStore(dynamoDocumentClient(), requireEnv(ENV.JOB_TABLE_NAME)),
  waterflai,
  logger,
  pollSettings,
  // Ours: pollIntervalSeconds is the first wait, pollMin/MaxSeconds the floor and cap.
  ...(strategyName === 'adaptive' ? { strategy: adaptiveStrategy({ ...DEFAULT_ADAPTIVE_SETTINGS, ...pollSettings }), stream } : {}),
  clock: hostClock(),
  authGraceSeconds: setting(ENV.AUTH_GRACE_SECONDS),
  ...outputPlacementFromEnv(),
  maxPollsPerExecution: setting(ENV.MAX_POLLS_PER_EXECUTION),
  successor: { start: (name, input) => startSuccessorExecution(stepFunctions(), stateMachineArn, name, input) },
});

/** A poll, or, with the Catch's `error` (the GiveUpPolling state), the give-up step. */
const lambdaHandler = async (input: FinishInput, context: Context): Promise<PollState> =>
  poller.handle(input, () => context.getRemainingTimeInMillis());

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger, { logEvent: false }));
