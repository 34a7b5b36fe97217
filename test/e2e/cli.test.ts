/**
 * `npm start` as a user runs it: a child process (`tsx local/main.ts`), its output, its
 * files and its exit code.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DETAIL_TYPE, EVENT_SOURCE } from '../../lambdas/contract/constants';
import { EXIT_CODE } from '../../local/cli/cli';
import { SAMPLE_JOBS_DIR } from '../../local/cli/jobs';
import { waitFor } from './support';

const ROOT = fileURLToPath(new URL('../../.', import.meta.url));
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const work = mkdtempSync(join(tmpdir(), 'waterflai-cli-'));

afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * The deadline run mostly waits, so it starts first and runs beside the other tests; its
 * deadline leaves room for a slow boot on a busy machine.
 */
const DEADLINE_SECONDS = 35;
let deadlineRun: Promise<Run>;
beforeAll(() => {
  const jobsFile = join(work, 'slow.txt');
  writeFileSync(
    jobsFile,
    JSON.stringify({ job_id: 'cli-too-slow', chatbot_id: 'cli-bot', input_data: { query: 'c', simulate: { duration_ms: 600_000 } } }),
  );
  deadlineRun = runStart(['--jobs', jobsFile, '--timeout', String(DEADLINE_SECONDS), '--dynamodb', 'dynalite']);
});

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

function runStart(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, ['local/main.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, WATERFLAI_BASE_URL: undefined, WATERFLAI_API_KEY: undefined, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
  });
}

// Independent child processes run side by side, in groups small enough for 2 cores.
describe.concurrent('npm start: arguments and inputs', () => {
  it('prints the usage with --help and refuses unknown options with exit code 2', async ({ expect }) => {
    const [help, bad] = await Promise.all([runStart(['--help']), runStart(['--no-such-option'])]);
    expect(help.code).toBe(EXIT_CODE.OK);
    expect(help.stdout).toContain('Usage: npm start -- [options]');
    for (const flag of ['--jobs FILE', '--events-out FILE', '--timeout SECONDS', '--serve', '--time-scale X'])
      expect(help.stdout).toContain(flag);
    expect(bad.code).toBe(EXIT_CODE.USAGE);
    expect(bad.stderr).toMatch(/no-such-option/);
  }, 30_000);

  it('fails with exit code 2 and a clear message when the --jobs file is missing', async ({ expect }) => {
    const run = await runStart(['--jobs', join(work, 'does-not-exist.txt')]);
    expect(run.code).toBe(EXIT_CODE.USAGE);
    expect(run.stderr).toMatch(/cannot read --jobs .*does-not-exist\.txt/);
  }, 30_000);

  it('exits 3 naming what failed when a service cannot start (an external server without a key, or on plain http)', async ({ expect }) => {
    const [noKey, plainHttp] = await Promise.all([
      runStart(['--dynamodb', 'dynalite'], { WATERFLAI_BASE_URL: 'http://127.0.0.1:9' }),
      runStart(['--dynamodb', 'dynalite'], { WATERFLAI_BASE_URL: 'http://waterflai.example.com', WATERFLAI_API_KEY: 'k' }),
    ]);
    expect(noKey.code).toBe(EXIT_CODE.BOOT_FAILED);
    expect(noKey.stderr).toMatch(/could not start Waterflai: WATERFLAI_BASE_URL is set but WATERFLAI_API_KEY is not/);
    expect(plainHttp.code).toBe(EXIT_CODE.BOOT_FAILED);
    expect(plainHttp.stderr).toMatch(/could not start the start function .*https/i);
  }, 60_000);
});

