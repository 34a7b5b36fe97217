/**
 * Property tests (fast-check) for the invariants DESIGN.md promises whatever the input:
 * - the intake parser throws nothing but InvalidMessageError, and what it accepts can never
 *   change where a request goes;
 * - the status mapper is total;
 * - job status never moves backwards in DynamoDB (dynalite), whatever the order of the
 *   observations, sequential or concurrent, and a terminal status is final.
 * Runs are bounded (fixed seeds, 50-200 runs) so each property takes a few seconds at most.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ERROR_CODE,
  isTerminalStatus,
  JOB_STATUS,
  STATUS_RANK,
  TERMINAL_RANK,
  WATERFLAI_STATUS,
  type JobStatus,
  type WaterflaiStatus,
} from '../../lambdas/contract/constants';
import { InvalidMessageError } from '../../lambdas/contract/errors';
import { JOB_ID_PATTERN, URL_IDENTIFIER_PATTERN } from '../../lambdas/contract/identifiers';
import { JOB_REQUEST_LIMITS, parseIntakeMessage, type IntakeMessage } from '../../lambdas/contract/job-request';
import { JobStore, type UpdateResult } from '../../lambdas/aws/job-store';
import type { JobRecord } from '../../lambdas/contract/job-record';
import { MAX_ERROR_MESSAGE_CHARS, MAX_NODE_NAME_CHARS, mapExecutionStatus } from '../../lambdas/domain/status-mapping';
import type { ExecutionStatus } from '../../lambdas/contract/waterflai-api';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';

const MESSAGE_ID = '0f8fad5b-d9cb-469f-a165-70867728950e';

// ---------------------------------------------------------------------------------------
// The intake parser
// ---------------------------------------------------------------------------------------

/** Parses, and returns the result or the thrown value, so the property can inspect both. */
function parse(body: string): { ok: IntakeMessage } | { thrown: unknown } {
  try {
    return { ok: parseIntakeMessage(body, MESSAGE_ID) };
  } catch (thrown) {
    return { thrown };
  }
}

/** The parser's contract for any body: a typed error, or a request whose identifiers are safe. */
function checkParse(body: string): void {
  const result = parse(body);
  if ('thrown' in result) {
    expect(result.thrown).toBeInstanceOf(InvalidMessageError);
    const error = result.thrown as InvalidMessageError;
    expect(error.code).toBe(ERROR_CODE.INVALID_MESSAGE);
    expect(error.message.length).toBeGreaterThan(0);
    expect(error.message.length).toBeLessThanOrEqual(400);
    if (error.context.jobId !== undefined) expect(error.context.jobId).toMatch(JOB_ID_PATTERN);
    if (error.context.chatbotId !== undefined) expect(error.context.chatbotId).toMatch(URL_IDENTIFIER_PATTERN);
    return;
  }
  const message = result.ok;
  if (message.kind === 'cancel') {
    expect(message.job_id).toMatch(JOB_ID_PATTERN);
    return;
  }
  const { request } = message;
  expect(request.job_id).toMatch(JOB_ID_PATTERN);
  expect(request.chatbot_id).toMatch(URL_IDENTIFIER_PATTERN);
  expect(typeof request.input_data === 'object' && request.input_data !== null && !Array.isArray(request.input_data)).toBe(true);
  expect(typeof request.metadata === 'object' && request.metadata !== null && !Array.isArray(request.metadata)).toBe(true);
  if (request.timeout_seconds !== undefined) {
    expect(Number.isInteger(request.timeout_seconds)).toBe(true);
    expect(request.timeout_seconds).toBeGreaterThan(0);
    expect(request.timeout_seconds).toBeLessThanOrEqual(JOB_REQUEST_LIMITS.MAX_TIMEOUT_SECONDS);
  }
}

