import { Duration, RemovalPolicy, Token } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV } from '../lambdas/contract/constants';
import { type FixedIntervalSettings, SETTING_DEFAULTS, SWEEP_GRACE_SECONDS, validatePollSettings } from '../lambdas/contract/settings';
import { grantFunctionAccess } from './grants';
import type { HandlerFunctionOverrides } from './handler-function';
import { Intake, type IntakeProps } from './intake';
import { JobTable, type JobTableProps } from './job-table';
import { JobLifecycle } from './lifecycle';
import { OutcomeEvents } from './outcome-events';
import { OutputBucket } from './output-bucket';
import { POLL_STATE_MACHINE_DEFAULTS, PollStateMachine } from './poll-state-machine';

/** Defaults of {@link WaterflaiOrchestratorProps}, applied once. */
export const ORCHESTRATOR_DEFAULTS = {
  waterflaiBaseUrl: 'https://api.waterflai.ai',
  maxJobDuration: Duration.seconds(SETTING_DEFAULTS.maxJobDurationSeconds),
  pollIntervalSeconds: SETTING_DEFAULTS.pollIntervalSeconds,
  pollMinSeconds: SETTING_DEFAULTS.pollMinSeconds,
  pollMaxSeconds: SETTING_DEFAULTS.pollMaxSeconds,
  logRetention: logs.RetentionDays.ONE_MONTH,
  removalPolicy: RemovalPolicy.RETAIN,
  jobRetention: Duration.days(SETTING_DEFAULTS.jobRetentionDays),
  maxInlineOutputBytes: SETTING_DEFAULTS.maxInlineOutputBytes,
  authGracePeriod: Duration.seconds(SETTING_DEFAULTS.authGraceSeconds),
} as const;

/** Largest `maxInlineOutputBytes`: what still fits an EventBridge entry next to 8 KiB of metadata. */
export const MAX_INLINE_OUTPUT_BYTES_LIMIT = 200 * 1024;

/** Step Functions Standard executions last at most one year. */
export const STANDARD_EXECUTION_LIMIT = Duration.days(365);
/** Longest `maxJobDuration`: the Standard limit minus the finishing margin after the deadline. */
export const MAX_JOB_DURATION = Duration.seconds(
  STANDARD_EXECUTION_LIMIT.toSeconds() - POLL_STATE_MACHINE_DEFAULTS.finishMargin.toSeconds(),
);
const MIN_JOB_DURATION = Duration.minutes(1);

