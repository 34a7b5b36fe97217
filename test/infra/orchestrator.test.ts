import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as events from 'aws-cdk-lib/aws-events';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { beforeAll, describe, expect, it } from 'vitest';
import { ENV, JOB_TABLE, STATE_NAME } from '../../lambdas/contract/constants';
import { STATUS_INDEX_PROJECTED_ATTRIBUTES } from '../../lib/job-table';
import { WaterflaiOrchestrator, type WaterflaiOrchestratorProps } from '../../lib/orchestrator';
import { OUTPUT_ID, WaterflaiOrchestratorStack } from '../../lib/orchestrator-stack';

const NO_BUNDLING = { 'aws:cdk:bundling-stacks': [] };

/** What an operator would have in their shell while deploying; it must never reach the template. */
const OPERATOR_KEY_MARKER = 'wf-live-OPERATOR-KEY-MARKER-7f3c9d';

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

function lambdaFunctions(template: Template): Resources {
  return template.findResources('AWS::Lambda::Function') as Resources;
}

function newStackWithOrchestrator(props: WaterflaiOrchestratorProps): Stack {
  const stack = new Stack(new App({ context: NO_BUNDLING }), 'Validation');
  new WaterflaiOrchestrator(stack, 'Orchestrator', props);
  return stack;
}

