import { ArnFormat, Duration, Names, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { ENV, STATE_NAME, TERMINAL_STATUSES } from '../lambdas/contract/constants';
import { TransientPollError } from '../lambdas/contract/errors';
import { createHandlerFunction, HANDLER_ENTRY, type HandlerFunctionOverrides } from './handler-function';
import { SETTING_DEFAULTS } from '../lambdas/contract/settings';

/**
 * Error name the poll Lambda throws on Waterflai 5xx answers and timeouts. Taken from the
 * class itself so the Retry cannot drift from the code (the bundle keeps class names).
 */
export const TRANSIENT_POLL_ERROR = TransientPollError.name;

/** Error of the Fail state that ends an execution whose polling failed for good. */
export const POLLING_FAILED_ERROR = 'PollingFailed';

/** Errors of the Lambda service itself (not of the function's code): always worth retrying. */
export const LAMBDA_SERVICE_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
  'Lambda.ClientExecutionTimeoutException',
  'Lambda.Unknown',
] as const;

/** Retry policies of the Task states (exported so tests can reason about retry budgets). */
export const RETRY_POLICY = {
  /** Lambda service errors, on every Task. */
  lambdaService: { interval: Duration.seconds(2), backoffRate: 2, maxAttempts: 6 },
  /**
   * `TransientPollError` on the poll Task: AWS faults (DynamoDB, S3, Step Functions) only,
   * about 15 minutes of backing off. Waterflai's own failures never reach it: the poll
   * function rides them out itself until the job's deadline.
   */
  transientPoll: {
    interval: Duration.seconds(5),
    backoffRate: 2,
    maxAttempts: 8,
    maxDelay: Duration.minutes(5),
    jitterStrategy: sfn.JitterType.FULL,
  },
  /** Anything else on the finish Tasks (the finish Lambda is idempotent). */
  finishAny: {
    interval: Duration.seconds(5),
    backoffRate: 2,
    maxAttempts: 10,
    maxDelay: Duration.minutes(5),
    jitterStrategy: sfn.JitterType.FULL,
  },
} as const;

/** Defaults of {@link PollStateMachineProps}. */
export const POLL_STATE_MACHINE_DEFAULTS = {
  finishMargin: Duration.hours(1),
  /** 1,500 polls x 9 history events = 13,500, leaving room for retries under the 25,000 limit. */
  maxPollsPerExecution: SETTING_DEFAULTS.maxPollsPerExecution,
  /**
   * The poll function may listen on the execution's event stream for most of an
   * invocation (the stream finish); it keeps 20 s free for the status read and the records.
   */
  pollTimeout: Duration.minutes(10),
  /** The poll function mostly waits on the network: 128 MB (measured by `npm run bench`). */
  pollMemorySize: 128,
  finishTimeout: Duration.seconds(30),
} as const;

/** Props of {@link PollStateMachine}. */
export interface PollStateMachineProps {
  /** Environment of the poll and finish functions (set by the orchestrator). */
  readonly environment: Readonly<Record<string, string>>;
  /** Longest a job may run. The execution times out this long plus `finishMargin` after it starts. */
  readonly maxJobDuration: Duration;
  /**
   * Time left after the job deadline for the last poll and the finish step.
   * @default Duration.hours(1)
   */
  readonly finishMargin?: Duration;
  /**
   * Polls one execution makes before it hands the job over to a successor execution
   * (continue-as-new), which keeps every execution's history under Step Functions' limit of
   * 25,000 events however long the job runs.
   * @default 1500
   */
  readonly maxPollsPerExecution?: number;
  /**
   * Retention of the function and state machine log groups.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Removal policy of the log groups.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Overrides of the poll and finish functions.
   * @default - Node.js 24, arm64; poll: 128 MB, 10 min timeout; finish: 256 MB, 30 s timeout
   */
  readonly functionProps?: HandlerFunctionOverrides;
}

