import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { CANCEL_REASON, ERROR_CODE, JOB_STATUS, JOB_TABLE, STATUS_RANK, type JobStatus } from '../../lambdas/contract/constants';
import { JobStore } from '../../lambdas/aws/job-store';
import { isSettled, type NewJob } from '../../lambdas/contract/job-record';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';

const ACCEPTED_AT = '2025-03-01T12:00:00.000Z';
const at = (seconds: number): string => new Date(Date.parse(ACCEPTED_AT) + seconds * 1000).toISOString();
const ARN = 'arn:aws:states:us-east-1:123456789012:execution:poll-loop:';

let dynamo: LocalDynamo;
let store: JobStore;

beforeAll(async () => {
  dynamo = await startLocalDynamo();
});

afterAll(async () => {
  await dynamo.close();
});

beforeEach(async () => {
  store = new JobStore(dynamo.documentClient, await dynamo.createJobTable());
});

function newJob(jobId: string, overrides: Partial<NewJob> = {}): NewJob {
  return {
    job_id: jobId,
    chatbot_id: 'bot-1',
    metadata: { tenant: 'acme' },
    source_message_id: `msg-${jobId}`,
    delivery: 'sqs',
    accepted_at: ACCEPTED_AT,
    deadline_at: at(3600),
    expires_at: 1_800_000_000,
    state_machine_execution_name: jobId,
    claim_expires_at: Date.parse(ACCEPTED_AT) + 60_000,
    ...overrides,
  };
}

const tombstone = (jobId: string, messageId = 'msg-cancel', delivery: 'sqs' | 'eventbridge' = 'sqs') => ({
  job_id: jobId,
  source_message_id: messageId,
  delivery,
  at: at(5),
  expires_at: 1_900_000_000,
});

