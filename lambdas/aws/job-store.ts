import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import { CANCEL_REASON, JOB_STATUS, JOB_TABLE, STATUS_RANK, TERMINAL_RANK, UPSTREAM_CANCEL, type JobStatus } from '../contract/constants';
import type { JobRecord, NewJob, PollIncident, RejectedJob, StatusFields } from '../contract/job-record';

export interface StatusUpdate {
  readonly status: JobStatus;
  readonly fields: StatusFields;
  /**
   * Executions to add to the job's pending cancels in the same write (an unconfirmed
   * cancel is never recorded without the note that makes the sweeper retry it).
   */
  readonly pendingCancels?: readonly string[];
  /** When the observation was made; an update older than the stored one is refused. */
  readonly observedAt?: string;
  /** When the write happens (updated_at). */
  readonly now: string;
}

export type ClaimResult =
  | { readonly kind: 'claimed'; readonly record: JobRecord }
  | { readonly kind: 'exists'; readonly record: JobRecord };

export type UpdateResult =
  | { readonly applied: true; readonly record: JobRecord }
  | { readonly applied: false; readonly record: JobRecord | undefined };

/**
 * All reads and writes of the job table. Every write is conditional so that duplicate
 * deliveries, concurrent writers and stale observations cannot move a job backwards or
 * overwrite a terminal status.
 */
export class JobStore {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async get(jobId: string): Promise<JobRecord | undefined> {
    const result = await this.client.send(new GetCommand({ TableName: this.tableName, Key: { job_id: jobId }, ConsistentRead: true }));
    return result.Item === undefined ? undefined : fromItem(result.Item);
  }

  /**
   * Creates the job's record in `SUBMITTING` unless a record for the job id exists; then
   * the existing record is returned for the caller to decide (duplicate, resume, wait).
   */
  async claim(job: NewJob): Promise<ClaimResult> {
    const record: JobRecord = {
      ...job,
      status: JOB_STATUS.SUBMITTING,
      status_rank: STATUS_RANK.SUBMITTING,
      version: 1,
      updated_at: job.accepted_at,
      polls: 0,
    };
    const created = await this.putIfAbsent(record);
    if (created) return { kind: 'claimed', record };
    return { kind: 'exists', record: await this.mustGet(job.job_id) };
  }

  /**
   * Takes over an expired claim (the previous claimant died before saving an execution id).
   * Succeeds for exactly one caller.
   */
  async takeOverClaim(
    jobId: string,
    previousExpiresAt: number | undefined,
    newExpiresAt: number,
    now: string,
    claimToken?: string,
  ): Promise<JobRecord | undefined> {
    return this.conditionalUpdate(
      jobId,
      { claim_expires_at: newExpiresAt, updated_at: now, ...(claimToken === undefined ? {} : { claim_token: claimToken }) },
      previousExpiresAt === undefined
        ? 'attribute_not_exists(#claim_expires_at) AND attribute_not_exists(#execution_id) AND #status_rank < :terminal'
        : '#claim_expires_at = :previous AND attribute_not_exists(#execution_id) AND #status_rank < :terminal',
      { ':terminal': TERMINAL_RANK, ...(previousExpiresAt === undefined ? {} : { ':previous': previousExpiresAt }) },
    );
  }

  /** Gives up a claim after a failed start attempt, so a retry need not wait for the lease. */
  async releaseClaim(jobId: string, claimExpiresAt: number, now: string): Promise<void> {
    await this.conditionalUpdate(
      jobId,
      { claim_expires_at: 0, updated_at: now },
      '#claim_expires_at = :mine AND attribute_not_exists(#execution_id)',
      { ':mine': claimExpiresAt },
    );
  }

  /**
   * Saves the Waterflai execution id and moves the job to `PENDING`. Refused when an
   * execution id is already saved or the job is terminal; the current record is returned.
   */
  async saveExecutionId(jobId: string, executionId: string, now: string): Promise<UpdateResult> {
    const record = await this.conditionalUpdate(
      jobId,
      { execution_id: executionId, status: JOB_STATUS.PENDING, status_rank: STATUS_RANK.PENDING, updated_at: now, claim_expires_at: 0 },
      'attribute_exists(#job_id) AND attribute_not_exists(#execution_id) AND #status_rank < :terminal',
      { ':terminal': TERMINAL_RANK },
    );
    return record ? { applied: true, record } : { applied: false, record: await this.get(jobId) };
  }