/** Props of {@link WaterflaiOrchestrator}. */
export interface WaterflaiOrchestratorProps {
  /**
   * Base URL of the Waterflai API. Deploy-time configuration only: nothing in a message can
   * change where requests go. Must be https (http only for a loopback host, for local
   * testing) and carry no credentials, query or fragment.
   * @default 'https://api.waterflai.ai'
   */
  readonly waterflaiBaseUrl?: string;
  /**
   * Secret holding the Waterflai API key (the whole secret string is the key). The Lambdas
   * get only its ARN and read access; the key never appears in the template or environment.
   * @default - a new secret with a random placeholder value; set the real key with
   *   `aws secretsmanager put-secret-value --secret-id <ApiKeySecretArn> --secret-string <key>`
   */
  readonly apiKeySecret?: secretsmanager.ISecret;
  /**
   * Bus the outcome events are published to.
   * @default - a new custom event bus
   */
  readonly eventBus?: events.IEventBus;
  /**
   * Longest a job may run (a job's own `timeout_seconds` can only shorten it). The state
   * machine times out an hour after this. At most 364 days 23 hours (the Step Functions
   * Standard limit of one year minus that hour).
   * @default Duration.hours(24)
   */
  readonly maxJobDuration?: Duration;
  /**
   * Seconds between status polls.
   * @default 10
   */
  readonly pollIntervalSeconds?: number;
  /**
   * Never wait less than this between polls.
   * @default 1
   */
  readonly pollMinSeconds?: number;
  /**
   * Longest wait between polls while the job looks far from done: a job that fails or
   * ends unexpectedly is noticed at most this much later. Waits can be longer only to
   * honour a Retry-After or the history budget (at most 10 polls in any hour, so about
   * 100 history events an hour; the budget holds polls back by up to 522 s, so values
   * below that are raised to it when the budget binds).
   * @default 600
   */
  readonly pollMaxSeconds?: number;
  /**
   * Messages per start-function invocation (1-10, or up to 10,000 with `maxBatchingWindow`).
   * @default 10
   */
  readonly batchSize?: number;
  /**
   * How long the intake event source gathers messages before invoking the start function.
   * @default - no batching window
   */
  readonly maxBatchingWindow?: Duration;
  /**
   * Most concurrent start-function invocations (2-1,000).
   * @default 5
   */
  readonly maxConcurrency?: number;
  /**
   * Receives of one intake message before it moves to the dead-letter queue.
   * @default 5
   */
  readonly maxReceiveCount?: number;
  /**
   * Retention of every log group (the five functions and the state machine).
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Removal policy of the job table, the queues, the log groups and the placeholder secret.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * How long a job record is kept (DynamoDB TTL) after the job is accepted. Whole days,
   * longer than `maxJobDuration`.
   * @default Duration.days(90)
   */
  readonly jobRetention?: Duration;
  /**
   * Largest `final_output` (JSON bytes) carried inline in job records and outcome events.
   * A larger output is stored in the construct's output bucket and the event carries
   * `output_location` {bucket, key, size, sha256} instead. At most 200 KiB.
   * @default 65536 (64 KiB)
   */
  readonly maxInlineOutputBytes?: number;
  /**
   * Polls one state machine execution makes before handing the job over to a successor
   * execution (continue-as-new), so no job reaches the 25,000-event history limit.
   * @default 1500
   */
  readonly maxPollsPerExecution?: number;
  /**
   * How often the sweeper settles jobs left unfinished past their deadline (the backstop
   * for lost Step Functions status-change events).
   * @default Duration.minutes(5)
   */
  readonly sweepInterval?: Duration;
  /**
   * How long a job's poll loop keeps retrying while Waterflai refuses the API key (401/403
   * even after the functions re-read the secret), before the job ends FAILED `POLL_FAILED`.
   * Covers a key rotated in the wrong order (the old key revoked before the new one is in the
   * secret). Never extends a job past its deadline. From 1 minute to `maxJobDuration`.
   * @default Duration.hours(1)
   */
  readonly authGracePeriod?: Duration;
  /**
   * Overrides of the intake queue (see {@link IntakeProps.queueProps}).
   * @default - none
   */
  readonly queueProps?: IntakeProps['queueProps'];
  /**
   * Overrides of the dead-letter queue.
   * @default - none
   */
  readonly deadLetterQueueProps?: IntakeProps['deadLetterQueueProps'];
  /**
   * Overrides of the job table (see {@link JobTableProps.tableProps}).
   * @default - none
   */
  readonly tableProps?: JobTableProps['tableProps'];
  /**
   * Overrides applied to all five functions (environment is merged, the orchestrator's
   * variables win).
   * @default - none
   */
  readonly functionProps?: HandlerFunctionOverrides;
  /**
   * Props of the event bus created when `eventBus` is not given.
   * @default - none
   */
  readonly eventBusProps?: events.EventBusProps;
}

/**
 * Runs long Waterflai executions for other AWS services: job messages arrive on an SQS
 * queue, a Lambda starts each execution once, a Step Functions poll loop follows it (status
 * in DynamoDB), and the outcome is announced on EventBridge. The construct only deploys
 * infrastructure.
 *
 * @example
 * const orchestrator = new WaterflaiOrchestrator(this, 'Waterflai', {
 *   apiKeySecret: secretsmanager.Secret.fromSecretCompleteArn(this, 'Key', keyArn),
 *   maxJobDuration: Duration.hours(6),
 * });
 * orchestrator.queue.grantSendMessages(producer);
 */