const jobIdArb = fc.stringMatching(JOB_ID_PATTERN);
const chatbotIdArb = fc.stringMatching(URL_IDENTIFIER_PATTERN);
/** Keys of opaque JSON objects, "__proto__" included (the parser must pass it through). */
const objectKey = fc.oneof(fc.string({ maxLength: 12 }), fc.constant('__proto__'));
const smallJson = fc.jsonValue({ maxDepth: 3 });
const jsonObject = fc.dictionary(objectKey, smallJson, { maxKeys: 4 });

/** A valid job request (as a plain object), with or without its optional fields. */
const validRequest = fc.record(
  {
    action: fc.constant('start'),
    job_id: jobIdArb,
    chatbot_id: chatbotIdArb,
    input_data: jsonObject,
    metadata: jsonObject,
    timeout_seconds: fc.integer({ min: 1, max: JOB_REQUEST_LIMITS.MAX_TIMEOUT_SECONDS }),
  },
  { requiredKeys: ['chatbot_id', 'input_data'] },
);

const FIELDS = [
  'action',
  'job_id',
  'chatbot_id',
  'input_data',
  'metadata',
  'timeout_seconds',
  'detail',
  'id',
  'detail-type',
  'source',
] as const;

/** One change to a request object (or its envelope). */
type Mutation = (value: Record<string, unknown>) => unknown;
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constantFrom(...FIELDS).map(
    (field): Mutation =>
      (value) => {
        const copy = { ...value };
        delete copy[field];
        return copy;
      },
  ),
  fc.tuple(fc.constantFrom(...FIELDS), fc.jsonValue({ maxDepth: 4 })).map(
    ([field, replacement]): Mutation =>
      (value) => ({ ...value, [field]: replacement }),
  ),
  fc.tuple(fc.string({ maxLength: 12 }), smallJson).map(
    ([key, extra]): Mutation =>
      (value) => ({ ...value, [key]: extra }),
  ),
  fc.constantFrom<unknown>('start', 'cancel', 'CANCEL', 'stop', 1, null, true).map(
    (action): Mutation =>
      (value) => ({ ...value, action }),
  ),
  fc.tuple(fc.oneof(jobIdArb, fc.string({ maxLength: 10 }), fc.integer()), fc.boolean()).map(
    ([id, withDetailType]): Mutation =>
      (value) => ({
        version: '0',
        id,
        ...(withDetailType ? { 'detail-type': 'Waterflai Job Requested' } : {}),
        source: 'com.example',
        detail: value,
      }),
  ),
  fc.integer({ min: 9, max: 40 }).map(
    (depth): Mutation =>
      (value) => {
        let deep: unknown = value;
        for (let level = 0; level < depth; level += 1) deep = { nested: deep };
        return { ...value, input_data: deep };
      },
  ),
);

/** A mutated text: truncated, or with a character inserted or replaced. */
const textMutation = fc.oneof(
  fc.nat().map((at) => (text: string) => text.slice(0, at % (text.length + 1))),
  fc.tuple(fc.nat(), fc.string({ unit: 'binary', minLength: 1, maxLength: 2 })).map(([at, insert]) => (text: string) => {
    const index = at % (text.length + 1);
    return text.slice(0, index) + insert + text.slice(index);
  }),
  fc
    .tuple(fc.nat(), fc.constantFrom('"', '{', '}', '\\', ',', ':', '\u0000', '\uFEFF', '\uD800'))
    .map(([at, replacement]) => (text: string) => {
      const index = at % Math.max(1, text.length);
      return text.slice(0, index) + replacement + text.slice(index + 1);
    }),
);

