import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV, JOB_STATUS } from '../../lambdas/contract/constants';
import { JobStore } from '../../lambdas/aws/job-store';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';

/**
 * The real start-execution handler module (middy + Powertools batch + env wiring) on a
 * batch that mixes a good job, an invalid message and a job Waterflai answers 503 to.
 * DynamoDB is dynalite, Waterflai a local HTTP server; SFN, SQS, EventBridge and Secrets
 * Manager are mocked at the SDK level.
 */
const API_KEY = 'test-key-0123456789';

const sfnMock = mockClient(SFNClient);
const sqsMock = mockClient(SQSClient);
const eventsMock = mockClient(EventBridgeClient);
const secretsMock = mockClient(SecretsManagerClient);

let dynamo: LocalDynamo;
let tableName: string;
let waterflai: Server;
const waterflaiRequests: Array<{ method: string; url: string; apiKey: string | undefined }> = [];
let handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

function answerWaterflai(request: IncomingMessage, response: ServerResponse): void {
  waterflaiRequests.push({
    method: request.method ?? '',
    url: request.url ?? '',
    apiKey: request.headers['x-api-key'] as string | undefined,
  });
  request.resume();
  const flaky = request.url?.includes('/flaky-bot/');
  response.writeHead(flaky ? 503 : 202, { 'content-type': 'application/json' });
  response.end(JSON.stringify(flaky ? { detail: 'overloaded' } : { execution_id: `exec_${waterflaiRequests.length}` }));
}

function record(messageId: string, body: string): SQSRecord {
  return {
    messageId,
    receiptHandle: `rh-${messageId}`,
    body,
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 's', ApproximateFirstReceiveTimestamp: '0' },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:intake',
    awsRegion: 'us-east-1',
  };
}

const context = {
  functionName: 'start-execution',
  awsRequestId: 'req-1',
  getRemainingTimeInMillis: () => 55_000,
} as unknown as Context; // only the fields the handler and Powertools read

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  tableName = await dynamo.createJobTable();
  waterflai = createServer(answerWaterflai);
  await new Promise<void>((resolve) => waterflai.listen(0, '127.0.0.1', resolve));
  const { port } = waterflai.address() as AddressInfo;

  secretsMock.on(GetSecretValueCommand).resolves({ SecretString: API_KEY });
  sfnMock
    .on(StartExecutionCommand)
    .resolves({ executionArn: 'arn:aws:states:us-east-1:123456789012:execution:sm:x', startDate: new Date() });
  sqsMock.on(SendMessageCommand).resolves({ MessageId: 'm' });
  sqsMock.on(ChangeMessageVisibilityCommand).resolves({});
  eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e' }] });

  Object.assign(process.env, {
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    [ENV.WATERFLAI_BASE_URL]: `http://127.0.0.1:${port}`,
    [ENV.WATERFLAI_API_KEY_SECRET_ID]: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:waterflai-key',
    [ENV.JOB_TABLE_NAME]: tableName,
    [ENV.STATE_MACHINE_ARN]: 'arn:aws:states:us-east-1:123456789012:stateMachine:sm',
    [ENV.EVENT_BUS_NAME]: 'bus',
    [ENV.DLQ_URL]: 'http://127.0.0.1:1/000000000000/dlq',
    [ENV.INTAKE_QUEUE_URL]: 'http://127.0.0.1:1/000000000000/intake',
  });
  ({ handler } = await import('../../lambdas/start-execution/handler'));
});

afterAll(async () => {
  await new Promise<void>((resolve) => waterflai.close(() => resolve()));
  await dynamo.close();
});

describe('start-execution handler', () => {
  it('reports only the transient failure in batchItemFailures; the good job starts and the invalid message is dead-lettered', async () => {
    // Prepare
    const event: SQSEvent = {
      Records: [
        record('good', JSON.stringify({ job_id: 'good-job', chatbot_id: 'bot', input_data: { q: 1 } })),
        record('invalid', JSON.stringify({ job_id: 'bad-job', chatbot_id: 'a/b', input_data: {} })),
        record('flaky', JSON.stringify({ job_id: 'flaky-job', chatbot_id: 'flaky-bot', input_data: {} })),
      ],
    };

    // Act
    const response = await handler(event, context);

    // Assess
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'flaky' }] });
    const store = new JobStore(dynamo.documentClient, tableName);
    expect(await store.get('good-job')).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: expect.stringMatching(/^exec_/) });
    expect(await store.get('bad-job')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: 'INVALID_MESSAGE' });
    expect(await store.get('flaky-job')).toMatchObject({ status: JOB_STATUS.SUBMITTING });
    expect(sqsMock).toHaveReceivedCommandTimes(SendMessageCommand, 1);
    expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { ReceiptHandle: 'rh-flaky' });
  });

  it('sends the API key from Secrets Manager as X-API-Key, and only to the configured base URL', () => {
    expect(waterflaiRequests.length).toBeGreaterThanOrEqual(2);
    expect(waterflaiRequests.every((request) => request.apiKey === API_KEY)).toBe(true);
    expect(waterflaiRequests.map((request) => `${request.method} ${request.url}`)).toEqual(
      expect.arrayContaining(['POST /v1/executions/bot/async', 'POST /v1/executions/flaky-bot/async']),
    );
  });

  it('returns an empty failure list for an empty batch', async () => {
    await expect(handler({ Records: [] }, context)).resolves.toEqual({ batchItemFailures: [] });
  });
});
