/**
 * Reads what the local runtime needs out of the project's own synthesized CloudFormation
 * template: the functions (which code, timeout, environment), the intake queue and its
 * dead-letter queue (visibility timeout, redrive), the event source mappings (batch size,
 * concurrency), the reconcile queue the status-change rule delivers to, the job table (keys,
 * indexes, TTL), the event bus, the API key secret and the state machine (plain ASL, with
 * each Task mapped to its function).
 *
 * Nothing is re-typed from `lib/`: every value comes from the template, so the local
 * runtime runs what `cdk deploy` would deploy.
 */
import { STATE_NAME, ENV } from '../../lambdas/contract/constants';
import {
  FAKE_ENVIRONMENT,
  fakeFunctionArn,
  resolveStateMachineDefinition,
  taskFunctionLogicalIds,
  type AslDefinition,
  type CloudFormationResource,
  type CloudFormationTemplate,
} from '../asl';
import type { TableSpec } from '../emulators/dynamodb';

/**
 * Which handler code a function of the template runs, inferred from how the template uses
 * it: `start` is the intake queue's event source mapping target, `poll` / `finish` are
 * invoked by the state machine's Tasks, `reconcile` consumes the queue a rule on Step
 * Functions execution status changes delivers to (or is that rule's direct target),
 * `sweep` is the target of a schedule.
 */
export type FunctionRole = 'start' | 'poll' | 'finish' | 'reconcile' | 'sweep';

/** A rule target that is a function the runtime runs (invoked asynchronously, as EventBridge does). */
export interface FunctionTargetModel {
  readonly kind: 'function';
  readonly id: string;
  readonly role: FunctionRole;
  readonly maximumRetryAttempts?: number;
}

/** A rule target that is an SQS queue of the template, consumed by a function the runtime runs. */
export interface QueueTargetModel {
  readonly kind: 'queue';
  readonly id: string;
  /** The role of the function that consumes the queue. */
  readonly role: FunctionRole;
  readonly queueLogicalId: string;
  /** The target's own dead-letter queue (`DeadLetterConfig`), for events it cannot deliver. */
  readonly deadLetterQueueLogicalId?: string;
  readonly maximumRetryAttempts?: number;
  readonly maximumEventAgeSeconds?: number;
  /** `Input`, `InputPath` or `InputTransformer` when the target sets one (not emulated locally). */
  readonly inputTransformation?: string;
}

export type RuleTargetModel = FunctionTargetModel | QueueTargetModel;

/** An EventBridge rule of the template whose targets lead to functions the runtime runs. */
export interface RuleModel {
  readonly logicalId: string;
  /** Bus name (`default` when the rule sets none); schedules have none. */
  readonly eventBusName?: string;
  /** The event pattern as in the template (values may be intrinsic functions). */
  readonly eventPattern?: unknown;
  readonly scheduleExpression?: string;
  readonly enabled: boolean;
  readonly targets: readonly RuleTargetModel[];
}

export interface FunctionModel {
  readonly role: FunctionRole;
  readonly logicalId: string;
  /** `FunctionName` when set, else the logical id. */
  readonly name: string;
  readonly timeoutSeconds: number;
  readonly memorySize: number;
  /** `Environment.Variables` as in the template (values may be intrinsic functions). */
  readonly environment: Readonly<Record<string, unknown>>;
}

export interface QueueModel {
  readonly logicalId: string;
  readonly name: string;
  /** SQS attributes derived from the template (string values, as CreateQueue takes them). */
  readonly attributes: Readonly<Record<string, string>>;
}

export interface IntakeQueueModel extends QueueModel {
  readonly maxReceiveCount: number;
}

/** The queue between the status-change rule and the reconcile function. */
export interface ReconcileQueueModel extends IntakeQueueModel {
  /** Its redrive target (may be the same resource as another queue's). */
  readonly deadLetterQueue: QueueModel;
  /** The event source mapping that feeds the reconcile function from it. */
  readonly eventSource: EventSourceModel;
}

export interface EventSourceModel {
  readonly batchSize: number;
  readonly maxConcurrency: number;
  readonly maxBatchingWindowSeconds: number;
  readonly reportBatchItemFailures: boolean;
}

/** The job table: its shape as DynamoDB creates it, and its logical id in the template. */
export interface TableModel extends TableSpec {
  readonly logicalId: string;
}

