/**
 * The function roles' policies, evaluated without the local runtime: what each role's code
 * sends is allowed and the forbidden calls are denied (test/support/iam-policies.ts), and the
 * evaluation really decides: a stack with a needed action removed is reported denied, one
 * with a forbidden action added is reported allowed. test/e2e/iam.test.ts evaluates every
 * call the handlers actually make on the local runtime the same way.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { describe, expect, it } from 'vitest';
import { JOB_TABLE_ACCESS } from '../../lib/grants';
import { WaterflaiOrchestrator } from '../../lib/orchestrator';
import { WaterflaiOrchestratorStack } from '../../lib/orchestrator-stack';
import { FAKE_ENVIRONMENT, type CloudFormationTemplate } from '../../local/asl';
import type { RecordedSdkCall } from '../../local/runtime/sdk-recorder';
import {
  allowedPairs,
  evaluate,
  forbiddenCalls,
  FUNCTION_ROLES,
  iamRequestsOf,
  identityPolicies,
  subjectsOf,
  type Decision,
  type FunctionRoleName,
  type IamRequest,
  type IamSubjects,
  type PolicyDocument,
} from '../support/iam-policies';

const NO_BUNDLING = { 'aws:cdk:bundling-stacks': [] };

interface Synthesized {
  readonly stack: WaterflaiOrchestratorStack;
  readonly template: CloudFormationTemplate;
  readonly subjects: IamSubjects;
}

/** Synthesizes the stack as the local runtime does, after `change` (if any) was applied. */
function synthesize(change?: (stack: WaterflaiOrchestratorStack) => void): Synthesized {
  const app = new App({ context: NO_BUNDLING });
  const stack = new WaterflaiOrchestratorStack(app, FAKE_ENVIRONMENT.stackName);
  change?.(stack);
  const template = app.synth().getStackArtifact(stack.artifactId).template as CloudFormationTemplate;
  const o = stack.orchestrator;
  const functions: Record<FunctionRoleName, NodejsFunction> = {
    start: o.startFunction,
    poll: o.pollFunction,
    finish: o.finishFunction,
    reconcile: o.reconcileFunction,
    sweep: o.sweepFunction,
  };
  const ids = Object.fromEntries(
    FUNCTION_ROLES.map((role) => [role, Stack.of(o).getLogicalId(functions[role].node.defaultChild as lambda.CfnFunction)]),
  ) as Record<FunctionRoleName, string>;
  return { stack, template, subjects: subjectsOf(template, ids) };
}

async function decide(synthesized: Synthesized, role: FunctionRoleName, request: IamRequest): Promise<Decision> {
  const roleId = synthesized.subjects.roles[role];
  return evaluate(identityPolicies(synthesized.template, roleId), roleId, request);
}

/** What each role's code sends, as the recorder would see it (one representative call each). */
function expectedCalls(s: IamSubjects): Array<{ role: FunctionRoleName; call: RecordedSdkCall }> {
  const call = (service: string, command: string, resources: RecordedSdkCall['resources']): RecordedSdkCall => ({
    service,
    command,
    resources,
    outcome: 'ok',
  });
  const table = { TableName: s.tableName };
  const busName = s.eventBus.split('/').pop()!;
  const bucket = s.outputBucket.split(':::').pop()!;
  const queueUrl = (arn: string): string => `http://127.0.0.1:1/000000000000/${arn.split(':').pop()!}`;
  const calls: Array<{ role: FunctionRoleName; call: RecordedSdkCall }> = [];
  for (const role of FUNCTION_ROLES) {
    for (const action of JOB_TABLE_ACCESS[role].item) calls.push({ role, call: call('DynamoDB', action.replace('dynamodb:', ''), table) });
    for (const index of JOB_TABLE_ACCESS[role].queriedIndexes)
      calls.push({ role, call: call('DynamoDB', 'Query', { ...table, IndexName: index }) });
  }
  for (const role of ['start', 'finish', 'reconcile', 'sweep'] as const)
    calls.push({ role, call: call('EventBridge', 'PutEvents', { EventBusNames: [busName] }) });
  for (const role of ['start', 'poll', 'reconcile', 'sweep'] as const)
    calls.push({ role, call: call('SecretsManager', 'GetSecretValue', { SecretId: s.apiKeySecret }) });
  calls.push({ role: 'start', call: call('SFN', 'StartExecution', { stateMachineArn: s.stateMachine, name: 'job-1' }) });
  calls.push({ role: 'poll', call: call('SFN', 'StartExecution', { stateMachineArn: s.stateMachine, name: 'job-1~g1' }) });
  calls.push({ role: 'start', call: call('SQS', 'SendMessage', { QueueUrl: queueUrl(s.deadLetterQueue) }) });
  calls.push({ role: 'start', call: call('SQS', 'ChangeMessageVisibility', { QueueUrl: queueUrl(s.intakeQueue) }) });
  calls.push({ role: 'poll', call: call('S3', 'PutObject', { Bucket: bucket, Key: 'outputs/job-1/exec-1.json' }) });
  return calls;
}

