import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { EXECUTION_STATUS_CHANGE, RECONCILED_EXECUTION_STATUSES } from '../lambdas/contract/constants';
import { createHandlerFunction, HANDLER_ENTRY, type HandlerFunctionOverrides } from './handler-function';

/** Defaults of {@link JobLifecycleProps} and of the reconcile queue. */
export const LIFECYCLE_DEFAULTS = {
  /** Timeout of the reconcile function (`functionProps.timeout` overrides it). */
  reconcileTimeout: Duration.seconds(60),
  /** Small batches: each record may cancel an execution in Waterflai. */
  reconcileBatchSize: 5,
  /** The smallest value AWS allows: a burst of status changes drains without crowding Waterflai. */
  reconcileMaxConcurrency: 2,
  reconcileMaxReceiveCount: 10,
  deadLetterRetention: Duration.days(14),
  /** AWS guidance: the queue's visibility timeout is at least 6x the function timeout. */
  visibilityTimeoutFactor: 6,
  /** How long EventBridge keeps retrying to deliver an event to the reconcile queue. */
  ruleMaxEventAge: Duration.hours(24),
  /** EventBridge's maximum number of delivery retries. */
  ruleRetryAttempts: 185,
} as const;

/** Limits of SQS. */
const LIMITS = { maxReceiveCountMax: 1000, maxVisibilityTimeout: Duration.hours(12) } as const;

/** Queue props the lifecycle owns (dead-letter queue, encryption, TLS). */
type OwnedQueueProps = 'deadLetterQueue' | 'encryption' | 'encryptionMasterKey' | 'enforceSSL';

/** Props of {@link JobLifecycle}. */
export interface JobLifecycleProps {
  /** The poll loop whose executions are watched. */
  readonly stateMachine: sfn.IStateMachine;
  /** Environment of the reconcile and sweep functions (set by the orchestrator). */
  readonly environment: Readonly<Record<string, string>>;
  /**
   * How often the sweeper looks for jobs left unfinished past their deadline.
   * @default Duration.minutes(5)
   */
  readonly sweepInterval?: Duration;
  /**
   * Retention of the functions' log groups.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Removal policy of the log groups and of the reconcile queues.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Receives of one status-change event before SQS moves it to the reconcile dead-letter
   * queue (1 to 1,000).
   * @default 10
   */
  readonly reconcileMaxReceiveCount?: number;
  /**
   * Overrides of the reconcile queue. The dead-letter queue and encryption are owned by this
   * construct; `visibilityTimeout` must stay at least 6x the reconcile function timeout.
   * @default - visibility timeout 6x the function timeout, SQS-managed encryption, TLS only
   */
  readonly reconcileQueueProps?: Omit<sqs.QueueProps, OwnedQueueProps>;
  /**
   * Overrides of the reconcile dead-letter queue.
   * @default - 14 days retention, SQS-managed encryption, TLS only
   */
  readonly reconcileDeadLetterQueueProps?: Omit<sqs.QueueProps, OwnedQueueProps>;
  /**
   * Overrides of both functions.
   * @default - none
   */
  readonly functionProps?: HandlerFunctionOverrides;
}

/**
 * Keeps jobs from being stranded when their poll loop ends from outside: a rule on the
 * default bus sends the poll loop's "Step Functions Execution Status Change" events
 * (ABORTED, TIMED_OUT, FAILED) to the reconcile queue, which the reconcile function consumes
 * with partial batch responses (a failed record is retried, then dead-lettered; nothing is
 * dropped after Lambda's two asynchronous retries). Because Step Functions emits those
 * events best effort, a schedule also runs the sweep function, which settles jobs past their
 * deadline.
 *
 * @example
 * const lifecycle = new JobLifecycle(this, 'Lifecycle', { stateMachine, environment: { JOB_TABLE_NAME: table.tableName } });
 * table.grantReadWriteData(lifecycle.reconcileFunction);
 * new cloudwatch.Alarm(this, 'Unreconciled', {
 *   metric: lifecycle.reconcileDeadLetterQueue.metricApproximateNumberOfMessagesVisible(),
 *   threshold: 1,
 *   evaluationPeriods: 1,
 * });
 */
export class JobLifecycle extends Construct {
  public readonly reconcileFunction: NodejsFunction;
  public readonly reconcileFunctionRole: iam.Role;
  public readonly sweepFunction: NodejsFunction;
  public readonly sweepFunctionRole: iam.Role;
  /**
   * The queue between the status-change rule and the reconcile function: each message body
   * is one EventBridge "Step Functions Execution Status Change" event. Only the status-change
   * rule may send to it (events.amazonaws.com with `aws:SourceArn` of that rule).
   */
  public readonly reconcileQueue: sqs.Queue;
  /**
   * Status-change events that were never reconciled, from both paths: the reconcile queue's
   * redrive (a record that failed `reconcileMaxReceiveCount` times) and the rule target's
   * dead-letter queue (an event EventBridge could not deliver to the reconcile queue; those
   * messages carry `ERROR_CODE`, `ERROR_MESSAGE`, `RULE_ARN` and `TARGET_ARN` attributes).
   * Both hold the unchanged event JSON as the body, so one queue serves both: one place to
   * alarm on, and every message can be moved back to the reconcile queue as is.
   */
  public readonly reconcileDeadLetterQueue: sqs.Queue;
  /** The reconcile function's SQS event source (partial batch responses). */
  public readonly reconcileEventSource: SqsEventSource;
  /** The rule that sends the poll loop's status changes to {@link reconcileQueue}. */
  public readonly statusChangeRule: events.Rule;
  public readonly sweepSchedule: events.Rule;