export interface StateMachineModel {
  readonly logicalId: string;
  readonly arn: string;
  readonly name: string;
  readonly definition: AslDefinition;
  /** Task state name -> function role. Every Task state of the definition is listed. */
  readonly taskRoles: Readonly<Record<string, FunctionRole>>;
}

export interface BucketModel {
  readonly logicalId: string;
  /** `BucketName` when set, else the logical id in lower case (S3 names are lower case). */
  readonly name: string;
}

export interface RuntimeModel {
  readonly region: string;
  readonly account: string;
  readonly functions: {
    readonly start: FunctionModel;
    readonly poll: FunctionModel;
    readonly finish: FunctionModel;
    readonly reconcile?: FunctionModel;
    readonly sweep?: FunctionModel;
  };
  /** Rules that trigger functions the runtime runs (status-change reactions, schedules). */
  readonly rules: readonly RuleModel[];
  /** Functions of the template the local runtime does not run (no known trigger), by logical id. */
  readonly otherFunctions: readonly string[];
  /** S3 buckets of the template (served by fauxqs' S3 emulation). */
  readonly buckets: readonly BucketModel[];
  readonly intakeQueue: IntakeQueueModel;
  readonly deadLetterQueue: QueueModel;
  /** The intake queue's event source mapping. */
  readonly eventSource: EventSourceModel;
  /** The queue the status-change rule delivers to, when the reconcile function consumes one. */
  readonly reconcileQueue?: ReconcileQueueModel;
  readonly table: TableModel;
  /** The bus the functions publish to (`EVENT_BUS_NAME`), by name. */
  readonly eventBusName: string;
  /** The API key secret id the functions are given (`WATERFLAI_API_KEY_SECRET_ID`). */
  readonly apiKeySecretId: string;
  readonly stateMachine: StateMachineModel;
}

/** Values the local runtime provides for resources of the template, by logical id. */
export type LocalResourceValues = Readonly<Record<string, Readonly<Record<string, string>>>>;

const TYPE = {
  FUNCTION: 'AWS::Lambda::Function',
  EVENT_SOURCE_MAPPING: 'AWS::Lambda::EventSourceMapping',
  QUEUE: 'AWS::SQS::Queue',
  TABLE: 'AWS::DynamoDB::Table',
  BUS: 'AWS::Events::EventBus',
  SECRET: 'AWS::SecretsManager::Secret',
  STATE_MACHINE: 'AWS::StepFunctions::StateMachine',
  BUCKET: 'AWS::S3::Bucket',
  RULE: 'AWS::Events::Rule',
} as const;

/** Lambda's default function timeout and memory when the template does not set them. */
const LAMBDA_DEFAULTS = { timeoutSeconds: 3, memorySize: 128 } as const;

/**
 * Builds the {@link RuntimeModel} of a synthesized template.
 * @throws Error naming what is missing or unexpected (no event source mapping, a Task that
 *   invokes an unknown function, ...)
 */
