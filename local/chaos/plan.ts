/**
 * The seeded plan of a chaos run: which jobs, with which scenario (what the simulator will
 * make of each one), which producer messages are sent when (duplicates, late duplicates,
 * cancel requests, a few invalid messages), what outcome each job may end with, and when the
 * upstream incidents happen (outages, key rotations).
 * The same `jobs`, `seed`, `rate`, `timeScale` and incident mix always give the same plan.
 */
import { randomHex } from '../simulator/prng';
import { DEFAULT_SCENARIO, type OutageAnswer, type RouteName } from '../simulator/server';
import { Dice, intBetween, pick } from '../faults/dice';
import { NO_INCIDENTS, type IncidentMix } from './faults';

/** What a job is meant to do (the mix is in {@link JOB_KIND_SHARES}). */
export type JobKind = 'completed' | 'failed' | 'remote-cancel' | 'producer-cancel' | 'cancel-first' | 'deadline' | 'deadline-race';

/** Share of each kind of job (sums to 1). */
export const JOB_KIND_SHARES: Readonly<Record<JobKind, number>> = {
  completed: 0.54,
  failed: 0.14,
  'remote-cancel': 0.1,
  'producer-cancel': 0.08,
  'cancel-first': 0.03,
  deadline: 0.07,
  'deadline-race': 0.04,
};

/** Producer-side duplicates and invalid messages. */
export const MESSAGE_SHARES = {
  /** Jobs whose message is sent twice in a row. */
  duplicateSend: 0.1,
  /** Jobs whose message is sent once more 5-25 s later (usually after the job finished). */
  lateDuplicateSend: 0.04,
  /** Jobs routed through an EventBridge rule (the message is the event envelope). */
  eventBridgeEnvelope: 0.05,
  /** Invalid messages, in proportion to the jobs. */
  invalid: 0.02,
} as const;

/** An outcome a job may end with: status plus error code (FAILED) or reason (CANCELLED). */
export type OutcomeName = `COMPLETED` | `FAILED:${string}` | `CANCELLED:${string}`;

/**
 * Outcomes of a job the orchestrator gave up on: a start whose retries faults exhausted, a
 * poll loop that stopped polling. Reported as give-ups (`give_ups`).
 */
export const GIVE_UP_OUTCOMES: readonly OutcomeName[] = ['FAILED:START_RETRIES_EXHAUSTED', 'FAILED:POLL_FAILED'];

/**
 * The give-ups faults may explain: any job may end `START_RETRIES_EXHAUSTED` when faults
 * struck its start (a give-up no fault explains is a violation). `POLL_FAILED` is not one of
 * them: every Waterflai fault of the run is transient (5xx, 429, resets, timeouts, outages,
 * a rotated key within the auth grace period), and transient faults must never fail a job
 * before its deadline, so a `POLL_FAILED` is always a violation (an outcome mismatch).
 */
export const EXPLAINABLE_GIVE_UPS: readonly OutcomeName[] = ['FAILED:START_RETRIES_EXHAUSTED'];

export interface PlannedJob {
  readonly index: number;
  readonly jobId: string;
  /** One chatbot per job, so the simulator's per-chatbot counters are per-job counters. */
  readonly chatbotId: string;
  readonly kind: JobKind;
  readonly simulate: Record<string, unknown>;
  readonly timeoutSeconds?: number;
  readonly viaEventBridge: boolean;
  /** The message body. */
  readonly body: string;
  /** The outcomes this job may end with (besides {@link GIVE_UP_OUTCOMES}). */
  readonly expected: readonly OutcomeName[];
  /** Whether a Waterflai execution is expected at all (false: the cancel comes first). */
  readonly expectsExecution: boolean;
  /**
   * `deadline-race` only: real ms by which the execution, counted from its POST, ends before
   * the job's deadline (`timeoutSeconds` after acceptance). A start delayed by more than this
   * (faults) makes the deadline come first: then `TIMED_OUT` is right, with the execution
   * cancelled upstream (the checks compare with the simulator's timeline).
   */
  readonly raceMarginMs?: number;
}