describe('parseIntakeMessage never throws anything but InvalidMessageError', () => {
  it('for arbitrary strings', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ maxLength: 300 }), fc.json({ maxDepth: 4 })),
        (body) => checkParse(body),
      ),
      { numRuns: 200, seed: 1129 },
    );
  });

  it('for arbitrary JSON values (objects with the real field names included)', () => {
    const withFieldNames = fc.dictionary(
      fc.constantFrom(...FIELDS, 'base_url', '__proto__', 'constructor'),
      fc.jsonValue({ maxDepth: 4 }),
      { maxKeys: 8 },
    );
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 5 }), withFieldNames), (value) => checkParse(JSON.stringify(value) ?? 'null')),
      { numRuns: 200, seed: 1130 },
    );
  });

  it('for mutated valid requests (fields removed, replaced or added, envelopes, deep nesting, broken text)', () => {
    fc.assert(
      fc.property(
        validRequest,
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        fc.option(textMutation, { nil: undefined }),
        (request, mutations, breakText) => {
          let value: unknown = request;
          for (const mutate of mutations)
            value = typeof value === 'object' && value !== null && !Array.isArray(value) ? mutate(value as Record<string, unknown>) : value;
          const text = JSON.stringify(value);
          checkParse(breakText ? breakText(text) : text);
        },
      ),
      { numRuns: 200, seed: 1131 },
    );
  });

  const DEEP = 120_000;
  const deepArray = `${'['.repeat(DEEP)}${']'.repeat(DEEP)}`;
  it.each([
    { where: 'the whole body', body: deepArray },
    { where: 'input_data', body: `{"chatbot_id":"bot","input_data":{"a":${deepArray}}}` },
    { where: 'metadata', body: `{"job_id":"j","chatbot_id":"bot","input_data":{},"metadata":{"a":${deepArray}}}` },
    { where: 'an unknown field', body: `{"job_id":"j","chatbot_id":"bot","input_data":{},"extra":${deepArray}}` },
    { where: 'job_id', body: `{"job_id":${deepArray},"chatbot_id":"bot","input_data":{}}` },
    {
      where: "an envelope's detail",
      body: `{"id":"e","detail-type":"d","source":"s","detail":{"chatbot_id":"bot","input_data":${'{"a":'.repeat(DEEP / 5)}1${'}'.repeat(DEEP / 5)}}}`,
    },
    { where: 'a cancel request', body: `{"action":"cancel","job_id":${deepArray}}` },
  ])('for $where nested 120,000 levels deep', ({ body }) => {
    const result = parse(body);
    expect('thrown' in result && result.thrown).toBeInstanceOf(InvalidMessageError);
    checkParse(body);
  });

  it('and passes a valid request through unchanged', () => {
    fc.assert(
      fc.property(validRequest, fc.boolean(), (request, viaEventBridge) => {
        const eventId = 'evt-0001';
        const body = viaEventBridge
          ? JSON.stringify({ version: '0', id: eventId, 'detail-type': 'Job', source: 'com.example', detail: request })
          : JSON.stringify(request);
        const result = parseIntakeMessage(body, MESSAGE_ID);
        expect(result.kind).toBe('start');
        if (result.kind !== 'start') return;
        expect(result.request).toEqual({
          job_id: request.job_id ?? (viaEventBridge ? eventId : MESSAGE_ID),
          chatbot_id: request.chatbot_id,
          input_data: JSON.parse(JSON.stringify(request.input_data)) as unknown,
          metadata: request.metadata === undefined ? {} : (JSON.parse(JSON.stringify(request.metadata)) as unknown),
          ...(request.timeout_seconds === undefined ? {} : { timeout_seconds: request.timeout_seconds }),
          delivery: viaEventBridge ? 'eventbridge' : 'sqs',
        });
      }),
      { numRuns: 150, seed: 1132 },
    );
  });
});

// ---------------------------------------------------------------------------------------
// The status mapper
// ---------------------------------------------------------------------------------------

const KNOWN: readonly WaterflaiStatus[] = Object.values(WATERFLAI_STATUS);
const JOB_STATUSES = new Set<string>(Object.values(JOB_STATUS));

const optionalString = fc.option(fc.string({ maxLength: 400 }), { nil: null });
const timestamp = fc.oneof(
  fc.constant(null),
  fc
    .date({ min: new Date('2020-01-01T00:00:00Z'), max: new Date('2030-01-01T00:00:00Z'), noInvalidDate: true })
    .map((date) => date.toISOString()),
  fc.string({ maxLength: 30 }),
);
const count = fc.option(fc.oneof(fc.nat(), fc.integer()), { nil: null });