export function readRuntimeModel(template: CloudFormationTemplate): RuntimeModel {
  const resources = template.Resources ?? {};
  const { region, account } = FAKE_ENVIRONMENT;

  // Event source mappings: the one on the queue a status-change rule delivers to feeds the
  // reconcile function; the other one (exactly one) is the intake queue -> start function.
  const ruleEntries = Object.entries(resources).filter(([, resource]) => resource.Type === TYPE.RULE);
  const statusChangeQueueIds = new Set(
    ruleEntries
      .filter(([, rule]) => isStatusChangeRule(rule))
      .flatMap(([, rule]) => queueTargets(resources, rule.Properties?.Targets).map((target) => target.queueId)),
  );
  const mappings = Object.entries(resources)
    .filter(([, resource]) => resource.Type === TYPE.EVENT_SOURCE_MAPPING)
    .map(([id, resource]) => mappingModel(id, resource));
  const intakeMappings = mappings.filter((candidate) => !statusChangeQueueIds.has(candidate.queueId));
  const reconcileMappings = mappings.filter((candidate) => statusChangeQueueIds.has(candidate.queueId));
  if (intakeMappings.length !== 1) {
    throw new Error(
      `expected exactly one ${TYPE.EVENT_SOURCE_MAPPING} (the intake queue -> start function) in the template, found ${intakeMappings.length}`,
    );
  }
  if (reconcileMappings.length > 1) {
    throw new Error(
      `expected at most one ${TYPE.EVENT_SOURCE_MAPPING} on the queues the status-change rule delivers to, found ${reconcileMappings.length}`,
    );
  }
  const { functionId: startId, queueId: intakeId, eventSource } = intakeMappings[0]!;
  const reconcileMapping = reconcileMappings[0];

  // The poll loop and the functions its Tasks invoke.
  const machines = Object.entries(resources).filter(([, resource]) => resource.Type === TYPE.STATE_MACHINE);
  if (machines.length !== 1) throw new Error(`expected exactly one ${TYPE.STATE_MACHINE} in the template, found ${machines.length}`);
  const [machineId] = machines[0]!;
  const definition = resolveStateMachineDefinition(template, machineId);
  const taskFunctions = taskFunctionLogicalIds(template, machineId);
  const pollId = taskFunctions[STATE_NAME.POLL];
  const finishId = taskFunctions[STATE_NAME.FINISH];
  if (pollId === undefined) throw new Error(`the state machine has no Task state named "${STATE_NAME.POLL}"`);
  if (finishId === undefined) throw new Error(`the state machine has no Task state named "${STATE_NAME.FINISH}"`);
  const roleOf: Record<string, FunctionRole> = { [startId]: 'start', [pollId]: 'poll', [finishId]: 'finish' };
  if (new Set([startId, pollId, finishId]).size !== 3)
    throw new Error('the start, poll and finish functions must be three different functions');
  if (reconcileMapping !== undefined) {
    if (roleOf[reconcileMapping.functionId] !== undefined) {
      throw new Error(
        `the reconcile queue's consumer ${reconcileMapping.functionId} is also the ${roleOf[reconcileMapping.functionId]} function`,
      );
    }
    roleOf[reconcileMapping.functionId] = 'reconcile';
  }
  const taskRoles: Record<string, FunctionRole> = {};
  for (const [stateName, functionId] of Object.entries(taskFunctions)) {
    const role = roleOf[functionId];
    // An unrouted Task would make aws-local-stepfunctions invoke a REAL Lambda: refuse it.
    if (role === undefined || role === 'start') {
      throw new Error(
        `Task "${stateName}" invokes function ${functionId}, which is neither the poll nor the finish function: the local runtime cannot route it`,
      );
    }
    taskRoles[stateName] = role;
  }
  if (taskRoles[STATE_NAME.RECORD_FAILURE] !== undefined && taskRoles[STATE_NAME.RECORD_FAILURE] !== 'finish') {
    throw new Error(`Task "${STATE_NAME.RECORD_FAILURE}" must invoke the finish function`);
  }

  // Rules: a rule on Step Functions status changes delivers to the reconcile queue (or, in
  // a template without one, targets the reconcile function), a schedule targets the sweep
  // function.
  for (const [, rule] of ruleEntries) {
    const props = rule.Properties ?? {};
    const role: FunctionRole | undefined =
      typeof props.ScheduleExpression === 'string' ? 'sweep' : isStatusChangeRule(rule) ? 'reconcile' : undefined;
    if (role === undefined) continue;
    for (const target of lambdaTargets(resources, props.Targets)) {
      if (roleOf[target.functionId] === undefined) roleOf[target.functionId] = role;
    }
  }
  const roleFunctions = Object.entries(roleOf);
  const lifecycleId = (role: FunctionRole): string | undefined => roleFunctions.find(([, candidate]) => candidate === role)?.[0];
  const reconcileId = lifecycleId('reconcile');
  const sweepId = lifecycleId('sweep');
  const functions = {
    start: functionModel(resources, startId, 'start'),
    poll: functionModel(resources, pollId, 'poll'),
    finish: functionModel(resources, finishId, 'finish'),
    ...(reconcileId === undefined ? {} : { reconcile: functionModel(resources, reconcileId, 'reconcile') }),
    ...(sweepId === undefined ? {} : { sweep: functionModel(resources, sweepId, 'sweep') }),
  };
  const rules: RuleModel[] = [];
  for (const [ruleId, rule] of ruleEntries) {
    const props = rule.Properties ?? {};
    const functionTargets: RuleTargetModel[] = lambdaTargets(resources, props.Targets)
      .filter((target) => roleOf[target.functionId] === 'reconcile' || roleOf[target.functionId] === 'sweep')
      .map((target) => ({
        kind: 'function',
        id: target.id,
        role: roleOf[target.functionId]!,
        ...(target.maximumRetryAttempts === undefined ? {} : { maximumRetryAttempts: target.maximumRetryAttempts }),
      }));
    const queueTargetModels: RuleTargetModel[] =
      reconcileMapping === undefined
        ? []
        : queueTargets(resources, props.Targets)
            .filter((target) => target.queueId === reconcileMapping.queueId)
            .map(({ queueId, ...target }) => ({ kind: 'queue', role: 'reconcile', queueLogicalId: queueId, ...target }));
    const targets = [...functionTargets, ...queueTargetModels];
    if (targets.length === 0) continue;
    const busValue = props.EventBusName;
    rules.push({
      logicalId: ruleId,
      ...(typeof props.ScheduleExpression === 'string'
        ? { scheduleExpression: props.ScheduleExpression }
        : {
            eventBusName:
              typeof busValue === 'string'
                ? busNameOf(busValue)
                : busValue === undefined
                  ? 'default'
                  : busNameOf(
                      String(
                        resources[refTarget(busValue, 'rule EventBusName')]?.Properties?.Name ?? refTarget(busValue, 'rule EventBusName'),
                      ),
                    ),
          }),
      ...(props.EventPattern === undefined ? {} : { eventPattern: props.EventPattern }),
      enabled: props.State === undefined || props.State === 'ENABLED',
      targets,
    });
  }

  // Queues.
  const intake = redriveOf(resources, intakeId, 'intake queue');
  const intakeQueue: IntakeQueueModel = { ...queueModel(resources, intakeId), maxReceiveCount: intake.maxReceiveCount };
  const deadLetterQueue = queueModel(resources, intake.deadLetterQueueId);
  let reconcileQueue: ReconcileQueueModel | undefined;
  if (reconcileMapping !== undefined) {
    const redrive = redriveOf(resources, reconcileMapping.queueId, 'reconcile queue');
    reconcileQueue = {
      ...queueModel(resources, reconcileMapping.queueId),
      maxReceiveCount: redrive.maxReceiveCount,
      deadLetterQueue: queueModel(resources, redrive.deadLetterQueueId),
      eventSource: reconcileMapping.eventSource,
    };
  }

  // Table, bus and secret: the ones the start function's environment points at.
  const startEnv = functions.start.environment;
  const tableRef = startEnv[ENV.JOB_TABLE_NAME];
  const tableId = refTarget(tableRef, `start function ${ENV.JOB_TABLE_NAME}`);
  const table = tableModel(resources, tableId);

  const busValue = startEnv[ENV.EVENT_BUS_NAME];
  const eventBusName =
    typeof busValue === 'string'
      ? busNameOf(busValue)
      : busNameOf(
          String(
            resourceOf(resources, refTarget(busValue, ENV.EVENT_BUS_NAME), TYPE.BUS).Properties?.Name ??
              refTarget(busValue, ENV.EVENT_BUS_NAME),
          ),
        );

  const secretValue = startEnv[ENV.WATERFLAI_API_KEY_SECRET_ID];
  const apiKeySecretId =
    typeof secretValue === 'string' ? secretValue : fakeSecretArn(refTarget(secretValue, ENV.WATERFLAI_API_KEY_SECRET_ID));

  // The poll Lambda builds its own state machine's ARN from the StateMachineName (to start
  // successor executions), so the local state machine must live under that same name.
  const machineName = resourceOf(resources, machineId, TYPE.STATE_MACHINE).Properties?.StateMachineName;
  const stateMachineName = typeof machineName === 'string' ? machineName : machineId;
  const stateMachineArn = `arn:aws:states:${region}:${account}:stateMachine:${stateMachineName}`;
  const otherFunctions = Object.entries(resources)
    .filter(([id, resource]) => resource.Type === TYPE.FUNCTION && roleOf[id] === undefined && !isCdkSupportFunction(id, resource))
    .map(([id]) => id);
  const buckets = Object.entries(resources)
    .filter(([, resource]) => resource.Type === TYPE.BUCKET)
    .map(([id, resource]) => ({
      logicalId: id,
      name: typeof resource.Properties?.BucketName === 'string' ? resource.Properties.BucketName : id.toLowerCase(),
    }));
  return {
    region,
    account,
    functions,
    otherFunctions,
    buckets,
    rules,
    intakeQueue,
    deadLetterQueue,
    eventSource,
    ...(reconcileQueue === undefined ? {} : { reconcileQueue }),
    table,
    eventBusName,
    apiKeySecretId,
    stateMachine: { logicalId: machineId, arn: stateMachineArn, name: stateMachineName, definition, taskRoles },
  };
}

