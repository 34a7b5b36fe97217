/**
 * Evaluates AWS requests against the IAM policies of a synthesized template, with
 * `@cloud-copilot/iam-simulate`, in the template's fake ARN space: every `Ref` /
 * `Fn::GetAtt` / `Fn::Join` / `Fn::Sub` of a policy resolves to the value the local runtime
 * uses for that resource (its table, queues, bus, state machine and bucket go by the names
 * the template gives them, or their logical ids), so a call recorded on the local runtime
 * (see local/runtime/sdk-recorder.ts) maps to the very ARN the deployed policy names.
 */
import { runSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import { FAKE_ENVIRONMENT, fakeFunctionArn, type CloudFormationResource, type CloudFormationTemplate } from '../../local/asl';
import type { RecordedSdkCall } from '../../local/runtime/sdk-recorder';
import { ENV, JOB_TABLE } from '../../lambdas/contract/constants';

const { partition, region, account, urlSuffix } = FAKE_ENVIRONMENT;

/** The orchestrator's function roles. */
export const FUNCTION_ROLES = ['start', 'poll', 'finish', 'reconcile', 'sweep'] as const;
export type FunctionRoleName = (typeof FUNCTION_ROLES)[number];

/** `Allowed`, `ImplicitlyDenied` or `ExplicitlyDenied`. */
export type Decision = 'Allowed' | 'ImplicitlyDenied' | 'ExplicitlyDenied';

/** One request to evaluate: an IAM action on a resource ARN. */
export interface IamRequest {
  readonly action: string;
  readonly resource: string;
}

/** A policy document as the template holds it, resolved. */
export interface PolicyDocument {
  readonly Version?: string;
  readonly Statement: readonly PolicyStatement[];
}
export interface PolicyStatement {
  readonly Sid?: string;
  readonly Effect: 'Allow' | 'Deny';
  readonly Action?: string | readonly string[];
  readonly NotAction?: string | readonly string[];
  readonly Resource?: string | readonly string[];
  readonly NotResource?: string | readonly string[];
  readonly Condition?: Record<string, unknown>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const arn = (service: string, resource: string, regional = true): string =>
  `arn:${partition}:${service}:${regional ? region : ''}:${account}:${resource}`;

/** The ARN of a queue, from its name (the template's ARN space). */
export const queueArn = (name: string): string => arn('sqs', name);
/** The ARN of an event bus, from its name or ARN. */
export const eventBusArn = (nameOrArn: string): string =>
  nameOrArn.startsWith('arn:') ? nameOrArn : arn('events', `event-bus/${nameOrArn}`);
/** The ARN of a job-table item request (`index` for a Query on an index). */
export const tableArn = (name: string, index?: string): string =>
  arn('dynamodb', `table/${name}${index === undefined ? '' : `/index/${index}`}`);
/** The ARN of a role of the template, by logical id. */
export const roleArn = (logicalId: string): string => arn('iam', `role/${logicalId}`, false);

/**
 * Resolves the intrinsic functions of a template to the local runtime's values: a resource
 * is known by the physical name the template gives it (`TableName`, `QueueName`, `Name`,
 * `StateMachineName`, `BucketName`), else by its logical id, as the runtime names it.
 */
export class TemplateResolver {
  constructor(readonly template: CloudFormationTemplate) {}

  resolve(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((item) => this.resolve(item));
    if (!isRecord(value)) return value;
    const keys = Object.keys(value);
    const [only] = keys;
    if (keys.length === 1 && only !== undefined && (only === 'Ref' || only.startsWith('Fn::'))) return this.intrinsic(only, value[only]);
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, this.resolve(item)]));
  }

  /** `Fn::GetAtt [logicalId, attribute]` (attribute `Ref` for `Ref`). */
  attribute(logicalId: string, attribute: string): string {
    const resource = this.template.Resources?.[logicalId];
    if (resource === undefined) throw new Error(`the template has no resource ${logicalId}`);
    const props = resource.Properties ?? {};
    const named = (property: string): string => (typeof props[property] === 'string' ? (props[property] as string) : logicalId);
    const values: Record<string, () => Record<string, string>> = {
      'AWS::DynamoDB::Table': () => ({ Ref: named('TableName'), Arn: tableArn(named('TableName')) }),
      'AWS::SQS::Queue': () => {
        const name = named('QueueName');
        const url = `https://sqs.${region}.${urlSuffix}/${account}/${name}`;
        return { Ref: url, QueueUrl: url, QueueName: name, Arn: queueArn(name) };
      },
      'AWS::Events::EventBus': () => ({ Ref: named('Name'), Name: named('Name'), Arn: eventBusArn(named('Name')) }),
      'AWS::StepFunctions::StateMachine': () => {
        const machineArn = arn('states', `stateMachine:${named('StateMachineName')}`);
        return { Ref: machineArn, Arn: machineArn, Name: named('StateMachineName') };
      },
      'AWS::S3::Bucket': () => {
        const name = named('BucketName').toLowerCase();
        return { Ref: name, Arn: `arn:${partition}:s3:::${name}` };
      },
      'AWS::SecretsManager::Secret': () => ({
        Ref: arn('secretsmanager', `secret:${logicalId}-AbCdEf`),
        Id: arn('secretsmanager', `secret:${logicalId}-AbCdEf`),
      }),
      'AWS::Lambda::Function': () => ({ Ref: named('FunctionName'), Arn: fakeFunctionArn(logicalId) }),
      'AWS::Logs::LogGroup': () => ({ Ref: named('LogGroupName'), Arn: arn('logs', `log-group:${named('LogGroupName')}:*`) }),
      'AWS::IAM::Role': () => ({ Ref: logicalId, Arn: roleArn(logicalId) }),
      'AWS::KMS::Key': () => ({ Ref: logicalId, Arn: arn('kms', `key/${logicalId}`) }),
      'AWS::SNS::Topic': () => ({ Ref: arn('sns', logicalId), TopicArn: arn('sns', logicalId), TopicName: logicalId }),
    };
    const value = values[resource.Type]?.()[attribute];
    if (value === undefined) throw new Error(`no local value for ${attribute} of ${resource.Type} ${logicalId}`);
    return value;
  }

  private intrinsic(name: string, argument: unknown): unknown {
    switch (name) {
      case 'Ref': {
        const id = asString(argument, 'Ref');
        const pseudo: Record<string, string> = {
          'AWS::Partition': partition,
          'AWS::Region': region,
          'AWS::AccountId': account,
          'AWS::URLSuffix': urlSuffix,
          'AWS::StackName': FAKE_ENVIRONMENT.stackName,
        };
        const parameter = this.template.Parameters?.[id];
        if (pseudo[id] !== undefined) return pseudo[id];
        if (parameter !== undefined) {
          if (parameter.Default === undefined) throw new Error(`Ref to parameter ${id}, which has no default`);
          return parameter.Default;
        }
        return this.attribute(id, 'Ref');
      }
      case 'Fn::GetAtt': {
        const [id, attribute] = typeof argument === 'string' ? argument.split('.') : asArray(this.resolve(argument), 'Fn::GetAtt');
        return this.attribute(asString(id, 'Fn::GetAtt'), asString(attribute, 'Fn::GetAtt'));
      }
      case 'Fn::Join': {
        const [delimiter, items] = asArray(argument, 'Fn::Join');
        return asArray(this.resolve(items), 'Fn::Join')
          .map((item) => asString(item, 'Fn::Join item'))
          .join(asString(delimiter, 'Fn::Join delimiter'));
      }
      case 'Fn::Sub': {
        const [text, variables] = typeof argument === 'string' ? [argument, {}] : asArray(argument, 'Fn::Sub');
        const resolved = isRecord(variables) ? (this.resolve(variables) as Record<string, unknown>) : {};
        return asString(text, 'Fn::Sub').replace(/\$\{(!?)([^}]+)\}/g, (_whole, literal: string, expression: string) => {
          if (literal === '!') return `\${${expression}}`;
          if (Object.hasOwn(resolved, expression)) return asString(resolved[expression], `Fn::Sub ${expression}`);
          const [id, attribute] = expression.split('.') as [string, string | undefined];
          return asString(attribute === undefined ? this.intrinsic('Ref', id) : this.attribute(id, attribute), `Fn::Sub ${expression}`);
        });
      }
      case 'Fn::Select': {
        const [index, list] = asArray(this.resolve(argument), 'Fn::Select');
        const item = asArray(list, 'Fn::Select')[Number(index)];
        if (item === undefined) throw new Error(`Fn::Select index ${String(index)} is out of range`);
        return item;
      }
      case 'Fn::Split': {
        const [delimiter, text] = asArray(this.resolve(argument), 'Fn::Split');
        return asString(text, 'Fn::Split').split(asString(delimiter, 'Fn::Split delimiter'));
      }
      default:
        throw new Error(`${name} is not supported by the policy resolver`);
    }
  }
}

