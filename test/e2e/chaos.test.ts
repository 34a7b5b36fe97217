/**
 * Reliability under faults: the local runtime's fault hooks on their own (no boot), the
 * seeded plan, and a short chaos run (`npm run chaos` in small) over the whole local runtime,
 * with a short Waterflai outage, a key rotation and refused cancels, asserting every verdict
 * the checker computes: no violation at all (nothing lost, stuck, unannounced or conflicting,
 * no outcome mismatch, no orphaned execution, no outcome contradicting Waterflai, no
 * unexplained give-up, no duplicate execution from redeliveries), every kind of fault really
 * injected. The checker itself is unit-tested on fabricated runs (test/unit/chaos-invariants.test.ts).
 */
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { ConditionalCheckFailedException, DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsServiceError, startAwsJsonServer } from '../../local/emulators/aws-json-server';
import { startDynamoDbFaultProxy } from '../../local/faults/dynamodb-proxy';
import type { AwsFaultHook, DynamoDbFault } from '../../local/faults/hooks';
import { LocalEventBridge } from '../../local/emulators/eventbridge';
import { LocalSecretsManager } from '../../local/emulators/secrets';
import { ExecutionEnvironments, invokeFunction, type LambdaHandler } from '../../local/runtime/lambda';
import { SqsEventSource } from '../../local/runtime/sqs-event-source';
import { startLocalSqs } from '../../local/emulators/sqs';
import { LocalStepFunctions } from '../../local/emulators/step-functions';
import {
  ALL_FAULT_KINDS,
  ChaosFaults,
  DEFAULT_FAULT_MIX,
  DEFAULT_INCIDENTS,
  withEveryWaterflaiKind,
  type FaultMix,
} from '../../local/chaos/faults';
import { EXPLAINABLE_GIVE_UPS, buildPlan } from '../../local/chaos/plan';
import { chaosJson, violationLines } from '../../local/chaos/report';
import { runChaos, type ChaosResult } from '../../local/chaos/run';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';
import { waitFor } from './support';

const REGION = 'us-east-1';
const ACCOUNT = '123456789012';
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