/** The local value of every resource a function environment can reference. */
export function localResourceValues(
  template: CloudFormationTemplate,
  model: RuntimeModel,
  locals: {
    tableName: string;
    intake: { url: string; arn: string; name: string };
    deadLetter: { url: string; arn: string; name: string };
    stateMachineArn: string;
    /** Further local queues (the reconcile queue and its dead-letter queue), by logical id. */
    queues?: Readonly<Record<string, { url: string; arn: string; name: string }>>;
  },
): LocalResourceValues {
  const { region, account } = FAKE_ENVIRONMENT;
  const values: Record<string, Record<string, string>> = {};
  for (const [id, resource] of Object.entries(template.Resources ?? {})) {
    const props = resource.Properties ?? {};
    switch (resource.Type) {
      case 'AWS::DynamoDB::Table':
        if (id === model.table.logicalId)
          values[id] = { Ref: locals.tableName, Arn: `arn:aws:dynamodb:${region}:${account}:table/${locals.tableName}` };
        break;
      case 'AWS::SQS::Queue': {
        const queue =
          id === model.intakeQueue.logicalId
            ? locals.intake
            : id === model.deadLetterQueue.logicalId
              ? locals.deadLetter
              : locals.queues?.[id];
        if (queue) values[id] = { Ref: queue.url, QueueUrl: queue.url, Arn: queue.arn, QueueName: queue.name };
        break;
      }
      case 'AWS::Events::EventBus': {
        const name = typeof props.Name === 'string' ? props.Name : id;
        values[id] = { Ref: name, Name: name, Arn: `arn:aws:events:${region}:${account}:event-bus/${name}` };
        break;
      }
      case 'AWS::SecretsManager::Secret':
        values[id] = { Ref: fakeSecretArn(id), Id: fakeSecretArn(id) };
        break;
      case 'AWS::StepFunctions::StateMachine':
        if (id === model.stateMachine.logicalId)
          values[id] = { Ref: locals.stateMachineArn, Arn: locals.stateMachineArn, Name: model.stateMachine.name };
        break;
      case 'AWS::S3::Bucket': {
        const bucket = model.buckets.find((candidate) => candidate.logicalId === id);
        if (bucket) {
          values[id] = {
            Ref: bucket.name,
            Arn: `arn:aws:s3:::${bucket.name}`,
            DomainName: `${bucket.name}.s3.amazonaws.com`,
            RegionalDomainName: `${bucket.name}.s3.${region}.amazonaws.com`,
          };
        }
        break;
      }
      case 'AWS::Lambda::Function':
        values[id] = { Ref: typeof props.FunctionName === 'string' ? props.FunctionName : id, Arn: fakeFunctionArn(id) };
        break;
      default:
        break;
    }
  }
  return values;
}