describe('WaterflaiOrchestratorStack with default settings', () => {
  let stack: WaterflaiOrchestratorStack;
  let template: Template;
  let templateText: string;

  beforeAll(() => {
    // Prepare: an operator who exported the key in the shell (the local runtime reads it).
    const saved = process.env.WATERFLAI_API_KEY;
    process.env.WATERFLAI_API_KEY = OPERATOR_KEY_MARKER;
    try {
      // Act
      stack = new WaterflaiOrchestratorStack(new App({ context: NO_BUNDLING }), 'Test');
      template = Template.fromStack(stack);
      templateText = JSON.stringify(template.toJSON());
    } finally {
      if (saved === undefined) delete process.env.WATERFLAI_API_KEY;
      else process.env.WATERFLAI_API_KEY = saved;
    }
  });

  it('has an encrypted, TLS-only intake queue with a dead-letter queue after 5 receives', () => {
    // Assess: the intake queue and its DLQ, the reconcile queue and its DLQ
    template.resourceCountIs('AWS::SQS::Queue', 4);
    template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 360, // 6 x the 60 s start function timeout
      MaximumMessageSize: 262_144, // bodies the start function would refuse are refused at send time
      SqsManagedSseEnabled: true,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('DeadLetterQueue'), 'Arn'] }, maxReceiveCount: 5 },
    });
    template.hasResourceProperties('AWS::SQS::Queue', { MessageRetentionPeriod: 14 * 24 * 3600, SqsManagedSseEnabled: true });
    const policies = template.findResources('AWS::SQS::QueuePolicy');
    expect(Object.keys(policies)).toHaveLength(4);
    for (const policy of Object.values(policies)) {
      expect(JSON.stringify(policy)).toContain('"aws:SecureTransport":"false"');
    }
  });

  it('retains the queues and the table by default', () => {
    template.allResources('AWS::SQS::Queue', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    template.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Retain' });
    template.allResources('AWS::Logs::LogGroup', { DeletionPolicy: 'Retain' });
  });

  it('consumes the intake queue with partial batch responses, batch 10 and max concurrency 5', () => {
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 2); // the intake queue and the reconcile queue
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 10,
      ScalingConfig: { MaximumConcurrency: 5 },
      EventSourceArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('IntakeQueue'), 'Arn'] },
      FunctionName: { Ref: Match.stringLikeRegexp('StartFunction') },
    });
  });

  it('has one STANDARD state machine with full logging (no execution data), X-Ray, and a timeout of 24 h + 1 h', () => {
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 1);
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: false },
      TracingConfiguration: { Enabled: true },
    });
    expect(templateText).toContain(`\\"TimeoutSeconds\\":${25 * 3600}`);
  });

  it('has the job table: on demand, PITR, TTL, AWS-managed encryption and the status index', () => {
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: JOB_TABLE.PARTITION_KEY, KeyType: 'HASH' }],
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: JOB_TABLE.TTL_ATTRIBUTE, Enabled: true },
      SSESpecification: { SSEEnabled: true },
      GlobalSecondaryIndexes: [
        {
          IndexName: JOB_TABLE.STATUS_INDEX,
          KeySchema: [
            { AttributeName: JOB_TABLE.STATUS_INDEX_PARTITION_KEY, KeyType: 'HASH' },
            { AttributeName: JOB_TABLE.STATUS_INDEX_SORT_KEY, KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: [...STATUS_INDEX_PROJECTED_ATTRIBUTES] },
        },
        {
          // Sparse: only jobs with executions still to cancel carry its key.
          IndexName: JOB_TABLE.PENDING_CANCEL_INDEX,
          KeySchema: [
            { AttributeName: JOB_TABLE.PENDING_CANCEL_INDEX_PARTITION_KEY, KeyType: 'HASH' },
            { AttributeName: JOB_TABLE.PENDING_CANCEL_INDEX_SORT_KEY, KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'KEYS_ONLY' },
        },
      ],
    });
  });

  it('creates a custom event bus and a placeholder API key secret', () => {
    template.resourceCountIs('AWS::Events::EventBus', 1);
    template.resourceCountIs('AWS::SecretsManager::Secret', 1);
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Description: Match.stringLikeRegexp('aws secretsmanager put-secret-value --secret-id'),
      GenerateSecretString: Match.anyValue(),
      SecretString: Match.absent(),
    });
  });

  it('runs the five functions on nodejs22.x or newer, on arm64, with the planned memory and timeouts', () => {
    const functions = Object.entries(lambdaFunctions(template));
    expect(functions).toHaveLength(5);
    for (const [id, fn] of functions) {
      const runtime = String(fn.Properties.Runtime);
      expect(runtime).toMatch(/^nodejs\d+\.x$/);
      expect(Number(/^nodejs(\d+)/.exec(runtime)?.[1])).toBeGreaterThanOrEqual(22);
      expect(fn.Properties.Architectures).toEqual(['arm64']);
      // The poll function mostly waits on the network (status reads, the stream finish): 128 MB.
      expect(fn.Properties.MemorySize).toBe(id.includes('PollFunction') ? 128 : 256);
      expect(fn.Properties.Handler).toBe('index.handler');
    }
    // The poll function's 10 minutes leave room for listening on the execution's stream.
    const poll = functions.find(([id]) => id.includes('PollFunction'));
    expect(Number(poll?.[1].Properties.Timeout)).toBe(600);
    expect(functions.map(([, fn]) => Number(fn.Properties.Timeout)).sort((a, b) => a - b)).toEqual([30, 60, 60, 300, 600]);
  });

  it('gives each function its own log group with one month retention', () => {
    template.resourceCountIs('AWS::Logs::LogGroup', 6); // 5 functions + the state machine
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
    for (const fn of Object.values(lambdaFunctions(template))) {
      expect(fn.Properties.LoggingConfig).toEqual({ LogGroup: { Ref: expect.stringMatching(/LogGroup/) } });
    }
  });

  it('sets exactly the planned environment variables; the API key is passed as the secret ARN only', () => {
    const common = [
      ENV.WATERFLAI_BASE_URL,
      ENV.WATERFLAI_API_KEY_SECRET_ID,
      ENV.JOB_TABLE_NAME,
      ENV.EVENT_BUS_NAME,
      ENV.MAX_JOB_DURATION_SECONDS,
      ENV.POLL_INTERVAL_SECONDS,
      ENV.POLL_MIN_SECONDS,
      ENV.POLL_MAX_SECONDS,
      ENV.JOB_RETENTION_DAYS,
      ENV.MAX_INLINE_OUTPUT_BYTES,
      ENV.OUTPUT_BUCKET_NAME,
      ENV.AUTH_GRACE_SECONDS,
      ENV.SWEEP_GRACE_SECONDS,
      'NODE_OPTIONS',
      'POWERTOOLS_SERVICE_NAME',
    ];
    const secretId = Object.keys(template.findResources('AWS::SecretsManager::Secret'))[0];
    const byName = Object.entries(lambdaFunctions(template));
    const start = byName.find(([id]) => id.includes('StartFunction'));
    const poll = byName.find(([id]) => id.includes('PollFunction'));
    expect(start).toBeDefined();
    expect(poll).toBeDefined();

    for (const [id, fn] of byName) {
      const variables = (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      const expected =
        id === start?.[0]
          ? [...common, ENV.STATE_MACHINE_ARN, ENV.DLQ_URL, ENV.INTAKE_QUEUE_URL, ENV.MAX_RECEIVE_COUNT]
          : id === poll?.[0]
            ? [...common, ENV.STATE_MACHINE_ARN, ENV.MAX_POLLS_PER_EXECUTION]
            : common;
      expect(Object.keys(variables).sort()).toEqual([...expected].sort());
      expect(variables[ENV.WATERFLAI_API_KEY_SECRET_ID]).toEqual({ Ref: secretId });
      expect(variables[ENV.WATERFLAI_BASE_URL]).toBe('https://api.waterflai.ai');
      expect(variables[ENV.MAX_JOB_DURATION_SECONDS]).toBe('86400');
      expect(variables[ENV.POLL_INTERVAL_SECONDS]).toBe('10');
      expect(variables[ENV.POLL_MIN_SECONDS]).toBe('1');
      expect(variables[ENV.POLL_MAX_SECONDS]).toBe('600');
      expect(variables[ENV.JOB_RETENTION_DAYS]).toBe('90');
      expect(variables.NODE_OPTIONS).toBe('--enable-source-maps');
    }
    const startVariables = (start![1].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(startVariables[ENV.INTAKE_QUEUE_URL]).toEqual({ Ref: expect.stringMatching(/IntakeQueue/) });
    expect(startVariables[ENV.DLQ_URL]).toEqual({ Ref: expect.stringMatching(/DeadLetterQueue/) });
    expect(startVariables[ENV.STATE_MACHINE_ARN]).toEqual({ Ref: expect.stringMatching(/StateMachine/) });
    expect(startVariables[ENV.MAX_RECEIVE_COUNT]).toBe('5'); // the same value as the redrive policy
    const pollVariables = (poll![1].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(pollVariables[ENV.MAX_POLLS_PER_EXECUTION]).toBe('1500');
    // The poll function starts successor executions of its own state machine, by a name-derived ARN.
    const stateMachine = Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0];
    expect(JSON.stringify(pollVariables[ENV.STATE_MACHINE_ARN])).toContain(
      `stateMachine:${String(stateMachine?.Properties.StateMachineName)}`,
    );
  });

  it.each([
    ['start-execution', 'StartFunction'],
    ['poll', 'PollFunction'],
    ['finish', 'FinishFunction'],
    ['reconcile', 'ReconcileFunction'],
    ['sweep', 'SweepFunction'],
  ])('sets every variable the %s handler requires', (handlerDir, functionId) => {
    // Prepare: the handler's own requireEnv(ENV.X) calls (the contract with the Lambda code).
    const source = readFileSync(fileURLToPath(new URL(`../../lambdas/${handlerDir}/handler.ts`, import.meta.url)), 'utf8');
    const required = [...source.matchAll(/requireEnv\(ENV\.([A-Z_]+)\)/g)].map((match) => ENV[match[1] as keyof typeof ENV]);
    if (/waterflaiClientFromEnv\(/.test(source)) required.push(ENV.WATERFLAI_BASE_URL, ENV.WATERFLAI_API_KEY_SECRET_ID);
    const fn = Object.entries(lambdaFunctions(template)).find(([id]) => id.includes(functionId))?.[1];
    // Assess
    const variables = Object.keys((fn!.Properties.Environment as { Variables: Record<string, unknown> }).Variables);
    expect(required.length).toBeGreaterThan(0);
    for (const name of required) expect(variables, `${handlerDir} requires ${name}`).toContain(name);
  });

  it('never puts the API key value in the template: no marker, no secret value, no dynamic reference', () => {
    expect(templateText).not.toContain(OPERATOR_KEY_MARKER);
    expect(templateText).not.toMatch(/"SecretString"/);
    expect(templateText).not.toMatch(/resolve:secretsmanager/);
    expect(templateText).not.toMatch(/"[A-Z_]*API_KEY"\s*:/); // no WATERFLAI_API_KEY-style variable
  });

  it('grants no IAM action with a wildcard', () => {
    const policies = template.findResources('AWS::IAM::Policy');
    const statements = Object.values(policies).flatMap(
      (policy) => (policy.Properties as { PolicyDocument: { Statement: Array<{ Action: string | string[] }> } }).PolicyDocument.Statement,
    );
    expect(statements.length).toBeGreaterThan(10);
    const actions = statements.flatMap((statement) => [statement.Action].flat());
    expect(actions.filter((action) => action.includes('*'))).toEqual([]);
    template.resourcePropertiesCountIs('AWS::IAM::Role', { ManagedPolicyArns: Match.anyValue() }, 0);
  });

  it('grants each function only what it needs', () => {
    const policyOf = (fragment: string): string => {
      const entry = Object.entries(template.findResources('AWS::IAM::Policy')).find(([id]) => id.includes(fragment));
      expect(entry, `policy ${fragment}`).toBeDefined();
      return JSON.stringify(entry?.[1]);
    };
    const start = policyOf('StartFunctionRole');
    const poll = policyOf('PollFunctionRole');
    const finish = policyOf('FinishFunctionRole');
    for (const action of [
      'states:StartExecution',
      'events:PutEvents',
      'sqs:SendMessage',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
      'secretsmanager:GetSecretValue',
    ]) {
      expect(start).toContain(action);
    }
    // Only the actions the code sends (lib/grants.ts; test/e2e/iam.test.ts proves it by evaluation).
    for (const fragment of ['StartFunctionRole', 'PollFunctionRole', 'FinishFunctionRole', 'ReconcileFunctionRole', 'SweepFunctionRole']) {
      expect(policyOf(fragment), fragment).not.toMatch(
        /dynamodb:(DeleteItem|BatchWriteItem|BatchGetItem|Scan|DescribeTable|ConditionCheckItem)|secretsmanager:DescribeSecret|\/index\/\*/,
      );
    }
    expect(start).not.toContain('dynamodb:Query');
    expect(poll).not.toContain('dynamodb:PutItem');
    expect(poll).toContain('dynamodb:UpdateItem');
    expect(poll).toContain('secretsmanager:GetSecretValue');
    expect(poll).not.toContain('events:PutEvents');
    expect(poll).toContain('states:StartExecution'); // successor executions (continue-as-new)
    expect(poll).toContain('s3:PutObject'); // large outputs
    expect(poll).not.toMatch(/s3:(Get|Delete|List)/);
    expect(finish).toContain('events:PutEvents');
    expect(finish).not.toContain('secretsmanager:GetSecretValue');
    expect(finish).not.toContain('states:StartExecution');
    expect(finish).not.toContain('sqs:SendMessage');
    expect(finish).not.toContain('dynamodb:PutItem');
    for (const fragment of ['ReconcileFunctionRole', 'SweepFunctionRole']) {
      const lifecycle = policyOf(fragment);
      for (const action of ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'events:PutEvents', 'secretsmanager:GetSecretValue'])
        expect(lifecycle).toContain(action);
      expect(lifecycle).not.toContain('states:StartExecution');
      expect(lifecycle).not.toContain('dynamodb:PutItem');
    }
    expect(policyOf('ReconcileFunctionRole')).not.toContain('dynamodb:Query');
    expect(policyOf('SweepFunctionRole')).toContain('dynamodb:Query'); // the by-status index only
    expect(policyOf('SweepFunctionRole')).toContain('/index/by-status');
  });

  it('hands a job over to a successor execution before the history limit: the Choice ends the execution on $.handed_over', () => {
    const definition = JSON.stringify(
      Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0]?.Properties.DefinitionString,
    );
    expect(definition).toContain(STATE_NAME.HANDED_OVER);
    expect(definition).toContain('handed_over');
  });

  it('stores large outputs in an encrypted, SSL-only, private bucket whose objects expire with the job records', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: 90, Status: 'Enabled' })]) },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      },
    });
  });

  it("routes the poll loop's ABORTED, TIMED_OUT and FAILED executions to the reconcile queue, and sweeps every 5 minutes", () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED', 'TIMED_OUT', 'FAILED'], stateMachineArn: [{ Ref: Match.stringLikeRegexp('StateMachine') }] },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('ReconcileQueue'), 'Arn'] } })],
    });
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(5 minutes)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('SweepFunction'), 'Arn'] } })],
    });
  });

  it('exports the operator outputs under stable ids', () => {
    const outputs = template.findOutputs('*');
    expect(Object.keys(outputs).sort()).toEqual(Object.values(OUTPUT_ID).sort());
    template.hasOutput(OUTPUT_ID.INTAKE_QUEUE_URL, { Value: { Ref: Match.stringLikeRegexp('IntakeQueue') } });
    template.hasOutput(OUTPUT_ID.DEAD_LETTER_QUEUE_URL, { Value: { Ref: Match.stringLikeRegexp('DeadLetterQueue') } });
    template.hasOutput(OUTPUT_ID.EVENT_BUS_NAME, { Value: { Ref: Match.stringLikeRegexp('Bus') } });
    template.hasOutput(OUTPUT_ID.JOB_TABLE_NAME, { Value: { Ref: Match.stringLikeRegexp('JobTable') } });
    template.hasOutput(OUTPUT_ID.STATE_MACHINE_ARN, { Value: { Ref: Match.stringLikeRegexp('StateMachine') } });
  });

  it('no longer warns about the execution history limit: long jobs hand over to successor executions', () => {
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('history events'))).toEqual([]);
  });
});

