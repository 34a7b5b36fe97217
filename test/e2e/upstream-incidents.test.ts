/**
 * The upstream-incident guarantees end to end: the local runtime (real handlers, the
 * synthesized state machine) against an independent Waterflai-compatible server that is
 * unreachable for longer than the old poll retries lasted, refuses the key for a
 * half-minute, finishes a job just before its deadline without reporting progress, and
 * refuses the first cancel. No job is given up, every outcome is true upstream, and no
 * execution is left running for a job that has an outcome.
 *
 * Time scale 0.02: a second of real time is 50 s of job time, so the 20 s outage is 1,000 s
 * of job time, longer than the ~915 s the state machine's old TransientPollError retries lasted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPE, ERROR_CODE, JOB_STATUS } from '../../lambdas/contract/constants';
import { RETRY_POLICY } from '../../lib/poll-state-machine';
import { installNetworkGuard, type NetworkGuard } from '../../local/runtime/net-guard';
import { startLocalRuntime, type LocalRuntime } from '../../local/runtime/runtime';
import { IncidentWaterflai } from '../support/incident-waterflai';
import { eventsFor, jobBody, waitFor } from './support';

const API_KEY = 'incident-server-key-41d7';
const TIME_SCALE = 0.02;
const OUTAGE_MS = 20_000;
const UNAUTHORIZED_MS = 30_000;

/** Seconds of job time the state machine's TransientPollError retries lasted (the old give-up point). */
function oldRetryBudgetSeconds(): number {
  const { interval, backoffRate, maxAttempts, maxDelay } = RETRY_POLICY.transientPoll;
  let total = 0;
  for (let attempt = 0; attempt < maxAttempts; attempt += 1)
    total += Math.min(interval.toSeconds() * backoffRate ** attempt, maxDelay.toSeconds());
  return total;
}

let guard: NetworkGuard;
let server: IncidentWaterflai;
let runtime: LocalRuntime;

beforeAll(async () => {
  guard = installNetworkGuard({ mode: 'enforce' });
  server = await IncidentWaterflai.start(API_KEY, {
    'outage-bot': { completesAfterMs: 8_000, outageMs: OUTAGE_MS },
    'auth-bot': { completesAfterMs: 5_000, unauthorizedMs: UNAUTHORIZED_MS },
    'race-bot': { completesAfterMs: 5_500 },
    'refuse-bot': { completesAfterMs: 3_600_000, refusedCancels: 1 },
  });
  runtime = await startLocalRuntime({
    timeScale: TIME_SCALE,
    waterflai: { baseUrl: server.url, apiKey: API_KEY },
    waterflaiFromEnvironment: false,
    stackConfig: { pollIntervalSeconds: 10, pollMaxSeconds: 60 },
    networkGuard: guard,
  });
}, 60_000);

afterAll(async () => {
  await runtime?.close();
  await server?.close();
  guard?.uninstall();
});

describe('upstream incidents against an independent Waterflai-compatible server', () => {
  it('the outage outlasts the old retry budget', () => {
    expect(OUTAGE_MS / 1000 / TIME_SCALE).toBeGreaterThan(oldRetryBudgetSeconds());
  });

  it('rides out an outage and a refused key, keeps a result that came just before the deadline, and confirms a refused cancel', async () => {
    // Act
    await runtime.sendMessage(jobBody('inc-outage', 'outage-bot', {}));
    await runtime.sendMessage(jobBody('inc-auth', 'auth-bot', {}));
    await runtime.sendMessage(jobBody('inc-race', 'race-bot', {}, { timeout_seconds: 6 }));
    await runtime.sendMessage(jobBody('inc-refuse', 'refuse-bot', {}, { timeout_seconds: 3 }));
    const jobs = ['inc-outage', 'inc-auth', 'inc-race', 'inc-refuse'];
    await waitFor('every outcome event', () => jobs.every((job) => eventsFor(runtime.eventBridge.events(), job).length > 0), 75_000, 250);

    // Assess: the first three end Completed, with their own execution's output
    const upstream = new Map(server.statuses().map((execution) => [execution.chatbotId, execution]));
    for (const [jobId, chatbotId] of [
      ['inc-outage', 'outage-bot'],
      ['inc-auth', 'auth-bot'],
      ['inc-race', 'race-bot'],
    ] as const) {
      const record = await runtime.getJob(jobId);
      expect(record, jobId).toMatchObject({
        status: JOB_STATUS.COMPLETED,
        execution_id: upstream.get(chatbotId)?.id,
        final_output: { answer: `done by ${chatbotId}` },
      });
      const events = eventsFor(runtime.eventBridge.events(), jobId);
      expect(
        events.map((event) => event['detail-type']),
        jobId,
      ).toEqual([DETAIL_TYPE.COMPLETED]);
    }
    // The outage and the refused key really happened, and the record no longer shows the incident.
    expect(server.stats().answered['GET 503']).toBeGreaterThan(0);
    expect(server.stats().answered['GET 401']).toBeGreaterThan(0);
    expect((await runtime.getJob('inc-outage'))?.incident).toBeNull();
    // A finished result is never cancelled.
    expect(upstream.get('race-bot')?.deletes).toBe(0);

    // The fourth ends with its deadline outcome after a further DELETE, confirmed upstream.
    expect(await runtime.getJob('inc-refuse')).toMatchObject({
      status: JOB_STATUS.FAILED,
      error_code: ERROR_CODE.TIMED_OUT,
      upstream_cancel: 'confirmed',
    });
    expect(upstream.get('refuse-bot')).toMatchObject({ status: 'CANCELLED' });
    expect(upstream.get('refuse-bot')?.deletes).toBeGreaterThanOrEqual(2);
    const [timedOut] = eventsFor(runtime.eventBridge.events(), 'inc-refuse');
    expect(timedOut?.detail).toMatchObject({ error: { code: ERROR_CODE.TIMED_OUT }, upstream_cancel: 'confirmed' });

    // No execution is left PENDING/RUNNING upstream for a job with an outcome.
    expect(server.statuses().filter((execution) => execution.status === 'RUNNING' || execution.status === 'PENDING')).toEqual([]);
  }, 90_000);

  it('made every connection to 127.0.0.1', () => {
    expect(guard.nonLoopback()).toEqual([]);
  });
});