function asString(value: unknown, where: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new Error(`${where}: expected a string, got ${JSON.stringify(value)}`);
}

function asArray(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${where}: expected an array, got ${JSON.stringify(value)}`);
  return value;
}

/** The logical id of the execution role of a function of the template. */
export function roleOfFunction(template: CloudFormationTemplate, functionLogicalId: string): string {
  const fn = template.Resources?.[functionLogicalId];
  if (fn?.Type !== 'AWS::Lambda::Function') throw new Error(`${functionLogicalId} is not a function of the template`);
  const role = fn.Properties?.Role;
  const getAtt = isRecord(role) ? role['Fn::GetAtt'] : undefined;
  if (!Array.isArray(getAtt) || typeof getAtt[0] !== 'string')
    throw new Error(`the role of ${functionLogicalId} is not a role of the template: ${JSON.stringify(role)}`);
  return getAtt[0];
}

const referencesRole = (roles: unknown, roleId: string): boolean =>
  Array.isArray(roles) && roles.some((role) => isRecord(role) && role.Ref === roleId);

/**
 * Every identity policy of a role of the template, resolved: its inline policies, and the
 * `AWS::IAM::Policy` / `AWS::IAM::ManagedPolicy` resources attached to it.
 * @throws Error when the role has a managed policy from outside the template (which cannot be evaluated)
 */
export function identityPolicies(template: CloudFormationTemplate, roleId: string): Array<{ name: string; policy: PolicyDocument }> {
  const resolver = new TemplateResolver(template);
  const resources = template.Resources ?? {};
  const role = resources[roleId];
  if (role?.Type !== 'AWS::IAM::Role') throw new Error(`${roleId} is not a role of the template`);
  const managed = role.Properties?.ManagedPolicyArns;
  if (Array.isArray(managed) && managed.length > 0) {
    throw new Error(`role ${roleId} has managed policies (${JSON.stringify(managed)}), which this evaluation cannot see`);
  }
  const policies: Array<{ name: string; policy: PolicyDocument }> = [];
  const inline = role.Properties?.Policies;
  if (Array.isArray(inline)) {
    for (const [index, entry] of inline.entries()) {
      if (!isRecord(entry)) continue;
      policies.push({
        name: `${roleId}/inline/${String(entry.PolicyName ?? index)}`,
        policy: resolver.resolve(entry.PolicyDocument) as PolicyDocument,
      });
    }
  }
  for (const [id, resource] of Object.entries(resources) as Array<[string, CloudFormationResource]>) {
    if (
      (resource.Type === 'AWS::IAM::Policy' || resource.Type === 'AWS::IAM::ManagedPolicy') &&
      referencesRole(resource.Properties?.Roles, roleId)
    ) {
      policies.push({ name: id, policy: resolver.resolve(resource.Properties?.PolicyDocument) as PolicyDocument });
    }
  }
  return policies;
}

/**
 * Evaluates one request of a role of the template against the role's identity policies.
 * @throws Error when the simulator refuses the request (an unknown action, an ARN that is
 *   not a resource of the action, an invalid policy): a mapping error must not pass as a denial
 */
export async function evaluate(
  policies: ReadonlyArray<{ name: string; policy: PolicyDocument }>,
  roleId: string,
  request: IamRequest,
): Promise<Decision> {
  const simulation: Simulation = {
    request: {
      principal: roleArn(roleId),
      action: request.action,
      resource: { resource: request.resource, accountId: account },
      contextVariables: {},
    },
    identityPolicies: policies.map(({ name, policy }) => ({ name, policy })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  };
  const result = await runSimulation(simulation, {});
  if (result.resultType === 'error') {
    throw new Error(
      `iam-simulate refused ${request.action} on ${request.resource} for ${roleId}: ${result.errors.message} ${JSON.stringify(result.errors)}`,
    );
  }
  return result.overallResult;
}

/** IAM service prefixes by SDK client service name (`RecordedSdkCall.service`). */
const SERVICE_PREFIX: Readonly<Record<string, string>> = {
  DynamoDB: 'dynamodb',
  SQS: 'sqs',
  SFN: 'states',
  EventBridge: 'events',
  SecretsManager: 'secretsmanager',
  S3: 's3',
};

/** Operations whose IAM action is named differently. */
const ACTION_OF_OPERATION: Readonly<Record<string, string>> = {
  'sqs:SendMessageBatch': 'sqs:SendMessage',
  'sqs:DeleteMessageBatch': 'sqs:DeleteMessage',
  'sqs:ChangeMessageVisibilityBatch': 'sqs:ChangeMessageVisibility',
  's3:HeadObject': 's3:GetObject',
  's3:ListObjectsV2': 's3:ListBucket',
};

/**
 * The IAM requests a recorded SDK call makes, in the template's ARN space.
 * @throws Error for a call this mapping does not know (a new service or operation must be
 *   mapped before it can be proven allowed)
 */
export function iamRequestsOf(call: RecordedSdkCall): IamRequest[] {
  const prefix = SERVICE_PREFIX[call.service];
  if (prefix === undefined) throw new Error(`no IAM mapping for SDK service ${call.service} (${call.command})`);
  const operation = `${prefix}:${call.command}`;
  const action = ACTION_OF_OPERATION[operation] ?? operation;
  const r = call.resources;
  const need = (value: string | undefined, field: string): string => {
    if (value === undefined) throw new Error(`${operation} was recorded without ${field}`);
    return value;
  };
  switch (prefix) {
    case 'dynamodb':
      if (
        [
          'BatchGetItem',
          'BatchWriteItem',
          'TransactGetItems',
          'TransactWriteItems',
          'ExecuteStatement',
          'BatchExecuteStatement',
          'ExecuteTransaction',
        ].includes(call.command)
      ) {
        throw new Error(`${operation} names its tables per item; map it before using it`);
      }
      return [{ action, resource: tableArn(need(r.TableName, 'TableName'), r.IndexName) }];
    case 'sqs': {
      // The queue's name is the URL's last segment; its ARN is the template's, whatever
      // account the local endpoint puts in the URL.
      const name = need(r.QueueUrl, 'QueueUrl').replace(/\/+$/, '').split('/').pop() ?? '';
      return [{ action, resource: queueArn(name) }];
    }
    case 'events':
      return (r.EventBusNames ?? ['default']).map((bus) => ({ action, resource: eventBusArn(bus) }));
    case 'states':
      return [{ action, resource: r.stateMachineArn ?? need(r.executionArn, 'stateMachineArn or executionArn') }];
    case 'secretsmanager': {
      const id = need(r.SecretId, 'SecretId');
      return [{ action, resource: id.startsWith('arn:') ? id : arn('secretsmanager', `secret:${id}`) }];
    }
    case 's3': {
      const bucket = need(r.Bucket, 'Bucket');
      return [
        {
          action,
          resource:
            r.Key === undefined || action === 's3:ListBucket'
              ? `arn:${partition}:s3:::${bucket}`
              : `arn:${partition}:s3:::${bucket}/${r.Key}`,
        },
      ];
    }
    default:
      throw new Error(`no IAM mapping for ${operation}`);
  }
}

/** The orchestrator's function roles and resources, in the template's ARN space. */
export interface IamSubjects {
  /** Role logical id of each function. */
  readonly roles: Readonly<Record<FunctionRoleName, string>>;
  readonly tableName: string;
  readonly table: string;
  readonly statusIndex: string;
  /** Every index of the job table (its global secondary indexes in the template). */
  readonly indexes: readonly string[];
  readonly intakeQueue: string;
  readonly deadLetterQueue: string;
  readonly eventBus: string;
  readonly apiKeySecret: string;
  readonly outputBucket: string;
  readonly stateMachine: string;
  /** An execution of the poll loop. */
  readonly execution: string;
}

/**
 * The subjects of a template: the roles of the functions (by their logical ids) and the
 * resources the start function's environment points at (every function shares them).
 */
export function subjectsOf(template: CloudFormationTemplate, functions: Readonly<Record<FunctionRoleName, string>>): IamSubjects {
  const resolver = new TemplateResolver(template);
  const start = template.Resources?.[functions.start];
  const variables = (start?.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {};
  const target = (variable: string): string => {
    const value = variables[variable];
    if (isRecord(value) && typeof value.Ref === 'string') return value.Ref;
    throw new Error(`the start function's ${variable} is not a Ref to a resource of the template: ${JSON.stringify(value)}`);
  };
  const roles = Object.fromEntries(FUNCTION_ROLES.map((role) => [role, roleOfFunction(template, functions[role])])) as Record<
    FunctionRoleName,
    string
  >;
  const tableId = target(ENV.JOB_TABLE_NAME);
  const tableName = resolver.attribute(tableId, 'Ref');
  const gsis = template.Resources?.[tableId]?.Properties?.GlobalSecondaryIndexes;
  const indexes = (Array.isArray(gsis) ? gsis : []).flatMap((gsi: unknown) =>
    isRecord(gsi) && typeof gsi.IndexName === 'string' ? [tableArn(tableName, gsi.IndexName)] : [],
  );
  const stateMachineId = target(ENV.STATE_MACHINE_ARN);
  const machineName = resolver.attribute(stateMachineId, 'Name');
  return {
    roles,
    tableName,
    table: tableArn(tableName),
    statusIndex: tableArn(tableName, JOB_TABLE.STATUS_INDEX),
    indexes,
    intakeQueue: resolver.attribute(target(ENV.INTAKE_QUEUE_URL), 'Arn'),
    deadLetterQueue: resolver.attribute(target(ENV.DLQ_URL), 'Arn'),
    eventBus: resolver.attribute(target(ENV.EVENT_BUS_NAME), 'Arn'),
    apiKeySecret: resolver.attribute(target(ENV.WATERFLAI_API_KEY_SECRET_ID), 'Ref'),
    outputBucket: resolver.attribute(target(ENV.OUTPUT_BUCKET_NAME), 'Arn'),
    stateMachine: resolver.attribute(stateMachineId, 'Arn'),
    execution: arn('states', `execution:${machineName}:some-job`),
  };
}