describe('WaterflaiOrchestrator with an existing bus and secret', () => {
  const busArn = 'arn:aws:events:eu-west-1:111111111111:event-bus/shared-outcomes';
  const secretArn = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:waterflai/api-key-AbCdEf';
  let template: Template;
  let stack: Stack;

  beforeAll(() => {
    // Prepare
    stack = new Stack(new App({ context: NO_BUNDLING }), 'Existing');
    const eventBus = events.EventBus.fromEventBusArn(stack, 'Bus', busArn);
    const apiKeySecret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Key', secretArn);
    // Act
    new WaterflaiOrchestrator(stack, 'Orchestrator', {
      eventBus,
      apiKeySecret,
      waterflaiBaseUrl: 'https://eu.waterflai.example/api/',
      maxJobDuration: Duration.hours(6),
      pollIntervalSeconds: 30,
    });
    template = Template.fromStack(stack);
  });

  it('creates no bus and no secret', () => {
    template.resourceCountIs('AWS::Events::EventBus', 0);
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
  });

  it('passes the secret ARN and the bus name to the functions and grants access to exactly those', () => {
    for (const fn of Object.values(lambdaFunctions(template))) {
      const variables = (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(variables[ENV.WATERFLAI_API_KEY_SECRET_ID]).toBe(secretArn);
      expect(variables[ENV.EVENT_BUS_NAME]).toBe('shared-outcomes');
      expect(variables[ENV.WATERFLAI_BASE_URL]).toBe('https://eu.waterflai.example/api');
      expect(variables[ENV.MAX_JOB_DURATION_SECONDS]).toBe(String(6 * 3600));
    }
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'events:PutEvents', Resource: busArn })]) },
    });
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Action: 'secretsmanager:GetSecretValue', Resource: secretArn })]),
      },
    });
  });

  it('does not warn about the history limit when polls are sparse enough', () => {
    // 6 h of 30 s polls = 720 polls, far below 25,000 events.
    Annotations.fromStack(stack).hasNoWarning('*', Match.stringLikeRegexp('history events'));
  });
});