describe('JobStore.createTombstone', () => {
  it('creates a terminal CANCELLED record (reason requested) for an unknown job', async () => {
    // Act
    const created = await store.createTombstone(tombstone('job-1', 'msg-cancel', 'eventbridge'));

    // Assess
    expect(created).toBe(true);
    const record = await store.get('job-1');
    expect(record).toEqual({
      job_id: 'job-1',
      status: JOB_STATUS.CANCELLED,
      status_rank: STATUS_RANK.CANCELLED,
      version: 1,
      accepted_at: at(5),
      updated_at: at(5),
      deadline_at: at(5),
      finished_at: at(5),
      expires_at: 1_900_000_000,
      metadata: {},
      source_message_id: 'msg-cancel',
      delivery: 'eventbridge',
      polls: 0,
      cancel_reason: CANCEL_REASON.REQUESTED,
    });
    expect(isSettled(record!)).toBe(true);
  });

  it('returns false and leaves an existing job untouched', async () => {
    // Prepare
    await store.claim(newJob('job-1'));
    await store.saveExecutionId('job-1', 'wf-1', at(1));
    const before = await store.get('job-1');

    // Act
    const created = await store.createTombstone(tombstone('job-1'));

    // Assess
    expect(created).toBe(false);
    expect(await store.get('job-1')).toEqual(before);
  });

  it('a second tombstone for the same job returns false and keeps the first', async () => {
    await store.createTombstone(tombstone('job-1', 'msg-a'));

    const second = await store.createTombstone({ ...tombstone('job-1', 'msg-b'), at: at(99) });

    expect(second).toBe(false);
    expect(await store.get('job-1')).toMatchObject({ source_message_id: 'msg-a', finished_at: at(5), version: 1 });
  });

  it('two concurrent tombstones: exactly one is created', async () => {
    const results = await Promise.all([
      store.createTombstone(tombstone('job-1', 'msg-a')),
      store.createTombstone(tombstone('job-1', 'msg-b')),
    ]);

    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it("blocks the job's start: the claim finds a settled record and no execution id or status can be saved", async () => {
    // Prepare
    await store.createTombstone(tombstone('job-1'));

    // Act
    const claim = await store.claim(newJob('job-1'));
    const saved = await store.saveExecutionId('job-1', 'wf-late', at(10));
    const applied = await store.applyStatus('job-1', { status: JOB_STATUS.RUNNING, fields: { progress: 5 }, now: at(11) });
    const taken = await store.takeOverClaim('job-1', undefined, Date.parse(at(200)), at(12));

    // Assess
    expect(claim.kind).toBe('exists');
    expect(isSettled(claim.record)).toBe(true);
    expect(saved.applied).toBe(false);
    expect(applied.applied).toBe(false);
    expect(taken).toBeUndefined();
    const record = await store.get('job-1');
    expect(record).toMatchObject({ status: JOB_STATUS.CANCELLED, version: 1 });
    expect(record?.execution_id).toBeUndefined();
  });
});

describe('JobStore.recordHandOver', () => {
  async function runningJob(): Promise<void> {
    await store.claim(newJob('job-1'));
    await store.saveExecutionId('job-1', 'wf-1', at(1));
    await store.saveStateMachineExecution('job-1', `${ARN}job-1`, at(1));
  }

  it('moves a job to generation 1 and records the successor execution', async () => {
    // Prepare
    await runningJob();
    const before = await store.get('job-1');

    // Act
    const recorded = await store.recordHandOver('job-1', 1, `${ARN}job-1-g1`, at(100));

    // Assess
    expect(recorded).toBe(true);
    expect(await store.get('job-1')).toEqual({
      ...before,
      generation: 1,
      state_machine_execution_arn: `${ARN}job-1-g1`,
      updated_at: at(100),
      version: before!.version + 1,
    });
  });

  it.each([
    ['the same generation again', 2, false],
    ['an older generation', 1, false],
    ['the next generation', 3, true],
    ['a later generation, skipping one', 5, true],
  ])('after generation 2, %s is %s', async (_name, generation, expected) => {
    // Prepare
    await runningJob();
    await store.recordHandOver('job-1', 2, `${ARN}job-1-g2`, at(100));
    const before = await store.get('job-1');

    // Act
    const recorded = await store.recordHandOver('job-1', generation, `${ARN}job-1-g${generation}`, at(200));

    // Assess
    expect(recorded).toBe(expected);
    const after = await store.get('job-1');
    if (expected) expect(after).toMatchObject({ generation, state_machine_execution_arn: `${ARN}job-1-g${generation}` });
    else expect(after).toEqual(before);
  });

  it('two concurrent hand-overs to the same generation: exactly one is recorded', async () => {
    await runningJob();

    const results = await Promise.all([
      store.recordHandOver('job-1', 1, `${ARN}a`, at(100)),
      store.recordHandOver('job-1', 1, `${ARN}b`, at(100)),
    ]);

    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await store.get('job-1'))?.generation).toBe(1);
  });

  it('an unknown job: returns false and creates nothing', async () => {
    expect(await store.recordHandOver('ghost', 1, `${ARN}ghost-g1`, at(100))).toBe(false);
    expect(await store.get('ghost')).toBeUndefined();
  });

  it('leaves the status alone', async () => {
    await runningJob();
    await store.applyStatus('job-1', { status: JOB_STATUS.RUNNING, fields: { progress: 40 }, now: at(50) });

    await store.recordHandOver('job-1', 1, `${ARN}job-1-g1`, at(100));

    expect(await store.get('job-1')).toMatchObject({ status: JOB_STATUS.RUNNING, status_rank: STATUS_RANK.RUNNING, progress: 40 });
  });
});