/**
 * The poll loop: a Standard state machine (JSONPath only, so it also runs on
 * aws-local-stepfunctions) that waits, polls Waterflai through the poll Lambda until the
 * job reaches a terminal status, then records and announces the outcome with the finish
 * Lambda. A poll that keeps failing is caught and recorded as a failed job.
 *
 * ```
 * WaitBeforePoll -> PollExecution -> IsExecutionFinished -(terminal)-> PublishOutcome -> Done
 *       ^                 | (error after retries)  | (otherwise)      ^
 *       +-----------------|------------------------+                  |
 *                         v                                           |
 *                   GiveUpPolling ------------------------------------+
 *                         | (error after retries)
 *                         v
 *                 RecordPollFailure -> PollingFailed (Fail)
 * ```
 *
 * GiveUpPolling runs the poll function with the caught error: it cancels the Waterflai
 * execution and confirms it (or records the result it finds) before the job ends FAILED
 * `POLL_FAILED`. Only when that step fails too does RecordPollFailure (the finish function,
 * which cannot read the API key) record POLL_FAILED with `upstream_cancel: unconfirmed`,
 * leaving the execution to the sweeper.
 *
 * @example
 * const loop = new PollStateMachine(this, 'Loop', { environment, maxJobDuration: Duration.hours(24) });
 * loop.stateMachine.grantStartExecution(starter);
 */
