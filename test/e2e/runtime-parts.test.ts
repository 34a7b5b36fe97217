/**
 * The local runtime's parts on their own (no boot): the AWS JSON endpoint with Step
 * Functions, EventBridge and Secrets Manager behind it, spoken to through the real SDK
 * clients; the SQS event source mapping's record shape and partial batch rules; the time
 * scale; the network guard; the CLI's argument rules; the job inputs.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetSecretValueCommand, ResourceNotFoundException, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  InvalidName,
  SFNClient,
  StartExecutionCommand,
  StateMachineDoesNotExist,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AslDefinition } from '../../local/asl';
import { startAwsJsonServer, type AwsJsonServer } from '../../local/emulators/aws-json-server';
import { parseCliArgs, UsageError } from '../../local/cli/cli';
import { LocalEventBridge } from '../../local/emulators/eventbridge';
import { JobInputError, loadJobLines, loadSampleJobs } from '../../local/cli/jobs';
import { createLambdaContext, invokeFunction, LambdaFunctionError } from '../../local/runtime/lambda';
import { isLoopbackHost } from '../../local/runtime/net-guard';
import { LocalSecretsManager } from '../../local/emulators/secrets';
import { failuresOf, toLambdaRecord } from '../../local/runtime/sqs-event-source';
import { LocalStepFunctions } from '../../local/emulators/step-functions';
import { nextDocument, parseTimeScale, scaledRetryOverrides, scaledWaitOverrides } from '../../local/emulators/time-scale';
import { waitFor } from './support';

const REGION = 'us-east-1';
const ACCOUNT = '123456789012';
const MACHINE_ARN = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:Loop`;
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

/** A small loop shaped like the orchestrator's: Wait(SecondsPath) -> Task -> Choice. */
const LOOP: AslDefinition = {
  StartAt: 'Wait',
  States: {
    Wait: { Type: 'Wait', SecondsPath: '$.wait', Next: 'Work' },
    Work: {
      Type: 'Task',
      Resource: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:Work`,
      Retry: [{ ErrorEquals: ['Flaky'], IntervalSeconds: 10, MaxAttempts: 2 }],
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Failed' }],
      Next: 'Done?',
    },
    'Done?': { Type: 'Choice', Choices: [{ Variable: '$.left', NumericEquals: 0, Next: 'Done' }], Default: 'Wait' },
    Done: { Type: 'Succeed' },
    Failed: { Type: 'Fail', Error: 'WorkFailed' },
  },
};

describe('the local AWS JSON endpoint, through the SDK', () => {
  let server: AwsJsonServer;
  let steps: LocalStepFunctions;
  let bus: LocalEventBridge;
  let sfn: SFNClient;
  let events: EventBridgeClient;
  let secrets: SecretsManagerClient;
  const workCalls: unknown[] = [];

  beforeAll(async () => {
    steps = new LocalStepFunctions({
      timeScale: 0.01,
      stateMachines: [
        {
          arn: MACHINE_ARN,
          name: 'Loop',
          definition: LOOP,
          taskHandlers: {
            Work: async (input) => {
              workCalls.push(input);
              const state = input as { left: number; wait: number; fail?: string };
              if (state.fail !== undefined) {
                const error = new LambdaFunctionError('Work', state.fail, 'it broke');
                throw error;
              }
              return { ...state, left: state.left - 1 };
            },
          },
        },
      ],
    });
    bus = new LocalEventBridge({ region: REGION, account: ACCOUNT, busNames: ['outcomes'] });
    const vault = new LocalSecretsManager(REGION, ACCOUNT);
    vault.put(`arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:ApiKey-AbCdEf`, 'k3y');
    server = await startAwsJsonServer({ services: [steps.service(), bus.service(), vault.service()] });
    sfn = new SFNClient({ endpoint: server.url, region: REGION, credentials, maxAttempts: 1 });
    events = new EventBridgeClient({ endpoint: server.url, region: REGION, credentials, maxAttempts: 1 });
    secrets = new SecretsManagerClient({ endpoint: server.url, region: REGION, credentials, maxAttempts: 1 });
  });

  afterAll(async () => {
    sfn.destroy();
    events.destroy();
    secrets.destroy();
    await steps.stopAll();
    await server.close();
  });

  it('StartExecution is idempotent for the same name and input while running, and refuses a different input', async () => {
    const input = JSON.stringify({ left: 3, wait: 100 }); // 100 s waits, scaled to 1 s
    const first = await sfn.send(new StartExecutionCommand({ stateMachineArn: MACHINE_ARN, name: 'job-a', input }));
    const again = await sfn.send(new StartExecutionCommand({ stateMachineArn: MACHINE_ARN, name: 'job-a', input }));
    expect(again.executionArn).toBe(first.executionArn);
    expect(first.executionArn).toBe(`arn:aws:states:${REGION}:${ACCOUNT}:execution:Loop:job-a`);
    await expect(
      sfn.send(new StartExecutionCommand({ stateMachineArn: MACHINE_ARN, name: 'job-a', input: '{"left":1,"wait":1}' })),
    ).rejects.toBeInstanceOf(ExecutionAlreadyExists);
    await sfn.send(new StopExecutionCommand({ executionArn: first.executionArn, error: 'Test', cause: 'stopped by the test' }));
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn: first.executionArn }));
    expect(described.status).toBe('ABORTED');
    expect(described.startDate).toBeInstanceOf(Date);
    // Closed: the name cannot be reused, even with the same input.
    await expect(sfn.send(new StartExecutionCommand({ stateMachineArn: MACHINE_ARN, name: 'job-a', input }))).rejects.toBeInstanceOf(
      ExecutionAlreadyExists,
    );
  });

  it('maps unknown state machines and bad names to the SDK exception classes', async () => {
    await expect(sfn.send(new StartExecutionCommand({ stateMachineArn: `${MACHINE_ARN}Nope`, name: 'x' }))).rejects.toBeInstanceOf(
      StateMachineDoesNotExist,
    );
    await expect(sfn.send(new StartExecutionCommand({ stateMachineArn: MACHINE_ARN, name: 'has space' }))).rejects.toBeInstanceOf(
      InvalidName,
    );
  });

  it('runs the loop with scaled waits to SUCCEEDED, and reports a Task error through Catch', async () => {
    const ok = await sfn.send(
      new StartExecutionCommand({ stateMachineArn: MACHINE_ARN, name: 'job-b', input: JSON.stringify({ left: 3, wait: 20 }) }),
    );
    const bad = await sfn.send(
      new StartExecutionCommand({
        stateMachineArn: MACHINE_ARN,
        name: 'job-c',
        input: JSON.stringify({ left: 3, wait: 1, fail: 'Flaky' }),
      }),
    );
    const started = Date.now();
    const done = await waitFor('both executions to end', async () => {
      const [a, b] = await Promise.all(
        [ok, bad].map((execution) => sfn.send(new DescribeExecutionCommand({ executionArn: execution.executionArn }))),
      );
      return a!.status !== 'RUNNING' && b!.status !== 'RUNNING' ? { ok: a!, bad: b! } : undefined;
    });
    // 3 waits of 20 s at scale 0.01 = 0.6 s, far from a minute.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(done.ok.status).toBe('SUCCEEDED');
    expect(JSON.parse(done.ok.output!)).toEqual({ left: 0, wait: 20 });
    // The Catch path ends in the Fail state, after the Retry of the named error (2 attempts).
    expect(done.bad.status).toBe('FAILED');
    expect(done.bad.error).toBe('WorkFailed');
    expect(steps.executions().find((execution) => execution.name === 'job-c')?.taskInvocations.Work).toBe(3);
  });

  it('refuses to register a state machine with a Task that has no local handler', () => {
    expect(
      () => new LocalStepFunctions({ stateMachines: [{ arn: MACHINE_ARN, name: 'Loop', definition: LOOP, taskHandlers: {} }] }),
    ).toThrow(/Work.*real Lambda/);
  });

  it('PutEvents records events with Detail parsed, and fails malformed entries alone', async () => {
    const result = await events.send(
      new PutEventsCommand({
        Entries: [
          { EventBusName: 'outcomes', Source: 'test', DetailType: 'Thing Happened', Detail: '{"a":1}' },
          { EventBusName: 'outcomes', Source: 'test', DetailType: 'Thing Happened', Detail: 'not json' },
          { EventBusName: 'nope', Source: 'test', DetailType: 'Thing Happened', Detail: '{}' },
        ],
      }),
    );
    expect(result.FailedEntryCount).toBe(2);
    expect(result.Entries?.[0]?.EventId).toBeDefined();
    expect(result.Entries?.[1]?.ErrorCode).toBe('MalformedDetail');
    expect(result.Entries?.[2]?.ErrorCode).toBe('NotFoundException');
    expect(bus.events()).toEqual([
      expect.objectContaining({ source: 'test', 'detail-type': 'Thing Happened', detail: { a: 1 }, eventBusName: 'outcomes' }),
    ]);
  });

  it('GetSecretValue serves registered secrets by ARN or name, and is ResourceNotFoundException otherwise', async () => {
    const byArn = await secrets.send(
      new GetSecretValueCommand({ SecretId: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:ApiKey-AbCdEf` }),
    );
    const byName = await secrets.send(new GetSecretValueCommand({ SecretId: 'ApiKey' }));
    expect(byArn.SecretString).toBe('k3y');
    expect(byName.SecretString).toBe('k3y');
    await expect(secrets.send(new GetSecretValueCommand({ SecretId: 'other' }))).rejects.toBeInstanceOf(ResourceNotFoundException);
  });

  it('refuses what it does not serve (e.g. a Lambda Invoke), so nothing falls through to AWS', async () => {
    const response = await fetch(`${server.url}/2015-03-31/functions/Work/invocations`, { method: 'POST', body: '{}' });
    expect(response.status).toBe(400);
    expect(response.headers.get('x-amzn-errortype')).toBe('UnknownOperationException');
  });
});