describe('JobStore.listOverdue (dynalite)', () => {
  /** A job in `status` with `deadline_at`, last updated at `updatedSeconds`. */
  async function jobIn(
    jobId: string,
    status: JobStatus,
    deadlineAt: string,
    updatedSeconds = 0,
    metadata: Record<string, unknown> = {},
  ): Promise<void> {
    await store.claim(newJob(jobId, { deadline_at: deadlineAt, accepted_at: at(updatedSeconds), metadata }));
    if (status === JOB_STATUS.SUBMITTING) return;
    await store.saveExecutionId(jobId, `wf-${jobId}`, at(updatedSeconds));
    if (status === JOB_STATUS.PENDING) return;
    const fields = status === JOB_STATUS.FAILED ? { error_code: ERROR_CODE.EXECUTION_FAILED, error_message: 'boom' } : {};
    await store.applyStatus(jobId, { status, fields, now: at(updatedSeconds) });
  }

  const CUTOFF = at(1000);

  it('lists jobs of the given status whose deadline is strictly before the cutoff', async () => {
    // Prepare
    await jobIn('early', JOB_STATUS.RUNNING, at(10), 1);
    await jobIn('just-before', JOB_STATUS.RUNNING, at(999.999), 2);
    await jobIn('at-cutoff', JOB_STATUS.RUNNING, CUTOFF, 3);
    await jobIn('later', JOB_STATUS.RUNNING, at(5000), 4);
    await jobIn('other-status', JOB_STATUS.PENDING, at(10), 5);
    await jobIn('terminal', JOB_STATUS.FAILED, at(10), 6);

    // Act
    const ids = await store.listOverdue(JOB_STATUS.RUNNING, CUTOFF, 100);

    // Assess
    expect(ids.sort()).toEqual(['early', 'just-before']);
  });

  it('lists the oldest updated jobs first', async () => {
    await jobIn('updated-late', JOB_STATUS.PENDING, at(10), 300);
    await jobIn('updated-early', JOB_STATUS.PENDING, at(10), 100);
    await jobIn('updated-middle', JOB_STATUS.PENDING, at(10), 200);

    const ids = await store.listOverdue(JOB_STATUS.PENDING, CUTOFF, 100);

    expect(ids).toEqual(['updated-early', 'updated-middle', 'updated-late']);
  });

  it.each([
    [1, ['a']],
    [2, ['a', 'b']],
    [3, ['a', 'b', 'c']],
    [10, ['a', 'b', 'c']],
  ])('returns at most limit=%i ids', async (limit, expected) => {
    await jobIn('a', JOB_STATUS.SUBMITTING, at(10), 1);
    await jobIn('b', JOB_STATUS.SUBMITTING, at(10), 2);
    await jobIn('c', JOB_STATUS.SUBMITTING, at(10), 3);

    expect(await store.listOverdue(JOB_STATUS.SUBMITTING, CUTOFF, limit)).toEqual(expected);
  });

  it('an empty status partition yields no ids', async () => {
    expect(await store.listOverdue(JOB_STATUS.UNKNOWN, CUTOFF, 10)).toEqual([]);
  });

  it('follows pages past 1 MB, including pages the filter empties', async () => {
    // Prepare: five large jobs not yet due fill the first page(s); the overdue ones come after them
    const bulk = { blob: 'x'.repeat(300_000) };
    for (let i = 0; i < 5; i += 1) await jobIn(`big-${i}`, JOB_STATUS.RUNNING, at(9_999), 10 + i, bulk);
    await jobIn('overdue-1', JOB_STATUS.RUNNING, at(10), 100, bulk);
    await jobIn('overdue-2', JOB_STATUS.RUNNING, at(10), 101);
    const send = vi.spyOn(dynamo.documentClient, 'send');

    // Act
    const ids = await store.listOverdue(JOB_STATUS.RUNNING, CUTOFF, 100);

    // Assess
    const queries = send.mock.calls.filter(([command]) => command instanceof QueryCommand).length;
    send.mockRestore();
    expect(ids).toEqual(['overdue-1', 'overdue-2']);
    expect(queries).toBeGreaterThan(1);
  });
});