/** The fake ARN given to a secret created by the template. */
export function fakeSecretArn(logicalId: string): string {
  return `arn:aws:secretsmanager:${FAKE_ENVIRONMENT.region}:${FAKE_ENVIRONMENT.account}:secret:${logicalId}-AbCdEf`;
}

/**
 * Resolves a function's environment to plain strings: literals are kept, `Ref` /
 * `Fn::GetAtt` / `Fn::Join` / `Fn::Sub` of the template's resources take the local
 * runtime's values (`values[logicalId][attribute]`, with `Ref` for `Ref`).
 * @throws Error naming the variable that references something the runtime does not provide
 */
export function resolveEnvironment(environment: Readonly<Record<string, unknown>>, values: LocalResourceValues): Record<string, string> {
  const resolved: Record<string, string> = {};
  for (const [name, value] of Object.entries(environment)) {
    resolved[name] = resolveValue(value, values, name);
  }
  return resolved;
}

/**
 * Resolves every intrinsic function inside a JSON value (an event pattern, for instance)
 * with the local runtime's values; other values are kept.
 */
export function resolveTokens(value: unknown, values: LocalResourceValues, where: string): unknown {
  if (Array.isArray(value)) return value.map((item) => resolveTokens(item, values, where));
  if (!isRecord(value)) return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && (keys[0] === 'Ref' || keys[0]!.startsWith('Fn::'))) return resolveValue(value, values, where);
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, resolveTokens(item, values, where)]));
}

