/**
 * Turns the state machine in a synthesized CloudFormation template into plain Amazon States
 * Language, so it can be validated (asl-validator) and run in process
 * (aws-local-stepfunctions) without AWS.
 *
 * Every `Ref` / `Fn::GetAtt` / `Fn::Join` / `Fn::Sub` / `Fn::Select` / `Fn::Split` is
 * resolved to a fake but well-formed value by resource type, e.g. the `Arn` of the Lambda
 * function `PollFn123` becomes `arn:aws:lambda:us-east-1:123456789012:function:PollFn123`.
 * The function name in a fake ARN is always the resource's logical id, which is how
 * {@link taskFunctionLogicalIds} maps each Task back to its function.
 */
import { App } from 'aws-cdk-lib';
import { WaterflaiOrchestratorStack, type WaterflaiOrchestratorStackProps } from '../lib/orchestrator-stack';

/** The fake environment every resolved value lives in. */
export const FAKE_ENVIRONMENT = {
  partition: 'aws',
  region: 'us-east-1',
  account: '123456789012',
  urlSuffix: 'amazonaws.com',
  stackName: 'WaterflaiOrchestrator',
} as const;

/** The parts of a CloudFormation template this module reads. */
export interface CloudFormationTemplate {
  readonly Resources?: Record<string, CloudFormationResource>;
  readonly Parameters?: Record<string, { readonly Default?: unknown }>;
  readonly [key: string]: unknown;
}
export interface CloudFormationResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
}

/** A state of an ASL definition (loosely typed: only what this module needs). */
export interface AslState {
  readonly Type: string;
  readonly Resource?: string;
  readonly Parameters?: Record<string, unknown>;
  readonly Branches?: readonly AslDefinition[];
  readonly Iterator?: AslDefinition;
  readonly ItemProcessor?: AslDefinition;
  readonly [key: string]: unknown;
}
/** A plain ASL definition. */
export interface AslDefinition {
  readonly StartAt: string;
  readonly States: Record<string, AslState>;
  readonly TimeoutSeconds?: number;
  readonly [key: string]: unknown;
}

const STATE_MACHINE_TYPE = 'AWS::StepFunctions::StateMachine';

/**
 * Finds the state machine in `template` and returns its definition as plain ASL.
 * @param template a synthesized template (`Template.fromStack(stack).toJSON()` or the cloud assembly's JSON)
 * @param logicalId which state machine, when the template has several
 * @throws Error when there is no (or more than one, without `logicalId`) state machine, or a
 *   token cannot be resolved (a parameter without default, a condition, an unknown resource type)
 */
export function resolveStateMachineDefinition(template: object, logicalId?: string): AslDefinition {
  const cfn = template as CloudFormationTemplate;
  const [, resource] = findStateMachine(cfn, logicalId);
  const properties = resource.Properties ?? {};
  const resolver = new IntrinsicResolver(cfn);

  let definition: unknown;
  if (properties.DefinitionString !== undefined) {
    const text = resolver.resolve(properties.DefinitionString);
    if (typeof text !== 'string') throw new Error('DefinitionString did not resolve to a string');
    const substituted = substituteDefinition(text, resolver.resolve(properties.DefinitionSubstitutions ?? {}));
    definition = JSON.parse(substituted);
  } else if (properties.Definition !== undefined) {
    definition = resolver.resolve(properties.Definition);
    const substitutions = resolver.resolve(properties.DefinitionSubstitutions ?? {});
    definition = JSON.parse(substituteDefinition(JSON.stringify(definition), substitutions));
  } else {
    throw new Error('the state machine has neither DefinitionString nor Definition (DefinitionS3Location is not supported)');
  }
  if (!isRecord(definition) || typeof definition.StartAt !== 'string' || !isRecord(definition.States)) {
    throw new Error('the resolved state machine definition has no StartAt/States');
  }
  return definition as unknown as AslDefinition;
}

