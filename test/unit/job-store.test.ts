import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODE, JOB_STATUS, JOB_TABLE, STATUS_RANK, type JobStatus } from '../../lambdas/contract/constants';
import { JobStore } from '../../lambdas/aws/job-store';
import { isSettled, type JobRecord, type NewJob, type RejectedJob, type StatusFields } from '../../lambdas/contract/job-record';
import { startLocalDynamo, type LocalDynamo } from '../support/dynalite';

const ACCEPTED_AT = '2025-03-01T12:00:00.000Z';
const CLAIM_UNTIL = Date.parse(ACCEPTED_AT) + 60_000;

let dynamo: LocalDynamo;

beforeAll(async () => {
  dynamo = await startLocalDynamo();
});

afterAll(async () => {
  await dynamo.close();
});

let jobCounter = 0;
function newJob(overrides: Partial<NewJob> = {}): NewJob {
  jobCounter += 1;
  return {
    job_id: `job-${jobCounter}`,
    chatbot_id: 'bot-1',
    metadata: { tenant: 'acme' },
    source_message_id: `msg-${jobCounter}`,
    delivery: 'sqs',
    accepted_at: ACCEPTED_AT,
    deadline_at: '2025-03-02T12:00:00.000Z',
    expires_at: 1_800_000_000,
    state_machine_execution_name: `exec-name-${jobCounter}`,
    claim_expires_at: CLAIM_UNTIL,
    ...overrides,
  };
}

function rejectedJob(jobId: string): RejectedJob {
  return {
    job_id: jobId,
    metadata: {},
    source_message_id: 'msg-rejected',
    delivery: 'sqs',
    at: '2025-03-01T12:00:01.000Z',
    expires_at: 1_800_000_000,
    error_code: ERROR_CODE.INVALID_MESSAGE,
    error_message: 'chatbot_id: required',
  };
}

/** Seconds after ACCEPTED_AT, as an ISO timestamp. */
const at = (seconds: number): string => new Date(Date.parse(ACCEPTED_AT) + seconds * 1000).toISOString();

/** Fields a terminal status carries. */
function terminalFields(status: JobStatus): StatusFields {
  switch (status) {
    case JOB_STATUS.COMPLETED:
      return { finished_at: at(100), final_output: { answer: 42 } };
    case JOB_STATUS.FAILED:
      return { finished_at: at(100), error_code: ERROR_CODE.EXECUTION_FAILED, error_message: 'boom' };
    case JOB_STATUS.CANCELLED:
      return { finished_at: at(100), cancel_reason: 'remote' };
    default:
      return {};
  }
}