export class WaterflaiOrchestrator extends Construct {
  public readonly queue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  public readonly table: dynamodb.Table;
  public readonly eventBus: events.IEventBus;
  public readonly stateMachine: sfn.StateMachine;
  public readonly startFunction: NodejsFunction;
  public readonly pollFunction: NodejsFunction;
  public readonly finishFunction: NodejsFunction;
  public readonly apiKeySecret: secretsmanager.ISecret;
  /** Large final outputs; grant subscribers `outputBucket.grantRead(...)`. */
  public readonly outputBucket: s3.Bucket;
  public readonly reconcileFunction: NodejsFunction;
  public readonly sweepFunction: NodejsFunction;
  /** The parts, for finer access (roles, log groups, event source). */
  public readonly intake: Intake;
  public readonly pollLoop: PollStateMachine;
  public readonly jobTable: JobTable;
  public readonly outcomeEvents: OutcomeEvents;
  public readonly lifecycle: JobLifecycle;

  constructor(scope: Construct, id: string, props: WaterflaiOrchestratorProps = {}) {
    super(scope, id);
    const settings = resolveSettings(props);
    const { logRetention, removalPolicy } = settings;

    this.apiKeySecret = props.apiKeySecret ?? placeholderApiKeySecret(this, removalPolicy);
    this.jobTable = new JobTable(this, 'JobTable', { removalPolicy, tableProps: props.tableProps });
    this.table = this.jobTable.table;
    this.outcomeEvents = new OutcomeEvents(this, 'OutcomeEvents', { eventBus: props.eventBus, eventBusProps: props.eventBusProps });
    this.eventBus = this.outcomeEvents.eventBus;
    this.outputBucket = new OutputBucket(this, 'Outputs', { expiration: Duration.days(settings.jobRetentionDays), removalPolicy }).bucket;
    const environment = functionEnvironment(settings, this);

    this.pollLoop = new PollStateMachine(this, 'PollLoop', {
      environment,
      maxJobDuration: settings.maxJobDuration,
      maxPollsPerExecution: props.maxPollsPerExecution,
      logRetention,
      removalPolicy,
      functionProps: props.functionProps,
    });
    this.stateMachine = this.pollLoop.stateMachine;
    this.pollFunction = this.pollLoop.pollFunction;
    this.finishFunction = this.pollLoop.finishFunction;

    this.intake = new Intake(this, 'Intake', {
      environment: { ...environment, [ENV.STATE_MACHINE_ARN]: this.stateMachine.stateMachineArn },
      batchSize: props.batchSize,
      maxBatchingWindow: props.maxBatchingWindow,
      maxConcurrency: props.maxConcurrency,
      maxReceiveCount: props.maxReceiveCount,
      logRetention,
      removalPolicy,
      queueProps: props.queueProps,
      deadLetterQueueProps: props.deadLetterQueueProps,
      functionProps: props.functionProps,
    });
    this.queue = this.intake.queue;
    this.deadLetterQueue = this.intake.deadLetterQueue;
    this.startFunction = this.intake.startFunction;

    this.lifecycle = new JobLifecycle(this, 'Lifecycle', {
      stateMachine: this.stateMachine,
      environment,
      sweepInterval: props.sweepInterval,
      logRetention,
      removalPolicy,
      functionProps: props.functionProps,
    });
    this.reconcileFunction = this.lifecycle.reconcileFunction;
    this.sweepFunction = this.lifecycle.sweepFunction;

    // Least privilege: each role gets only the actions its code sends (see lib/grants.ts).
    grantFunctionAccess({
      functions: {
        start: this.startFunction,
        poll: this.pollFunction,
        finish: this.finishFunction,
        reconcile: this.reconcileFunction,
        sweep: this.sweepFunction,
      },
      table: this.table,
      stateMachine: this.stateMachine,
      eventBus: this.eventBus,
      deadLetterQueue: this.deadLetterQueue,
      apiKeySecret: this.apiKeySecret,
      outputBucket: this.outputBucket,
    });
  }
}