describe('the SQS event source mapping', () => {
  it('hands records over in the shape Lambda uses', () => {
    const record = toLambdaRecord(
      {
        MessageId: 'm-1',
        ReceiptHandle: 'rh',
        Body: '{"a":1}',
        MD5OfBody: 'md5',
        Attributes: {
          ApproximateReceiveCount: '2',
          SentTimestamp: '1700000000000',
          SenderId: 'AIDA',
          ApproximateFirstReceiveTimestamp: '1700000000001',
        },
        MessageAttributes: {
          kind: { DataType: 'String', StringValue: 'x' },
          blob: { DataType: 'Binary', BinaryValue: new Uint8Array([1, 2]) },
        },
      },
      'arn:aws:sqs:us-east-1:000000000000:intake',
      'us-east-1',
    );
    expect(record).toEqual({
      messageId: 'm-1',
      receiptHandle: 'rh',
      body: '{"a":1}',
      attributes: {
        ApproximateReceiveCount: '2',
        SentTimestamp: '1700000000000',
        SenderId: 'AIDA',
        ApproximateFirstReceiveTimestamp: '1700000000001',
      },
      messageAttributes: {
        kind: { dataType: 'String', stringValue: 'x', stringListValues: [], binaryListValues: [] },
        blob: { dataType: 'Binary', binaryValue: 'AQI=', stringListValues: [], binaryListValues: [] },
      },
      md5OfBody: 'md5',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:intake',
      awsRegion: 'us-east-1',
    });
  });

  it.each([
    ['no response', undefined, []],
    ['an empty list', { batchItemFailures: [] }, []],
    ['listed failures', { batchItemFailures: [{ itemIdentifier: 'b' }] }, ['b']],
    ['an unknown id (whole batch)', { batchItemFailures: [{ itemIdentifier: 'zzz' }] }, ['a', 'b', 'c']],
    ['an empty id (whole batch)', { batchItemFailures: [{ itemIdentifier: '' }] }, ['a', 'b', 'c']],
  ])('reads the partial batch response: %s', (_name, response, expected) => {
    expect([...failuresOf(response as never, ['a', 'b', 'c'])].sort()).toEqual(expected);
  });
});