describe('WaterflaiOrchestrator prop validation', () => {
  it.each([
    ['http://api.waterflai.ai', /must use https/],
    ['ftp://api.waterflai.ai', /must use https/],
    ['https://user:secret@api.waterflai.ai', /must not contain credentials/],
    ['https://api.waterflai.ai/?tenant=1', /must not contain a query string/],
    ['https://api.waterflai.ai/#top', /must not contain a fragment/],
    ['api.waterflai.ai', /must be an absolute URL/],
  ])('rejects the base URL %s', (waterflaiBaseUrl, message) => {
    expect(() => newStackWithOrchestrator({ waterflaiBaseUrl })).toThrow(message);
  });

  it.each(['http://localhost:4010', 'http://127.0.0.1:4010/v0', 'http://[::1]:4010'])(
    'accepts http for the loopback URL %s',
    (waterflaiBaseUrl) => {
      expect(() => newStackWithOrchestrator({ waterflaiBaseUrl })).not.toThrow();
    },
  );

  it('rejects a poll minimum above the maximum', () => {
    expect(() => newStackWithOrchestrator({ pollMinSeconds: 60, pollMaxSeconds: 30 })).toThrow(
      /minSeconds \(60\) must not exceed maxSeconds \(30\)/,
    );
  });

  it('rejects a non-integer poll interval', () => {
    expect(() => newStackWithOrchestrator({ pollIntervalSeconds: 2.5 })).toThrow(/intervalSeconds must be a positive integer/);
  });

  it('rejects maxConcurrency below the AWS minimum of 2', () => {
    expect(() => newStackWithOrchestrator({ maxConcurrency: 1 })).toThrow(/maxConcurrency must be an integer from 2 to 1000/);
  });

  it('rejects a batch above 10 without a batching window', () => {
    expect(() => newStackWithOrchestrator({ batchSize: 11 })).toThrow(/batchSize must be an integer from 1 to 10 \(set maxBatchingWindow/);
  });

  it('rejects maxReceiveCount 0', () => {
    expect(() => newStackWithOrchestrator({ maxReceiveCount: 0 })).toThrow(/maxReceiveCount must be an integer from 1 to 1000/);
  });

  it('rejects an intake visibility timeout below 6x the start function timeout', () => {
    expect(() => newStackWithOrchestrator({ queueProps: { visibilityTimeout: Duration.seconds(100) } })).toThrow(
      /must be at least 6x the start function timeout \(60 s\).*at least 360 s/,
    );
  });

  it('checks the visibility timeout against an overridden function timeout', () => {
    expect(() =>
      newStackWithOrchestrator({
        functionProps: { timeout: Duration.seconds(90) },
        queueProps: { visibilityTimeout: Duration.seconds(400) },
      }),
    ).toThrow(/at least 540 s/);
  });

  it.each([
    [Duration.days(366), /maxJobDuration must be from 1 minute to/],
    [Duration.days(365), /maxJobDuration must be from 1 minute to/],
    [Duration.seconds(30), /maxJobDuration must be from 1 minute to/],
  ])('rejects maxJobDuration %s', (maxJobDuration, message) => {
    expect(() => newStackWithOrchestrator({ maxJobDuration, jobRetention: Duration.days(400) })).toThrow(message);
  });

  it('rejects a job retention that is not whole days or not longer than the max job duration', () => {
    expect(() => newStackWithOrchestrator({ jobRetention: Duration.hours(36) })).toThrow(/jobRetention must be a whole number of days/);
    expect(() => newStackWithOrchestrator({ maxJobDuration: Duration.days(30), jobRetention: Duration.days(30) })).toThrow(
      /must be longer than maxJobDuration/,
    );
  });
});