/** Anything shaped like what the client returns, including values the client would have cleaned up. */
const executionStatus: fc.Arbitrary<ExecutionStatus> = fc
  .record({
    status: fc.oneof(fc.constantFrom(...KNOWN), fc.string({ maxLength: 20 })),
    progress: fc.option(fc.oneof(fc.double({ min: 0, max: 100, noNaN: true }), fc.double()), { nil: null }),
    current_node: fc.option(fc.string({ maxLength: 600 }), { nil: null }),
    completed_nodes: count,
    total_nodes: count,
    final_output: fc.option(fc.jsonValue({ maxDepth: 4 }), { nil: undefined }),
    error_message: fc.option(fc.string({ maxLength: MAX_ERROR_MESSAGE_CHARS + 200 }), { nil: null }),
    created_at: timestamp,
    started_at: timestamp,
    completed_at: timestamp,
    retry_count: count,
    execution_source: optionalString,
    is_temporary: fc.option(fc.boolean(), { nil: null }),
    cleanup_after: timestamp,
  })
  .map((fields) => ({
    execution_id: 'exec_1',
    ...fields,
    known_status: (KNOWN as readonly string[]).includes(fields.status) ? (fields.status as WaterflaiStatus) : null,
  }));

describe('mapExecutionStatus is total', () => {
  it('never throws and always yields a known job status consistent with what Waterflai reported', () => {
    fc.assert(
      fc.property(
        executionStatus,
        fc.date({ min: new Date('2020-01-01T00:00:00Z'), max: new Date('2030-01-01T00:00:00Z'), noInvalidDate: true }),
        fc.integer({ min: 1, max: 1_000_000 }),
        (execution, finishedAt, maxOutputBytes) => {
          const mapped = mapExecutionStatus(execution, finishedAt.toISOString(), maxOutputBytes);

          expect(JOB_STATUSES.has(mapped.status)).toBe(true);
          const expected: Record<WaterflaiStatus, readonly JobStatus[]> = {
            PENDING: [JOB_STATUS.PENDING],
            RUNNING: [JOB_STATUS.RUNNING],
            COMPLETED: [JOB_STATUS.COMPLETED, JOB_STATUS.FAILED],
            FAILED: [JOB_STATUS.FAILED],
            CANCELLED: [JOB_STATUS.CANCELLED],
          };
          expect(execution.known_status === null ? [JOB_STATUS.UNKNOWN] : expected[execution.known_status]).toContain(mapped.status);
          expect(isTerminalStatus(mapped.status)).toBe(
            execution.known_status === 'COMPLETED' || execution.known_status === 'FAILED' || execution.known_status === 'CANCELLED',
          );
          if (isTerminalStatus(mapped.status)) expect(mapped.fields.finished_at).toBe(finishedAt.toISOString());
          if (mapped.status === JOB_STATUS.FAILED) {
            expect([ERROR_CODE.EXECUTION_FAILED, ERROR_CODE.OUTPUT_TOO_LARGE, ERROR_CODE.OUTPUT_EXPIRED]).toContain(
              mapped.fields.error_code,
            );
            expect(mapped.fields.error_message?.length).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_CHARS);
          }
          if (mapped.status === JOB_STATUS.COMPLETED) expect(mapped.outputBytes).toBeLessThanOrEqual(maxOutputBytes);
          if (mapped.fields.current_node != null) expect(mapped.fields.current_node.length).toBeLessThanOrEqual(MAX_NODE_NAME_CHARS);
        },
      ),
      { numRuns: 200, seed: 1133 },
    );
  });
});

// ---------------------------------------------------------------------------------------
// Status updates in DynamoDB
// ---------------------------------------------------------------------------------------

const ALL_STATUSES = Object.values(JOB_STATUS);
const BASE_MS = Date.parse('2026-11-29T12:00:00.000Z');
const iso = (seconds: number): string => new Date(BASE_MS + seconds * 1000).toISOString();

