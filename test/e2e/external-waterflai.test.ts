/**
 * The local runtime against a separately started Waterflai-compatible server named by
 * WATERFLAI_BASE_URL / WATERFLAI_API_KEY (here a second simulator instance), instead of the
 * embedded one; DynamoDB on dynalite (the fallback engine when java is missing).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPE, ENV, JOB_STATUS } from '../../lambdas/contract/constants';
import { installNetworkGuard, type NetworkGuard } from '../../local/runtime/net-guard';
import { startLocalRuntime, type LocalRuntime } from '../../local/runtime/runtime';
import { startSimulator, type Simulator } from '../../local/simulator/server';
import { eventsFor, jobBody, waitFor } from './support';

const EXTERNAL_KEY = 'external-server-key-8c1f';

let guard: NetworkGuard;
let external: Simulator;
let runtime: LocalRuntime;

beforeAll(async () => {
  guard = installNetworkGuard({ mode: 'enforce' });
  external = await startSimulator({ apiKey: EXTERNAL_KEY, timeScale: 0.2, seed: 99 });
  process.env[ENV.WATERFLAI_BASE_URL] = external.url;
  process.env.WATERFLAI_API_KEY = EXTERNAL_KEY;
  runtime = await startLocalRuntime({ timeScale: 0.2, dynamodb: 'dynalite', stackConfig: { pollIntervalSeconds: 1 }, networkGuard: guard });
}, 60_000);

afterAll(async () => {
  await runtime?.close();
  await external?.close();
  guard?.uninstall();
  delete process.env[ENV.WATERFLAI_BASE_URL];
  delete process.env.WATERFLAI_API_KEY;
});

describe('the local runtime with WATERFLAI_BASE_URL', () => {
  it('uses the named server instead of starting its own simulator, and keeps the key out of the environment', () => {
    expect(runtime.simulator).toBeUndefined();
    expect(runtime.endpoints.waterflai).toBe(external.url);
    expect(process.env[ENV.WATERFLAI_BASE_URL]).toBe(external.url);
    // The key reaches the handlers through the local Secrets Manager only.
    expect(process.env.WATERFLAI_API_KEY).toBeUndefined();
    expect(Object.values(process.env)).not.toContain(EXTERNAL_KEY);
    expect(runtime.dynamodbEngine).toBe('dynalite');
    expect(runtime.ttl).toBe('unsupported');
  });

  it('runs jobs to completion, failure and cancellation on the external server', async () => {
    // Prepare
    const jobs = [
      { jobId: 'ext-completed', simulate: { duration_ms: 600, nodes: 3 }, expected: JOB_STATUS.COMPLETED },
      { jobId: 'ext-failed', simulate: { duration_ms: 600, outcome: 'failed' }, expected: JOB_STATUS.FAILED },
      { jobId: 'ext-cancelled', simulate: { duration_ms: 3_000, cancel_after_ms: 500 }, expected: JOB_STATUS.CANCELLED },
    ];

    // Act
    for (const job of jobs) await runtime.sendMessage(jobBody(job.jobId, 'external-bot', job.simulate));
    await waitFor(
      'the three outcome events',
      () => jobs.every((job) => eventsFor(runtime.eventBridge.events(), job.jobId).length > 0),
      30_000,
    );

    // Assess
    for (const job of jobs) {
      const published = eventsFor(runtime.eventBridge.events(), job.jobId);
      expect(published, job.jobId).toHaveLength(1);
      expect(published[0]!['detail-type']).toBe(DETAIL_TYPE[job.expected as keyof typeof DETAIL_TYPE]);
      expect((await runtime.getJob(job.jobId))?.status).toBe(job.expected);
    }
    const stats = external.stats();
    expect(stats.executions_by_chatbot['external-bot']).toBe(3);
    expect(stats.unauthorized).toBe(0);
    expect(stats.by_route.get).toBeGreaterThanOrEqual(3);
    expect(runtime.secrets.reads()).toBeGreaterThanOrEqual(1);
  }, 40_000);

  it('made every connection to 127.0.0.1', () => {
    expect(guard.connections().length).toBeGreaterThan(10);
    expect(guard.nonLoopback()).toEqual([]);
  });
});