describe('fault hooks of the local runtime', () => {
  it('the AWS endpoint answers an injected error in the AWS shape, before or after applying the operation', async () => {
    // Prepare: a machine whose only Task succeeds at once
    const machineArn = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:Once`;
    const steps = new LocalStepFunctions({
      stateMachines: [
        {
          arn: machineArn,
          name: 'Once',
          definition: {
            StartAt: 'Work',
            States: { Work: { Type: 'Task', Resource: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:Work`, End: true } },
          },
          taskHandlers: { Work: async () => ({}) },
        },
      ],
    });
    const seen: string[] = [];
    let fault: ReturnType<AwsFaultHook>;
    const server = await startAwsJsonServer({
      services: [steps.service()],
      faultHook: (operation) => {
        seen.push(operation);
        return fault;
      },
    });
    const sfn = new SFNClient({ region: REGION, credentials, endpoint: server.url, maxAttempts: 1 });
    try {
      // Act + Assess: throttled before anything happens
      fault = { error: new AwsServiceError('ThrottlingException', 'Rate exceeded') };
      await expect(sfn.send(new StartExecutionCommand({ stateMachineArn: machineArn, name: 'before', input: '{}' }))).rejects.toMatchObject(
        {
          name: 'ThrottlingException',
          $metadata: { httpStatusCode: 400 },
        },
      );
      expect(steps.executions().map((execution) => execution.name)).toEqual([]);

      // ...and a lost answer: the execution exists although the caller got an error
      fault = { error: new AwsServiceError('InternalFailure', 'boom', 500), afterApplying: true };
      await expect(sfn.send(new StartExecutionCommand({ stateMachineArn: machineArn, name: 'after', input: '{}' }))).rejects.toMatchObject({
        name: 'InternalFailure',
      });
      expect(steps.executions().map((execution) => execution.name)).toEqual(['after']);

      // ...and no fault: served normally
      fault = undefined;
      server.setFaultHook(undefined);
      await sfn.send(new StartExecutionCommand({ stateMachineArn: machineArn, name: 'normal', input: '{}' }));
      expect(seen).toEqual(['AWSStepFunctions.StartExecution', 'AWSStepFunctions.StartExecution']);
    } finally {
      sfn.destroy();
      await steps.stopAll();
      await server.close();
    }
  });

  it('PutEvents fails single entries with FailedEntryCount and an entry ErrorCode, and does not publish them', async () => {
    // Prepare
    const bus = new LocalEventBridge({
      region: REGION,
      account: ACCOUNT,
      busNames: ['outcomes'],
      entryFaultHook: (entry) => (entry.detail.fail === true ? { ErrorCode: 'InternalFailure', ErrorMessage: 'injected' } : undefined),
    });
    const server = await startAwsJsonServer({ services: [bus.service()] });
    const events = new EventBridgeClient({ region: REGION, credentials, endpoint: server.url });
    try {
      // Act
      const result = await events.send(
        new PutEventsCommand({
          Entries: [
            { EventBusName: 'outcomes', Source: 'test', DetailType: 'T', Detail: JSON.stringify({ n: 1 }) },
            { EventBusName: 'outcomes', Source: 'test', DetailType: 'T', Detail: JSON.stringify({ n: 2, fail: true }) },
          ],
        }),
      );

      // Assess
      expect(result.FailedEntryCount).toBe(1);
      expect(result.Entries?.[0]?.EventId).toBeDefined();
      expect(result.Entries?.[1]).toEqual({ ErrorCode: 'InternalFailure', ErrorMessage: 'injected' });
      expect(bus.events().map((event) => event.detail)).toEqual([{ n: 1 }]);
    } finally {
      events.destroy();
      await server.close();
    }
  });

  describe('the DynamoDB fault proxy', () => {
    let dynamo: LocalDynamo;
    let table: string;
    let fault: DynamoDbFault | undefined;
    const answers: Array<{ operation: string; status: number; code: string | undefined; injected: boolean }> = [];
    let proxy: Awaited<ReturnType<typeof startDynamoDbFaultProxy>>;
    let client: DynamoDBClient;

    beforeAll(async () => {
      dynamo = await startLocalDynamo();
      table = await dynamo.createJobTable();
      proxy = await startDynamoDbFaultProxy({
        target: dynamo.endpoint,
        hook: () => fault,
        onResponse: (operation, status, code, injected) => answers.push({ operation, status, code, injected }),
      });
      client = new DynamoDBClient({ region: REGION, credentials, endpoint: proxy.endpoint, maxAttempts: 1 });
    });

    afterAll(async () => {
      client?.destroy();
      await proxy?.close();
      await dynamo?.close();
    });

    const put = (jobId: string, condition = false) =>
      client.send(
        new PutItemCommand({
          TableName: table,
          Item: { job_id: { S: jobId }, status: { S: 'SUBMITTING' } },
          ...(condition ? { ConditionExpression: 'attribute_not_exists(job_id)' } : {}),
        }),
      );
    const exists = async (jobId: string) =>
      (await dynamo.client.send(new GetItemCommand({ TableName: table, Key: { job_id: { S: jobId } } }))).Item !== undefined;

    it.each([
      ['ProvisionedThroughputExceededException', 400],
      ['ThrottlingException', 400],
      ['InternalServerError', 500],
    ] as const)('answers %s (%i) in DynamoDB error shape: the SDK maps it to its class, and retries it', async (code, status) => {
      // Refused: nothing written
      fault = { error: code };
      const error = await put(`refused-${code}`).catch((caught: unknown) => caught);
      fault = undefined;
      expect(error).toMatchObject({ name: code, $metadata: { httpStatusCode: status } });
      expect(await exists(`refused-${code}`)).toBe(false);

      // Retried by a client with the handlers' retry budget: the second attempt goes through
      let calls = 0;
      proxy.setHook(() => (++calls === 1 ? { error: code } : undefined));
      const retrying = new DynamoDBClient({ region: REGION, credentials, endpoint: proxy.endpoint, maxAttempts: 4 });
      try {
        await retrying.send(new PutItemCommand({ TableName: table, Item: { job_id: { S: `retried-${code}` } } }));
      } finally {
        retrying.destroy();
        proxy.setHook(() => fault);
      }
      expect(calls).toBe(2);
      expect(await exists(`retried-${code}`)).toBe(true);
    });

    it('loses the answer to a write that took effect (500 or reset), so a retry meets its own write', async () => {
      fault = { error: 'InternalServerError', afterApplying: true };
      await expect(put('lost-500', true)).rejects.toMatchObject({ name: 'InternalServerError' });
      fault = { error: 'reset', afterApplying: true };
      await expect(put('lost-reset', true)).rejects.toBeDefined();
      fault = undefined;
      expect(await exists('lost-500')).toBe(true);
      expect(await exists('lost-reset')).toBe(true);
      await expect(put('lost-500', true)).rejects.toBeInstanceOf(ConditionalCheckFailedException);
      expect(answers.at(-1)).toEqual({ operation: 'PutItem', status: 400, code: 'ConditionalCheckFailedException', injected: false });
    });
  });

  it('the event source delivers a record again, in a separate invocation, when asked', async () => {
    // Prepare
    const sqs = await startLocalSqs({
      region: REGION,
      credentials,
      deadLetterQueue: { name: 'dlq', attributes: {} },
      intakeQueue: { name: 'intake', attributes: { VisibilityTimeout: '30' }, maxReceiveCount: 5 },
    });
    const invocations: string[][] = [];
    const source = new SqsEventSource({
      client: sqs.client,
      queueUrl: sqs.intakeQueue.url,
      queueArn: sqs.intakeQueue.arn,
      region: REGION,
      batchSize: 10,
      maxConcurrency: 1,
      waitTimeSeconds: 1,
      duplicateDelivery: (record) => (record.body === 'twice' ? 20 : undefined),
      invoke: async (event: SQSEvent): Promise<SQSBatchResponse> => {
        invocations.push(event.Records.map((record) => record.body));
        return { batchItemFailures: [] };
      },
    });
    try {
      // Act
      await sqs.client.send(
        new SendMessageBatchCommand({
          QueueUrl: sqs.intakeQueue.url,
          Entries: [
            { Id: 'a', MessageBody: 'once' },
            { Id: 'b', MessageBody: 'twice' },
          ],
        }),
      );
      source.start();
      await waitFor(
        'both deliveries',
        () => invocations.flat().filter((body) => body === 'twice').length === 2 && sqs.messages('intake').length === 0,
        10_000,
        50,
      );

      // Assess
      expect(invocations.flat().sort()).toEqual(['once', 'twice', 'twice']);
      expect(invocations.some((bodies) => bodies.length === 1 && bodies[0] === 'twice')).toBe(true);
      expect(source.stats().duplicateDeliveries).toBe(1);
    } finally {
      await source.stop();
      await sqs.close();
    }
  }, 20_000);

  it('the local Secrets Manager changes a secret at run time (a rotation): new version, new value, by name or ARN', () => {
    // Prepare
    const secrets = new LocalSecretsManager(REGION, ACCOUNT);
    const { arn } = secrets.put('waterflai-api-key', 'old-key');
    const before = secrets.getSecretValue({ SecretId: 'waterflai-api-key' });

    // Act
    const rotated = secrets.update(arn, 'new-key');

    // Assess
    expect(secrets.getSecretValue({ SecretId: 'waterflai-api-key' })).toMatchObject({
      ARN: arn,
      SecretString: 'new-key',
      VersionId: rotated.versionId,
    });
    expect(rotated.versionId).not.toBe(before.VersionId);
    expect(secrets.updates()).toBe(1);
    expect(() => secrets.update('no-such-secret', 'x')).toThrow('no secret');
  });

  it('execution environments run one invocation at a time each and queue the others', async () => {
    // Prepare: a handler that keeps per-invocation module state, as Powertools' BatchProcessor does
    let running = 0;
    let most = 0;
    const instance = (): LambdaHandler<{ id: number }, number> => {
      let current: number | undefined;
      return async (event) => {
        if (current !== undefined) throw new Error('two invocations at once in one environment');
        current = event.id;
        running += 1;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 20));
        running -= 1;
        const id = current;
        current = undefined;
        return id;
      };
    };
    const handlers = [instance(), instance()];
    const fn = {
      name: 'Fn',
      arn: 'arn',
      timeoutMs: 5_000,
      memorySize: 128,
      handler: handlers[0]!,
      environments: new ExecutionEnvironments(handlers),
    };

    // Act
    const results = await Promise.all(Array.from({ length: 7 }, (_, id) => invokeFunction(fn, { id })));

    // Assess
    expect(results).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(most).toBe(2);
    expect(fn.environments.busy()).toBe(0);
  });
});