/** A status observation as the poll step (with observedAt) or a settle path (without) writes it. */
interface Observation {
  readonly status: JobStatus;
  /** Seconds after BASE_MS; undefined for writes that carry no observation time (cancel, sweeper). */
  readonly observedAt: number | undefined;
  readonly progress: number;
}

const observation: fc.Arbitrary<Observation> = fc.record({
  status: fc.constantFrom(...ALL_STATUSES),
  observedAt: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined, freq: 4 }),
  progress: fc.integer({ min: 0, max: 100 }),
});

let dynamo: LocalDynamo;
let store: JobStore;
let jobCounter = 0;

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
});

afterAll(async () => {
  await dynamo?.close();
});

/** A new job in SUBMITTING (version 1). */
async function newJob(): Promise<JobRecord> {
  jobCounter += 1;
  const jobId = `prop-job-${jobCounter}`;
  const claimed = await store.claim({
    job_id: jobId,
    chatbot_id: 'bot-1',
    metadata: {},
    source_message_id: `msg-${jobCounter}`,
    delivery: 'sqs',
    accepted_at: iso(0),
    deadline_at: iso(3600),
    expires_at: 1_900_000_000,
    state_machine_execution_name: jobId,
    claim_expires_at: BASE_MS,
  });
  return claimed.record;
}

function apply(jobId: string, obs: Observation): Promise<UpdateResult> {
  const terminal = isTerminalStatus(obs.status);
  return store.applyStatus(jobId, {
    status: obs.status,
    fields: { progress: obs.progress, ...(terminal ? { finished_at: iso(obs.observedAt ?? 31) } : {}) },
    ...(obs.observedAt === undefined ? {} : { observedAt: iso(obs.observedAt) }),
    now: iso(obs.observedAt ?? 31),
  });
}

/** Checks a history of record snapshots ordered by version: rank never drops, terminal is final. */
function checkHistory(snapshots: readonly JobRecord[]): void {
  const byVersion = [...snapshots].sort((a, b) => a.version - b.version);
  for (let index = 1; index < byVersion.length; index += 1) {
    const previous = byVersion[index - 1]!;
    const current = byVersion[index]!;
    if (current.version === previous.version) {
      // Two reads of the same version must be the same state.
      expect(current.status).toBe(previous.status);
      continue;
    }
    expect(current.status_rank, `rank at version ${current.version}`).toBeGreaterThanOrEqual(previous.status_rank);
    expect(current.status_rank).toBe(STATUS_RANK[current.status]);
    if (previous.status_rank >= TERMINAL_RANK) {
      expect(current.status, `terminal status changed at version ${current.version}`).toBe(previous.status);
      expect(current.progress).toBe(previous.progress);
      expect(current.finished_at).toBe(previous.finished_at);
    }
  }
}