function resolveValue(value: unknown, values: LocalResourceValues, where: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (isRecord(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1) {
      const [key] = keys as [string];
      const argument = value[key];
      const lookup = (id: string, attribute: string): string => {
        const found = values[id]?.[attribute];
        if (found === undefined)
          throw new Error(
            `${where}: the local runtime has no value for ${attribute === 'Ref' ? 'Ref' : `Fn::GetAtt ${attribute}`} of ${id}`,
          );
        return found;
      };
      if (key === 'Ref' && typeof argument === 'string') {
        if (argument === 'AWS::Region') return FAKE_ENVIRONMENT.region;
        if (argument === 'AWS::AccountId') return FAKE_ENVIRONMENT.account;
        if (argument === 'AWS::Partition') return FAKE_ENVIRONMENT.partition;
        if (argument === 'AWS::URLSuffix') return FAKE_ENVIRONMENT.urlSuffix;
        return lookup(argument, 'Ref');
      }
      if (key === 'Fn::GetAtt') {
        const [id, attribute] = typeof argument === 'string' ? argument.split('.') : (argument as unknown[]);
        if (typeof id === 'string' && typeof attribute === 'string') return lookup(id, attribute);
      }
      if (key === 'Fn::Join' && Array.isArray(argument) && typeof argument[0] === 'string' && Array.isArray(argument[1])) {
        return argument[1].map((part: unknown) => resolveValue(part, values, where)).join(argument[0]);
      }
      if (key === 'Fn::Sub' && typeof argument === 'string') {
        return argument.replace(/\$\{([^}!][^}]*)\}/g, (_whole, expression: string) => {
          const [id, attribute] = expression.split('.') as [string, string | undefined];
          return resolveValue(attribute === undefined ? { Ref: id } : { 'Fn::GetAtt': [id, attribute] }, values, where);
        });
      }
    }
  }
  throw new Error(`${where}: cannot resolve ${JSON.stringify(value)} locally`);
}

/** Whether a rule matches Step Functions events (execution status changes); schedules do not. */
function isStatusChangeRule(rule: CloudFormationResource): boolean {
  const props = rule.Properties ?? {};
  const pattern = props.EventPattern as { source?: unknown } | undefined;
  return typeof props.ScheduleExpression !== 'string' && Array.isArray(pattern?.source) && pattern.source.includes('aws.states');
}

/** A rule target's `Arn` as `Fn::GetAtt` of a template resource of `type`, else undefined. */
function targetResource(
  resources: Record<string, CloudFormationResource>,
  target: Record<string, unknown>,
  type: string,
): string | undefined {
  const arn = target.Arn;
  if (!isRecord(arn) || arn['Fn::GetAtt'] === undefined) return undefined;
  const id = getAttTarget(arn, 'rule target Arn');
  return resources[id]?.Type === type ? id : undefined;
}

function retryAttemptsOf(target: Record<string, unknown>): { maximumRetryAttempts?: number } {
  const retry = (target.RetryPolicy as { MaximumRetryAttempts?: unknown } | undefined)?.MaximumRetryAttempts;
  return typeof retry === 'number' ? { maximumRetryAttempts: retry } : {};
}

/** The Lambda targets of a rule: the function each `Arn` (Fn::GetAtt <fn>.Arn) points at. */
function lambdaTargets(
  resources: Record<string, CloudFormationResource>,
  value: unknown,
): Array<{ id: string; functionId: string; maximumRetryAttempts?: number }> {
  if (!Array.isArray(value)) return [];
  const targets: Array<{ id: string; functionId: string; maximumRetryAttempts?: number }> = [];
  for (const target of value as Array<Record<string, unknown>>) {
    const functionId = targetResource(resources, target, TYPE.FUNCTION);
    if (functionId === undefined) continue;
    targets.push({ id: String(target.Id ?? functionId), functionId, ...retryAttemptsOf(target) });
  }
  return targets;
}

