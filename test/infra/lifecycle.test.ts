import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { beforeAll, describe, expect, it } from 'vitest';
import { JobLifecycle, LIFECYCLE_DEFAULTS, type JobLifecycleProps } from '../../lib/lifecycle';
import { WaterflaiOrchestratorStack } from '../../lib/orchestrator-stack';
import type { CloudFormationTemplate } from '../../local/asl';
import { readRuntimeModel } from '../../local/runtime/template';

const NO_BUNDLING = { 'aws:cdk:bundling-stacks': [] };

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

/** A JobLifecycle on its own, watching a one-state machine. */
function lifecycleStack(props: Partial<JobLifecycleProps> = {}): { stack: Stack; lifecycle: JobLifecycle } {
  const stack = new Stack(new App({ context: NO_BUNDLING }), 'Lifecycle');
  const stateMachine = new sfn.StateMachine(stack, 'PollLoop', {
    definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'Done')),
  });
  const lifecycle = new JobLifecycle(stack, 'Lifecycle', { stateMachine, environment: { JOB_TABLE_NAME: 'jobs' }, ...props });
  return { stack, lifecycle };
}

function logicalId(stack: Stack, construct: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(construct.node.defaultChild as Parameters<Stack['getLogicalId']>[0]);
}

describe('JobLifecycle: durable reconciliation through an SQS queue', () => {
  let stack: Stack;
  let lifecycle: JobLifecycle;
  let template: Template;
  let queueId: string;
  let deadLetterId: string;
  let functionId: string;
  let ruleId: string;

  beforeAll(() => {
    ({ stack, lifecycle } = lifecycleStack());
    template = Template.fromStack(stack);
    queueId = logicalId(stack, lifecycle.reconcileQueue);
    deadLetterId = logicalId(stack, lifecycle.reconcileDeadLetterQueue);
    functionId = logicalId(stack, lifecycle.reconcileFunction);
    ruleId = logicalId(stack, lifecycle.statusChangeRule);
  });

  it('targets the reconcile queue from the status-change rule, with a dead-letter queue for undeliverable events', () => {
    const rule = template.findResources('AWS::Events::Rule')[ruleId] as Resources[string];
    expect(rule.Properties.Targets).toEqual([
      {
        Id: expect.any(String),
        Arn: { 'Fn::GetAtt': [queueId, 'Arn'] },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [deadLetterId, 'Arn'] } },
        RetryPolicy: { MaximumRetryAttempts: 185, MaximumEventAgeInSeconds: 24 * 3600 },
      },
    ]);
  });

  it('never makes the reconcile function a rule target (no asynchronous invocation, no Lambda permission for EventBridge)', () => {
    const rules = Object.values(template.findResources('AWS::Events::Rule') as Resources);
    const targetArns = JSON.stringify(rules.map((rule) => rule.Properties.Targets));
    expect(targetArns).not.toContain(functionId);
    template.resourcePropertiesCountIs(
      'AWS::Lambda::Permission',
      { FunctionName: Match.objectLike({ 'Fn::GetAtt': [functionId, 'Arn'] }) },
      0,
    );
  });

  it('feeds the reconcile function from the queue with partial batch responses and small batches', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [queueId, 'Arn'] },
      FunctionName: { Ref: functionId },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: LIFECYCLE_DEFAULTS.reconcileBatchSize,
      ScalingConfig: { MaximumConcurrency: LIFECYCLE_DEFAULTS.reconcileMaxConcurrency },
    });
    expect(LIFECYCLE_DEFAULTS.reconcileBatchSize).toBeLessThanOrEqual(10);
  });

  it('dead-letters a record after 10 receives, with a visibility timeout of 6x the 60 s function timeout', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Timeout: 60,
      Handler: 'index.handler',
      Description: Match.stringLikeRegexp('stopped, timed out or failed'),
    });
    const queue = (template.findResources('AWS::SQS::Queue') as Resources)[queueId]!;
    expect(queue.Properties).toMatchObject({
      VisibilityTimeout: 360,
      SqsManagedSseEnabled: true,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [deadLetterId, 'Arn'] }, maxReceiveCount: 10 },
    });
    const deadLetter = (template.findResources('AWS::SQS::Queue') as Resources)[deadLetterId]!;
    expect(deadLetter.Properties).toMatchObject({ MessageRetentionPeriod: 14 * 24 * 3600, SqsManagedSseEnabled: true });
    expect(deadLetter.Properties.RedrivePolicy).toBeUndefined();
  });

  it('lets only this rule send to the queues (events.amazonaws.com with aws:SourceArn), over TLS only', () => {
    const policies = Object.values(template.findResources('AWS::SQS::QueuePolicy') as Resources);
    for (const id of [queueId, deadLetterId]) {
      const policy = policies.find((candidate) => JSON.stringify(candidate.Properties.Queues) === JSON.stringify([{ Ref: id }]));
      expect(policy, `the policy of ${id}`).toBeDefined();
      const statements = (policy!.Properties.PolicyDocument as { Statement: Array<Record<string, unknown>> }).Statement;
      expect(statements).toContainEqual(
        expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
      );
      const allows = statements.filter((statement) => statement.Effect === 'Allow');
      expect(allows.length).toBeGreaterThan(0);
      for (const allow of allows) {
        expect(allow.Principal).toEqual({ Service: 'events.amazonaws.com' });
        expect(allow.Condition).toEqual({ ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [ruleId, 'Arn'] } } });
        expect([allow.Action].flat()).toContain('sqs:SendMessage');
      }
    }
  });

  it('lets the reconcile function consume the reconcile queue', () => {
    const policy = Object.entries(template.findResources('AWS::IAM::Policy')).find(([id]) => id.includes('ReconcileFunctionRole'))?.[1];
    const statements = (policy!.Properties.PolicyDocument as { Statement: Array<{ Action: string | string[]; Resource: unknown }> })
      .Statement;
    const consume = statements.find((statement) => [statement.Action].flat().includes('sqs:ReceiveMessage'));
    expect(consume?.Resource).toEqual({ 'Fn::GetAtt': [queueId, 'Arn'] });
    expect([consume?.Action].flat()).toEqual(
      expect.arrayContaining(['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility']),
    );
  });

  it('retains both queues by default', () => {
    template.allResources('AWS::SQS::Queue', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });
});