describe('status updates never move backwards', () => {
  it('applied one at a time in a random order: exactly the updates the rules allow are applied, rank never drops, terminal is final', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(observation, { minLength: 1, maxLength: 8 }), async (observations) => {
        const job = await newJob();
        // The model of the stored state.
        let rank = job.status_rank;
        let observedAt: number | undefined;
        let version = job.version;
        const snapshots: JobRecord[] = [job];
        for (const obs of observations) {
          const allowed =
            rank < TERMINAL_RANK &&
            STATUS_RANK[obs.status] >= rank &&
            (obs.observedAt === undefined || observedAt === undefined || obs.observedAt >= observedAt);
          const result = await apply(job.job_id, obs);
          expect(result.applied, `${obs.status}@${String(obs.observedAt)} on rank ${rank}@${String(observedAt)}`).toBe(allowed);
          if (allowed) {
            rank = STATUS_RANK[obs.status];
            observedAt = obs.observedAt ?? observedAt;
            version += 1;
          }
          const stored = (await store.get(job.job_id))!;
          expect(stored.version).toBe(version);
          expect(stored.status_rank).toBe(rank);
          if (result.applied) expect(stored.status).toBe(obs.status);
          snapshots.push(stored);
        }
        checkHistory(snapshots);
      }),
      { numRuns: 100, seed: 1134 },
    );
  }, 30_000);

  it('applied concurrently: every state ever stored, in version order, has a non-decreasing rank, and a terminal status is final', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(observation, { minLength: 2, maxLength: 10 }), async (observations) => {
        const job = await newJob();
        const snapshots: JobRecord[] = [job];
        let writing = true;
        // A reader racing the writers.
        const reader = (async () => {
          while (writing) snapshots.push((await store.get(job.job_id))!);
        })();
        const results = await Promise.all(observations.map((obs) => apply(job.job_id, obs)));
        writing = false;
        await reader;

        const appliedRecords = results.flatMap((result) => (result.applied ? [result.record] : []));
        snapshots.push(...appliedRecords, (await store.get(job.job_id))!);
        // Every applied write made its own version: the writes were serialised.
        expect(new Set(appliedRecords.map((record) => record.version)).size).toBe(appliedRecords.length);
        const final = (await store.get(job.job_id))!;
        expect(final.version).toBe(job.version + appliedRecords.length);
        // At most one terminal write wins, and it is what the record ends with.
        const terminalWins = appliedRecords.filter((record) => record.status_rank >= TERMINAL_RANK);
        expect(terminalWins.length).toBeLessThanOrEqual(1);
        if (terminalWins.length === 1) expect(final.status).toBe(terminalWins[0]!.status);
        checkHistory(snapshots);
      }),
      { numRuns: 80, seed: 1135 },
    );
  }, 30_000);

  it("whatever the order (and duplicates), a real execution's history ends in its outcome", async () => {
    // A real history: PENDING, RUNNING (and UNKNOWN) polls at increasing times, then one outcome observed last.
    const history = fc
      .record({
        steps: fc.array(fc.constantFrom<JobStatus>(JOB_STATUS.PENDING, JOB_STATUS.RUNNING, JOB_STATUS.UNKNOWN), {
          minLength: 1,
          maxLength: 5,
        }),
        outcome: fc.constantFrom<JobStatus>(JOB_STATUS.COMPLETED, JOB_STATUS.FAILED, JOB_STATUS.CANCELLED),
      })
      .map(({ steps, outcome }) => {
        const ranked = [...steps].sort((a, b) => STATUS_RANK[a] - STATUS_RANK[b]);
        const observations: Observation[] = ranked.map((status, index) => ({ status, observedAt: index, progress: index * 10 }));
        observations.push({ status: outcome, observedAt: ranked.length, progress: 100 });
        return observations;
      });
    const delivery = history.chain((observations) =>
      fc.record({
        observations: fc.constant(observations),
        // Any order, with some observations delivered twice (at-least-once).
        order: fc.shuffledSubarray([...observations, ...observations], {
          minLength: observations.length * 2,
          maxLength: observations.length * 2,
        }),
        concurrent: fc.boolean(),
      }),
    );
    await fc.assert(
      fc.asyncProperty(delivery, async ({ observations, order, concurrent }) => {
        const job = await newJob();
        const outcome = observations[observations.length - 1]!;
        const results: UpdateResult[] = [];
        if (concurrent) results.push(...(await Promise.all(order.map((obs) => apply(job.job_id, obs)))));
        else for (const obs of order) results.push(await apply(job.job_id, obs));

        const final = (await store.get(job.job_id))!;
        expect(final.status).toBe(outcome.status);
        expect(final.progress).toBe(100);
        expect(final.observed_at).toBe(iso(outcome.observedAt!));
        expect(results.filter((result) => result.applied && isTerminalStatus(result.record.status))).toHaveLength(1);
        checkHistory([job, ...results.flatMap((result) => (result.applied ? [result.record] : [])), final]);
      }),
      { numRuns: 100, seed: 1136 },
    );
  }, 30_000);
});
