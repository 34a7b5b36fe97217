import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/**
 * SDK clients, created once per container and shared by every invocation.
 *
 * Endpoints, region and credentials come from the standard SDK configuration chain, so the
 * same code runs in AWS and on the local runtime (which sets `AWS_ENDPOINT_URL_<SERVICE>`
 * to its local emulators); there is no local branch here.
 * Each client retries throttling and 5xx errors with the SDK's standard backoff and jitter.
 */
const clientConfig = { maxAttempts: 4 } as const;

let documentClient: DynamoDBDocumentClient | undefined;
let eventBridgeClient: EventBridgeClient | undefined;
let secretsClient: SecretsManagerClient | undefined;
let sfnClient: SFNClient | undefined;
let sqsClient: SQSClient | undefined;
let s3Client: S3Client | undefined;

export function dynamoDocumentClient(): DynamoDBDocumentClient {
  documentClient ??= DynamoDBDocumentClient.from(new DynamoDBClient(clientConfig), {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
  return documentClient;
}

export function eventBridge(): EventBridgeClient {
  eventBridgeClient ??= new EventBridgeClient(clientConfig);
  return eventBridgeClient;
}

export function secretsManager(): SecretsManagerClient {
  secretsClient ??= new SecretsManagerClient(clientConfig);
  return secretsClient;
}

export function stepFunctions(): SFNClient {
  sfnClient ??= new SFNClient(clientConfig);
  return sfnClient;
}

export function sqs(): SQSClient {
  sqsClient ??= new SQSClient(clientConfig);
  return sqsClient;
}

export function s3(): S3Client {
  // Path-style addressing works with every S3-compatible endpoint (the local runtime's too).
  s3Client ??= new S3Client({ ...clientConfig, forcePathStyle: true });
  return s3Client;
}
