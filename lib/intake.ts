import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV } from '../lambdas/contract/constants';
import { JOB_REQUEST_LIMITS } from '../lambdas/contract/job-request';
import { createHandlerFunction, HANDLER_ENTRY, type HandlerFunctionOverrides } from './handler-function';
import { SETTING_DEFAULTS } from '../lambdas/contract/settings';

/** Defaults of {@link IntakeProps}. */
export const INTAKE_DEFAULTS = {
  batchSize: 10,
  maxConcurrency: 5,
  maxReceiveCount: SETTING_DEFAULTS.maxReceiveCount,
  startTimeout: Duration.seconds(60),
  deadLetterRetention: Duration.days(14),
  /** AWS guidance: the queue's visibility timeout is at least 6x the function timeout. */
  visibilityTimeoutFactor: 6,
} as const;

/** Limits of the SQS event source mapping and of SQS itself. */
const LIMITS = {
  /** Without a batching window an SQS event source takes at most 10 records. */
  batchSizeWithoutWindow: 10,
  batchSizeWithWindow: 10_000,
  maxConcurrencyMin: 2,
  maxConcurrencyMax: 1000,
  maxReceiveCountMax: 1000,
  maxVisibilityTimeout: Duration.hours(12),
} as const;

/** Props of {@link Intake}. */
export interface IntakeProps {
  /**
   * Environment of the start-execution function (set by the orchestrator). This construct
   * adds the queue URLs and the max receive count.
   */
  readonly environment: Readonly<Record<string, string>>;
  /**
   * Largest number of messages given to one invocation of the start function.
   * At most 10 unless `maxBatchingWindow` is set (then at most 10,000).
   * @default 10
   */
  readonly batchSize?: number;
  /**
   * How long the event source gathers messages before invoking the function.
   * @default - no batching window
   */
  readonly maxBatchingWindow?: Duration;
  /**
   * Most concurrent start-function invocations the queue drives (2 to 1,000, an AWS limit).
   * @default 5
   */
  readonly maxConcurrency?: number;
  /**
   * Receives of one message before SQS moves it to the dead-letter queue (1 to 1,000).
   * @default 5
   */
  readonly maxReceiveCount?: number;
  /**
   * Retention of the start function's log group.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Removal policy of both queues and of the log group.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Overrides of the intake queue. The dead-letter queue and encryption are owned by this
   * construct; `visibilityTimeout` must stay at least 6x the function timeout (plus the
   * batching window).
   * @default - visibility timeout 6x the function timeout, SQS-managed encryption, TLS only
   */
  readonly queueProps?: Omit<sqs.QueueProps, 'deadLetterQueue' | 'encryption' | 'encryptionMasterKey' | 'enforceSSL'>;
  /**
   * Overrides of the dead-letter queue.
   * @default - 14 days retention, SQS-managed encryption, TLS only
   */
  readonly deadLetterQueueProps?: Omit<sqs.QueueProps, 'deadLetterQueue' | 'encryption' | 'encryptionMasterKey' | 'enforceSSL'>;
  /**
   * Overrides of the start-execution function.
   * @default - Node.js 24, arm64, 256 MB, 60 s timeout
   */
  readonly functionProps?: HandlerFunctionOverrides;
}

/**
 * Where jobs come in: the intake queue (with its dead-letter queue) and the start-execution
 * function that consumes it with partial batch responses.
 *
 * @example
 * const intake = new Intake(this, 'Intake', { environment: { JOB_TABLE_NAME: table.tableName } });
 * intake.queue.grantSendMessages(producerRole);
 */
export class Intake extends Construct {
  public readonly queue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  public readonly startFunction: NodejsFunction;
  /** Execution role of the start function (grant it what it needs). */
  public readonly startFunctionRole: iam.Role;
  public readonly startFunctionLogGroup: logs.LogGroup;
  public readonly eventSource: SqsEventSource;

