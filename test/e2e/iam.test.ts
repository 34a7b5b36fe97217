/**
 * Least privilege, proven by evaluation: the local runtime runs a representative mix of jobs
 * through the real handlers while recording every AWS SDK command each function sends
 * (local/runtime/sdk-recorder.ts); each recorded call is mapped to its IAM action and
 * resource in the synthesized template's ARN space and evaluated with
 * @cloud-copilot/iam-simulate against the identity policies of the function's role. Every
 * recorded call must be allowed, every call on the forbidden list must be denied, and every
 * data action a role is granted must have been used.
 *
 * test/infra/iam-policy.test.ts shows, without the runtime, that the same evaluation reports
 * a removed action as denied and an added one as allowed.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ListExecutionsCommand, SFNClient, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODE, JOB_STATUS, STATUS_RANK } from '../../lambdas/contract/constants';
import { startLocalRuntime, type LocalRuntime } from '../../local/runtime/runtime';
import { startSdkCallRecorder, withinInvocation, type RecordedSdkCall } from '../../local/runtime/sdk-recorder';
import {
  allowedPairs,
  arnMatches,
  evaluate,
  eventBusArn,
  forbiddenCalls,
  FUNCTION_ROLES,
  iamRequestsOf,
  identityPolicies,
  queueArn,
  subjectsOf,
  tableArn,
  TemplateResolver,
  type Decision,
  type FunctionRoleName,
  type IamRequest,
  type IamSubjects,
  type PolicyDocument,
} from '../support/iam-policies';
import { eventsFor, jobBody, queueIdle, waitFor } from './support';

const TIME_SCALE = 0.1;

let runtime: LocalRuntime;
let sfn: SFNClient;
let sqs: SQSClient;
let subjects: IamSubjects;
let policies: Record<FunctionRoleName, Array<{ name: string; policy: PolicyDocument }>>;

beforeAll(async () => {
  // A successor hand-over after 3 polls at 1 s (as lifecycle.test.ts): the fixed strategy.
  process.env.POLL_STRATEGY = 'fixed';
  runtime = await startLocalRuntime({
    timeScale: TIME_SCALE,
    recordSdkCalls: true,
    stackConfig: { pollIntervalSeconds: 1, maxPollsPerExecution: 3, maxInlineOutputBytes: 16 * 1024, sweepIntervalMinutes: 1 },
    simulator: { seed: 10 },
  });
  const clientConfig = { region: runtime.region, credentials: runtime.credentials };
  sfn = new SFNClient({ ...clientConfig, endpoint: runtime.endpoints.aws });
  sqs = new SQSClient({ ...clientConfig, endpoint: runtime.endpoints.sqs });
  const functions = Object.fromEntries(
    FUNCTION_ROLES.map((role) => {
      const fn = runtime.model.functions[role];
      if (fn === undefined) throw new Error(`the template has no ${role} function`);
      return [role, fn.logicalId];
    }),
  ) as Record<FunctionRoleName, string>;
  subjects = subjectsOf(runtime.template, functions);
  policies = Object.fromEntries(
    FUNCTION_ROLES.map((role) => [role, identityPolicies(runtime.template, subjects.roles[role])]),
  ) as typeof policies;
}, 60_000);

afterAll(async () => {
  sfn?.destroy();
  sqs?.destroy();
  await runtime?.close();
});

const events = (jobId: string) => eventsFor(runtime.eventBridge.events(), jobId);
const announced = (jobId: string, timeoutMs = 30_000): Promise<true> =>
  waitFor(`${jobId} to be announced`, () => events(jobId).length > 0, timeoutMs, 100);

const cancelBody = (jobId: string): string => JSON.stringify({ action: 'cancel', job_id: jobId });

/** Each recorded call of a role, as IAM requests, with the decision of the role's policies. */
interface Evaluated extends IamRequest {
  readonly role: FunctionRoleName;
  readonly decision: Decision;
  readonly calls: number;
}

async function evaluateRecorded(calls: readonly RecordedSdkCall[]): Promise<Evaluated[]> {
  const unique = new Map<string, { role: FunctionRoleName; request: IamRequest; calls: number }>();
  for (const call of calls) {
    const role = call.role as FunctionRoleName;
    for (const request of iamRequestsOf(call)) {
      const key = `${role} ${request.action} ${request.resource}`;
      const entry = unique.get(key);
      if (entry === undefined) unique.set(key, { role, request, calls: 1 });
      else entry.calls += 1;
    }
  }
  return Promise.all(
    [...unique.values()].map(async ({ role, request, calls: count }) => ({
      role,
      ...request,
      calls: count,
      decision: await evaluate(policies[role], subjects.roles[role], request),
    })),
  );
}