/**
 * For each Task state (nested Parallel/Map states included), the logical id of the Lambda
 * function of the template it invokes. The local runtime routes Tasks by state name to the
 * matching handler code.
 * @throws Error when a Task calls anything other than a Lambda function of the template
 */
export function taskFunctionLogicalIds(template: object, logicalId?: string): Record<string, string> {
  const cfn = template as CloudFormationTemplate;
  const definition = resolveStateMachineDefinition(cfn, logicalId);
  const routes: Record<string, string> = {};
  for (const [stateName, state] of taskStates(definition)) {
    const functionRef =
      state.Resource === `arn:${FAKE_ENVIRONMENT.partition}:states:::lambda:invoke` ? state.Parameters?.FunctionName : state.Resource;
    const functionId = typeof functionRef === 'string' ? functionLogicalIdFromArn(functionRef) : undefined;
    if (functionId === undefined || cfn.Resources?.[functionId]?.Type !== 'AWS::Lambda::Function') {
      throw new Error(
        `Task "${stateName}" does not invoke a Lambda function of this template (resource ${JSON.stringify(state.Resource)})`,
      );
    }
    routes[stateName] = functionId;
  }
  return routes;
}

/** Every Task state of the definition, nested Parallel branches and Map processors included. */
export function taskStates(definition: AslDefinition): Array<[string, AslState]> {
  const found: Array<[string, AslState]> = [];
  const visit = (machine: AslDefinition): void => {
    for (const [name, state] of Object.entries(machine.States)) {
      if (state.Type === 'Task') found.push([name, state]);
      for (const branch of state.Branches ?? []) visit(branch);
      if (state.Iterator !== undefined) visit(state.Iterator);
      if (state.ItemProcessor !== undefined) visit(state.ItemProcessor);
    }
  };
  visit(definition);
  return found;
}

/**
 * Throws unless every Task state has a local handler. aws-local-stepfunctions calls the REAL
 * Lambda (over the network, with whatever credentials it finds) for a Task without one.
 * @param handlers `taskResourceLocalHandlers`, keyed by state name
 */
export function assertEveryTaskRouted(definition: AslDefinition, handlers: Readonly<Record<string, unknown>>): void {
  const unrouted = taskStates(definition)
    .map(([name]) => name)
    .filter((name) => typeof handlers[name] !== 'function');
  if (unrouted.length > 0) {
    throw new Error(`Task state(s) without a local handler: ${unrouted.join(', ')}; running them would call a real Lambda function`);
  }
}

/**
 * Largest `TimeoutSeconds` aws-local-stepfunctions can honour: it uses `setTimeout`, which
 * fires at once for delays over 2^31-1 ms (about 24.8 days).
 */
export const LOCAL_MAX_TIMEOUT_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** A copy of `definition` whose execution timeout aws-local-stepfunctions can honour. */
export function withLocalTimeoutLimit(definition: AslDefinition): AslDefinition {
  if (definition.TimeoutSeconds === undefined || definition.TimeoutSeconds <= LOCAL_MAX_TIMEOUT_SECONDS) return structuredClone(definition);
  return { ...structuredClone(definition), TimeoutSeconds: LOCAL_MAX_TIMEOUT_SECONDS };
}

/**
 * Builds the orchestrator stack in process and returns its template. Bundling is skipped
 * (`aws:cdk:bundling-stacks: []`), so it takes a second or two, not esbuild time.
 */
export function synthesizeTemplate(props: WaterflaiOrchestratorStackProps = {}): CloudFormationTemplate {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new WaterflaiOrchestratorStack(app, props.config?.stackName ?? FAKE_ENVIRONMENT.stackName, props);
  return app.synth().getStackArtifact(stack.artifactId).template as CloudFormationTemplate;
}

/** The fake ARN of the Lambda function with this logical id (what resolved Tasks point to). */
export function fakeFunctionArn(logicalId: string): string {
  const { partition, region, account } = FAKE_ENVIRONMENT;
  return `arn:${partition}:lambda:${region}:${account}:function:${logicalId}`;
}