  constructor(scope: Construct, id: string, props: IntakeProps) {
    super(scope, id);
    const batchSize = props.batchSize ?? INTAKE_DEFAULTS.batchSize;
    const maxConcurrency = props.maxConcurrency ?? INTAKE_DEFAULTS.maxConcurrency;
    const maxReceiveCount = props.maxReceiveCount ?? INTAKE_DEFAULTS.maxReceiveCount;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    validateIntakeNumbers({ batchSize, maxConcurrency, maxReceiveCount, maxBatchingWindow: props.maxBatchingWindow });

    const started = createHandlerFunction(this, 'StartFunction', {
      entry: HANDLER_ENTRY.START_EXECUTION,
      description: 'Starts Waterflai executions for job messages from the intake queue',
      timeout: INTAKE_DEFAULTS.startTimeout,
      environment: props.environment,
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy,
      overrides: props.functionProps,
    });
    this.startFunction = started.function;
    this.startFunctionRole = started.role;
    this.startFunctionLogGroup = started.logGroup;

    const functionTimeout = props.functionProps?.timeout ?? INTAKE_DEFAULTS.startTimeout;
    const minimumVisibility = Duration.seconds(
      functionTimeout.toSeconds() * INTAKE_DEFAULTS.visibilityTimeoutFactor + (props.maxBatchingWindow?.toSeconds() ?? 0),
    );
    const visibilityTimeout = props.queueProps?.visibilityTimeout ?? minimumVisibility;
    if (visibilityTimeout.toSeconds() < minimumVisibility.toSeconds()) {
      throw new Error(
        `intake queue visibilityTimeout (${visibilityTimeout.toSeconds()} s) must be at least ${INTAKE_DEFAULTS.visibilityTimeoutFactor}x the start function timeout ` +
          `(${functionTimeout.toSeconds()} s) plus the batching window: at least ${minimumVisibility.toSeconds()} s`,
      );
    }
    if (visibilityTimeout.toSeconds() > LIMITS.maxVisibilityTimeout.toSeconds()) {
      throw new Error(
        `intake queue visibilityTimeout (${visibilityTimeout.toSeconds()} s) exceeds the SQS maximum of ${LIMITS.maxVisibilityTimeout.toSeconds()} s; lower the start function timeout`,
      );
    }

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      retentionPeriod: INTAKE_DEFAULTS.deadLetterRetention,
      removalPolicy,
      ...props.deadLetterQueueProps,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      removalPolicy,
      ...props.queueProps,
      // SQS refuses larger bodies at send time: a message the start function would refuse
      // anyway (and whose copy plus reason could not fit the DLQ) never enters the queue.
      maxMessageSizeBytes: JOB_REQUEST_LIMITS.MAX_MESSAGE_BYTES,
      visibilityTimeout,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount },
    });

    this.eventSource = new SqsEventSource(this.queue, {
      batchSize,
      maxConcurrency,
      reportBatchItemFailures: true,
      ...(props.maxBatchingWindow === undefined ? {} : { maxBatchingWindow: props.maxBatchingWindow }),
    });
    this.startFunction.addEventSource(this.eventSource);
    // The start Lambda extends visibility on the intake queue, dead-letters bad messages
    // itself, and must know when SQS would give up on a message.
    this.startFunction.addEnvironment(ENV.INTAKE_QUEUE_URL, this.queue.queueUrl);
    this.startFunction.addEnvironment(ENV.DLQ_URL, this.deadLetterQueue.queueUrl);
    this.startFunction.addEnvironment(ENV.MAX_RECEIVE_COUNT, String(maxReceiveCount));
  }
}

function validateIntakeNumbers(values: {
  batchSize: number;
  maxConcurrency: number;
  maxReceiveCount: number;
  maxBatchingWindow: Duration | undefined;
}): void {
  const { batchSize, maxConcurrency, maxReceiveCount, maxBatchingWindow } = values;
  const maxBatch = maxBatchingWindow === undefined ? LIMITS.batchSizeWithoutWindow : LIMITS.batchSizeWithWindow;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > maxBatch) {
    throw new Error(
      `batchSize must be an integer from 1 to ${maxBatch}${maxBatchingWindow === undefined ? ' (set maxBatchingWindow to go above 10)' : ''}, got ${batchSize}`,
    );
  }
  if (!Number.isInteger(maxConcurrency) || maxConcurrency < LIMITS.maxConcurrencyMin || maxConcurrency > LIMITS.maxConcurrencyMax) {
    throw new Error(
      `maxConcurrency must be an integer from ${LIMITS.maxConcurrencyMin} to ${LIMITS.maxConcurrencyMax} (an AWS limit), got ${maxConcurrency}`,
    );
  }
  if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 1 || maxReceiveCount > LIMITS.maxReceiveCountMax) {
    throw new Error(`maxReceiveCount must be an integer from 1 to ${LIMITS.maxReceiveCountMax}, got ${maxReceiveCount}`);
  }
}