/** The props with every default applied (from the one defaults table) and checked. */
interface ResolvedSettings {
  readonly waterflaiBaseUrl: string;
  readonly maxJobDuration: Duration;
  readonly jobRetentionDays: number;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
  readonly pollSettings: FixedIntervalSettings;
  readonly authGracePeriod: Duration;
  readonly maxInlineOutputBytes: number;
}

/** Applies the defaults to the props once, and says what is wrong with a bad value. */
function resolveSettings(props: WaterflaiOrchestratorProps): ResolvedSettings {
  const maxJobDuration = props.maxJobDuration ?? ORCHESTRATOR_DEFAULTS.maxJobDuration;
  validateMaxJobDuration(maxJobDuration);
  const authGracePeriod = props.authGracePeriod ?? ORCHESTRATOR_DEFAULTS.authGracePeriod;
  if (
    !Token.isUnresolved(authGracePeriod.toSeconds()) &&
    (authGracePeriod.toSeconds() < 60 || authGracePeriod.toSeconds() > maxJobDuration.toSeconds())
  ) {
    throw new Error(
      `authGracePeriod must be from 1 minute to maxJobDuration (${maxJobDuration.toHumanString()}), got ${authGracePeriod.toHumanString()}`,
    );
  }
  const maxInlineOutputBytes = props.maxInlineOutputBytes ?? ORCHESTRATOR_DEFAULTS.maxInlineOutputBytes;
  if (!Number.isInteger(maxInlineOutputBytes) || maxInlineOutputBytes < 1 || maxInlineOutputBytes > MAX_INLINE_OUTPUT_BYTES_LIMIT) {
    throw new Error(`maxInlineOutputBytes must be an integer from 1 to ${MAX_INLINE_OUTPUT_BYTES_LIMIT}, got ${maxInlineOutputBytes}`);
  }
  return {
    waterflaiBaseUrl: validateWaterflaiBaseUrl(props.waterflaiBaseUrl ?? ORCHESTRATOR_DEFAULTS.waterflaiBaseUrl),
    maxJobDuration,
    jobRetentionDays: validateJobRetention(props.jobRetention ?? ORCHESTRATOR_DEFAULTS.jobRetention, maxJobDuration),
    logRetention: props.logRetention ?? ORCHESTRATOR_DEFAULTS.logRetention,
    removalPolicy: props.removalPolicy ?? ORCHESTRATOR_DEFAULTS.removalPolicy,
    pollSettings: validatePollSettings({
      intervalSeconds: props.pollIntervalSeconds ?? ORCHESTRATOR_DEFAULTS.pollIntervalSeconds,
      minSeconds: props.pollMinSeconds ?? ORCHESTRATOR_DEFAULTS.pollMinSeconds,
      maxSeconds: props.pollMaxSeconds ?? ORCHESTRATOR_DEFAULTS.pollMaxSeconds,
    }),
    authGracePeriod,
    maxInlineOutputBytes,
  };
}

/** The secret created when none is given: a random placeholder the operator replaces. */
function placeholderApiKeySecret(scope: Construct, removalPolicy: RemovalPolicy): secretsmanager.Secret {
  return new secretsmanager.Secret(scope, 'ApiKeySecret', {
    description:
      'Waterflai API key of the orchestrator. Holds a random placeholder until the operator runs: ' +
      'aws secretsmanager put-secret-value --secret-id <arn of this secret, stack output ApiKeySecretArn> --secret-string <key>',
    generateSecretString: { passwordLength: 32, excludePunctuation: true },
    removalPolicy,
  });
}