describe('JobStore.listOverdue (the queries it sends)', () => {
  const documentClient = DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-east-1' }));
  const ddbMock = mockClient(documentClient);
  const scripted = new JobStore(documentClient, 'jobs');

  beforeEach(() => {
    ddbMock.reset();
  });

  afterAll(() => {
    ddbMock.restore();
  });

  it('queries the status index for the status, filtering on the deadline, and projects only the job id', async () => {
    // Prepare
    ddbMock.on(QueryCommand).resolves({ Items: [{ job_id: 'a' }] });

    // Act
    await scripted.listOverdue(JOB_STATUS.RUNNING, '2025-03-01T12:00:00.000Z', 10);

    // Assess
    expect(ddbMock).toHaveReceivedCommandOnce(QueryCommand);
    const input = ddbMock.commandCalls(QueryCommand)[0]!.args[0].input;
    expect(input).toMatchObject({ TableName: 'jobs', IndexName: JOB_TABLE.STATUS_INDEX, ProjectionExpression: '#job_id' });
    expect(input.ExclusiveStartKey).toBeUndefined();
    const names = input.ExpressionAttributeNames ?? {};
    const values = input.ExpressionAttributeValues ?? {};
    const keyCondition = (input.KeyConditionExpression ?? '')
      .replace(/#\w+/g, (name) => names[name] ?? name)
      .replace(/:\w+/g, (value) => JSON.stringify(values[value]));
    const filter = (input.FilterExpression ?? '')
      .replace(/#\w+/g, (name) => names[name] ?? name)
      .replace(/:\w+/g, (value) => JSON.stringify(values[value]));
    expect(keyCondition).toBe(`${JOB_TABLE.STATUS_INDEX_PARTITION_KEY} = "RUNNING"`);
    expect(filter).toBe('deadline_at < "2025-03-01T12:00:00.000Z"');
  });

  it('follows LastEvaluatedKey across pages, empty ones included, until there is none', async () => {
    // Prepare
    const key1 = { job_id: 'b', status: 'PENDING', updated_at: 't1' };
    const key2 = { job_id: 'x', status: 'PENDING', updated_at: 't2' };
    ddbMock
      .on(QueryCommand)
      .resolvesOnce({ Items: [{ job_id: 'a' }, { job_id: 'b' }], LastEvaluatedKey: key1 })
      .resolvesOnce({ Items: [], LastEvaluatedKey: key2 })
      .resolvesOnce({ Items: [{ job_id: 'c' }] });

    // Act
    const ids = await scripted.listOverdue(JOB_STATUS.PENDING, 'cutoff', 100);

    // Assess
    expect(ids).toEqual(['a', 'b', 'c']);
    const startKeys = ddbMock.commandCalls(QueryCommand).map((call) => call.args[0].input.ExclusiveStartKey);
    expect(startKeys).toEqual([undefined, key1, key2]);
  });

  it('stops reading pages once the limit is reached', async () => {
    // Prepare
    ddbMock
      .on(QueryCommand)
      .resolvesOnce({ Items: [{ job_id: 'a' }], LastEvaluatedKey: { job_id: 'a' } })
      .resolvesOnce({ Items: [{ job_id: 'b' }, { job_id: 'c' }], LastEvaluatedKey: { job_id: 'c' } })
      .resolves({ Items: [{ job_id: 'never' }] });

    // Act
    const ids = await scripted.listOverdue(JOB_STATUS.PENDING, 'cutoff', 2);

    // Assess
    expect(ids).toEqual(['a', 'b']);
    expect(ddbMock).toHaveReceivedCommandTimes(QueryCommand, 2);
  });

  it('skips items without a string job id and copes with a page without Items', async () => {
    ddbMock
      .on(QueryCommand)
      .resolvesOnce({ LastEvaluatedKey: { job_id: 'k' } })
      .resolvesOnce({ Items: [{ job_id: 7 }, {}, { job_id: 'ok' }] });

    expect(await scripted.listOverdue(JOB_STATUS.PENDING, 'cutoff', 10)).toEqual(['ok']);
  });

  it('a query failure propagates', async () => {
    const fault = Object.assign(new Error('Rate exceeded'), { name: 'ProvisionedThroughputExceededException' });
    ddbMock.on(QueryCommand).rejects(fault);

    await expect(scripted.listOverdue(JOB_STATUS.PENDING, 'cutoff', 10)).rejects.toBe(fault);
  });
});