describe('npm start: runs', () => {
  it('runs the sample jobs to completion, failure and cancellation, exits 0 and writes the events', async ({ expect }) => {
    // Prepare
    const eventsFile = join(work, 'sample-events.jsonl');
    const samples = readdirSync(SAMPLE_JOBS_DIR).filter((name) => name.endsWith('.json'));

    // Act
    const run = await runStart(['--time-scale', '0.25', '--events-out', eventsFile]);

    // Assess
    expect(run.code, run.stderr).toBe(EXIT_CODE.OK);
    expect(run.stdout).toMatch(/JOB\s+OUTCOME\s+DURATION\s+POLLS/);
    for (const outcome of ['COMPLETED', 'FAILED', 'CANCELLED']) expect(run.stdout).toContain(outcome);
    for (const type of Object.values(DETAIL_TYPE)) expect(run.stdout).toContain(type);
    const lines = readFileSync(eventsFile, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(samples.length);
    for (const line of lines) {
      const event = JSON.parse(line) as Record<string, unknown>;
      expect(Object.keys(event)).toEqual(['source', 'detail-type', 'detail']);
      expect(event.source).toBe(EVENT_SOURCE);
      expect(typeof event.detail).toBe('object');
    }
    expect(run.ms).toBeLessThan(60_000);
  }, 90_000);

  it('sends each line of --jobs as one raw message, valid or not, and counts dead-lettered ones as done', async ({ expect }) => {
    // Prepare
    const jobsFile = join(work, 'jobs.txt');
    const eventsFile = join(work, 'jobs-events.jsonl');
    writeFileSync(
      jobsFile,
      [
        JSON.stringify({ job_id: 'cli-ok', chatbot_id: 'cli-bot', input_data: { query: 'a', simulate: { duration_ms: 500 } } }),
        '',
        'not json at all',
        JSON.stringify({ job_id: 'cli-bad', input_data: {} }),
        `${JSON.stringify({ job_id: 'cli-fail', chatbot_id: 'cli-bot', input_data: { query: 'b', simulate: { duration_ms: 500, outcome: 'failed' } } })}\r`,
      ].join('\n'),
    );

    // Act
    const run = await runStart(['--jobs', jobsFile, '--events-out', eventsFile, '--time-scale', '0.25', '--dynamodb', 'dynalite']);

    // Assess
    expect(run.code, run.stderr).toBe(EXIT_CODE.OK);
    expect(run.stdout).toContain('Submitting 4 message(s)');
    expect(run.stdout).toMatch(/cli-ok\s+COMPLETED/);
    expect(run.stdout).toMatch(/cli-fail\s+FAILED/);
    expect(run.stdout).toMatch(/cli-bad\s+FAILED/);
    expect(run.stdout).toMatch(/message:\S+\s+DEAD-LETTERED.*INVALID_MESSAGE/);
    const events = readFileSync(eventsFile, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { 'detail-type': string; detail: { job_id: string } });
    expect(events.map((event) => event.detail.job_id).sort()).toEqual(['cli-bad', 'cli-fail', 'cli-ok']);
  }, 90_000);
});

describe('npm start: serving', () => {
  it('serves the local endpoints with --serve, runs a job sent with the AWS SDK, and stops cleanly on SIGINT', async ({ expect }) => {
    // Prepare
    const child = spawn(TSX, ['local/main.ts', '--serve', '--time-scale', '0.25', '--dynamodb', 'dynalite'], {
      cwd: ROOT,
      env: { ...process.env, WATERFLAI_BASE_URL: undefined, WATERFLAI_API_KEY: undefined },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    try {
      const line = await waitFor('the endpoints line', () => /^LOCAL_RUNTIME_ENDPOINTS (.+)$/m.exec(stdout)?.[1], 40_000);
      const endpoints = JSON.parse(line) as {
        region: string;
        accessKeyId: string;
        secretAccessKey: string;
        sqsEndpoint: string;
        intakeQueueUrl: string;
      };
      expect(new URL(endpoints.sqsEndpoint).hostname).toBe('127.0.0.1');

      // Act: another program sends a job with the AWS SDK.
      const sqs = new SQSClient({
        endpoint: endpoints.sqsEndpoint,
        region: endpoints.region,
        credentials: { accessKeyId: endpoints.accessKeyId, secretAccessKey: endpoints.secretAccessKey },
      });
      await sqs.send(
        new SendMessageCommand({
          QueueUrl: endpoints.intakeQueueUrl,
          MessageBody: JSON.stringify({
            job_id: 'cli-served',
            chatbot_id: 'cli-bot',
            input_data: { query: 'd', simulate: { duration_ms: 400 } },
          }),
        }),
      );
      sqs.destroy();
      await waitFor('the served job to be announced', () => stdout.includes('Waterflai Execution Completed  job=cli-served'), 30_000);
    } finally {
      child.kill('SIGINT');
    }

    // Assess
    expect(await exited).toBe(EXIT_CODE.OK);
    expect(stdout).toMatch(/cli-served\s+COMPLETED/);
  }, 90_000);
});

describe('npm start: deadline', () => {
  it(
    'exits 1 at the --timeout deadline and names the unfinished job',
    async ({ expect }) => {
      const run = await deadlineRun;
      expect(run.code, run.stderr).toBe(EXIT_CODE.UNFINISHED);
      expect(run.stderr).toMatch(
        new RegExp(`timed out after ${DEADLINE_SECONDS} s with 1 unfinished job\\(s\\): cli-too-slow \\(RUNNING\\)`),
      );
      expect(run.stdout).toMatch(/cli-too-slow\s+UNFINISHED \(RUNNING\)/);
      expect(run.ms).toBeLessThan((DEADLINE_SECONDS + 15) * 1000);
    },
    (DEADLINE_SECONDS + 30) * 1000,
  );
});