/** An outage on the run's timeline (`atMs` after the first message is sent). */
export interface PlannedOutage {
  readonly atMs: number;
  readonly durationMs: number;
  readonly routes: readonly RouteName[];
  readonly answers: Readonly<Partial<Record<OutageAnswer, number>>>;
}

/** A key rotation on the run's timeline: the new key goes into the secret at `atMs`. */
export interface PlannedKeyRotation {
  readonly atMs: number;
  readonly revokeOldAfterMs: number;
  /** The new key (seeded; a local test key). */
  readonly newKey: string;
}

/** When the incidents happen. */
export interface PlannedIncidents {
  readonly outages: readonly PlannedOutage[];
  readonly keyRotations: readonly PlannedKeyRotation[];
}

export type MessagePurpose = 'job' | 'duplicate' | 'late-duplicate' | 'cancel' | 'invalid';

export interface PlannedMessage {
  /** When to send it, in ms after the run starts. */
  readonly atMs: number;
  readonly body: string;
  readonly purpose: MessagePurpose;
  /** The job it belongs to (for an invalid message: the job id the system should derive, if any). */
  readonly jobId?: string;
  /** For invalid messages: which case. */
  readonly invalidCase?: string;
}

export interface ChaosPlan {
  readonly seed: number;
  /** The time scale the plan was made for (scenario ms x time scale = real ms). */
  readonly timeScale: number;
  readonly jobs: readonly PlannedJob[];
  /** Every message, in sending order. */
  readonly messages: readonly PlannedMessage[];
  /** When the last message goes out (ms after the start). */
  readonly lastSendMs: number;
  readonly incidents: PlannedIncidents;
}

export interface PlanOptions {
  readonly jobs: number;
  readonly seed: number;
  /** Job messages sent per second (duplicates, cancels and invalid messages come on top). */
  readonly rate: number;
  /** The run's time scale: scenario durations are chosen so real durations stay reasonable. */
  readonly timeScale: number;
  /** Outages and key rotations to put on the timeline. @default NO_INCIDENTS */
  readonly incidents?: IncidentMix;
}

const SHAPES = ['linear', 'front_loaded', 'back_loaded', 'stall', 'none'] as const;

/** The invalid messages: body, and the job id the orchestrator derives from it (if any). */
const INVALID_CASES: ReadonlyArray<{ name: string; body: (id: string) => string; hasJobId: boolean }> = [
  { name: 'not-json', body: (id) => `{"job_id": "${id}", "chatbot_id": `, hasJobId: false },
  { name: 'array', body: (id) => JSON.stringify([{ job_id: id }]), hasJobId: false },
  { name: 'missing-chatbot', body: (id) => JSON.stringify({ job_id: id, input_data: { query: 'x' } }), hasJobId: true },
  {
    name: 'path-chatbot',
    body: (id) => JSON.stringify({ job_id: id, chatbot_id: '../admin', input_data: { query: 'x' } }),
    hasJobId: true,
  },
  {
    name: 'unknown-field',
    body: (id) => JSON.stringify({ job_id: id, chatbot_id: 'bot', input_data: {}, base_url: 'http://203.0.113.9' }),
    hasJobId: true,
  },
  {
    name: 'bad-timeout',
    body: (id) => JSON.stringify({ job_id: id, chatbot_id: 'bot', input_data: {}, timeout_seconds: -5 }),
    hasJobId: true,
  },
];