describe('JobLifecycle settings', () => {
  it('keeps the visibility timeout at 6x an overridden function timeout', () => {
    const { stack } = lifecycleStack({ functionProps: { timeout: Duration.seconds(120) } });
    Template.fromStack(stack).hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 720, RedrivePolicy: Match.anyValue() });
  });

  it('applies the receive count, queue overrides and removal policy', () => {
    const { stack } = lifecycleStack({
      reconcileMaxReceiveCount: 3,
      reconcileQueueProps: { retentionPeriod: Duration.days(7), visibilityTimeout: Duration.minutes(10) },
      reconcileDeadLetterQueueProps: { retentionPeriod: Duration.days(10) },
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 600,
      MessageRetentionPeriod: 7 * 86_400,
      RedrivePolicy: Match.objectLike({ maxReceiveCount: 3 }),
    });
    template.hasResourceProperties('AWS::SQS::Queue', { MessageRetentionPeriod: 10 * 86_400 });
    template.allResources('AWS::SQS::Queue', { DeletionPolicy: 'Delete' });
  });

  it.each([0, 1001, 2.5])('refuses reconcileMaxReceiveCount %s', (count) => {
    expect(() => lifecycleStack({ reconcileMaxReceiveCount: count })).toThrow(/reconcileMaxReceiveCount must be an integer from 1 to 1000/);
  });

  it('refuses a visibility timeout under 6x the function timeout', () => {
    expect(() => lifecycleStack({ reconcileQueueProps: { visibilityTimeout: Duration.seconds(300) } })).toThrow(/at least 360 s/);
  });

  it('refuses a function timeout whose 6x exceeds the SQS maximum visibility timeout', () => {
    expect(() => lifecycleStack({ functionProps: { timeout: Duration.hours(3) } })).toThrow(/exceeds the SQS maximum of 43200 s/);
  });
});

describe('the local runtime model of the orchestrator template', () => {
  it('finds the reconcile queue, its event source mapping, and the rule that targets the queue', () => {
    // Prepare
    const stack = new WaterflaiOrchestratorStack(new App({ context: NO_BUNDLING }), 'Model');
    const template = Template.fromStack(stack).toJSON() as CloudFormationTemplate;

    // Act
    const model = readRuntimeModel(template);

    // Assess
    const reconcileQueue = model.reconcileQueue;
    expect(reconcileQueue).toMatchObject({
      logicalId: expect.stringMatching(/ReconcileQueue/),
      maxReceiveCount: 10,
      attributes: { VisibilityTimeout: '360' },
      deadLetterQueue: {
        logicalId: expect.stringMatching(/ReconcileDeadLetterQueue/),
        attributes: { MessageRetentionPeriod: String(14 * 86_400) },
      },
      eventSource: { batchSize: 5, maxConcurrency: 2, reportBatchItemFailures: true, maxBatchingWindowSeconds: 0 },
    });
    expect(model.functions.reconcile?.logicalId).toMatch(/ReconcileFunction/);
    expect(model.intakeQueue.logicalId).toMatch(/IntakeQueue/);
    expect(model.functions.start.logicalId).toMatch(/StartFunction/);
    const statusRule = model.rules.find((rule) => rule.eventPattern !== undefined);
    expect(statusRule?.targets).toEqual([
      {
        kind: 'queue',
        id: expect.any(String),
        role: 'reconcile',
        queueLogicalId: reconcileQueue!.logicalId,
        deadLetterQueueLogicalId: reconcileQueue!.deadLetterQueue.logicalId,
        maximumRetryAttempts: 185,
        maximumEventAgeSeconds: 86_400,
      },
    ]);
    const schedule = model.rules.find((rule) => rule.scheduleExpression !== undefined);
    expect(schedule?.targets).toEqual([{ kind: 'function', id: expect.any(String), role: 'sweep', maximumRetryAttempts: 0 }]);
    expect(model.otherFunctions).toEqual([]);
  });
});