/** A request a role must never be allowed to make, and why. */
export interface ForbiddenCall extends IamRequest {
  readonly role: FunctionRoleName;
  readonly why: string;
}

/**
 * What no role, or a given role, may do: the calls the code never makes, on the
 * orchestrator's own resources and on others.
 */
export function forbiddenCalls(s: IamSubjects): ForbiddenCall[] {
  const calls: ForbiddenCall[] = [];
  const others = (allowed: FunctionRoleName): FunctionRoleName[] => FUNCTION_ROLES.filter((role) => role !== allowed);
  const otherTable = tableArn('someone-elses-table');
  const object = `${s.outputBucket}/outputs/some-job/some-execution.json`;
  for (const role of FUNCTION_ROLES) {
    for (const action of [
      'dynamodb:DeleteItem',
      'dynamodb:BatchWriteItem',
      'dynamodb:BatchGetItem',
      'dynamodb:Scan',
      'dynamodb:DescribeTable',
      'dynamodb:ConditionCheckItem',
    ]) {
      calls.push({ role, action, resource: s.table, why: 'no code path sends it' });
    }
    for (const index of s.indexes) calls.push({ role, action: 'dynamodb:Scan', resource: index, why: 'no code path scans an index' });
    calls.push({ role, action: 'dynamodb:Query', resource: s.table, why: 'queries go to the status index only' });
    calls.push({ role, action: 'dynamodb:GetItem', resource: otherTable, why: 'only the job table' });
    calls.push({ role, action: 'dynamodb:UpdateItem', resource: otherTable, why: 'only the job table' });
    calls.push({ role, action: 'states:StopExecution', resource: s.execution, why: 'no function stops executions (operators do)' });
    calls.push({
      role,
      action: 'states:StartExecution',
      resource: arn('states', 'stateMachine:someone-elses-machine'),
      why: 'only the poll loop',
    });
    calls.push({ role, action: 'secretsmanager:DescribeSecret', resource: s.apiKeySecret, why: 'only GetSecretValue is sent' });
    calls.push({ role, action: 'secretsmanager:PutSecretValue', resource: s.apiKeySecret, why: 'the key is read, never written' });
    calls.push({
      role,
      action: 'secretsmanager:GetSecretValue',
      resource: arn('secretsmanager', 'secret:someone-elses-secret-AbCdEf'),
      why: 'only the API key secret',
    });
    calls.push({ role, action: 'events:PutEvents', resource: eventBusArn('default'), why: 'outcomes go to the orchestrator bus only' });
    calls.push({ role, action: 's3:GetObject', resource: object, why: 'outputs are written, never read back' });
    calls.push({ role, action: 's3:DeleteObject', resource: object, why: 'outputs expire by lifecycle rule' });
    calls.push({ role, action: 's3:PutObject', resource: `${s.outputBucket}/not-outputs/x.json`, why: 'only under outputs/' });
    calls.push({ role, action: 'sqs:SendMessage', resource: s.intakeQueue, why: 'producers send jobs; no function does' });
    calls.push({ role, action: 'sqs:PurgeQueue', resource: s.deadLetterQueue, why: 'no code path purges' });
    calls.push({ role, action: 'sqs:ReceiveMessage', resource: s.deadLetterQueue, why: 'operators read the DLQ; no function does' });
  }
  for (const role of others('start')) {
    calls.push({ role, action: 'sqs:SendMessage', resource: s.deadLetterQueue, why: 'only start dead-letters messages' });
    calls.push({ role, action: 'dynamodb:PutItem', resource: s.table, why: 'only start creates job records' });
  }
  for (const role of ['finish', 'reconcile', 'sweep'] as const) {
    calls.push({
      role,
      action: 'states:StartExecution',
      resource: s.stateMachine,
      why: 'only start (first executions) and poll (successors) start executions',
    });
  }
  for (const role of ['start', 'finish'] as const)
    calls.push({ role, action: 's3:PutObject', resource: object, why: 'only poll, reconcile and sweep record finished outputs' });
  for (const role of others('sweep')) {
    for (const index of s.indexes)
      calls.push({ role, action: 'dynamodb:Query', resource: index, why: 'only the sweeper lists jobs through an index' });
  }
  calls.push({ role: 'finish', action: 'secretsmanager:GetSecretValue', resource: s.apiKeySecret, why: 'finish never calls Waterflai' });
  calls.push({ role: 'poll', action: 'events:PutEvents', resource: s.eventBus, why: 'poll records statuses; finish announces' });
  for (const role of others('start'))
    calls.push({ role, action: 'sqs:ChangeMessageVisibility', resource: s.intakeQueue, why: 'only start consumes the intake queue' });
  return calls;
}

/** Matches an ARN against an IAM resource pattern (`*` and `?` wildcards). */
export function arnMatches(pattern: string, value: string): boolean {
  const regex = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return regex.test(value);
}

/** Every (action, resource pattern) an identity policy allows, flattened. */
export function allowedPairs(policies: ReadonlyArray<{ policy: PolicyDocument }>): IamRequest[] {
  const pairs: IamRequest[] = [];
  for (const { policy } of policies) {
    for (const statement of policy.Statement) {
      if (statement.Effect !== 'Allow') continue;
      for (const action of [statement.Action ?? []].flat()) {
        for (const resource of [statement.Resource ?? []].flat()) pairs.push({ action, resource });
      }
    }
  }
  return pairs;
}