/** Builds the plan. */
export function buildPlan(options: PlanOptions): ChaosPlan {
  const { jobs: count, seed, rate, timeScale } = options;
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`jobs must be a positive integer, got ${count}`);
  if (!(rate > 0)) throw new RangeError(`rate must be positive, got ${rate}`);
  const dice = new Dice(seed);
  const random = dice.stream('plan');
  const spacingMs = 1000 / rate;
  const width = String(count - 1).length;
  const kinds = Object.entries(JOB_KIND_SHARES) as Array<[JobKind, number]>;
  const jobs: PlannedJob[] = [];
  const messages: PlannedMessage[] = [];
  /** Scenario milliseconds for a wanted real duration. */
  const scenarioMs = (realMs: number): number => Math.round(realMs / timeScale);

  for (let index = 0; index < count; index += 1) {
    const jobId = `chaos-${seed}-${String(index).padStart(width, '0')}`;
    const chatbotId = `chaos-bot-${String(index).padStart(width, '0')}`;
    let pickValue = random();
    let kind: JobKind = 'completed';
    for (const [name, share] of kinds) {
      if (pickValue < share) {
        kind = name;
        break;
      }
      pickValue -= share;
    }
    const atMs = Math.round(index * spacingMs);
    const simulate: Record<string, unknown> = {
      nodes: intBetween(random, 1, 6),
      queue_ms: intBetween(random, 0, 4) * 100,
      progress: pick(random, SHAPES),
    };
    let timeoutSeconds: number | undefined;
    let expected: OutcomeName[];
    let expectsExecution = true;
    let cancelAtMs: number | undefined;
    let raceMarginMs: number | undefined;
    switch (kind) {
      case 'completed':
        simulate.duration_ms = intBetween(random, 500, 6_000);
        expected = ['COMPLETED'];
        break;
      case 'failed':
        simulate.duration_ms = intBetween(random, 500, 4_000);
        simulate.outcome = 'failed';
        expected = ['FAILED:EXECUTION_FAILED'];
        break;
      case 'remote-cancel': {
        const duration = intBetween(random, 2_000, 6_000);
        simulate.duration_ms = duration;
        if (random() < 0.5) simulate.outcome = 'cancelled';
        else simulate.cancel_after_ms = Math.floor(duration / 2);
        expected = ['CANCELLED:remote'];
        break;
      }
      case 'producer-cancel':
        // Runs ~8 s of real time; the cancel request follows 1-2.5 s after the job message.
        simulate.duration_ms = Math.max(DEFAULT_SCENARIO.duration_ms, scenarioMs(8_000));
        cancelAtMs = atMs + intBetween(random, 1_000, 2_500);
        // The cancel may lose the race against a start delayed by faults, or come after the end.
        expected = ['CANCELLED:requested', 'COMPLETED'];
        break;
      case 'cancel-first':
        simulate.duration_ms = Math.max(DEFAULT_SCENARIO.duration_ms, scenarioMs(8_000));
        cancelAtMs = atMs;
        // Faults may delay the cancel past the (delayed) start, even past the job's end.
        expected = ['CANCELLED:requested', 'COMPLETED'];
        expectsExecution = false;
        break;
      case 'deadline':
        // Runs ~12 s of real time; the job allows 1-2 s.
        simulate.duration_ms = Math.max(DEFAULT_SCENARIO.duration_ms, scenarioMs(12_000));
        timeoutSeconds = intBetween(random, 1, 2);
        expected = ['FAILED:TIMED_OUT'];
        break;
      case 'deadline-race': {
        // Completes a few hundred ms (real) before its deadline, reporting no progress, so
        // the last look before the deadline may well be the deadline poll itself.
        timeoutSeconds = intBetween(random, 2, 4);
        raceMarginMs = intBetween(random, 150, 450);
        const totalMs = scenarioMs(timeoutSeconds * 1000 - raceMarginMs);
        simulate.queue_ms = Math.min(Number(simulate.queue_ms), Math.floor(totalMs / 4));
        simulate.duration_ms = totalMs - Number(simulate.queue_ms);
        simulate.progress = 'none';
        expected = ['COMPLETED'];
        break;
      }
    }
    const viaEventBridge = random() < MESSAGE_SHARES.eventBridgeEnvelope;
    const request = {
      job_id: jobId,
      chatbot_id: chatbotId,
      input_data: { query: `chaos job ${index}`, job: jobId, simulate },
      metadata: { chaos_seed: seed, index, kind },
      ...(timeoutSeconds === undefined ? {} : { timeout_seconds: timeoutSeconds }),
    };
    const body = viaEventBridge
      ? JSON.stringify({
          version: '0',
          id: `evt-${jobId}`,
          'detail-type': 'Waterflai Job Requested',
          source: 'com.example.chaos',
          detail: request,
        })
      : JSON.stringify(request);
    jobs.push({
      index,
      jobId,
      chatbotId,
      kind,
      simulate,
      ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }),
      viaEventBridge,
      body,
      expected,
      expectsExecution,
      ...(raceMarginMs === undefined ? {} : { raceMarginMs }),
    });

    const cancelBody = JSON.stringify({ action: 'cancel', job_id: jobId });
    if (kind === 'cancel-first' && cancelAtMs !== undefined) {
      messages.push({ atMs: cancelAtMs, body: cancelBody, purpose: 'cancel', jobId });
      // The start follows 1.5 s later: the tombstone is there by then (unless faults delay the cancel).
      messages.push({ atMs: atMs + 1_500, body, purpose: 'job', jobId });
    } else {
      messages.push({ atMs, body, purpose: 'job', jobId });
      if (cancelAtMs !== undefined) messages.push({ atMs: cancelAtMs, body: cancelBody, purpose: 'cancel', jobId });
    }
    if (random() < MESSAGE_SHARES.duplicateSend) messages.push({ atMs: atMs + 1, body, purpose: 'duplicate', jobId });
    if (random() < MESSAGE_SHARES.lateDuplicateSend)
      messages.push({ atMs: atMs + intBetween(random, 5_000, 25_000), body, purpose: 'late-duplicate', jobId });
  }

  const invalidCount = Math.max(1, Math.round(count * MESSAGE_SHARES.invalid));
  const invalidWidth = String(invalidCount - 1).length;
  for (let i = 0; i < invalidCount; i += 1) {
    const invalid = INVALID_CASES[i % INVALID_CASES.length]!;
    const jobId = `chaos-${seed}-invalid-${String(i).padStart(invalidWidth, '0')}`;
    const atMs = Math.round(random() * (count - 1) * spacingMs);
    messages.push({
      atMs,
      body: invalid.body(jobId),
      purpose: 'invalid',
      ...(invalid.hasJobId ? { jobId } : {}),
      invalidCase: invalid.name,
    });
  }

  messages.sort((a, b) => a.atMs - b.atMs);
  return {
    seed,
    timeScale,
    jobs,
    messages,
    lastSendMs: messages.at(-1)?.atMs ?? 0,
    incidents: planIncidents(options.incidents ?? NO_INCIDENTS, (count - 1) * spacingMs, dice),
  };
}

/** Puts the incidents on the timeline: shares of the time the job messages take to send. */
function planIncidents(mix: IncidentMix, sendPhaseMs: number, dice: Dice): PlannedIncidents {
  const keys = dice.stream('keys');
  return {
    outages: mix.outages.map((outage) => ({
      atMs: Math.round(outage.atShare * sendPhaseMs),
      durationMs: outage.durationMs,
      routes: [...outage.routes],
      answers: { ...outage.answers },
    })),
    keyRotations: mix.keyRotations.map((rotation, index) => ({
      atMs: Math.round(rotation.atShare * sendPhaseMs),
      revokeOldAfterMs: rotation.revokeOldAfterMs,
      newKey: `chaos-rotated-${dice.seed}-${index + 1}-${randomHex(keys, 16)}`,
    })),
  };
}

/** The outcome name of a terminal record. */
export function outcomeName(record: { status: string; error_code?: string; cancel_reason?: string }): OutcomeName | string {
  if (record.status === 'FAILED') return `FAILED:${record.error_code ?? '?'}`;
  if (record.status === 'CANCELLED') return `CANCELLED:${record.cancel_reason ?? 'remote'}`;
  return record.status;
}
