/** Shared fixtures of the start-function tests: deployment settings and healthy AWS answers. */
import { PutEventsCommand, type EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { StartExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { AwsClientStub } from 'aws-sdk-client-mock';
import { vi, type Mock } from 'vitest';
import type { StarterSettings, WaterflaiStarter } from '../../lambdas/start-execution/start-job';
import { execution } from './execution-status';
import { cancelResult } from './scripted-waterflai';

export const STATE_MACHINE_ARN = 'arn:aws:states:us-east-1:123456789012:stateMachine:poll-loop';

export const STARTER_SETTINGS: StarterSettings = {
  stateMachineArn: STATE_MACHINE_ARN,
  intakeQueueUrl: 'http://127.0.0.1:1/000000000000/intake',
  deadLetterQueueUrl: 'http://127.0.0.1:1/000000000000/dlq',
  maxJobDurationSeconds: 3600,
  retentionDays: 30,
  maxReceiveCount: 5,
  firstPollSeconds: 10,
  claimLeaseMs: 60_000,
};

/**
 * Resets the start function's SDK mocks and has them answer as a healthy account does:
 * StartExecution returns the execution's ARN, SendMessage and ChangeMessageVisibility
 * succeed, PutEvents accepts every entry.
 */
export function answerLikeHealthyAws(
  sfn: AwsClientStub<SFNClient>,
  sqs: AwsClientStub<SQSClient>,
  events: AwsClientStub<EventBridgeClient>,
): void {
  sfn.reset();
  sqs.reset();
  events.reset();
  sfn.on(StartExecutionCommand).callsFake((input: { name: string }) => ({
    executionArn: `arn:aws:states:us-east-1:123456789012:execution:poll-loop:${input.name}`,
    startDate: new Date(),
  }));
  sqs.on(SendMessageCommand).resolves({ MessageId: 'dlq-message' });
  sqs.on(ChangeMessageVisibilityCommand).resolves({});
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'event-1' }] });
}

/** A Waterflai stand-in for the start function: every call a mock, each answering as a healthy server. */
export interface FakeWaterflaiStarter {
  readonly startExecution: Mock<WaterflaiStarter['startExecution']>;
  readonly cancelExecution: Mock<WaterflaiStarter['cancelExecution']>;
  readonly getExecution: Mock<WaterflaiStarter['getExecution']>;
}

/** Starts execution `exec_1`; a DELETE is confirmed (`cancelled: true`); a status read says RUNNING. */
export function fakeWaterflaiStarter(): FakeWaterflaiStarter {
  return {
    startExecution: vi.fn<WaterflaiStarter['startExecution']>(async () => ({ execution_id: 'exec_1' })),
    cancelExecution: vi.fn<WaterflaiStarter['cancelExecution']>(async (executionId) => cancelResult(true, { execution_id: executionId })),
    getExecution: vi.fn<WaterflaiStarter['getExecution']>(async (executionId) => execution('RUNNING', { execution_id: executionId })),
  };
}