  /** Records the state machine execution started for the job (first writer wins). */
  async saveStateMachineExecution(jobId: string, executionArn: string, now: string): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { job_id: jobId },
        UpdateExpression: 'SET #arn = if_not_exists(#arn, :arn), #updated_at = :now, #version = #version + :one',
        ConditionExpression: 'attribute_exists(#job_id)',
        ExpressionAttributeNames: {
          '#arn': 'state_machine_execution_arn',
          '#updated_at': 'updated_at',
          '#version': 'version',
          '#job_id': 'job_id',
        },
        ExpressionAttributeValues: { ':arn': executionArn, ':now': now, ':one': 1 },
      }),
    );
  }

  /**
   * Applies a status observation or settles the job, monotonically: refused when the
   * stored status ranks higher, is terminal, or was observed later than this update.
   * Returns whether it was applied and the record as it now stands.
   */
  async applyStatus(jobId: string, update: StatusUpdate): Promise<UpdateResult> {
    const rank = STATUS_RANK[update.status];
    const set: Record<string, unknown> = {
      ...update.fields,
      status: update.status,
      status_rank: rank,
      updated_at: update.now,
      ...(update.observedAt === undefined ? {} : { observed_at: update.observedAt }),
    };
    const conditions = ['attribute_exists(#job_id)', '#status_rank <= :rank', '#status_rank < :terminal'];
    const values: Record<string, unknown> = { ':rank': rank, ':terminal': TERMINAL_RANK };
    if (update.observedAt !== undefined) {
      conditions.push('(attribute_not_exists(#observed_at) OR #observed_at <= :observed_at)');
      values[':observed_at'] = update.observedAt;
    }
    // A cancellation of a job a producer asked to cancel is that producer's, whoever records it.
    const expressions: Record<string, (value: string) => string> =
      update.status === JOB_STATUS.CANCELLED && set.cancel_reason !== undefined
        ? { cancel_reason: (value) => `if_not_exists(#requested_cancel_reason, ${value})` }
        : {};
    if (update.pendingCancels !== undefined && update.pendingCancels.length > 0)
      set[JOB_TABLE.PENDING_CANCEL_INDEX_PARTITION_KEY] = JOB_TABLE.PENDING_CANCEL_VALUE;
    const add: Record<string, ReadonlySet<string>> = update.pendingCancels !== undefined && update.pendingCancels.length > 0
      ? { pending_cancels: new Set(update.pendingCancels) }
      : {};
    const record = await this.conditionalUpdate(jobId, set, conditions.join(' AND '), values, expressions, add);
    return record ? { applied: true, record } : { applied: false, record: await this.get(jobId) };
  }

  /**
   * Notes Waterflai executions of the job that still have to be cancelled (whatever the
   * job's status): the sweeper finds them through the pending-cancels index and keeps trying.
   */
  async addPendingCancels(jobId: string, executionIds: readonly string[], reason: string, now: string): Promise<void> {
    if (executionIds.length === 0) return;
    const record = await this.conditionalUpdate(
      jobId,
      { [JOB_TABLE.PENDING_CANCEL_INDEX_PARTITION_KEY]: JOB_TABLE.PENDING_CANCEL_VALUE, last_cancel_error: reason, updated_at: now },
      'attribute_exists(#job_id)',
      {},
      {},
      { pending_cancels: new Set(executionIds) },
    );
    if (!record) throw new Error(`job ${jobId} does not exist`);
  }

  /** Ids of jobs with executions still to cancel, oldest update first, at most `limit`. */
  async listPendingCancels(limit: number): Promise<string[]> {
    return this.queryIds(
      {
        IndexName: JOB_TABLE.PENDING_CANCEL_INDEX,
        KeyConditionExpression: '#pending = :pending',
        ExpressionAttributeNames: { '#pending': JOB_TABLE.PENDING_CANCEL_INDEX_PARTITION_KEY },
        ExpressionAttributeValues: { ':pending': JOB_TABLE.PENDING_CANCEL_VALUE },
      },
      limit,
    );
  }

  /**
   * Takes an execution off the job's pending cancels: it was confirmed stopped (`stopped`
   * true) or found finished on its own (false). When none is left, the job leaves the
   * pending-cancels index, and an `upstream_cancel: unconfirmed` becomes `confirmed` if every
   * execution taken off was stopped (one that finished on its own proves no cancel).
   * Returns the record as it ends up.
   */
  async resolvePendingCancel(jobId: string, executionId: string, now: string, stopped = true): Promise<JobRecord | undefined> {
    const names = { '#pending_cancels': 'pending_cancels', '#updated_at': 'updated_at', '#version': 'version', '#job_id': 'job_id' };
    const result = await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { job_id: jobId },
        UpdateExpression: `DELETE #pending_cancels :id SET #updated_at = :now, #version = #version + :one${stopped ? '' : ', #finished_on_its_own = :yes'}`,
        ConditionExpression: 'attribute_exists(#job_id)',
        ExpressionAttributeNames: { ...names, ...(stopped ? {} : { '#finished_on_its_own': 'pending_cancel_finished' }) },
        ExpressionAttributeValues: { ':id': new Set([executionId]), ':now': now, ':one': 1, ...(stopped ? {} : { ':yes': true }) },
        ReturnValues: 'ALL_NEW',
      }),
    );
    const record = fromItem(result.Attributes ?? {});
    if (record.pending_cancels !== undefined && record.pending_cancels.size > 0) return record;
    const confirm = record.upstream_cancel === UPSTREAM_CANCEL.UNCONFIRMED && record.pending_cancel_finished !== true;
    try {
      const cleared = await this.client.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { job_id: jobId },
          UpdateExpression: `REMOVE #cancel_pending, #last_cancel_error SET #version = #version + :one${confirm ? ', #upstream_cancel = :confirmed' : ''}`,
          ConditionExpression: 'attribute_exists(#job_id) AND attribute_not_exists(#pending_cancels)',
          ExpressionAttributeNames: {
            '#cancel_pending': JOB_TABLE.PENDING_CANCEL_INDEX_PARTITION_KEY,
            '#last_cancel_error': 'last_cancel_error',
            '#pending_cancels': 'pending_cancels',
            '#version': 'version',
            '#job_id': 'job_id',
            ...(confirm ? { '#upstream_cancel': 'upstream_cancel' } : {}),
          },
          ExpressionAttributeValues: { ':one': 1, ...(confirm ? { ':confirmed': UPSTREAM_CANCEL.CONFIRMED } : {}) },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return fromItem(cleared.Attributes ?? {});
    } catch (error) {
      // Another execution was added meanwhile: the job stays pending.
      if (error instanceof ConditionalCheckFailedException) return this.get(jobId);
      throw error;
    }
  }

  /** Notes why the last cancel attempt of a pending execution failed. */
  async recordCancelAttemptFailed(jobId: string, reason: string, now: string): Promise<void> {
    await this.conditionalUpdate(jobId, { last_cancel_error: reason, updated_at: now }, 'attribute_exists(#job_id)', {});
  }

  /**
   * Records an upstream incident the poll loop is riding out on a job that is not terminal,
   * or its end (null, whatever the job's status: the read that ended it may have settled the
   * job). Returns false when the job is unknown, or terminal for a new incident.
   */
  async recordIncident(jobId: string, incident: PollIncident | null, now: string): Promise<boolean> {
    const record =
      incident === null
        ? await this.conditionalUpdate(jobId, { incident: null }, 'attribute_exists(#job_id)', {})
        : await this.conditionalUpdate(jobId, { incident, updated_at: now }, 'attribute_exists(#job_id) AND #status_rank < :terminal', {
            ':terminal': TERMINAL_RANK,
          });
    return record !== undefined;
  }

  /**
   * Records that a producer asked to cancel the job (before the DELETE to Waterflai), so that
   * the job's cancellation carries reason `requested` whoever records it. Returns false when
   * the job is already terminal or unknown.
   */
  async markCancelRequested(jobId: string, now: string): Promise<boolean> {
    const record = await this.conditionalUpdate(
      jobId,
      { requested_cancel_reason: CANCEL_REASON.REQUESTED, cancel_requested_at: now, updated_at: now },
      'attribute_exists(#job_id) AND #status_rank < :terminal',
      { ':terminal': TERMINAL_RANK },
    );
    return record !== undefined;
  }

  /**
   * Creates a terminal FAILED record for a message that was rejected at intake. Returns
   * false when a record for the job id already exists (it is left untouched).
   */
  async createRejected(job: RejectedJob): Promise<boolean> {
    const record: JobRecord = {
      job_id: job.job_id,
      ...(job.chatbot_id === undefined ? {} : { chatbot_id: job.chatbot_id }),
      status: JOB_STATUS.FAILED,
      status_rank: STATUS_RANK.FAILED,
      version: 1,
      accepted_at: job.at,
      updated_at: job.at,
      deadline_at: job.at,
      finished_at: job.at,
      expires_at: job.expires_at,
      metadata: job.metadata,
      source_message_id: job.source_message_id,
      delivery: job.delivery,
      polls: 0,
      error_code: job.error_code,
      error_message: job.error_message,
      rejected_at_intake: true,
    };
    return this.putIfAbsent(record);
  }

  /**
   * Ids of jobs in `status` whose deadline is before `cutoff`, from the status index
   * (oldest updates first), at most `limit`.
   */
  async listOverdue(status: JobStatus, cutoff: string, limit: number): Promise<string[]> {
    return this.queryStatusIndex(
      {
        KeyConditionExpression: '#status = :status',
        FilterExpression: '#deadline_at < :cutoff',
        ExpressionAttributeNames: { '#deadline_at': 'deadline_at' },
        ExpressionAttributeValues: { ':status': status, ':cutoff': cutoff },
      },
      limit,
    );
  }

  /** Pages through the status index, collecting job ids (oldest updates first), at most `limit`. */
  private async queryStatusIndex(
    query: {
      KeyConditionExpression: string;
      FilterExpression: string;
      ExpressionAttributeNames: Record<string, string>;
      ExpressionAttributeValues: Record<string, unknown>;
    },
    limit: number,
  ): Promise<string[]> {
    return this.queryIds(
      {
        IndexName: JOB_TABLE.STATUS_INDEX,
        ...query,
        ExpressionAttributeNames: {
          ...query.ExpressionAttributeNames,
          '#status': JOB_TABLE.STATUS_INDEX_PARTITION_KEY,
          '#job_id': JOB_TABLE.PARTITION_KEY,
        },
        ProjectionExpression: '#job_id',
      },
      limit,
    );
  }

  /** Pages through an index query, collecting job ids in the index's order, at most `limit`. */
  private async queryIds(query: Omit<QueryCommandInput, 'TableName' | 'ExclusiveStartKey'>, limit: number): Promise<string[]> {
    const ids: string[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({ TableName: this.tableName, ...query, ...(startKey === undefined ? {} : { ExclusiveStartKey: startKey }) }),
      );
      for (const item of page.Items ?? []) {
        if (typeof item.job_id === 'string') ids.push(item.job_id);
        if (ids.length >= limit) return ids;
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey !== undefined);
    return ids;
  }

  /**
   * Ids of jobs in (terminal) `status` settled between `from` and `to` whose outcome was
   * never announced (no `event_published_at`), from the status index, at most `limit`.
   */
  async listUnannounced(status: JobStatus, from: string, to: string, limit: number): Promise<string[]> {
    return this.queryStatusIndex(
      {
        KeyConditionExpression: '#status = :status AND #updated_at BETWEEN :from AND :to',
        FilterExpression: 'attribute_not_exists(#event_published_at)',
        ExpressionAttributeNames: { '#updated_at': JOB_TABLE.STATUS_INDEX_SORT_KEY, '#event_published_at': 'event_published_at' },
        ExpressionAttributeValues: { ':status': status, ':from': from, ':to': to },
      },
      limit,
    );
  }

  /**
   * Records a cancel request for a job that has not arrived yet: a terminal CANCELLED
   * record, so that the job's start, when it comes, never reaches Waterflai. Returns false
   * when a record for the job id exists.
   */
  async createTombstone(job: {
    job_id: string;
    source_message_id: string;
    delivery: 'sqs' | 'eventbridge';
    at: string;
    expires_at: number;
  }): Promise<boolean> {
    return this.putIfAbsent({
      job_id: job.job_id,
      status: JOB_STATUS.CANCELLED,
      status_rank: STATUS_RANK.CANCELLED,
      version: 1,
      accepted_at: job.at,
      updated_at: job.at,
      deadline_at: job.at,
      finished_at: job.at,
      expires_at: job.expires_at,
      metadata: {},
      source_message_id: job.source_message_id,
      delivery: job.delivery,
      polls: 0,
      cancel_reason: CANCEL_REASON.REQUESTED,
    });
  }

  /**
   * Records that the job's poll loop continues in a successor execution (continue-as-new).
   * Only moves the generation forward; returns false when it already did.
   */
  async recordHandOver(jobId: string, generation: number, executionArn: string, now: string): Promise<boolean> {
    const record = await this.conditionalUpdate(
      jobId,
      { generation, state_machine_execution_arn: executionArn, updated_at: now },
      'attribute_exists(#job_id) AND (attribute_not_exists(#generation) OR #generation < :generation)',
      { ':generation': generation },
    );
    return record !== undefined;
  }

  /** Settles a claimed job that Waterflai refused (or that ran out of start retries). */
  async rejectClaimed(jobId: string, errorCode: string, errorMessage: string, now: string): Promise<UpdateResult> {
    const record = await this.conditionalUpdate(
      jobId,
      {
        status: JOB_STATUS.FAILED,
        status_rank: STATUS_RANK.FAILED,
        updated_at: now,
        finished_at: now,
        error_code: errorCode,
        error_message: errorMessage,
        rejected_at_intake: true,
        claim_expires_at: 0,
      },
      'attribute_exists(#job_id) AND attribute_not_exists(#execution_id) AND #status_rank < :terminal',
      { ':terminal': TERMINAL_RANK },
    );
    return record ? { applied: true, record } : { applied: false, record: await this.get(jobId) };
  }

  async markEventPublished(jobId: string, eventId: string, now: string): Promise<void> {
    await this.update(jobId, { outcome_event_id: eventId, event_published_at: now });
  }

  async markDeadLettered(jobId: string, now: string): Promise<void> {
    await this.update(jobId, { dead_lettered_at: now });
  }

  private async mustGet(jobId: string): Promise<JobRecord> {
    const record = await this.get(jobId);
    // The conditional put failed because the item exists; only a TTL delete in between could remove it.
    if (!record) throw new Error(`job ${jobId} vanished between a conditional write and its read`);
    return record;
  }

  private async putIfAbsent(record: JobRecord): Promise<boolean> {
    try {
      await this.client.send(
        new PutCommand({
          TableName: this.tableName,
          Item: toItem(record),
          ConditionExpression: 'attribute_not_exists(#job_id)',
          ExpressionAttributeNames: { '#job_id': 'job_id' },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  /** Unconditional bookkeeping write (the record must exist). */
  private async update(jobId: string, set: Record<string, unknown>): Promise<void> {
    const record = await this.conditionalUpdate(jobId, set, 'attribute_exists(#job_id)', {});
    if (!record) throw new Error(`job ${jobId} does not exist`);
  }

  /**
   * SET the given attributes and increment `version` under a condition. Returns the new
   * record, or undefined when the condition failed.
   */
  private async conditionalUpdate(
    jobId: string,
    set: Record<string, unknown>,
    condition: string,
    conditionValues: Record<string, unknown>,
    expressions: Readonly<Record<string, (value: string) => string>> = {},
    add: Readonly<Record<string, ReadonlySet<string>>> = {},
  ): Promise<JobRecord | undefined> {
    const names: Record<string, string> = { '#version': 'version' };
    const values: Record<string, unknown> = { ...conditionValues, ':one': 1 };
    const assignments: string[] = ['#version = #version + :one'];
    for (const [key, value] of Object.entries(toItem(set))) {
      if (value === undefined) continue;
      names[`#${key}`] = key;
      values[`:set_${key}`] = value;
      const expression = expressions[key];
      assignments.push(`#${key} = ${expression ? expression(`:set_${key}`) : `:set_${key}`}`);
    }
    const additions: string[] = [];
    for (const [key, value] of Object.entries(add)) {
      values[`:add_${key}`] = value;
      additions.push(`#${key} :add_${key}`);
    }
    const updateExpression = `SET ${assignments.join(', ')}${additions.length > 0 ? ` ADD ${additions.join(', ')}` : ''}`;
    // DynamoDB rejects unused placeholders, so name exactly those the expressions use.
    for (const [placeholder, name = ''] of `${condition} ${updateExpression}`.matchAll(/#([a-z_]+)/g)) names[placeholder] = name;
    try {
      const result = await this.client.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { job_id: jobId },
          UpdateExpression: updateExpression,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return fromItem(result.Attributes ?? {});
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return undefined;
      throw error;
    }
  }
}

/**
 * Opaque JSON (`metadata`, `final_output`) is stored as a JSON string, not a DynamoDB map:
 * any JSON value then fits (numbers beyond 2^53 or outside DynamoDB's 1e-130..1e126 range,
 * nesting beyond 32 levels, empty keys), and it is returned exactly as received.
 */
const JSON_ATTRIBUTES = { metadata: 'metadata_json', final_output: 'final_output_json' } as const;

function toItem(fields: object): Record<string, unknown> {
  const item: Record<string, unknown> = { ...fields };
  for (const [field, attribute] of Object.entries(JSON_ATTRIBUTES)) {
    if (!(field in item)) continue;
    const value = item[field];
    delete item[field];
    if (value !== undefined) item[attribute] = JSON.stringify(value);
  }
  return item;
}

/** Decodes a raw job-table item (as read without the store, e.g. by a Scan) into a record. */
export function fromItem(item: Record<string, unknown>): JobRecord {
  const record: Record<string, unknown> = { ...item };
  for (const [field, attribute] of Object.entries(JSON_ATTRIBUTES)) {
    const raw = record[attribute];
    delete record[attribute];
    if (typeof raw === 'string') record[field] = JSON.parse(raw) as unknown;
  }
  record.metadata ??= {};
  return record as unknown as JobRecord;
}
