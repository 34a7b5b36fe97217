/**
 * Secrets and data, end to end on the local runtime (DESIGN.md, "Guarantees": the API key
 * never appears in logs, environment variables, outputs, the template or events;
 * `input_data` and `final_output` are not logged by default).
 *
 * Waterflai is a simulator started here with a recognisable API key, given to the runtime as
 * an external server, so the key reaches the handlers only the way it does in AWS: through
 * (local) Secrets Manager, here under an existing secret's ARN (`apiKeySecretArn`). The key
 * is also left in `WATERFLAI_API_KEY` while the stacks synthesize, where a careless construct
 * could pick it up. Jobs run with recognisable `input_data` and `final_output` markers down
 * every path the handlers log on (completed, failed, refused by Waterflai, retried after a
 * 429, poll faults, cancelled on request, invalid messages), with handler logs at DEBUG (and
 * POWERTOOLS_LOGGER_LOG_EVENT on) and everything the process writes captured.
 */
import { DescribeExecutionCommand, ListExecutionsCommand, SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient, type Message } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPE, ENV, JOB_STATUS } from '../../lambdas/contract/constants';
import { readOrchestratorConfig } from '../../lib/config';
import { OUTPUT_ID } from '../../lib/orchestrator-stack';
import { synthesizeTemplate, type CloudFormationTemplate } from '../../local/asl';
import { startLocalRuntime, type LocalRuntime } from '../../local/runtime/runtime';
import { startSimulator, type Simulator } from '../../local/simulator/server';
import { captureProcessOutput, type OutputCapture } from '../support/output-capture';
import { drainQueue, eventsFor, waitFor } from './support';

const API_KEY = 'wfk-RECOGNISABLE-SECRET-7d41c09e2b85f3a6';
const INPUT_MARKER = 'INPUT-MARKER-5e1b9c37a2';
const OUTPUT_MARKER = 'OUTPUT-MARKER-0a8d62f4c9';
const EXISTING_SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:waterflai/api-key-AbC123';
const TIME_SCALE = 0.1;

let output: OutputCapture;
let simulator: Simulator;
let runtime: LocalRuntime;
let sfn: SFNClient;
let sqs: SQSClient;
let keyInEnvironment: string | undefined;
const deadLetters: Message[] = [];

/** Everything, as text, for "does the secret appear anywhere in it". */
const text = (value: unknown): string => JSON.stringify(value) ?? '';

/** A job request carrying the input marker (and, for completed jobs, an output with the output marker). */
const job = (jobId: string, simulate: Record<string, unknown>): string =>
  JSON.stringify({
    job_id: jobId,
    chatbot_id: 'secrets-bot',
    input_data: { query: `${INPUT_MARKER} please summarise`, context: { note: INPUT_MARKER }, simulate },
    metadata: { suite: 'secrets' },
  });

const JOBS = {
  completed: {
    jobId: 'secret-completed',
    body: () => job('secret-completed', { duration_ms: 300, queue_ms: 0, output: { answer: `${OUTPUT_MARKER} done` } }),
    expected: JOB_STATUS.COMPLETED,
  },
  failed: {
    jobId: 'secret-failed',
    body: () => job('secret-failed', { duration_ms: 300, queue_ms: 0, outcome: 'failed' }),
    expected: JOB_STATUS.FAILED,
  },
  // The simulator refuses an invalid scenario with 422: WATERFLAI_REJECTED.
  refused: { jobId: 'secret-refused', body: () => job('secret-refused', { nodes: 0 }), expected: JOB_STATUS.FAILED },
  // Its start is answered 429 once (scheduled below): deferred, then started.
  retried: {
    jobId: 'secret-retried',
    body: () => job('secret-retried', { duration_ms: 300, queue_ms: 0, output: { answer: OUTPUT_MARKER } }),
    expected: JOB_STATUS.COMPLETED,
  },
  // Invalid: the chatbot id; the input marker is in the body.
  invalid: {
    jobId: 'secret-invalid',
    body: () => JSON.stringify({ job_id: 'secret-invalid', chatbot_id: `../${INPUT_MARKER}`, input_data: { query: INPUT_MARKER } }),
    expected: JOB_STATUS.FAILED,
  },
  // Long enough to be cancelled on request while it runs.
  cancelled: {
    jobId: 'secret-cancelled',
    body: () => job('secret-cancelled', { duration_ms: 60_000, queue_ms: 0 }),
    expected: JOB_STATUS.CANCELLED,
  },
} as const;