describe('the seeded plan and fault decisions', () => {
  it('are the same for the same seed, and differ for another', () => {
    const plan = (seed: number) => buildPlan({ jobs: 200, seed, rate: 25, timeScale: 0.1 });
    expect(plan(5)).toEqual(plan(5));
    expect(plan(5).messages.map((message) => message.body)).not.toEqual(plan(6).messages.map((message) => message.body));
    const kinds = new Set(plan(5).jobs.map((job) => job.kind));
    expect([...kinds].sort()).toEqual([
      'cancel-first',
      'completed',
      'deadline',
      'deadline-race',
      'failed',
      'producer-cancel',
      'remote-cancel',
    ]);
    expect(plan(5).messages.filter((message) => message.purpose === 'invalid').length).toBe(4);

    const decisions = (seed: number) => {
      const hooks = new ChaosFaults(DEFAULT_FAULT_MIX, seed).hooks();
      return Array.from(
        { length: 300 },
        (_, n) => hooks.dynamodb!('UpdateItem', { Key: { job_id: { S: `job-${n % 30}` } } })?.error ?? null,
      );
    };
    expect(decisions(5)).toEqual(decisions(5));
    expect(decisions(5)).not.toEqual(decisions(6));
  });
});

describe('the seeded incidents', () => {
  it('are on the plan: outages and key rotations at their share of the send phase, deadline races that end before their deadline', () => {
    // Act
    const plan = buildPlan({ jobs: 200, seed: 5, rate: 25, timeScale: 0.1, incidents: DEFAULT_INCIDENTS });

    // Assess: 199 job messages 40 ms apart, so the send phase lasts 7.96 s
    expect(plan.incidents.outages).toEqual([
      { atMs: 3_980, durationMs: 120_000, routes: ['get', 'cancel', 'stream'], answers: { error5xx: 6, reset: 3, hang: 1 } },
    ]);
    expect(plan.incidents.keyRotations).toEqual([
      { atMs: 1_592, revokeOldAfterMs: 2_000, newKey: expect.stringMatching(/^chaos-rotated-5-1-[0-9a-f]{16}$/) as unknown },
    ]);
    expect(buildPlan({ jobs: 200, seed: 5, rate: 25, timeScale: 0.1, incidents: DEFAULT_INCIDENTS }).incidents).toEqual(plan.incidents);
    const races = plan.jobs.filter((job) => job.kind === 'deadline-race');
    expect(races.length).toBeGreaterThan(0);
    for (const race of races) {
      const realMs = (Number(race.simulate.queue_ms) + Number(race.simulate.duration_ms)) * 0.1;
      expect(race.simulate.progress).toBe('none');
      expect(race.expected).toEqual(['COMPLETED']);
      expect((race.timeoutSeconds ?? 0) * 1000 - realMs).toBeCloseTo(race.raceMarginMs ?? -1, 0);
    }
  });
});