export class PollStateMachine extends Construct {
  public readonly stateMachine: sfn.StateMachine;
  public readonly pollFunction: NodejsFunction;
  public readonly pollFunctionRole: iam.Role;
  public readonly finishFunction: NodejsFunction;
  public readonly finishFunctionRole: iam.Role;
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: PollStateMachineProps) {
    super(scope, id);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const finishMargin = props.finishMargin ?? POLL_STATE_MACHINE_DEFAULTS.finishMargin;
    const maxPollsPerExecution = props.maxPollsPerExecution ?? POLL_STATE_MACHINE_DEFAULTS.maxPollsPerExecution;
    if (!Number.isInteger(maxPollsPerExecution) || maxPollsPerExecution < 1 || maxPollsPerExecution > 2_500) {
      throw new Error(
        `maxPollsPerExecution must be an integer from 1 to 2500 (2,500 x 9 history events is 22,500 of the 25,000 allowed), got ${maxPollsPerExecution}`,
      );
    }

    // The poll Lambda starts its own state machine's successor executions. The name is
    // generated once from the construct path (not hard-coded) so that the ARN can be built
    // without a reference to the state machine, which would make a dependency cycle
    // (state machine -> function -> role policy -> state machine).
    const stateMachineName = Names.uniqueResourceName(this, { maxLength: 80, separator: '-' });
    const stateMachineArn = Stack.of(this).formatArn({
      service: 'states',
      resource: 'stateMachine',
      resourceName: stateMachineName,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });

    const poll = createHandlerFunction(this, 'PollFunction', {
      entry: HANDLER_ENTRY.POLL,
      description: 'Polls one Waterflai execution and records its status',
      timeout: POLL_STATE_MACHINE_DEFAULTS.pollTimeout,
      environment: {
        ...props.environment,
        [ENV.STATE_MACHINE_ARN]: stateMachineArn,
        [ENV.MAX_POLLS_PER_EXECUTION]: String(maxPollsPerExecution),
      },
      logRetention,
      removalPolicy,
      overrides: { memorySize: POLL_STATE_MACHINE_DEFAULTS.pollMemorySize, ...props.functionProps },
    });
    const finish = createHandlerFunction(this, 'FinishFunction', {
      entry: HANDLER_ENTRY.FINISH,
      description: 'Records the outcome of a Waterflai execution and publishes it to EventBridge',
      timeout: POLL_STATE_MACHINE_DEFAULTS.finishTimeout,
      environment: props.environment,
      logRetention,
      removalPolicy,
      overrides: props.functionProps,
    });
    this.pollFunction = poll.function;
    this.pollFunctionRole = poll.role;
    iam.Grant.addToPrincipal({ grantee: poll.role, actions: ['states:StartExecution'], resourceArns: [stateMachineArn] });
    this.finishFunction = finish.function;
    this.finishFunctionRole = finish.role;

    const wait = new sfn.Wait(this, STATE_NAME.WAIT, {
      comment: 'Waits the number of seconds the last poll asked for',
      time: sfn.WaitTime.secondsPath('$.next_poll_seconds'),
    });

    const pollTask = new tasks.LambdaInvoke(this, STATE_NAME.POLL, {
      comment: 'Polls Waterflai; returns the next loop state',
      lambdaFunction: this.pollFunction,
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
    });
    pollTask.addRetry({ errors: [...LAMBDA_SERVICE_ERRORS], ...RETRY_POLICY.lambdaService });
    pollTask.addRetry({ errors: [TRANSIENT_POLL_ERROR], ...RETRY_POLICY.transientPoll });

    const publishOutcome = this.finishTask(STATE_NAME.FINISH, 'Records the terminal status and publishes the outcome event');
    const recordFailure = this.finishTask(
      STATE_NAME.RECORD_FAILURE,
      'Records the job as FAILED (POLL_FAILED, upstream cancel unconfirmed) and publishes the Failed event',
    );
    const giveUp = new tasks.LambdaInvoke(this, STATE_NAME.GIVE_UP, {
      comment: 'Cancels the Waterflai execution and confirms it (or records the result it finds), then settles the job',
      lambdaFunction: this.pollFunction,
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
    });
    giveUp.addRetry({ errors: [...LAMBDA_SERVICE_ERRORS], ...RETRY_POLICY.lambdaService });
    giveUp.addRetry({ errors: [TRANSIENT_POLL_ERROR], ...RETRY_POLICY.transientPoll });
    pollTask.addCatch(giveUp, { errors: [sfn.Errors.ALL], resultPath: '$.error' });
    giveUp.addCatch(recordFailure, { errors: [sfn.Errors.ALL], resultPath: '$.give_up_error' });
    giveUp.next(publishOutcome);
    publishOutcome.next(new sfn.Succeed(this, STATE_NAME.SUCCEED));
    recordFailure.next(
      new sfn.Fail(this, STATE_NAME.FAIL, {
        error: POLLING_FAILED_ERROR,
        cause: 'Polling the Waterflai execution failed after all retries; the job was recorded as FAILED',
      }),
    );

    const isFinished = new sfn.Choice(this, STATE_NAME.CHOICE, {
      comment: 'Terminal statuses end the loop; a hand-over ends this execution (a successor goes on); any other status polls again',
    });
    isFinished.when(
      sfn.Condition.and(sfn.Condition.isPresent('$.handed_over'), sfn.Condition.booleanEquals('$.handed_over', true)),
      new sfn.Succeed(this, STATE_NAME.HANDED_OVER, { comment: 'The job continues in a successor execution (continue-as-new)' }),
    );
    for (const status of TERMINAL_STATUSES) {
      isFinished.when(sfn.Condition.stringEquals('$.status', status), publishOutcome);
    }
    isFinished.otherwise(wait);

    this.logGroup = new logs.LogGroup(this, 'StateMachineLogGroup', { retention: logRetention, removalPolicy });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName,
      comment: 'Polls one Waterflai execution until it ends, then announces the outcome',
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(wait.next(pollTask).next(isFinished)),
      timeout: props.maxJobDuration.plus(finishMargin),
      tracingEnabled: true,
      logs: { destination: this.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
  }

  private finishTask(stateName: string, comment: string): tasks.LambdaInvoke {
    const task = new tasks.LambdaInvoke(this, stateName, {
      comment,
      lambdaFunction: this.finishFunction,
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      resultPath: '$.outcome',
    });
    task.addRetry({ errors: [...LAMBDA_SERVICE_ERRORS], ...RETRY_POLICY.lambdaService });
    task.addRetry({ errors: [sfn.Errors.ALL], ...RETRY_POLICY.finishAny });
    return task;
  }
}