beforeAll(async () => {
  output = captureProcessOutput();
  keyInEnvironment = process.env.WATERFLAI_API_KEY;
  process.env.WATERFLAI_API_KEY = API_KEY;
  // An operator turning on Powertools' event logging must not get message bodies logged either.
  process.env.POWERTOOLS_LOGGER_LOG_EVENT = 'true';
  simulator = await startSimulator({ apiKey: API_KEY, timeScale: TIME_SCALE, seed: 8, log: (line) => console.log(line) });
  runtime = await startLocalRuntime({
    timeScale: TIME_SCALE,
    waterflai: { baseUrl: simulator.url, apiKey: API_KEY },
    waterflaiFromEnvironment: false,
    stackConfig: { pollIntervalSeconds: 1, apiKeySecretArn: EXISTING_SECRET_ARN },
    logLevel: 'DEBUG',
    onProgress: (step) => console.log(`booting ${step}`),
    onWarning: (message) => console.warn(message),
  });
  const clientConfig = { region: runtime.region, credentials: runtime.credentials };
  sfn = new SFNClient({ ...clientConfig, endpoint: runtime.endpoints.aws });
  sqs = new SQSClient({ ...clientConfig, endpoint: runtime.endpoints.sqs });

  // Act: every job, down every path, with faults on the start and the polls.
  simulator.setFaults({
    retryAfterSeconds: 1,
    failNext: [
      { kind: 'rateLimit', route: 'start' },
      { kind: 'error5xx', route: 'get', status: 503 },
      { kind: 'malformedJson', route: 'get' },
      { kind: 'reset', route: 'get' },
    ],
  });
  await runtime.sendMessage(JOBS.retried.body());
  await waitFor('the 429 on the first start', () => simulator.stats().faults.rateLimit === 1, 10_000, 50);
  for (const name of ['completed', 'failed', 'refused', 'invalid', 'cancelled'] as const) await runtime.sendMessage(JOBS[name].body());
  await runtime.sendMessage(`{"job_id": "secret-not-json", "input_data": {"query": "${INPUT_MARKER}"`);
  await waitFor('the long job to run', async () => (await runtime.getJob(JOBS.cancelled.jobId))?.status === JOB_STATUS.RUNNING, 15_000);
  await runtime.sendMessage(JSON.stringify({ action: 'cancel', job_id: JOBS.cancelled.jobId }));
  await waitFor(
    'an outcome for every job',
    () => Object.values(JOBS).every((j) => eventsFor(runtime.eventBridge.events(), j.jobId).length > 0),
    30_000,
    100,
  );
  await waitFor(
    'the two invalid messages and the refused job in the DLQ',
    async () => (await drainQueue(sqs, runtime.deadLetterQueueUrl, deadLetters)).length >= 3,
    10_000,
    100,
  );
  simulator.setFaults({});
}, 90_000);

afterAll(async () => {
  sfn?.destroy();
  sqs?.destroy();
  await runtime?.close();
  await simulator?.close();
  if (keyInEnvironment === undefined) delete process.env.WATERFLAI_API_KEY;
  else process.env.WATERFLAI_API_KEY = keyInEnvironment;
  delete process.env.POWERTOOLS_LOGGER_LOG_EVENT;
  output?.stop();
});