function findStateMachine(template: CloudFormationTemplate, logicalId: string | undefined): [string, CloudFormationResource] {
  const machines = Object.entries(template.Resources ?? {}).filter(([, resource]) => resource.Type === STATE_MACHINE_TYPE);
  if (logicalId !== undefined) {
    const match = machines.find(([id]) => id === logicalId);
    if (match === undefined)
      throw new Error(`no ${STATE_MACHINE_TYPE} with logical id "${logicalId}"; found: ${machines.map(([id]) => id).join(', ') || 'none'}`);
    return match;
  }
  const [only, ...others] = machines;
  if (only === undefined) throw new Error(`the template has no ${STATE_MACHINE_TYPE}`);
  if (others.length > 0)
    throw new Error(`the template has ${machines.length} state machines (${machines.map(([id]) => id).join(', ')}); pass a logical id`);
  return only;
}

function functionLogicalIdFromArn(arn: string): string | undefined {
  const match = /^arn:[a-z-]+:lambda:[a-z0-9-]+:\d{12}:function:([A-Za-z0-9_-]+)(:[A-Za-z0-9$_-]+)?$/.exec(arn);
  return match?.[1];
}

function substituteDefinition(text: string, substitutions: unknown): string {
  if (!isRecord(substitutions)) throw new Error('DefinitionSubstitutions did not resolve to an object');
  return text.replace(/\$\{([^}]+)\}/g, (whole, name: string) => {
    if (!Object.hasOwn(substitutions, name)) return whole;
    const value = substitutions[name];
    return typeof value === 'string' ? value : JSON.stringify(value);
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Resolves CloudFormation intrinsic functions to fake values. */
class IntrinsicResolver {
  constructor(private readonly template: CloudFormationTemplate) {}

  resolve(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((item) => this.resolve(item));
    if (!isRecord(value)) return value;
    const keys = Object.keys(value);
    const [only] = keys;
    if (keys.length === 1 && only !== undefined && (only === 'Ref' || only.startsWith('Fn::'))) return this.intrinsic(only, value[only]);
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, this.resolve(item)]));
  }

  private intrinsic(name: string, argument: unknown): unknown {
    switch (name) {
      case 'Ref':
        return this.ref(asString(argument, 'Ref'));
      case 'Fn::GetAtt': {
        const [id, attribute] = typeof argument === 'string' ? splitOnce(argument, '.') : (this.resolve(argument) as unknown[]);
        return this.getAtt(asString(id, 'Fn::GetAtt'), asString(attribute, 'Fn::GetAtt'));
      }
      case 'Fn::Join': {
        const [delimiter, items] = asArray(argument, 'Fn::Join');
        const resolved = asArray(this.resolve(items), 'Fn::Join');
        return resolved.map((item) => asString(item, 'Fn::Join item')).join(asString(delimiter, 'Fn::Join delimiter'));
      }
      case 'Fn::Sub': {
        const [text, variables] = typeof argument === 'string' ? [argument, {}] : asArray(argument, 'Fn::Sub');
        return this.sub(asString(text, 'Fn::Sub'), isRecord(variables) ? (this.resolve(variables) as Record<string, unknown>) : {});
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
        throw new Error(`${name} is not supported by the local definition resolver`);
    }
  }

  private sub(text: string, variables: Record<string, unknown>): string {
    return text.replace(/\$\{(!?)([^}]+)\}/g, (_whole, literal: string, expression: string) => {
      if (literal === '!') return `\${${expression}}`;
      if (Object.hasOwn(variables, expression)) return asString(variables[expression], `Fn::Sub variable ${expression}`);
      const [id, attribute] = splitOnce(expression, '.');
      return asString(attribute === undefined ? this.ref(id) : this.getAtt(id, attribute), `Fn::Sub ${expression}`);
    });
  }

  private ref(id: string): unknown {
    const { partition, region, account, urlSuffix, stackName } = FAKE_ENVIRONMENT;
    const pseudo: Record<string, string> = {
      'AWS::Partition': partition,
      'AWS::Region': region,
      'AWS::AccountId': account,
      'AWS::URLSuffix': urlSuffix,
      'AWS::StackName': stackName,
      'AWS::StackId': `arn:${partition}:cloudformation:${region}:${account}:stack/${stackName}/00000000-0000-0000-0000-000000000000`,
    };
    const pseudoValue = pseudo[id];
    if (pseudoValue !== undefined) return pseudoValue;
    const parameter = this.template.Parameters?.[id];
    if (parameter !== undefined) {
      if (parameter.Default === undefined) throw new Error(`Ref to parameter "${id}" which has no Default`);
      return parameter.Default;
    }
    return this.fake(id, 'Ref');
  }

  private getAtt(id: string, attribute: string): string {
    return this.fake(id, attribute);
  }

  private fake(id: string, attribute: string): string {
    const resource = this.template.Resources?.[id];
    if (resource === undefined)
      throw new Error(`reference to "${id}", which is not a resource, parameter or pseudo parameter of the template`);
    const { partition, region, account, urlSuffix } = FAKE_ENVIRONMENT;
    const arn = (service: string, resourcePart: string, regional = true): string =>
      `arn:${partition}:${service}:${regional ? region : ''}:${account}:${resourcePart}`;
    // A resource given an explicit physical name (e.g. the poll loop's StateMachineName, from
    // which the poll Lambda builds its own state machine's ARN) is faked under that name.
    const named = (property: string): string => {
      const value = (resource.Properties as Record<string, unknown> | undefined)?.[property];
      return typeof value === 'string' ? value : id;
    };
    const stateMachineName = named('StateMachineName');
    const bucketName = named('BucketName').toLowerCase();
    const values: Record<string, Record<string, string>> = {
      'AWS::Lambda::Function': { Ref: id, Arn: fakeFunctionArn(id) },
      'AWS::SQS::Queue': {
        Ref: `https://sqs.${region}.${urlSuffix}/${account}/${id}`,
        Arn: arn('sqs', id),
        QueueName: id,
        QueueUrl: `https://sqs.${region}.${urlSuffix}/${account}/${id}`,
      },
      'AWS::DynamoDB::Table': {
        Ref: id,
        Arn: arn('dynamodb', `table/${id}`),
        StreamArn: arn('dynamodb', `table/${id}/stream/1970-01-01T00:00:00.000`),
      },
      'AWS::Events::EventBus': { Ref: id, Name: id, Arn: arn('events', `event-bus/${id}`) },
      'AWS::StepFunctions::StateMachine': {
        Ref: arn('states', `stateMachine:${stateMachineName}`),
        Arn: arn('states', `stateMachine:${stateMachineName}`),
        Name: stateMachineName,
      },
      'AWS::S3::Bucket': { Ref: bucketName, Arn: `arn:${partition}:s3:::${bucketName}`, DomainName: `${bucketName}.s3.${urlSuffix}` },
      'AWS::SecretsManager::Secret': {
        Ref: arn('secretsmanager', `secret:${id}-AbCdEf`),
        Id: arn('secretsmanager', `secret:${id}-AbCdEf`),
      },
      'AWS::Logs::LogGroup': { Ref: id, Arn: arn('logs', `log-group:${id}:*`) },
      'AWS::IAM::Role': { Ref: id, Arn: arn('iam', `role/${id}`, false), RoleId: `AROA${id.toUpperCase().slice(0, 17)}` },
      'AWS::SNS::Topic': { Ref: arn('sns', id), TopicArn: arn('sns', id), TopicName: id },
    };
    const value = values[resource.Type]?.[attribute];
    if (value === undefined)
      throw new Error(`cannot fake ${attribute === 'Ref' ? 'Ref' : `Fn::GetAtt ${attribute}`} of ${resource.Type} "${id}"`);
    return value;
  }
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + separator.length)];
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