describe('Lambda emulation', () => {
  it('counts the context down from the function timeout, and enforces it', async () => {
    const context = createLambdaContext({ name: 'fn', arn: 'arn', timeoutMs: 5_000, memorySize: 256 });
    expect(context.getRemainingTimeInMillis()).toBeGreaterThan(4_900);
    expect(context.memoryLimitInMB).toBe('256');
    const slow = { name: 'slow', arn: 'arn', timeoutMs: 50, memorySize: 128, handler: () => new Promise<never>(() => undefined) };
    await expect(invokeFunction(slow, {})).rejects.toMatchObject({ errorType: 'Sandbox.Timedout' });
    class CustomError extends Error {
      override name = 'CustomError';
    }
    const failing = {
      name: 'failing',
      arn: 'arn',
      timeoutMs: 1_000,
      memorySize: 128,
      handler: async () => Promise.reject(new CustomError('nope')),
    };
    await expect(invokeFunction(failing, {})).rejects.toMatchObject({ errorType: 'CustomError', errorMessage: 'nope' });
  });
});

describe('the time scale', () => {
  it('scales Wait states that read the state document, and retry intervals', () => {
    let document: unknown = { wait: 10 };
    const waits = scaledWaitOverrides(LOOP, 0.1, () => document);
    expect(waits.Wait).toBe(1_000);
    document = { wait: 3 };
    expect(waits.Wait).toBe(300);
    expect(scaledRetryOverrides(LOOP, 0.1)).toEqual({ Work: [1_000] });
    expect(scaledWaitOverrides(LOOP, 1, () => document)).toEqual({});
    expect(nextDocument({ Type: 'Task', ResultPath: '$.outcome' }, { a: 1 }, { b: 2 })).toEqual({ a: 1, outcome: { b: 2 } });
    expect(nextDocument({ Type: 'Task' }, { a: 1 }, { b: 2 })).toEqual({ b: 2 });
    expect(() => parseTimeScale('0')).toThrow(RangeError);
    expect(() => parseTimeScale('fast')).toThrow(RangeError);
  });
});

