import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import type { OrchestratorConfig } from './config';
import { acknowledgeNagFindings } from './nag-acknowledgments';
import { WaterflaiOrchestrator, type WaterflaiOrchestratorProps } from './orchestrator';

/** Stable ids of the stack outputs (part of the operator's interface). */
export const OUTPUT_ID = {
  INTAKE_QUEUE_URL: 'IntakeQueueUrl',
  DEAD_LETTER_QUEUE_URL: 'DeadLetterQueueUrl',
  EVENT_BUS_NAME: 'EventBusName',
  JOB_TABLE_NAME: 'JobTableName',
  STATE_MACHINE_ARN: 'StateMachineArn',
  API_KEY_SECRET_ARN: 'ApiKeySecretArn',
} as const;

/** Props of {@link WaterflaiOrchestratorStack}. */
export interface WaterflaiOrchestratorStackProps extends StackProps {
  /**
   * Plain settings, usually read from CDK context by `readOrchestratorConfig`.
   * @default - every orchestrator default
   */
  readonly config?: OrchestratorConfig;
}

/**
 * The deployable app: one {@link WaterflaiOrchestrator}, its outputs, and the cdk-nag
 * acknowledgments (each with its reason) for what the AwsSolutions pack flags by design.
 */
export class WaterflaiOrchestratorStack extends Stack {
  public readonly orchestrator: WaterflaiOrchestrator;

  constructor(scope: Construct, id: string, props: WaterflaiOrchestratorStackProps = {}) {
    super(scope, id, {
      description: 'Waterflai orchestrator: SQS intake, Step Functions poll loop, DynamoDB job table, EventBridge outcomes',
      ...props,
    });
    this.orchestrator = new WaterflaiOrchestrator(this, 'Orchestrator', toOrchestratorProps(this, props.config ?? {}));

    const o = this.orchestrator;
    new CfnOutput(this, OUTPUT_ID.INTAKE_QUEUE_URL, { value: o.queue.queueUrl, description: 'Send job requests here' });
    new CfnOutput(this, OUTPUT_ID.DEAD_LETTER_QUEUE_URL, {
      value: o.deadLetterQueue.queueUrl,
      description: 'Messages that could not be processed, with the reason',
    });
    new CfnOutput(this, OUTPUT_ID.EVENT_BUS_NAME, {
      value: o.eventBus.eventBusName,
      description: 'Outcome events are published on this bus',
    });
    new CfnOutput(this, OUTPUT_ID.JOB_TABLE_NAME, { value: o.table.tableName, description: 'One record per job' });
    new CfnOutput(this, OUTPUT_ID.STATE_MACHINE_ARN, {
      value: o.stateMachine.stateMachineArn,
      description: 'Poll loop, one execution per job',
    });
    new CfnOutput(this, OUTPUT_ID.API_KEY_SECRET_ARN, {
      value: o.apiKeySecret.secretArn,
      description: 'Put the Waterflai API key here: aws secretsmanager put-secret-value --secret-id <this ARN> --secret-string <key>',
    });

    acknowledgeNagFindings(o);
  }
}

/** Turns plain settings into construct props (importing the existing secret and bus, if any). */
export function toOrchestratorProps(scope: Construct, config: OrchestratorConfig): WaterflaiOrchestratorProps {
  return {
    waterflaiBaseUrl: config.baseUrl,
    apiKeySecret:
      config.apiKeySecretArn === undefined
        ? undefined
        : secretsmanager.Secret.fromSecretCompleteArn(scope, 'ApiKeySecret', config.apiKeySecretArn),
    eventBus:
      config.eventBusName === undefined
        ? undefined
        : config.eventBusName.startsWith('arn:')
          ? events.EventBus.fromEventBusArn(scope, 'EventBus', config.eventBusName)
          : events.EventBus.fromEventBusName(scope, 'EventBus', config.eventBusName),
    maxJobDuration: config.maxJobDurationHours === undefined ? undefined : Duration.minutes(Math.round(config.maxJobDurationHours * 60)),
    pollIntervalSeconds: config.pollIntervalSeconds,
    pollMinSeconds: config.pollMinSeconds,
    pollMaxSeconds: config.pollMaxSeconds,
    batchSize: config.batchSize,
    maxConcurrency: config.maxConcurrency,
    maxReceiveCount: config.maxReceiveCount,
    logRetention: config.logRetentionDays as logs.RetentionDays | undefined,
    removalPolicy:
      config.removalPolicy === undefined ? undefined : config.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    jobRetention: config.jobRetentionDays === undefined ? undefined : Duration.days(config.jobRetentionDays),
    maxInlineOutputBytes: config.maxInlineOutputBytes,
    maxPollsPerExecution: config.maxPollsPerExecution,
    sweepInterval: config.sweepIntervalMinutes === undefined ? undefined : Duration.minutes(config.sweepIntervalMinutes),
    authGracePeriod: config.authGraceMinutes === undefined ? undefined : Duration.minutes(config.authGraceMinutes),
  };
}