describe('the SDK call recorder', () => {
  it("is configured in the template's ARN space: the runtime names every resource as the policies do", () => {
    const resolver = new TemplateResolver(runtime.template);
    expect(subjects.table).toBe(tableArn(runtime.tableName));
    expect(subjects.deadLetterQueue).toBe(queueArn(runtime.sqs.deadLetterQueue.name));
    expect(subjects.intakeQueue).toBe(queueArn(runtime.sqs.intakeQueue.name));
    expect(subjects.eventBus).toBe(eventBusArn(runtime.eventBusName));
    expect(subjects.stateMachine).toBe(runtime.stateMachineArn);
    expect(subjects.apiKeySecret).toBe(runtime.model.apiKeySecretId);
    expect(runtime.model.buckets.map((bucket) => `arn:aws:s3:::${bucket.name}`)).toContain(subjects.outputBucket);
    for (const role of FUNCTION_ROLES) {
      expect(resolver.attribute(subjects.roles[role], 'Arn')).toMatch(/^arn:aws:iam::\d{12}:role\//);
      expect(policies[role].length, role).toBeGreaterThan(0);
    }
  });

  it('records a command once, attributed to the invocation that sent it (document client included)', async () => {
    // Prepare: a document client built as lambdas/aws/clients.ts builds its own
    const inner = new DynamoDBClient({
      region: runtime.region,
      credentials: runtime.credentials,
      endpoint: runtime.endpoints.dynamodb,
      maxAttempts: 4,
    });
    const client = DynamoDBDocumentClient.from(inner, { marshallOptions: { removeUndefinedValues: true } });
    const recorder = await startSdkCallRecorder({
      clients: [client],
      roleOf: (arn) => (arn.endsWith(':probe') ? 'probe-role' : undefined),
    });
    try {
      // Act
      await withinInvocation({ functionName: 'probe', functionArn: 'arn:aws:lambda:us-east-1:123456789012:function:probe' }, async () => {
        await new Promise((resolve) => setTimeout(resolve, 1)); // an async hop inside the invocation
        await client.send(new GetCommand({ TableName: runtime.tableName, Key: { job_id: 'no-such-job' } }));
      });
      await client.send(new GetCommand({ TableName: runtime.tableName, Key: { job_id: 'outside' } }));

      // Assess
      expect(recorder.calls()).toEqual([
        {
          functionName: 'probe',
          functionArn: 'arn:aws:lambda:us-east-1:123456789012:function:probe',
          role: 'probe-role',
          service: 'DynamoDB',
          command: 'GetItem',
          resources: { TableName: runtime.tableName },
          outcome: 'ok',
        },
        { service: 'DynamoDB', command: 'GetItem', resources: { TableName: runtime.tableName }, outcome: 'ok' },
      ]);
    } finally {
      recorder.stop();
      client.destroy();
    }
  });
});

describe('least privilege, by evaluation of the calls the handlers make', () => {
  let recorded: readonly RecordedSdkCall[] = [];
  let evaluated: Evaluated[] = [];

  it('runs a representative mix of jobs through the real handlers', async () => {
    // Prepare: a job left RUNNING past its deadline (its poll loop lost), for the sweeper,
    // which cancels its Waterflai execution (unknown upstream by now: nothing to cancel)
    const past = new Date(Date.now() - 3_600_000).toISOString();
    await runtime.documentClient.send(
      new PutCommand({
        TableName: runtime.tableName,
        Item: {
          job_id: 'iam-stranded',
          chatbot_id: 'iam-stranded-bot',
          execution_id: 'exec-lost-upstream',
          status: JOB_STATUS.RUNNING,
          status_rank: STATUS_RANK.RUNNING,
          version: 3,
          accepted_at: past,
          updated_at: past,
          deadline_at: past,
          expires_at: Math.floor(Date.now() / 1000) + 86_400,
          metadata_json: '{}',
          source_message_id: 'lost-message',
          delivery: 'sqs',
          polls: 4,
        },
      }),
    );
    await runtime.sendMessage(cancelBody('iam-tombstone'));

    // Act
    await runtime.sendMessage(jobBody('iam-completed', 'iam-bot-1', { duration_ms: 500, nodes: 1 }));
    await runtime.sendMessage(jobBody('iam-failed', 'iam-bot-2', { duration_ms: 500, nodes: 1, outcome: 'failed' }));
    await runtime.sendMessage(jobBody('iam-big-output', 'iam-bot-3', { duration_ms: 500, nodes: 2, output_bytes: 64 * 1024 }));
    await runtime.sendMessage(jobBody('iam-handed-over', 'iam-bot-4', { duration_ms: 12_000, nodes: 6 }));
    await runtime.sendMessage(jobBody('iam-deadline', 'iam-bot-5', { duration_ms: 100_000, nodes: 5 }, { timeout_seconds: 2 }));
    await runtime.sendMessage(jobBody('iam-invalid', 'not/a/chatbot', { duration_ms: 500 }));
    await runtime.sendMessage(jobBody('iam-cancelled', 'iam-bot-6', { duration_ms: 60_000, nodes: 4 }));
    await runtime.sendMessage(jobBody('iam-stopped', 'iam-bot-7', { duration_ms: 120_000, nodes: 4 }));
    await announced('iam-tombstone');
    await runtime.sendMessage(jobBody('iam-tombstone', 'iam-bot-8', { duration_ms: 500 }));

    await waitFor('iam-cancelled to run', async () => (await runtime.getJob('iam-cancelled'))?.status === JOB_STATUS.RUNNING, 20_000);
    await runtime.sendMessage(cancelBody('iam-cancelled'));
    const execution = await waitFor(
      'iam-stopped to run',
      async () => {
        const record = await runtime.getJob('iam-stopped');
        const listed = await sfn.send(new ListExecutionsCommand({ stateMachineArn: runtime.stateMachineArn, statusFilter: 'RUNNING' }));
        return record?.status === JOB_STATUS.RUNNING ? listed.executions?.find((candidate) => candidate.name === 'iam-stopped') : undefined;
      },
      20_000,
    );
    await sfn.send(
      new StopExecutionCommand({ executionArn: execution.executionArn, error: 'Operator', cause: 'stopped by the IAM e2e test' }),
    );

    for (const jobId of [
      'iam-completed',
      'iam-failed',
      'iam-big-output',
      'iam-handed-over',
      'iam-deadline',
      'iam-invalid',
      'iam-cancelled',
      'iam-stopped',
      'iam-stranded',
    ]) {
      await announced(jobId, 40_000);
    }
    await waitFor('the intake queue to be idle', () => queueIdle(sqs, runtime.intakeQueueUrl), 15_000);

    // Assess: the mix really took each path
    const job = async (jobId: string) => runtime.getJob(jobId);
    expect(await job('iam-completed')).toMatchObject({ status: JOB_STATUS.COMPLETED });
    expect(await job('iam-failed')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.EXECUTION_FAILED });
    expect((await job('iam-big-output'))?.output_location).toBeDefined();
    expect((await job('iam-handed-over'))?.generation).toBeGreaterThanOrEqual(1);
    expect(await job('iam-deadline')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.TIMED_OUT });
    expect(await job('iam-invalid')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.INVALID_MESSAGE });
    expect(await job('iam-cancelled')).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: 'requested' });
    expect(await job('iam-stopped')).toMatchObject({ status: JOB_STATUS.CANCELLED, cancel_reason: 'stopped' });
    expect(await job('iam-stranded')).toMatchObject({ status: JOB_STATUS.FAILED, error_code: ERROR_CODE.TIMED_OUT });
    expect(await job('iam-tombstone')).toMatchObject({ status: JOB_STATUS.CANCELLED });
    expect(runtime.simulator!.stats().starts_by_chatbot['iam-bot-8'] ?? 0).toBe(0);

    recorded = runtime.sdkCalls();
  }, 120_000);

  it('attributes every recorded call to one of the five functions', () => {
    expect(recorded.length).toBeGreaterThan(100);
    expect(recorded.filter((call) => call.role === undefined || !(FUNCTION_ROLES as readonly string[]).includes(call.role))).toEqual([]);
    const roles = new Set(recorded.map((call) => call.role));
    expect([...roles].sort()).toEqual([...FUNCTION_ROLES].sort());
  });

  it('allows every recorded call, by the policies of the role of the function that made it', async () => {
    // Act
    evaluated = await evaluateRecorded(recorded);
    if (process.env.IAM_TEST_REPORT === '1') {
      // IAM_TEST_REPORT=1 npx vitest run test/e2e/iam.test.ts: what each role sent, and the decision.
      console.table(
        evaluated.map(({ role, action, resource, calls, decision }) => ({
          role,
          action,
          resource: resource.split(':').slice(5).join(':'),
          calls,
          decision,
        })),
      );
    }

    // Assess: the mix exercised every kind of access (so the proof covers it) ...
    const seen = new Set(evaluated.map((entry) => `${entry.role} ${entry.action}`));
    for (const expected of [
      'start dynamodb:PutItem',
      'start dynamodb:UpdateItem',
      'start dynamodb:GetItem',
      'start states:StartExecution',
      'start events:PutEvents',
      'start sqs:SendMessage',
      'start secretsmanager:GetSecretValue',
      'poll dynamodb:UpdateItem',
      'poll s3:PutObject',
      'poll states:StartExecution',
      'poll secretsmanager:GetSecretValue',
      'finish dynamodb:UpdateItem',
      'finish dynamodb:GetItem',
      'finish events:PutEvents',
      'reconcile dynamodb:GetItem',
      'reconcile dynamodb:UpdateItem',
      'reconcile events:PutEvents',
      'sweep dynamodb:Query',
      'sweep dynamodb:UpdateItem',
      'sweep events:PutEvents',
    ]) {
      expect(seen, expected).toContain(expected);
    }
    // ... and every one of them is allowed.
    expect(evaluated.filter((entry) => entry.decision !== 'Allowed')).toEqual([]);
  });

  it('denies every call a role must never make', async () => {
    // Act
    const forbidden = forbiddenCalls(subjects);
    const results = await Promise.all(
      forbidden.map(async (call) => ({ ...call, decision: await evaluate(policies[call.role], subjects.roles[call.role], call) })),
    );

    // Assess
    expect(forbidden.length).toBeGreaterThanOrEqual(100);
    expect(results.filter((result) => result.decision === 'Allowed')).toEqual([]);
    // None of them was among the calls the handlers made.
    const made = new Set(evaluated.map((entry) => `${entry.role} ${entry.action} ${entry.resource}`));
    expect(forbidden.filter((call) => made.has(`${call.role} ${call.action} ${call.resource}`))).toEqual([]);
  });

  it('grants no data action the handlers did not use', () => {
    // Granted but not exercised by this mix, each with the code path that needs it.
    const notExercised: Readonly<Record<string, string>> = {
      // The Lambda service's SQS poller (the event source mapping) uses these, not the code;
      // the start code changes visibility only to defer a message Waterflai refused for now.
      'start sqs:ReceiveMessage': 'event source mapping',
      'start sqs:DeleteMessage': 'event source mapping',
      'start sqs:GetQueueAttributes': 'event source mapping',
      'start sqs:GetQueueUrl': 'event source mapping',
      'start sqs:ChangeMessageVisibility': 'JobStarter.deferMessage (a start Waterflai refused for now)',
      'reconcile sqs:ReceiveMessage': 'event source mapping',
      'reconcile sqs:DeleteMessage': 'event source mapping',
      'reconcile sqs:GetQueueAttributes': 'event source mapping',
      'reconcile sqs:GetQueueUrl': 'event source mapping',
      'reconcile sqs:ChangeMessageVisibility': 'event source mapping',
      // The record as it stands after a refused (stale or late) status update.
      'poll dynamodb:GetItem': 'JobStore.applyStatus when its condition fails',
      // A job settled from outside whose execution had completed with an output too large to inline.
      'reconcile s3:PutObject': 'settleFromOutside: an execution found COMPLETED with a large output',
      'sweep s3:PutObject': 'settleFromOutside: an execution found COMPLETED with a large output',
    };
    const unused: string[] = [];
    for (const role of FUNCTION_ROLES) {
      for (const pair of allowedPairs(policies[role])) {
        if (pair.action.startsWith('logs:')) continue; // the function's own log group, written by the Lambda runtime
        const used = evaluated.some(
          (entry) => entry.role === role && entry.action === pair.action && arnMatches(pair.resource, entry.resource),
        );
        if (!used && notExercised[`${role} ${pair.action}`] === undefined) unused.push(`${role} ${pair.action} ${pair.resource}`);
      }
    }
    expect(unused).toEqual([]);
  });
});