/** The SQS targets of a rule: the queue each `Arn` (Fn::GetAtt <queue>.Arn) points at, with the target's delivery settings. */
function queueTargets(
  resources: Record<string, CloudFormationResource>,
  value: unknown,
): Array<Omit<QueueTargetModel, 'kind' | 'role' | 'queueLogicalId'> & { queueId: string }> {
  if (!Array.isArray(value)) return [];
  const targets: Array<Omit<QueueTargetModel, 'kind' | 'role' | 'queueLogicalId'> & { queueId: string }> = [];
  for (const target of value as Array<Record<string, unknown>>) {
    const queueId = targetResource(resources, target, TYPE.QUEUE);
    if (queueId === undefined) continue;
    const deadLetterArn = (target.DeadLetterConfig as { Arn?: unknown } | undefined)?.Arn;
    const deadLetterQueueId = deadLetterArn === undefined ? undefined : getAttTarget(deadLetterArn, 'rule target DeadLetterConfig.Arn');
    const maxAge = (target.RetryPolicy as { MaximumEventAgeInSeconds?: unknown } | undefined)?.MaximumEventAgeInSeconds;
    const inputTransformation = (['Input', 'InputPath', 'InputTransformer'] as const).find((key) => target[key] !== undefined);
    targets.push({
      id: String(target.Id ?? queueId),
      queueId,
      ...(deadLetterQueueId === undefined ? {} : { deadLetterQueueLogicalId: deadLetterQueueId }),
      ...retryAttemptsOf(target),
      ...(typeof maxAge === 'number' ? { maximumEventAgeSeconds: maxAge } : {}),
      ...(inputTransformation === undefined ? {} : { inputTransformation }),
    });
  }
  return targets;
}

/** An SQS event source mapping of the template: which function reads which queue, and how. */
function mappingModel(
  logicalId: string,
  mapping: CloudFormationResource,
): { logicalId: string; functionId: string; queueId: string; eventSource: EventSourceModel } {
  const props = mapping.Properties ?? {};
  const scaling = (props.ScalingConfig ?? {}) as { MaximumConcurrency?: number };
  const responseTypes = (props.FunctionResponseTypes ?? []) as string[];
  return {
    logicalId,
    functionId: refTarget(props.FunctionName, `event source mapping ${logicalId} FunctionName`),
    queueId: getAttTarget(props.EventSourceArn, `event source mapping ${logicalId} EventSourceArn`),
    eventSource: {
      batchSize: numberOr(props.BatchSize, 10),
      // Without a MaximumConcurrency, Lambda scales SQS pollers up to 1,000; 5 is plenty here.
      maxConcurrency: numberOr(scaling.MaximumConcurrency, 5),
      maxBatchingWindowSeconds: numberOr(props.MaximumBatchingWindowInSeconds, 0),
      reportBatchItemFailures: responseTypes.includes('ReportBatchItemFailures'),
    },
  };
}

/** A queue's redrive policy: its dead-letter queue and max receive count. */
function redriveOf(
  resources: Record<string, CloudFormationResource>,
  queueId: string,
  what: string,
): { deadLetterQueueId: string; maxReceiveCount: number } {
  const redrive = resourceOf(resources, queueId, TYPE.QUEUE).Properties?.RedrivePolicy as
    | { deadLetterTargetArn?: unknown; maxReceiveCount?: unknown }
    | undefined;
  if (redrive === undefined) throw new Error(`the ${what} ${queueId} has no RedrivePolicy`);
  const deadLetterQueueId = getAttTarget(redrive.deadLetterTargetArn, `${what} RedrivePolicy.deadLetterTargetArn`);
  const maxReceiveCount = numberOr(redrive.maxReceiveCount, Number.NaN);
  if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 1) throw new Error(`the ${what}'s maxReceiveCount is not a positive integer`);
  return { deadLetterQueueId, maxReceiveCount };
}