describe('secrets and data on the local runtime', () => {
  it('ran every job to its outcome with the key, through the existing secret, and the input reached Waterflai unchanged', async () => {
    for (const { jobId, expected } of Object.values(JOBS)) {
      expect((await runtime.getJob(jobId))?.status, jobId).toBe(expected);
    }
    expect((await runtime.getJob(JOBS.refused.jobId))?.error_code).toBe('WATERFLAI_REJECTED');
    const stats = simulator.stats();
    expect(stats.unauthorized).toBe(0);
    expect(stats.faults.rateLimit).toBe(1);
    expect(stats.faults.error5xx + stats.faults.malformedJson + stats.faults.reset).toBe(3);
    expect(stats.by_route.cancel).toBeGreaterThanOrEqual(1);
    // The key was in use (every request carried it) and the input markers really travelled.
    const executions = simulator.executions();
    expect(executions.length).toBeGreaterThanOrEqual(4);
    expect(text(executions.map((execution) => execution.input_data))).toContain(INPUT_MARKER);
    expect(runtime.secrets.reads()).toBeGreaterThanOrEqual(1);
    expect(runtime.model.apiKeySecretId).toBe(EXISTING_SECRET_ARN);
  });

  it('wrote structured handler logs at DEBUG, none of them holding the key, input_data or final_output', () => {
    // The capture works: the handlers logged about these very jobs.
    const lines = output.jsonLines();
    expect(lines.length).toBeGreaterThan(10);
    const logged = text(lines);
    for (const { jobId } of Object.values(JOBS)) expect(logged, `a log line about ${jobId}`).toContain(jobId);
    expect(lines.some((line) => line.level === 'WARN')).toBe(true);
    expect(output.lines().some((line) => line.startsWith('POST /v1/executions/secrets-bot/async'))).toBe(true);

    const everything = output.text();
    expect(everything).not.toContain(API_KEY);
    expect(everything).not.toContain('RECOGNISABLE-SECRET');
    expect(everything).not.toContain(INPUT_MARKER);
    expect(everything).not.toContain(OUTPUT_MARKER);
  });

  it('published no event holding the key or input_data (final_output travels only in Completed events, by design)', () => {
    const events = runtime.eventBridge.events();
    expect(events.length).toBeGreaterThanOrEqual(Object.keys(JOBS).length);
    expect(text(events)).not.toContain(API_KEY);
    expect(text(events)).not.toContain(INPUT_MARKER);
    const withOutput = events.filter((event) => text(event).includes(OUTPUT_MARKER));
    expect(withOutput.map((event) => event['detail-type'])).toEqual([DETAIL_TYPE.COMPLETED, DETAIL_TYPE.COMPLETED]);
  });

  it('kept the key and input_data out of the job table, the Step Functions executions and the DLQ reasons', async () => {
    const records = await runtime.scanJobs();
    expect(records.length).toBeGreaterThanOrEqual(Object.keys(JOBS).length);
    expect(text(records)).not.toContain(API_KEY);
    expect(text(records)).not.toContain(INPUT_MARKER);

    const listed = await sfn.send(new ListExecutionsCommand({ stateMachineArn: runtime.stateMachineArn, maxResults: 1000 }));
    expect((listed.executions ?? []).length).toBeGreaterThanOrEqual(4);
    for (const execution of listed.executions ?? []) {
      const described = await sfn.send(new DescribeExecutionCommand({ executionArn: execution.executionArn }));
      for (const marker of [API_KEY, INPUT_MARKER, OUTPUT_MARKER]) {
        expect(described.input ?? '', `input of ${execution.name}`).not.toContain(marker);
        expect(described.output ?? '', `output of ${execution.name}`).not.toContain(marker);
      }
    }

    expect(deadLetters.length).toBeGreaterThanOrEqual(3);
    expect(text(deadLetters.map((message) => message.MessageAttributes))).not.toContain(API_KEY);
  });

  it('left the key in no environment variable of the process the handlers run in', () => {
    // It was put into WATERFLAI_API_KEY before the runtime booted; the handlers never see it.
    expect(process.env.WATERFLAI_API_KEY).toBeUndefined();
    expect(Object.values(process.env).filter((value) => value?.includes(API_KEY))).toEqual([]);
    expect(process.env[ENV.WATERFLAI_API_KEY_SECRET_ID]).toBe(EXISTING_SECRET_ARN);
  });
});