describe('the network guard', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.4.5.6', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['localhost', true],
    ['10.0.0.1', false],
    ['192.0.2.1', false],
    ['sqs.us-east-1.amazonaws.com', false],
    ['sqs.us-east-1.localhost.evil.com', false],
  ])('isLoopbackHost(%s) is %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});

describe('the CLI arguments and job inputs', () => {
  const work = mkdtempSync(join(tmpdir(), 'waterflai-inputs-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('has documented defaults and refuses bad values', () => {
    expect(parseCliArgs([])).toMatchObject({ timeoutSeconds: 100, serve: false, timeScale: 1, dynamodb: 'auto' });
    expect(parseCliArgs(['--dynamodb', 'local', '--time-scale', '0.5', '--timeout', '30'])).toMatchObject({
      dynamodb: 'dynamodb-local',
      timeScale: 0.5,
      timeoutSeconds: 30,
    });
    for (const args of [
      ['--timeout', '0'],
      ['--timeout', 'soon'],
      ['--time-scale', '-1'],
      ['--dynamodb', 'mysql'],
      ['--log-level', 'LOUD'],
      ['extra'],
    ]) {
      expect(() => parseCliArgs(args), args.join(' ')).toThrow(UsageError);
    }
  });

  it('reads one message per non-blank line, and says clearly when the samples are missing', () => {
    const file = join(work, 'jobs.txt');
    writeFileSync(file, 'a\r\n\n  \n{"b":1}\n');
    expect(loadJobLines(file)).toEqual([
      { source: `${file}:1`, body: 'a' },
      { source: `${file}:4`, body: '{"b":1}' },
    ]);
    expect(() => loadSampleJobs(join(work, 'missing'))).toThrow(JobInputError);
    expect(() => loadSampleJobs(join(work, 'missing'))).toThrow(/sample job messages are missing/);
    expect(loadSampleJobs().length).toBeGreaterThanOrEqual(3);
  });
});