describe('the function roles of the synthesized stack', () => {
  const synthesized = synthesize();

  it("allow what each role's code sends", async () => {
    // Act
    const results = await Promise.all(
      expectedCalls(synthesized.subjects).flatMap(({ role, call }) =>
        iamRequestsOf(call).map(async (request) => ({ role, ...request, decision: await decide(synthesized, role, request) })),
      ),
    );
    // Assess
    expect(results.length).toBeGreaterThanOrEqual(25);
    expect(results.filter((result) => result.decision !== 'Allowed')).toEqual([]);
  });

  it('deny every forbidden call', async () => {
    // Act
    const forbidden = forbiddenCalls(synthesized.subjects);
    const results = await Promise.all(forbidden.map(async (call) => ({ ...call, decision: await decide(synthesized, call.role, call) })));
    // Assess
    expect(forbidden.length).toBeGreaterThanOrEqual(100);
    expect(results.filter((result) => result.decision === 'Allowed')).toEqual([]);
  });

  it('grant no table action beyond GetItem, PutItem and UpdateItem on the table, and Query on named indexes', () => {
    const { subjects } = synthesized;
    expect(subjects.indexes).toContain(subjects.statusIndex);
    for (const role of FUNCTION_ROLES) {
      const pairs = allowedPairs(identityPolicies(synthesized.template, subjects.roles[role])).filter((pair) =>
        pair.action.startsWith('dynamodb:'),
      );
      const onTable = pairs.filter((pair) => pair.resource === subjects.table).map((pair) => pair.action);
      const onIndexes = pairs.filter((pair) => pair.resource !== subjects.table);
      expect(
        onTable.every((action) => ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'].includes(action)),
        `${role}: ${onTable.join(', ')}`,
      ).toBe(true);
      for (const pair of onIndexes) {
        expect(pair.action, role).toBe('dynamodb:Query');
        expect(subjects.indexes, role).toContain(pair.resource); // a named index of the table, no wildcard
      }
      expect(onIndexes.length > 0, role).toBe(role === 'sweep');
    }
  });
});

describe('customer-managed keys', () => {
  it('let every role use the table key, and the secret key only through Secrets Manager for the roles that read the API key', () => {
    // Prepare
    const stack = new Stack(new App({ context: NO_BUNDLING }), 'Keys');
    const tableKey = new kms.Key(stack, 'TableKey');
    const secretKey = new kms.Key(stack, 'SecretKey');
    const o = new WaterflaiOrchestrator(stack, 'Orchestrator', {
      tableProps: { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED, encryptionKey: tableKey },
      apiKeySecret: new secretsmanager.Secret(stack, 'Key', { encryptionKey: secretKey }),
    });
    // Act
    const template = Template.fromStack(stack);
    const roleId = (role: iam.IRole): string => stack.getLogicalId(role.node.defaultChild as iam.CfnRole);
    const policyOf = (role: iam.IRole): string =>
      JSON.stringify(
        Object.values(template.findResources('AWS::IAM::Policy')).find((policy) =>
          JSON.stringify(policy.Properties.Roles).includes(`"${roleId(role)}"`),
        )?.Properties.PolicyDocument,
      );
    const tableKeyId = stack.getLogicalId(tableKey.node.defaultChild as kms.CfnKey);
    const secretKeyPolicy = JSON.stringify(
      template.toJSON().Resources[stack.getLogicalId(secretKey.node.defaultChild as kms.CfnKey)].Properties.KeyPolicy,
    );
    // Assess
    const roles: Record<FunctionRoleName, iam.IRole> = {
      start: o.intake.startFunctionRole,
      poll: o.pollLoop.pollFunctionRole,
      finish: o.pollLoop.finishFunctionRole,
      reconcile: o.lifecycle.reconcileFunctionRole,
      sweep: o.lifecycle.sweepFunctionRole,
    };
    for (const [name, role] of Object.entries(roles)) {
      expect(policyOf(role), name).toMatch(new RegExp(`"kms:GenerateDataKey\\*".*${tableKeyId}`));
      // The secret key's own policy lets the role decrypt through Secrets Manager (kms:ViaService), as grantRead would.
      expect(secretKeyPolicy.includes(`"${roleId(role)}"`), name).toBe(name !== 'finish');
    }
    expect(secretKeyPolicy).toContain('kms:ViaService');
  });
});

describe('the evaluation decides', () => {
  it("reports a needed action removed from a role's policy as denied", async () => {
    // Prepare: the poll role's policy without dynamodb:UpdateItem
    const synthesized = synthesize();
    const request = { action: 'dynamodb:UpdateItem', resource: synthesized.subjects.table };
    expect(await decide(synthesized, 'poll', request)).toBe('Allowed');
    const roleId = synthesized.subjects.roles.poll;
    const policies = identityPolicies(synthesized.template, roleId).map(({ name, policy }) => ({
      name,
      policy: withoutAction(policy, 'dynamodb:UpdateItem'),
    }));
    // Act
    const decision = await evaluate(policies, roleId, request);
    // Assess
    expect(decision).toBe('ImplicitlyDenied');
  });

  it('reports a forbidden action added to a role (grantReadWriteData back on finish) as allowed', async () => {
    // Prepare
    const widened = synthesize((stack) => stack.orchestrator.table.grantReadWriteData(stack.orchestrator.finishFunction));
    // Act
    const allowed: string[] = [];
    for (const call of forbiddenCalls(widened.subjects).filter((candidate) => candidate.role === 'finish')) {
      if ((await decide(widened, call.role, call)) === 'Allowed') allowed.push(`${call.action} ${call.resource.split(':').pop()!}`);
    }
    // Assess
    expect(allowed).toEqual(
      expect.arrayContaining([
        `dynamodb:DeleteItem table/${widened.subjects.tableName}`,
        `dynamodb:BatchWriteItem table/${widened.subjects.tableName}`,
        `dynamodb:Scan table/${widened.subjects.tableName}`,
        `dynamodb:PutItem table/${widened.subjects.tableName}`,
      ]),
    );
  });

  it('refuses to evaluate a request it cannot map, instead of calling it denied', async () => {
    const synthesized = synthesize();
    await expect(decide(synthesized, 'poll', { action: 'dynamodb:NoSuchAction', resource: synthesized.subjects.table })).rejects.toThrow(
      /iam-simulate refused/,
    );
    expect(() => iamRequestsOf({ service: 'Lambda', command: 'Invoke', resources: {}, outcome: 'ok' })).toThrow(/no IAM mapping/);
    expect(() => iamRequestsOf({ service: 'DynamoDB', command: 'TransactWriteItems', resources: {}, outcome: 'ok' })).toThrow(
      /names its tables per item/,
    );
  });

  it("maps recorded calls to the template's ARNs (index queries to the index, queue URLs by name, default buses)", () => {
    const { subjects } = synthesize();
    expect(
      iamRequestsOf({
        service: 'DynamoDB',
        command: 'Query',
        resources: { TableName: subjects.tableName, IndexName: 'by-status' },
        outcome: 'ok',
      }),
    ).toEqual([{ action: 'dynamodb:Query', resource: subjects.statusIndex }]);
    expect(
      iamRequestsOf({
        service: 'SQS',
        command: 'SendMessageBatch',
        resources: { QueueUrl: `http://127.0.0.1:9/000000000000/${subjects.deadLetterQueue.split(':').pop()!}` },
        outcome: 'ok',
      }),
    ).toEqual([{ action: 'sqs:SendMessage', resource: subjects.deadLetterQueue }]);
    expect(iamRequestsOf({ service: 'EventBridge', command: 'PutEvents', resources: {}, outcome: 'ok' })).toEqual([
      { action: 'events:PutEvents', resource: `arn:aws:events:${FAKE_ENVIRONMENT.region}:${FAKE_ENVIRONMENT.account}:event-bus/default` },
    ]);
  });
});

function withoutAction(policy: PolicyDocument, action: string): PolicyDocument {
  return {
    ...policy,
    Statement: policy.Statement.flatMap((statement) => {
      const actions = [statement.Action ?? []].flat().filter((candidate) => candidate !== action);
      return actions.length === 0 ? [] : [{ ...statement, Action: actions }];
    }),
  };
}