  constructor(scope: Construct, id: string, props: JobLifecycleProps) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const common = {
      environment: props.environment,
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy,
      overrides: props.functionProps,
    };
    const reconcile = createHandlerFunction(this, 'ReconcileFunction', {
      ...common,
      timeout: LIFECYCLE_DEFAULTS.reconcileTimeout,
      entry: HANDLER_ENTRY.RECONCILE,
      description: 'Settles jobs whose poll-loop execution was stopped, timed out or failed',
    });
    const sweep = createHandlerFunction(this, 'SweepFunction', {
      ...common,
      timeout: Duration.minutes(5),
      entry: HANDLER_ENTRY.SWEEP,
      description: 'Settles jobs left unfinished past their deadline',
    });
    this.reconcileFunction = reconcile.function;
    this.reconcileFunctionRole = reconcile.role;
    this.sweepFunction = sweep.function;
    this.sweepFunctionRole = sweep.role;

    const maxReceiveCount = props.reconcileMaxReceiveCount ?? LIFECYCLE_DEFAULTS.reconcileMaxReceiveCount;
    if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 1 || maxReceiveCount > LIMITS.maxReceiveCountMax) {
      throw new Error(`reconcileMaxReceiveCount must be an integer from 1 to ${LIMITS.maxReceiveCountMax}, got ${maxReceiveCount}`);
    }
    const visibilityTimeout = reconcileVisibilityTimeout(
      this.reconcileFunction.timeout ?? LIFECYCLE_DEFAULTS.reconcileTimeout,
      props.reconcileQueueProps?.visibilityTimeout,
    );
    this.reconcileDeadLetterQueue = new sqs.Queue(this, 'ReconcileDeadLetterQueue', {
      // Longer than the reconcile queue's retention: a standard queue's message keeps its
      // original enqueue time when it is dead-lettered.
      retentionPeriod: LIFECYCLE_DEFAULTS.deadLetterRetention,
      removalPolicy,
      ...props.reconcileDeadLetterQueueProps,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.reconcileQueue = new sqs.Queue(this, 'ReconcileQueue', {
      removalPolicy,
      ...props.reconcileQueueProps,
      visibilityTimeout,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.reconcileDeadLetterQueue, maxReceiveCount },
    });
    this.reconcileEventSource = new SqsEventSource(this.reconcileQueue, {
      batchSize: LIFECYCLE_DEFAULTS.reconcileBatchSize,
      maxConcurrency: LIFECYCLE_DEFAULTS.reconcileMaxConcurrency,
      reportBatchItemFailures: true,
    });
    this.reconcileFunction.addEventSource(this.reconcileEventSource);

    this.statusChangeRule = new events.Rule(this, 'ExecutionStatusChange', {
      description: 'Poll-loop executions that ended without settling their job go to the reconcile queue',
      eventPattern: {
        source: [EXECUTION_STATUS_CHANGE.SOURCE],
        detailType: [EXECUTION_STATUS_CHANGE.DETAIL_TYPE],
        detail: { status: [...RECONCILED_EXECUTION_STATUSES], stateMachineArn: [props.stateMachine.stateMachineArn] },
      },
      // SqsQueue lets only this rule send (events.amazonaws.com, aws:SourceArn of the rule),
      // to the queue and to the dead-letter queue (for events it cannot deliver).
      targets: [
        new targets.SqsQueue(this.reconcileQueue, {
          deadLetterQueue: this.reconcileDeadLetterQueue,
          retryAttempts: LIFECYCLE_DEFAULTS.ruleRetryAttempts,
          maxEventAge: LIFECYCLE_DEFAULTS.ruleMaxEventAge,
        }),
      ],
    });
    this.sweepSchedule = new events.Rule(this, 'SweepSchedule', {
      description: 'Runs the sweep function',
      schedule: events.Schedule.rate(props.sweepInterval ?? Duration.minutes(5)),
      targets: [new targets.LambdaFunction(this.sweepFunction, { retryAttempts: 0 })],
    });
  }
}

/**
 * The reconcile queue's visibility timeout: the override, or 6x the function timeout.
 * @throws Error when the override is under 6x the function timeout, or either is over the SQS maximum
 */
function reconcileVisibilityTimeout(functionTimeout: Duration, override: Duration | undefined): Duration {
  const minimum = Duration.seconds(functionTimeout.toSeconds() * LIFECYCLE_DEFAULTS.visibilityTimeoutFactor);
  const visibilityTimeout = override ?? minimum;
  if (visibilityTimeout.toSeconds() < minimum.toSeconds()) {
    throw new Error(
      `reconcile queue visibilityTimeout (${visibilityTimeout.toSeconds()} s) must be at least ${LIFECYCLE_DEFAULTS.visibilityTimeoutFactor}x the reconcile function timeout ` +
        `(${functionTimeout.toSeconds()} s): at least ${minimum.toSeconds()} s`,
    );
  }
  if (visibilityTimeout.toSeconds() > LIMITS.maxVisibilityTimeout.toSeconds()) {
    throw new Error(
      `reconcile queue visibilityTimeout (${visibilityTimeout.toSeconds()} s) exceeds the SQS maximum of ${LIMITS.maxVisibilityTimeout.toSeconds()} s; lower the reconcile function timeout`,
    );
  }
  return visibilityTimeout;
}
