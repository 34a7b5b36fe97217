/**
 * Child process of `npm run bench`: the start-execution handler's CPU time per message
 * with mocked clients (DynamoDB, Step Functions, SQS, EventBridge, Secrets Manager mocked
 * at the SDK level; Waterflai answered by a stubbed fetch), after a warm-up. Prints one
 * JSON line: `{"messages", "cpuMicrosPerMessage", "wallMicrosPerMessage"}`.
 */
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { HANDLER_IMPORT_ENV } from './bundles';

const BATCH = 10;
const WARMUP_BATCHES = 30;
const MEASURED_BATCHES = Number(process.argv[2] ?? 200);

Object.assign(process.env, HANDLER_IMPORT_ENV);
const now = new Date().toISOString();
mockClient(DynamoDBDocumentClient)
  .on(PutCommand)
  .resolves({})
  .on(UpdateCommand)
  .callsFake((input: { Key: { job_id: string } }) => ({
    Attributes: {
      job_id: input.Key.job_id,
      chatbot_id: 'bench-bot',
      execution_id: `exec_${input.Key.job_id}`,
      status: 'PENDING',
      status_rank: 1,
      version: 2,
      accepted_at: now,
      deadline_at: now,
      updated_at: now,
    },
  }));
mockClient(SFNClient)
  .on(StartExecutionCommand)
  .resolves({ executionArn: 'arn:aws:states:us-east-1:123456789012:execution:bench:x', startDate: new Date() });
mockClient(SQSClient).resolves({});
mockClient(EventBridgeClient)
  .on(PutEventsCommand)
  .resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e' }] });
mockClient(SecretsManagerClient).on(GetSecretValueCommand).resolves({ SecretString: 'bench-key-0123456789' });
let started = 0;
globalThis.fetch = async () => {
  started += 1;
  return new Response(JSON.stringify({ execution_id: `exec_${started}`, status_url: null, stream_url: null, cancel_url: null }), {
    status: 202,
    headers: { 'content-type': 'application/json' },
  });
};

const { handler } = (await import('../lambdas/start-execution/handler')) as {
  handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;
};
const context = { functionName: 'start-execution', awsRequestId: 'bench', getRemainingTimeInMillis: () => 55_000 } as unknown as Context;
let counter = 0;
const record = (): SQSRecord => {
  counter += 1;
  return {
    messageId: `m-${counter}`,
    receiptHandle: `rh-${counter}`,
    body: JSON.stringify({
      job_id: `bench-${counter}`,
      chatbot_id: 'bench-bot',
      input_data: { query: 'Summarise the Q3 report', user_id: 'u-1' },
      metadata: { correlation_id: `c-${counter}` },
    }),
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 's', ApproximateFirstReceiveTimestamp: '0' },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:intake',
    awsRegion: 'us-east-1',
  };
};
const batch = async (): Promise<void> => {
  const response = await handler({ Records: Array.from({ length: BATCH }, record) }, context);
  if (response.batchItemFailures.length > 0) throw new Error(`the mocked start failed for ${response.batchItemFailures.length} message(s)`);
};

for (let i = 0; i < WARMUP_BATCHES; i += 1) await batch();
const cpuBefore = process.cpuUsage();
const wallBefore = performance.now();
for (let i = 0; i < MEASURED_BATCHES; i += 1) await batch();
const cpu = process.cpuUsage(cpuBefore);
const wall = performance.now() - wallBefore;
const messages = MEASURED_BATCHES * BATCH;
process.stdout.write(
  `${JSON.stringify({ messages, cpuMicrosPerMessage: (cpu.user + cpu.system) / messages, wallMicrosPerMessage: (wall * 1000) / messages })}\n`,
);