describe('a short chaos run over the local runtime', () => {
  const JOBS = 120;
  /** The default mix, a scheduled fault of every simulator kind, a short outage of every route but the start, a key rotation, refused cancels. */
  const MIX: FaultMix = {
    ...withEveryWaterflaiKind(DEFAULT_FAULT_MIX),
    incidents: {
      outages: [{ atShare: 0.5, durationMs: 8_000, routes: ['get', 'cancel', 'stream'], answers: { error5xx: 6, reset: 3, hang: 1 } }],
      keyRotations: [{ atShare: 0.2, revokeOldAfterMs: 1_000 }],
    },
  };
  let result: ChaosResult;

  beforeAll(async () => {
    result = await runChaos({ jobs: JOBS, seed: 11, faults: MIX, timeoutSeconds: 100, upstreamSettleSeconds: 35 });
  }, 150_000);

  it('held every invariant: no violation at all', () => {
    expect(violationLines(result)).toEqual([]);
    expect(chaosJson(result).violations).toEqual([]);
    expect(result.violations).toBe(0);
  });

  it('finished every job before the deadline', () => {
    expect(result.completed, JSON.stringify(chaosJson(result).violations)).toBe(true);
    expect(result.findings.terminal).toBe(JOBS);
  });

  it('left no execution running upstream for a job with an outcome, and no outcome contradicts Waterflai', () => {
    const json = chaosJson(result);
    expect(json.orphaned_executions).toBe(0);
    expect(json.outcome_upstream_mismatches).toBe(0);
    expect(result.findings.orphanedExecutions).toEqual([]);
    expect(result.findings.outcomeUpstreamMismatches).toEqual([]);
    expect(result.findings.outcomeMismatches).toEqual([]);
  });

  it('gave up only where the faults explain it, and never with POLL_FAILED', () => {
    expect(result.findings.unexplainedGiveUps).toEqual([]);
    expect(result.findings.giveUps.unexplained).toBe(0);
    expect(result.findings.giveUps.byOutcome['FAILED:POLL_FAILED'] ?? 0).toBe(0);
    for (const outcome of Object.keys(result.findings.giveUps.byOutcome)) expect(EXPLAINABLE_GIVE_UPS).toContain(outcome);
    // A handful at most: the start path retries through faults (0 in recent runs).
    expect(result.findings.giveUps.total).toBeLessThanOrEqual(3);
  });

  it('met the incidents: requests failed by the outage, the old key refused after the rotation, refused cancels, deadline races', () => {
    expect(result.incidents.outages).toHaveLength(1);
    expect(result.incidents.outage_requests).toBeGreaterThan(0);
    expect(result.incidents.key_rotations).toHaveLength(1);
    expect(result.incidents.revoked_key_401s).toBeGreaterThan(0);
    expect(result.incidents.refused_cancels).toBeGreaterThan(0);
    expect(result.findings.deadlineRaces.jobs).toBeGreaterThan(0);
    expect(result.findings.deadlineRaces.completed + result.findings.deadlineRaces.lateStart).toBe(result.findings.deadlineRaces.jobs);
  });

  it('lost nothing and left nothing stuck', () => {
    expect(result.findings.lost).toEqual([]);
    expect(result.findings.stuck).toEqual([]);
  });

  it('announced every outcome, re-publications only with the same event id, never conflicting', () => {
    expect(result.findings.unannounced).toEqual([]);
    expect(result.findings.conflictingOutcomes).toEqual([]);
    expect(result.findings.events.jobsAnnounced).toBeGreaterThanOrEqual(JOBS);
  });

  it('started no duplicate Waterflai or Step Functions execution from duplicate deliveries', () => {
    expect(result.findings.duplicateExecutionsFromRedelivery).toEqual([]);
    expect(result.findings.waterflai.duplicatesFromRedelivery).toBe(0);
    expect(result.findings.duplicateStateMachineExecutions).toEqual([]);
    // Duplicates really happened: sent twice, sent again later, delivered twice by the event source.
    expect(result.findings.messagesSent.duplicate).toBeGreaterThan(0);
    expect(result.findings.messagesSent['late-duplicate']).toBeGreaterThan(0);
    expect(result.redeliveredRecords).toBeGreaterThan(0);
  });

  it('dead-lettered every message that did not become a job, with its reason', () => {
    expect(result.findings.deadLetterProblems).toEqual([]);
    expect(result.findings.deadLetters.invalidMessages).toBeGreaterThan(0);
    expect(result.findings.deadLetters.withReason).toBe(result.findings.deadLetters.total);
  });

  it('injected every kind of fault, and reports the crash window separately', () => {
    for (const kind of ALL_FAULT_KINDS) expect(result.faults[kind], kind).toBeGreaterThan(0);
    const json = chaosJson(result);
    for (const key of [
      'jobs',
      'lost',
      'stuck',
      'conflicting_outcomes',
      'duplicate_executions_from_redelivery',
      'duplicate_executions_from_crash',
      'faults',
      'orphaned_executions',
      'outcome_upstream_mismatches',
      'give_ups',
      'incidents',
    ]) {
      expect(json).toHaveProperty(key);
    }
    expect(result.findings.waterflai.acceptThenFail).toBeGreaterThan(0);
    expect(json.duplicate_executions_from_crash).toBeLessThanOrEqual(result.findings.waterflai.acceptThenFail);
  });
});