function functionModel(resources: Record<string, CloudFormationResource>, logicalId: string, role: FunctionRole): FunctionModel {
  const props = resourceOf(resources, logicalId, TYPE.FUNCTION).Properties ?? {};
  const environment = ((props.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {}) as Record<
    string,
    unknown
  >;
  return {
    role,
    logicalId,
    name: typeof props.FunctionName === 'string' ? props.FunctionName : logicalId,
    timeoutSeconds: numberOr(props.Timeout, LAMBDA_DEFAULTS.timeoutSeconds),
    memorySize: numberOr(props.MemorySize, LAMBDA_DEFAULTS.memorySize),
    environment,
  };
}

/** SQS attributes CreateQueue understands, as the template sets them. */
const QUEUE_ATTRIBUTES: Readonly<Record<string, string>> = {
  VisibilityTimeout: 'VisibilityTimeout',
  MessageRetentionPeriod: 'MessageRetentionPeriod',
  DelaySeconds: 'DelaySeconds',
  MaximumMessageSize: 'MaximumMessageSize',
  ReceiveMessageWaitTimeSeconds: 'ReceiveMessageWaitTimeSeconds',
};

function queueModel(resources: Record<string, CloudFormationResource>, logicalId: string): QueueModel {
  const props = resourceOf(resources, logicalId, TYPE.QUEUE).Properties ?? {};
  if (props.FifoQueue === true || props.FifoQueue === 'true')
    throw new Error(`queue ${logicalId} is FIFO; the local runtime supports standard queues only`);
  const attributes: Record<string, string> = {};
  for (const [property, attribute] of Object.entries(QUEUE_ATTRIBUTES)) {
    const value = props[property];
    if (typeof value === 'number' || typeof value === 'string') attributes[attribute] = String(value);
  }
  return { logicalId, name: typeof props.QueueName === 'string' ? props.QueueName : logicalId, attributes };
}

function tableModel(resources: Record<string, CloudFormationResource>, logicalId: string): TableModel {
  const props = resourceOf(resources, logicalId, TYPE.TABLE).Properties ?? {};
  const ttl = props.TimeToLiveSpecification as { AttributeName?: string; Enabled?: boolean } | undefined;
  const gsis = (props.GlobalSecondaryIndexes ?? []) as TableModel['globalSecondaryIndexes'];
  return {
    logicalId,
    name: typeof props.TableName === 'string' ? props.TableName : logicalId,
    keySchema: (props.KeySchema ?? []) as TableModel['keySchema'],
    attributeDefinitions: (props.AttributeDefinitions ?? []) as TableModel['attributeDefinitions'],
    globalSecondaryIndexes: gsis.map((gsi) => ({ IndexName: gsi.IndexName, KeySchema: gsi.KeySchema, Projection: gsi.Projection })),
    billingMode: props.BillingMode === 'PROVISIONED' ? 'PROVISIONED' : 'PAY_PER_REQUEST',
    ...(ttl?.Enabled === true && typeof ttl.AttributeName === 'string' ? { ttlAttribute: ttl.AttributeName } : {}),
  };
}

/** CDK's own helper functions (custom resource providers, log retention, auto-delete). */
function isCdkSupportFunction(logicalId: string, resource: CloudFormationResource): boolean {
  const handler = resource.Properties?.Handler;
  return (
    /^(CustomResourceProvider|LogRetention|AWS679f53fac002430cb0da5b7982bd2287|CustomS3AutoDeleteObjects|BucketNotificationsHandler)/.test(
      logicalId,
    ) || handler === '__entrypoint__.handler'
  );
}

function busNameOf(nameOrArn: string): string {
  const match = /^arn:[^:]+:events:[^:]*:\d*:event-bus\/(.+)$/.exec(nameOrArn);
  return match?.[1] ?? nameOrArn;
}

function resourceOf(resources: Record<string, CloudFormationResource>, logicalId: string, type: string): CloudFormationResource {
  const resource = resources[logicalId];
  if (resource === undefined) throw new Error(`the template has no resource ${logicalId}`);
  if (resource.Type !== type) throw new Error(`resource ${logicalId} is a ${resource.Type}, expected ${type}`);
  return resource;
}

function refTarget(value: unknown, where: string): string {
  if (isRecord(value) && typeof value.Ref === 'string') return value.Ref;
  throw new Error(`${where}: expected a Ref to a resource of the template, got ${JSON.stringify(value)}`);
}

function getAttTarget(value: unknown, where: string): string {
  if (isRecord(value)) {
    const argument = value['Fn::GetAtt'];
    if (Array.isArray(argument) && typeof argument[0] === 'string') return argument[0];
    if (typeof argument === 'string') return argument.split('.')[0]!;
  }
  throw new Error(`${where}: expected Fn::GetAtt of a resource of the template, got ${JSON.stringify(value)}`);
}

function numberOr(value: unknown, fallback: number): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
  return fallback;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