describe('JobStore', () => {
  let store: JobStore;
  let tableName: string;

  beforeAll(async () => {
    tableName = await dynamo.createJobTable();
    store = new JobStore(dynamo.documentClient, tableName);
  });

  /** A claimed job with an execution id, in PENDING. */
  async function pendingJob(): Promise<string> {
    const job = newJob();
    await store.claim(job);
    await store.saveExecutionId(job.job_id, `wf-${job.job_id}`, at(1));
    return job.job_id;
  }

  describe('claim', () => {
    it('creates the record in SUBMITTING at version 1 the first time', async () => {
      // Prepare
      const job = newJob();

      // Act
      const result = await store.claim(job);

      // Assess
      expect(result.kind).toBe('claimed');
      const stored = await store.get(job.job_id);
      expect(stored).toEqual(result.record);
      expect(stored).toMatchObject({
        ...job,
        status: JOB_STATUS.SUBMITTING,
        status_rank: STATUS_RANK.SUBMITTING,
        version: 1,
        updated_at: ACCEPTED_AT,
        polls: 0,
      });
    });

    it('returns "exists" with the stored record on a second claim and leaves it untouched', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);
      await store.saveExecutionId(job.job_id, 'wf-first', at(1));
      const before = await store.get(job.job_id);

      // Act
      const second = await store.claim({ ...job, source_message_id: 'msg-duplicate', claim_expires_at: CLAIM_UNTIL + 999 });

      // Assess
      expect(second.kind).toBe('exists');
      expect(second.record).toEqual(before);
      expect(second.record).toMatchObject({
        execution_id: 'wf-first',
        status: JOB_STATUS.PENDING,
        source_message_id: job.source_message_id,
      });
      expect(await store.get(job.job_id)).toEqual(before);
    });

    it('lets exactly one of two concurrent claims create the record', async () => {
      // Prepare
      const job = newJob();

      // Act
      const results = await Promise.all([store.claim(job), store.claim({ ...job, source_message_id: 'msg-other' })]);

      // Assess
      expect(results.map((result) => result.kind).sort()).toEqual(['claimed', 'exists']);
      expect((await store.get(job.job_id))?.version).toBe(1);
    });
  });

  describe('get', () => {
    it('returns undefined for an unknown job', async () => {
      // Act
      const record = await store.get('job-that-does-not-exist');

      // Assess
      expect(record).toBeUndefined();
    });
  });

  describe('saveExecutionId', () => {
    it('saves the execution id once, moves the job to PENDING and releases the claim', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);

      // Act
      const result = await store.saveExecutionId(job.job_id, 'wf-1', at(1));

      // Assess
      expect(result.applied).toBe(true);
      expect(result.record).toMatchObject({
        execution_id: 'wf-1',
        status: JOB_STATUS.PENDING,
        status_rank: STATUS_RANK.PENDING,
        updated_at: at(1),
        claim_expires_at: 0,
        version: 2,
      });
    });

    it('refuses a second execution id and returns the record with the first', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);
      await store.saveExecutionId(job.job_id, 'wf-1', at(1));

      // Act
      const second = await store.saveExecutionId(job.job_id, 'wf-2', at(2));

      // Assess
      expect(second.applied).toBe(false);
      expect(second.record).toMatchObject({ execution_id: 'wf-1', version: 2, updated_at: at(1) });
    });

    it('refuses when the job is terminal', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);
      await store.rejectClaimed(job.job_id, ERROR_CODE.WATERFLAI_REJECTED, 'HTTP 400', at(1));

      // Act
      const result = await store.saveExecutionId(job.job_id, 'wf-late', at(2));

      // Assess
      expect(result.applied).toBe(false);
      expect(result.record?.status).toBe(JOB_STATUS.FAILED);
      expect(result.record?.execution_id).toBeUndefined();
    });

    it('refuses for a job that has no record', async () => {
      // Act
      const result = await store.saveExecutionId('job-missing-for-save', 'wf-1', at(1));

      // Assess
      expect(result).toEqual({ applied: false, record: undefined });
      expect(await store.get('job-missing-for-save')).toBeUndefined();
    });
  });

  describe('applyStatus', () => {
    /** Puts a fresh job into `from` (SUBMITTING: just claimed). */
    async function jobIn(from: JobStatus): Promise<string> {
      if (from === JOB_STATUS.SUBMITTING) {
        const job = newJob();
        await store.claim(job);
        return job.job_id;
      }
      const jobId = await pendingJob();
      if (from !== JOB_STATUS.PENDING) {
        const result = await store.applyStatus(jobId, { status: from, fields: terminalFields(from), now: at(10) });
        expect(result.applied).toBe(true);
      }
      return jobId;
    }

    it.each([
      { from: JOB_STATUS.SUBMITTING, to: JOB_STATUS.PENDING, applied: true },
      { from: JOB_STATUS.PENDING, to: JOB_STATUS.RUNNING, applied: true },
      { from: JOB_STATUS.PENDING, to: JOB_STATUS.PENDING, applied: true },
      { from: JOB_STATUS.RUNNING, to: JOB_STATUS.PENDING, applied: false },
      { from: JOB_STATUS.RUNNING, to: JOB_STATUS.SUBMITTING, applied: false },
      { from: JOB_STATUS.RUNNING, to: JOB_STATUS.UNKNOWN, applied: true },
      { from: JOB_STATUS.UNKNOWN, to: JOB_STATUS.RUNNING, applied: true },
      { from: JOB_STATUS.UNKNOWN, to: JOB_STATUS.PENDING, applied: false },
      { from: JOB_STATUS.SUBMITTING, to: JOB_STATUS.COMPLETED, applied: true },
      { from: JOB_STATUS.RUNNING, to: JOB_STATUS.COMPLETED, applied: true },
      { from: JOB_STATUS.UNKNOWN, to: JOB_STATUS.FAILED, applied: true },
      { from: JOB_STATUS.PENDING, to: JOB_STATUS.CANCELLED, applied: true },
      { from: JOB_STATUS.COMPLETED, to: JOB_STATUS.FAILED, applied: false },
      { from: JOB_STATUS.COMPLETED, to: JOB_STATUS.COMPLETED, applied: false },
      { from: JOB_STATUS.FAILED, to: JOB_STATUS.COMPLETED, applied: false },
      { from: JOB_STATUS.CANCELLED, to: JOB_STATUS.RUNNING, applied: false },
      { from: JOB_STATUS.CANCELLED, to: JOB_STATUS.FAILED, applied: false },
    ])('$from → $to is applied: $applied', async ({ from, to, applied }) => {
      // Prepare
      const jobId = await jobIn(from);
      const before = await store.get(jobId);

      // Act
      const result = await store.applyStatus(jobId, { status: to, fields: { ...terminalFields(to), progress: 55 }, now: at(20) });

      // Assess
      expect(result.applied).toBe(applied);
      const after = await store.get(jobId);
      expect(result.record).toEqual(after);
      if (applied) {
        expect(after).toMatchObject({
          status: to,
          status_rank: STATUS_RANK[to],
          progress: 55,
          updated_at: at(20),
          version: before!.version + 1,
        });
      } else {
        expect(after).toEqual(before);
      }
    });

    it('never overwrites a terminal status or its outcome fields', async () => {
      // Prepare
      const jobId = await jobIn(JOB_STATUS.COMPLETED);

      // Act
      const failed = await store.applyStatus(jobId, {
        status: JOB_STATUS.FAILED,
        fields: { error_code: ERROR_CODE.POLL_FAILED, error_message: 'late failure', finished_at: at(500) },
        now: at(500),
      });

      // Assess
      expect(failed.applied).toBe(false);
      expect(failed.record).toMatchObject({ status: JOB_STATUS.COMPLETED, final_output: { answer: 42 }, finished_at: at(100) });
      expect(failed.record?.error_code).toBeUndefined();
      expect(isSettled(failed.record!)).toBe(true);
    });

    it('records the terminal fields with the status', async () => {
      // Prepare
      const jobId = await jobIn(JOB_STATUS.RUNNING);

      // Act
      const result = await store.applyStatus(jobId, {
        status: JOB_STATUS.COMPLETED,
        fields: { finished_at: at(60), final_output: { rows: [1, 2, 3], note: null }, polls: 6, progress: 100, current_node: null },
        observedAt: at(60),
        now: at(60),
      });

      // Assess
      expect(result.applied).toBe(true);
      expect(await store.get(jobId)).toMatchObject({
        status: JOB_STATUS.COMPLETED,
        finished_at: at(60),
        final_output: { rows: [1, 2, 3], note: null },
        polls: 6,
        progress: 100,
        current_node: null,
        observed_at: at(60),
      });
    });

    it('does not erase stored fields that the update leaves undefined', async () => {
      // Prepare
      const jobId = await jobIn(JOB_STATUS.PENDING);
      await store.applyStatus(jobId, { status: JOB_STATUS.RUNNING, fields: { current_node: 'fetch', progress: 10 }, now: at(5) });

      // Act
      await store.applyStatus(jobId, { status: JOB_STATUS.RUNNING, fields: { progress: 20, current_node: undefined }, now: at(6) });

      // Assess
      expect(await store.get(jobId)).toMatchObject({ progress: 20, current_node: 'fetch' });
    });

    describe('observedAt', () => {
      it('refuses an observation older than the stored one', async () => {
        // Prepare
        const jobId = await jobIn(JOB_STATUS.PENDING);
        await store.applyStatus(jobId, { status: JOB_STATUS.RUNNING, fields: { progress: 50 }, observedAt: at(30), now: at(30) });
        const before = await store.get(jobId);

        // Act
        const stale = await store.applyStatus(jobId, {
          status: JOB_STATUS.RUNNING,
          fields: { progress: 20 },
          observedAt: at(29),
          now: at(31),
        });

        // Assess
        expect(stale.applied).toBe(false);
        expect(stale.record).toEqual(before);
        expect(stale.record).toMatchObject({ progress: 50, observed_at: at(30) });
      });

      it.each([
        { name: 'the same instant', observed: 30 },
        { name: 'a later instant', observed: 45 },
      ])('applies an observation made at $name', async ({ observed }) => {
        // Prepare
        const jobId = await jobIn(JOB_STATUS.PENDING);
        await store.applyStatus(jobId, { status: JOB_STATUS.RUNNING, fields: { progress: 50 }, observedAt: at(30), now: at(30) });

        // Act
        const result = await store.applyStatus(jobId, {
          status: JOB_STATUS.RUNNING,
          fields: { progress: 60 },
          observedAt: at(observed),
          now: at(observed),
        });

        // Assess
        expect(result.applied).toBe(true);
        expect(result.record).toMatchObject({ progress: 60, observed_at: at(observed) });
      });

      it('refuses even a terminal observation that is older than the stored one', async () => {
        // Prepare
        const jobId = await jobIn(JOB_STATUS.PENDING);
        await store.applyStatus(jobId, { status: JOB_STATUS.RUNNING, fields: {}, observedAt: at(30), now: at(30) });

        // Act
        const result = await store.applyStatus(jobId, {
          status: JOB_STATUS.COMPLETED,
          fields: terminalFields(JOB_STATUS.COMPLETED),
          observedAt: at(10),
          now: at(31),
        });

        // Assess
        expect(result.applied).toBe(false);
        expect(result.record?.status).toBe(JOB_STATUS.RUNNING);
      });

      it('applies an update without observedAt regardless of the stored observation (the Catch path)', async () => {
        // Prepare
        const jobId = await jobIn(JOB_STATUS.PENDING);
        await store.applyStatus(jobId, { status: JOB_STATUS.RUNNING, fields: {}, observedAt: at(30), now: at(30) });

        // Act
        const result = await store.applyStatus(jobId, {
          status: JOB_STATUS.FAILED,
          fields: terminalFields(JOB_STATUS.FAILED),
          now: at(10),
        });

        // Assess
        expect(result.applied).toBe(true);
        expect(result.record).toMatchObject({ status: JOB_STATUS.FAILED, observed_at: at(30) });
      });
    });

    it('increments version by one on each applied write and not on refused ones', async () => {
      // Prepare
      const job = newJob();
      const versions: number[] = [];
      versions.push((await store.claim(job)).record.version);
      versions.push((await store.saveExecutionId(job.job_id, 'wf-v', at(1))).record!.version);

      // Act
      versions.push(
        (await store.applyStatus(job.job_id, { status: JOB_STATUS.RUNNING, fields: { progress: 1 }, now: at(2) })).record!.version,
      );
      versions.push(
        (await store.applyStatus(job.job_id, { status: JOB_STATUS.RUNNING, fields: { progress: 2 }, now: at(3) })).record!.version,
      );
      const refused = await store.applyStatus(job.job_id, { status: JOB_STATUS.PENDING, fields: {}, now: at(4) });
      versions.push(
        (await store.applyStatus(job.job_id, { status: JOB_STATUS.CANCELLED, fields: terminalFields(JOB_STATUS.CANCELLED), now: at(5) }))
          .record!.version,
      );
      await store.markEventPublished(job.job_id, `${job.job_id}:cancelled`, at(6));

      // Assess
      expect(refused.applied).toBe(false);
      expect(versions).toEqual([1, 2, 3, 4, 5]);
      expect((await store.get(job.job_id))?.version).toBe(6);
    });

    it('refuses a status for a job that has no record, without creating one', async () => {
      // Act
      const result = await store.applyStatus('job-never-claimed', { status: JOB_STATUS.RUNNING, fields: {}, now: at(1) });

      // Assess
      expect(result).toEqual({ applied: false, record: undefined });
      expect(await store.get('job-never-claimed')).toBeUndefined();
    });

    it('lets exactly one of two concurrent terminal writes win', async () => {
      // Prepare
      const jobId = await jobIn(JOB_STATUS.RUNNING);

      // Act
      const results = await Promise.all([
        store.applyStatus(jobId, { status: JOB_STATUS.COMPLETED, fields: terminalFields(JOB_STATUS.COMPLETED), now: at(50) }),
        store.applyStatus(jobId, { status: JOB_STATUS.CANCELLED, fields: terminalFields(JOB_STATUS.CANCELLED), now: at(50) }),
      ]);

      // Assess
      expect(results.filter((result) => result.applied)).toHaveLength(1);
      const winner = results.find((result) => result.applied)!.record!.status;
      expect((await store.get(jobId))?.status).toBe(winner);
    });
  });

  describe('createRejected', () => {
    it('creates a terminal FAILED record flagged as rejected at intake', async () => {
      // Prepare
      const job = rejectedJob('job-rejected-new');

      // Act
      const created = await store.createRejected(job);

      // Assess
      expect(created).toBe(true);
      const stored = await store.get(job.job_id);
      expect(stored).toMatchObject({
        status: JOB_STATUS.FAILED,
        status_rank: STATUS_RANK.FAILED,
        version: 1,
        finished_at: job.at,
        error_code: ERROR_CODE.INVALID_MESSAGE,
        error_message: 'chatbot_id: required',
        rejected_at_intake: true,
      });
      expect(stored).not.toHaveProperty('chatbot_id');
      expect(isSettled(stored!)).toBe(true);
    });

    it('refuses when a record for the job exists and leaves it untouched', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);
      const before = await store.get(job.job_id);

      // Act
      const created = await store.createRejected(rejectedJob(job.job_id));

      // Assess
      expect(created).toBe(false);
      expect(await store.get(job.job_id)).toEqual(before);
    });
  });

  describe('rejectClaimed', () => {
    it('settles a claimed job without an execution id as FAILED', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);

      // Act
      const result = await store.rejectClaimed(job.job_id, ERROR_CODE.WATERFLAI_REJECTED, 'Waterflai start answered HTTP 400', at(3));

      // Assess
      expect(result.applied).toBe(true);
      expect(result.record).toMatchObject({
        status: JOB_STATUS.FAILED,
        error_code: ERROR_CODE.WATERFLAI_REJECTED,
        error_message: 'Waterflai start answered HTTP 400',
        finished_at: at(3),
        rejected_at_intake: true,
        claim_expires_at: 0,
        version: 2,
      });
    });

    it('refuses once an execution id is saved and returns the running record', async () => {
      // Prepare
      const jobId = await pendingJob();

      // Act
      const result = await store.rejectClaimed(jobId, ERROR_CODE.START_RETRIES_EXHAUSTED, 'gave up', at(3));

      // Assess
      expect(result.applied).toBe(false);
      expect(result.record).toMatchObject({ status: JOB_STATUS.PENDING, execution_id: `wf-${jobId}` });
      expect(result.record?.error_code).toBeUndefined();
    });

    it('refuses a job that is already terminal', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);
      await store.rejectClaimed(job.job_id, ERROR_CODE.WATERFLAI_REJECTED, 'first', at(3));

      // Act
      const second = await store.rejectClaimed(job.job_id, ERROR_CODE.START_RETRIES_EXHAUSTED, 'second', at(4));

      // Assess
      expect(second.applied).toBe(false);
      expect(second.record).toMatchObject({ error_code: ERROR_CODE.WATERFLAI_REJECTED, error_message: 'first', version: 2 });
    });
  });

  describe('claims', () => {
    it('takeOverClaim succeeds for exactly one of two concurrent callers', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);

      // Act
      const [first, second] = await Promise.all([
        store.takeOverClaim(job.job_id, CLAIM_UNTIL, CLAIM_UNTIL + 1_000, at(61)),
        store.takeOverClaim(job.job_id, CLAIM_UNTIL, CLAIM_UNTIL + 2_000, at(61)),
      ]);

      // Assess
      const winners = [first, second].filter((record): record is JobRecord => record !== undefined);
      expect(winners).toHaveLength(1);
      expect((await store.get(job.job_id))?.claim_expires_at).toBe(winners[0]!.claim_expires_at);
      expect([CLAIM_UNTIL + 1_000, CLAIM_UNTIL + 2_000]).toContain(winners[0]!.claim_expires_at);
    });

    it('takeOverClaim refuses when the claim was renewed by someone else (stale previous expiry)', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);
      await store.takeOverClaim(job.job_id, CLAIM_UNTIL, CLAIM_UNTIL + 5_000, at(61));

      // Act
      const result = await store.takeOverClaim(job.job_id, CLAIM_UNTIL, CLAIM_UNTIL + 9_000, at(62));

      // Assess
      expect(result).toBeUndefined();
      expect((await store.get(job.job_id))?.claim_expires_at).toBe(CLAIM_UNTIL + 5_000);
    });

    it('takeOverClaim with no previous expiry refuses a record that has one', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);

      // Act
      const result = await store.takeOverClaim(job.job_id, undefined, CLAIM_UNTIL + 5_000, at(61));

      // Assess
      expect(result).toBeUndefined();
    });

    it('takeOverClaim refuses once an execution id is saved', async () => {
      // Prepare
      const jobId = await pendingJob();

      // Act
      const result = await store.takeOverClaim(jobId, 0, CLAIM_UNTIL + 5_000, at(61));

      // Assess
      expect(result).toBeUndefined();
      expect((await store.get(jobId))?.claim_expires_at).toBe(0);
    });

    it('takeOverClaim refuses a terminal job', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);
      await store.rejectClaimed(job.job_id, ERROR_CODE.WATERFLAI_REJECTED, 'no', at(2));

      // Act
      const result = await store.takeOverClaim(job.job_id, 0, CLAIM_UNTIL + 5_000, at(61));

      // Assess
      expect(result).toBeUndefined();
    });

    it("releaseClaim does not release a claim that is not the caller's", async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);
      const before = await store.get(job.job_id);

      // Act
      await store.releaseClaim(job.job_id, CLAIM_UNTIL - 1, at(5));

      // Assess
      expect(await store.get(job.job_id)).toEqual(before);
    });

    it("releaseClaim releases the caller's own claim, which another caller can then take over at 0", async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);

      // Act
      await store.releaseClaim(job.job_id, CLAIM_UNTIL, at(5));
      const takenOver = await store.takeOverClaim(job.job_id, 0, CLAIM_UNTIL + 10_000, at(6));

      // Assess
      expect(takenOver).toMatchObject({ claim_expires_at: CLAIM_UNTIL + 10_000, version: 3, updated_at: at(6) });
    });

    it('releaseClaim does nothing once an execution id is saved', async () => {
      // Prepare
      const job = newJob();
      await store.claim(job);
      await store.saveExecutionId(job.job_id, 'wf-r', at(1));
      const before = await store.get(job.job_id);

      // Act
      await store.releaseClaim(job.job_id, 0, at(5));

      // Assess
      expect(await store.get(job.job_id)).toEqual(before);
    });
  });

  describe('bookkeeping', () => {
    it('saveStateMachineExecution keeps the first ARN', async () => {
      // Prepare
      const jobId = await pendingJob();

      // Act
      await store.saveStateMachineExecution(jobId, 'arn:aws:states:us-east-1:1:execution:sm:first', at(2));
      await store.saveStateMachineExecution(jobId, 'arn:aws:states:us-east-1:1:execution:sm:second', at(3));

      // Assess
      expect(await store.get(jobId)).toMatchObject({
        state_machine_execution_arn: 'arn:aws:states:us-east-1:1:execution:sm:first',
        updated_at: at(3),
      });
    });

    it('markEventPublished records the event id and time', async () => {
      // Prepare
      const jobId = await pendingJob();

      // Act
      await store.markEventPublished(jobId, `${jobId}:completed`, at(9));

      // Assess
      expect(await store.get(jobId)).toMatchObject({ outcome_event_id: `${jobId}:completed`, event_published_at: at(9) });
    });

    it.each([
      { name: 'markEventPublished', act: (store: JobStore) => store.markEventPublished('job-gone', 'job-gone:failed', at(1)) },
      { name: 'markDeadLettered', act: (store: JobStore) => store.markDeadLettered('job-gone', at(1)) },
    ])('$name throws for a job that has no record', async ({ act }) => {
      // Act / Assess
      await expect(act(store)).rejects.toThrow('job job-gone does not exist');
      expect(await store.get('job-gone')).toBeUndefined();
    });
  });

  describe('by-status index', () => {
    let indexStore: JobStore;
    let indexTable: string;

    beforeEach(async () => {
      indexTable = await dynamo.createJobTable();
      indexStore = new JobStore(dynamo.documentClient, indexTable);
    });

    async function jobIdsWithStatus(status: JobStatus): Promise<string[]> {
      const result = await dynamo.documentClient.send(
        new QueryCommand({
          TableName: indexTable,
          IndexName: JOB_TABLE.STATUS_INDEX,
          KeyConditionExpression: '#status = :status',
          ExpressionAttributeNames: { '#status': JOB_TABLE.STATUS_INDEX_PARTITION_KEY },
          ExpressionAttributeValues: { ':status': status },
        }),
      );
      return (result.Items ?? []).map((item) => item.job_id as string);
    }

    it('finds a job under its current status only', async () => {
      // Prepare
      const job = newJob();
      await indexStore.claim(job);
      await indexStore.saveExecutionId(job.job_id, 'wf-idx', at(1));

      // Act
      await indexStore.applyStatus(job.job_id, { status: JOB_STATUS.RUNNING, fields: {}, now: at(2) });

      // Assess
      expect(await jobIdsWithStatus(JOB_STATUS.RUNNING)).toEqual([job.job_id]);
      expect(await jobIdsWithStatus(JOB_STATUS.PENDING)).toEqual([]);
      expect(await jobIdsWithStatus(JOB_STATUS.SUBMITTING)).toEqual([]);
    });

    it('lists jobs of one status ordered by updated_at and includes rejected ones under FAILED', async () => {
      // Prepare
      const older = newJob();
      const newer = newJob();
      await indexStore.claim(newer);
      await indexStore.claim(older);
      await indexStore.rejectClaimed(newer.job_id, ERROR_CODE.WATERFLAI_REJECTED, 'x', at(20));
      await indexStore.rejectClaimed(older.job_id, ERROR_CODE.WATERFLAI_REJECTED, 'y', at(10));
      await indexStore.createRejected(rejectedJob('job-idx-intake'));

      // Act
      const failed = await jobIdsWithStatus(JOB_STATUS.FAILED);

      // Assess
      expect(failed).toEqual(['job-idx-intake', older.job_id, newer.job_id]);
    });
  });
});