/** The environment every function gets (the schema the handlers read: contract/settings.ts). */
function functionEnvironment(
  settings: ResolvedSettings,
  resources: { apiKeySecret: secretsmanager.ISecret; table: dynamodb.ITable; eventBus: events.IEventBus; outputBucket: s3.IBucket },
): Record<string, string> {
  return {
    [ENV.WATERFLAI_BASE_URL]: settings.waterflaiBaseUrl,
    [ENV.WATERFLAI_API_KEY_SECRET_ID]: resources.apiKeySecret.secretArn,
    [ENV.JOB_TABLE_NAME]: resources.table.tableName,
    [ENV.EVENT_BUS_NAME]: resources.eventBus.eventBusName,
    [ENV.MAX_JOB_DURATION_SECONDS]: String(settings.maxJobDuration.toSeconds()),
    [ENV.POLL_INTERVAL_SECONDS]: String(settings.pollSettings.intervalSeconds),
    [ENV.POLL_MIN_SECONDS]: String(settings.pollSettings.minSeconds),
    [ENV.POLL_MAX_SECONDS]: String(settings.pollSettings.maxSeconds),
    [ENV.JOB_RETENTION_DAYS]: String(settings.jobRetentionDays),
    [ENV.MAX_INLINE_OUTPUT_BYTES]: String(settings.maxInlineOutputBytes),
    [ENV.OUTPUT_BUCKET_NAME]: resources.outputBucket.bucketName,
    [ENV.AUTH_GRACE_SECONDS]: String(settings.authGracePeriod.toSeconds()),
    [ENV.SWEEP_GRACE_SECONDS]: String(SWEEP_GRACE_SECONDS),
  };
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Checks the Waterflai base URL and returns it without a trailing slash.
 * @throws Error when it is not https (http is allowed for loopback hosts only), or has
 *   credentials, a query or a fragment
 */
export function validateWaterflaiBaseUrl(value: string): string {
  if (Token.isUnresolved(value)) return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`waterflaiBaseUrl must be an absolute URL, got "${value}"`);
  }
  const loopback = LOOPBACK_HOSTS.has(url.hostname) || /^127\.\d+\.\d+\.\d+$/.test(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new Error(`waterflaiBaseUrl must use https (http only for a loopback host), got "${value}"`);
  }
  if (url.username !== '' || url.password !== '') throw new Error('waterflaiBaseUrl must not contain credentials (user:password@)');
  if (url.search !== '' || value.includes('?')) throw new Error(`waterflaiBaseUrl must not contain a query string, got "${value}"`);
  if (url.hash !== '' || value.includes('#')) throw new Error(`waterflaiBaseUrl must not contain a fragment, got "${value}"`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function validateMaxJobDuration(maxJobDuration: Duration): void {
  if (Token.isUnresolved(maxJobDuration.toSeconds())) return;
  const seconds = maxJobDuration.toSeconds();
  if (seconds < MIN_JOB_DURATION.toSeconds() || seconds > MAX_JOB_DURATION.toSeconds()) {
    throw new Error(
      `maxJobDuration must be from ${MIN_JOB_DURATION.toHumanString()} to ${MAX_JOB_DURATION.toHumanString()} ` +
        `(a Step Functions Standard execution lasts at most ${STANDARD_EXECUTION_LIMIT.toHumanString()}, ` +
        `and the loop keeps ${POLL_STATE_MACHINE_DEFAULTS.finishMargin.toHumanString()} to finish), got ${maxJobDuration.toHumanString()}`,
    );
  }
}

function validateJobRetention(jobRetention: Duration, maxJobDuration: Duration): number {
  const days = jobRetention.toDays({ integral: false });
  if (!Number.isInteger(days) || days < 1) {
    throw new Error(`jobRetention must be a whole number of days (at least 1), got ${jobRetention.toHumanString()}`);
  }
  if (jobRetention.toSeconds() <= maxJobDuration.toSeconds()) {
    throw new Error(
      `jobRetention (${jobRetention.toHumanString()}) must be longer than maxJobDuration (${maxJobDuration.toHumanString()}): a running job's record must not expire`,
    );
  }
  return days;
}
