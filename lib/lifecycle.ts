import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { RECONCILED_EXECUTION_STATUSES } from '../lambdas/shared/constants';
import { createHandlerFunction, HANDLER_ENTRY, type HandlerFunctionOverrides } from './handler-function';

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
   * Removal policy of the log groups.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Overrides of both functions.
   * @default - none
   */
  readonly functionProps?: HandlerFunctionOverrides;
}

/**
 * Keeps jobs from being stranded when their poll loop ends from outside: a rule on the
 * default bus sends the poll loop's "Step Functions Execution Status Change" events
 * (ABORTED, TIMED_OUT, FAILED) to the reconcile function, and because those events are best
 * effort, a schedule runs the sweep function, which settles jobs past their deadline.
 */
export class JobLifecycle extends Construct {
  public readonly reconcileFunction: NodejsFunction;
  public readonly reconcileFunctionRole: iam.Role;
  public readonly sweepFunction: NodejsFunction;
  public readonly sweepFunctionRole: iam.Role;
  public readonly statusChangeRule: events.Rule;
  public readonly sweepSchedule: events.Rule;

  constructor(scope: Construct, id: string, props: JobLifecycleProps) {
    super(scope, id);
    const common = {
      timeout: Duration.seconds(60),
      environment: props.environment,
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      overrides: props.functionProps,
    };
    const reconcile = createHandlerFunction(this, 'ReconcileFunction', {
      ...common,
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

    this.statusChangeRule = new events.Rule(this, 'ExecutionStatusChange', {
      description: 'Poll-loop executions that ended without settling their job go to the reconcile function',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: { status: [...RECONCILED_EXECUTION_STATUSES], stateMachineArn: [props.stateMachine.stateMachineArn] },
      },
      targets: [new targets.LambdaFunction(this.reconcileFunction, { retryAttempts: 20, maxEventAge: Duration.hours(24) })],
    });
    this.sweepSchedule = new events.Rule(this, 'SweepSchedule', {
      description: 'Runs the sweep function',
      schedule: events.Schedule.rate(props.sweepInterval ?? Duration.minutes(5)),
      targets: [new targets.LambdaFunction(this.sweepFunction, { retryAttempts: 0 })],
    });
  }
}