/** Every Lambda function's environment variables in a template. */
function lambdaEnvironments(template: CloudFormationTemplate): Array<[string, Record<string, unknown>]> {
  return Object.entries(template.Resources ?? {})
    .filter(([, resource]) => resource.Type === 'AWS::Lambda::Function')
    .map(([id, resource]) => [
      id,
      (resource.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {},
    ]);
}

describe.each([
  { config: 'the default config (a placeholder secret is created)', stackConfig: {}, secretArn: undefined },
  { config: 'an existing secret (apiKeySecretArn)', stackConfig: { apiKeySecretArn: EXISTING_SECRET_ARN }, secretArn: EXISTING_SECRET_ARN },
])('the synthesized template with $config', ({ stackConfig, secretArn }) => {
  let template: CloudFormationTemplate;

  beforeAll(() => {
    // The key sits in the environment while the stack synthesizes.
    process.env.WATERFLAI_API_KEY = API_KEY;
    try {
      template = synthesizeTemplate({ config: stackConfig });
    } finally {
      delete process.env.WATERFLAI_API_KEY;
    }
  }, 60_000);

  it('holds the key nowhere: no resource, no output, no Lambda environment variable', () => {
    expect(text(template)).not.toContain(API_KEY);
    const outputs = (template.Outputs ?? {}) as Record<string, unknown>;
    expect(Object.keys(outputs)).toContain(OUTPUT_ID.API_KEY_SECRET_ARN);
    expect(text(outputs)).not.toContain(API_KEY);

    const environments = lambdaEnvironments(template);
    expect(environments.length).toBeGreaterThanOrEqual(3);
    for (const [id, variables] of environments) {
      expect(text(variables), id).not.toContain(API_KEY);
      // The functions get the secret's id, never a variable holding the key itself.
      expect(
        Object.keys(variables).filter((name) => /API_KEY|SECRET/i.test(name)),
        id,
      ).toEqual([ENV.WATERFLAI_API_KEY_SECRET_ID]);
      if (secretArn !== undefined) expect(variables[ENV.WATERFLAI_API_KEY_SECRET_ID], id).toBe(secretArn);
    }
  });

  it('points the functions and the ApiKeySecretArn output at the secret, whose value is not in the template', () => {
    const outputs = template.Outputs as Record<string, { Value: unknown }>;
    const secrets = Object.entries(template.Resources ?? {}).filter(([, resource]) => resource.Type === 'AWS::SecretsManager::Secret');
    if (secretArn === undefined) {
      // One placeholder, with a generated value (no SecretString in the template).
      expect(secrets).toHaveLength(1);
      const [logicalId, secret] = secrets[0]!;
      expect(secret.Properties?.SecretString).toBeUndefined();
      expect(secret.Properties?.GenerateSecretString).toBeDefined();
      expect(outputs[OUTPUT_ID.API_KEY_SECRET_ARN]?.Value).toEqual({ Ref: logicalId });
    } else {
      expect(secrets).toEqual([]);
      expect(outputs[OUTPUT_ID.API_KEY_SECRET_ARN]?.Value).toBe(secretArn);
    }
  });
});

describe('the configuration', () => {
  it('has no setting that would carry the key into the template', () => {
    for (const context of [{ 'waterflai:apiKey': API_KEY }, { waterflai: { apiKey: API_KEY } }, { 'waterflai:apiKeyValue': API_KEY }]) {
      expect(() => readOrchestratorConfig({ getAllContext: () => context })).toThrow(/unknown context key/);
    }
  });

  it('refuses a base URL with credentials in it, without echoing them', () => {
    expect(() => synthesizeTemplate({ config: { baseUrl: `https://user:${API_KEY}@api.waterflai.example` } })).toThrow(/credentials/);
    try {
      synthesizeTemplate({ config: { baseUrl: `https://user:${API_KEY}@api.waterflai.example` } });
    } catch (error) {
      expect(String(error)).not.toContain(API_KEY);
    }
  });
});
