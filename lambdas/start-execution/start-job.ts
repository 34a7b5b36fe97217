import { randomUUID } from 'node:crypto';
import { ChangeMessageVisibilityCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { ExecutionAlreadyExists, StartExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { SQSRecord } from 'aws-lambda';
import { CANCEL_REASON, DLQ_ATTRIBUTE, ERROR_CODE, JOB_STATUS, UPSTREAM_CANCEL } from '../contract/constants';
import {
  describeError,
  InvalidIdentifierError,
  InvalidMessageError,
  isRetryable,
  isTransientAwsError,
  OrchestratorError,
  UpstreamCancelUnconfirmedError,
  WaterflaiError,
  WaterflaiHttpError,
} from '../contract/errors';
import { executionNameForJob } from '../contract/identifiers';
import { parseIntakeMessage, type IntakeMessage, type JobRequest } from '../contract/job-request';
import { isSettled, type JobRecord } from '../contract/job-record';
import type { ClaimResult, JobStore, UpdateResult } from '../aws/job-store';
import { announceOutcome } from '../lifecycle/announce';
import type { OutcomePublisher } from '../aws/outcome-publisher';
import type { AppLogger } from '../platform/logger';
import { mapExecutionStatus } from '../domain/status-mapping';
import { cancelAndConfirm, type CancelAndConfirmOptions, type CancelOutcome, type UpstreamExecutions } from '../domain/upstream-cancel';
import { DEFAULT_REQUEST_MARGIN_MS, DEFAULT_REQUEST_TIMEOUT_MS, requestTimeoutFor } from '../domain/request-timeout';
import { executionArnFor } from '../aws/successor';
import type { PollState } from '../domain/workflow';
import { backoffDelay } from '../domain/backoff';
import { SETTING_DEFAULTS } from '../contract/settings';

/** The Waterflai calls the starter needs (a subset of the client, so tests can fake it). */
export interface WaterflaiStarter extends UpstreamExecutions {
  startExecution(
    chatbotId: string,
    inputData: Record<string, unknown>,
    options?: { timeoutMs?: number },
  ): Promise<{ execution_id: string }>;
}

export interface StarterSettings {
  readonly stateMachineArn: string;
  readonly intakeQueueUrl: string;
  readonly deadLetterQueueUrl: string;
  readonly maxJobDurationSeconds: number;
  readonly retentionDays: number;
  /** The intake queue's maxReceiveCount: on the last receive, a transient failure becomes final. */
  readonly maxReceiveCount: number;
  /** Seconds before the first status poll. */
  readonly firstPollSeconds: number;
  /** How long a claim protects a job's Waterflai start from concurrent duplicates. */
  readonly claimLeaseMs: number;
  /** Largest output recorded inline (a job given up whose execution had completed). @default 64 KiB */
  readonly maxInlineOutputBytes?: number;
}

export interface StarterDeps {
  readonly store: JobStore;
  readonly waterflai: WaterflaiStarter;
  readonly sfn: SFNClient;
  readonly sqs: SQSClient;
  readonly publisher: OutcomePublisher;
  readonly logger: AppLogger;
  readonly settings: StarterSettings;
  readonly now?: () => number;
  readonly random?: () => number;
  /** Waits between in-process retries (tests pass a fake). @default setTimeout */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Retry waits of the cancel confirmation. @default CANCEL_RETRY_DELAYS_MS */
  readonly cancelRetryDelaysMs?: CancelAndConfirmOptions['delaysMs'];
}

/** Another delivery of the same job holds the claim; try again once it is done. Retryable. */
export class JobBusyError extends OrchestratorError {
  readonly retryable = true;
  readonly code = 'JOB_BUSY';

  /** @param leaseSeconds seconds until the other delivery's claim expires, when known */
  constructor(
    jobId: string,
    readonly leaseSeconds?: number,
  ) {
    super(`job ${jobId} is being started by another delivery`);
  }
}

/** Seconds of jitter added to a busy job's retry, so duplicates do not come back together. */
const BUSY_JITTER_SECONDS = 5;
/** Pauses between the in-process attempts to save an accepted execution's id (ms). */
const SAVE_RETRY_DELAYS_MS = [200, 1000, 3000];

/** Backoff bounds for transient start failures (SQS visibility, seconds). */
const BACKOFF_BASE_SECONDS = 5;
const BACKOFF_CAP_SECONDS = 900;
/** SQS visibility timeout maximum (12 h). */
const MAX_VISIBILITY_SECONDS = 43_200;

/**
 * Starts one job per SQS record: validate -> claim in DynamoDB -> POST to Waterflai ->
 * save the execution id -> StartExecution. Each step is idempotent, so a redelivered or
 * duplicated message resumes where the previous attempt stopped and never starts a second
 * Waterflai or Step Functions execution for a job id whose execution id was saved.
 */
export class JobStarter {
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly deps: StarterDeps) {
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /**
   * Processes one record. Returns normally when the message is done with (started,
   * duplicate, or permanently rejected and dead-lettered); throws to fail only this item
   * when a later attempt may succeed.
   */
  async handleRecord(record: SQSRecord, remainingMs: () => number): Promise<void> {
    let message: IntakeMessage;
    try {
      message = parseIntakeMessage(record.body, record.messageId);
    } catch (error) {
      if (error instanceof InvalidMessageError) {
        // Recording, announcing and dead-lettering can meet transient AWS faults too: defer and
        // retry like any start, and on the last receive at least dead-letter with the reason.
        return this.withRetries(
          record,
          error.jobId ?? record.messageId,
          () => this.rejectInvalid(record, error),
          () => this.sendToDeadLetterQueue(record, error.code, error.message, error.jobId),
        );
      }
      throw error;
    }
    if (message.kind === 'cancel') {
      const { job_id: jobId, delivery } = message;
      return this.withRetries(
        record,
        jobId,
        () => this.cancel(jobId, delivery, record, remainingMs),
        (code, reason) => this.sendToDeadLetterQueue(record, code, reason, jobId),
      );
    }
    const { request } = message;
    return this.withRetries(
      record,
      request.job_id,
      () => this.start(request, record, remainingMs),
      (code, reason) => this.giveUp(request, record, code, reason),
    );
  }

  /**
   * Runs one attempt. A permanent failure (Waterflai refused) gives up at once; a
   * transient one is retried through SQS with backoff, until the last receive gives up.
   */
  private async withRetries(
    record: SQSRecord,
    jobId: string,
    attempt: () => Promise<void>,
    giveUp: (code: string, reason: string) => Promise<void>,
  ): Promise<void> {
    try {
      await attempt();
    } catch (error) {
      const receiveCount = Number(record.attributes?.ApproximateReceiveCount ?? '1');
      if (isPermanentStartError(error)) {
        const status = error instanceof WaterflaiHttpError ? error.status : undefined;
        this.deps.logger.warn('Waterflai refused the request; not retrying', { job_id: jobId, error: describeError(error), status });
        const code = error instanceof InvalidIdentifierError ? ERROR_CODE.INVALID_MESSAGE : ERROR_CODE.WATERFLAI_REJECTED;
        return giveUp(code, describeError(error));
      }
      if (receiveCount >= this.deps.settings.maxReceiveCount) {
        this.deps.logger.error('retries exhausted', { job_id: jobId, receive_count: receiveCount, error: describeError(error) });
        return giveUp(ERROR_CODE.START_RETRIES_EXHAUSTED, `gave up after ${receiveCount} attempts: ${describeError(error)}`);
      }
      await this.deferMessage(record, error, receiveCount);
      throw error;
    }
  }

  /**
   * A producer's cancel request. A job not seen yet gets a tombstone (its start, when it
   * arrives, never reaches Waterflai); a running one is cancelled in Waterflai first; a
   * finished one is left alone. The job ends CANCELLED (reason `requested`) with one event.
   */
  private async cancel(jobId: string, delivery: JobRequest['delivery'], message: SQSRecord, remainingMs: () => number): Promise<void> {
    const { store, logger } = this.deps;
    const at = iso(this.now());
    if (
      await store.createTombstone({
        job_id: jobId,
        source_message_id: message.messageId,
        delivery,
        at,
        expires_at: this.expiresAt(this.now()),
      })
    ) {
      logger.info('cancel request for a job not started yet: tombstone recorded', { job_id: jobId });
      const tombstone = await store.get(jobId);
      if (tombstone) await announceOutcome(store, this.deps.publisher, tombstone, this.now);
      return;
    }
    const job = await store.get(jobId);
    if (job === undefined) throw new Error(`job ${jobId} vanished while it was being cancelled`);
    if (isSettled(job)) {
      if (job.cancel_reason === CANCEL_REASON.REQUESTED && job.event_published_at === undefined) {
        await announceOutcome(store, this.deps.publisher, job, this.now);
      } else {
        logger.info('cancel request for a finished job; ignored', { job_id: jobId, status: job.status });
      }
      return;
    }
    const claimLeftMs = (job.claim_expires_at ?? 0) - this.now();
    if (job.execution_id === undefined && claimLeftMs > 0) {
      // A start is POSTing right now. Ending the job here would leave its execution to a
      // cancel nobody could report on the outcome (an outage would let it run to completion
      // under a Cancelled event): note the request and come back once the start is done.
      await store.markCancelRequested(jobId, at);
      logger.info('cancel request while the job is being started; it comes back once the start is done', { job_id: jobId });
      throw new JobBusyError(jobId, Math.ceil(claimLeftMs / 1000));
    }
    // Before the DELETE: the poll loop may see Waterflai's CANCELLED before this request
    // records it, and must then record reason `requested`, not `remote`.
    await store.markCancelRequested(jobId, at);
    if (job.execution_id !== undefined) {
      const outcome = await this.confirmCancel(job.execution_id, remainingMs);
      if (outcome.kind === 'finished') {
        logger.info('cancel request came after Waterflai finished the job; the poll loop reports its outcome', { job_id: jobId });
        return;
      }
      // Not confirmed: the request comes back later (the poll loop keeps tracking the job meanwhile).
      if (outcome.kind === 'unconfirmed') throw new UpstreamCancelUnconfirmedError(job.execution_id, outcome.reason);
    }
    const settled = await store.applyStatus(jobId, {
      status: JOB_STATUS.CANCELLED,
      fields: {
        cancel_reason: CANCEL_REASON.REQUESTED,
        finished_at: at,
        ...(job.execution_id === undefined ? {} : { upstream_cancel: UPSTREAM_CANCEL.CONFIRMED }),
      },
      now: at,
    });
    const current = settled.record;
    if (settled.applied && current?.execution_id !== undefined && current.execution_id !== job.execution_id) {
      // A start saved its execution id between our read and our write: stop that execution too.
      await this.cancelTracked(jobId, current.execution_id, remainingMs);
    }
    if (current && isSettled(current) && (settled.applied || current.cancel_reason === CANCEL_REASON.REQUESTED)) {
      await announceOutcome(store, this.deps.publisher, current, this.now);
    }
    logger.info('job cancelled on request', { job_id: jobId, applied: settled.applied });
  }

  /**
   * Starts a job in steps: claim it, decide what an existing record means, POST to
   * Waterflai, save the execution id, start the state machine.
   */
  private async start(request: JobRequest, message: SQSRecord, remainingMs: () => number): Promise<void> {
    const nowMs = this.now();
    const claimToken = randomUUID();
    const claim = await this.claim(request, message, nowMs, claimToken);
    const job = claim.kind === 'claimed' ? claim.record : await this.resolveExistingClaim(claim.record, message, nowMs, claimToken);
    if (job === undefined) return;
    const executionId = await this.postExecution(request, job, remainingMs);
    await this.recordExecution(job, executionId, remainingMs);
  }

  /** Creates the job's record with a lease held by `claimToken`, unless a record exists. */
  private claim(request: JobRequest, message: SQSRecord, nowMs: number, claimToken: string): Promise<ClaimResult> {
    return this.deps.store.claim({
      job_id: request.job_id,
      chatbot_id: request.chatbot_id,
      metadata: request.metadata,
      source_message_id: message.messageId,
      delivery: request.delivery,
      accepted_at: iso(nowMs),
      deadline_at: iso(nowMs + this.jobDurationSeconds(request) * 1000),
      expires_at: this.expiresAt(nowMs),
      state_machine_execution_name: executionNameForJob(request.job_id),
      claim_expires_at: nowMs + this.deps.settings.claimLeaseMs,
      claim_token: claimToken,
    });
  }

  /**
   * What an existing record means for this delivery: the job to start (our own claim whose
   * answer was lost, or an expired claim taken over), or undefined when there is nothing to
   * start (a finished job, or one Waterflai already runs: completed here or ignored).
   * Throws {@link JobBusyError} while another delivery's claim holds.
   */
  private async resolveExistingClaim(
    job: JobRecord,
    message: SQSRecord,
    nowMs: number,
    claimToken: string,
  ): Promise<JobRecord | undefined> {
    const { logger } = this.deps;
    // Our own claim, whose answer was lost (the SDK's retry found the record "already there").
    if (job.claim_token === claimToken && job.execution_id === undefined && !isSettled(job)) {
      logger.info('recognised its own claim (the answer to the claim was lost)', { job_id: job.job_id });
      return job;
    }
    if (isSettled(job)) {
      if (this.isOwnUnfinishedRejection(job, message)) await this.completeRejection(job, message);
      else logger.info('duplicate delivery of a finished job; ignored', { job_id: job.job_id, status: job.status });
      return undefined;
    }
    if (job.execution_id !== undefined) {
      if (job.state_machine_execution_arn === undefined) await this.startStateMachine(job);
      else logger.info('duplicate delivery of a running job; ignored', { job_id: job.job_id });
      return undefined;
    }
    return this.takeOverExpiredClaim(job, nowMs, claimToken);
  }

  /** Takes over a claim whose lease ran out (or was given back); throws {@link JobBusyError} while it holds. */
  private async takeOverExpiredClaim(job: JobRecord, nowMs: number, claimToken: string): Promise<JobRecord> {
    const { store, logger } = this.deps;
    const claimExpiresAt = job.claim_expires_at ?? 0;
    // The lease left goes with the error: the last receive waits it out (see deferMessage).
    if (claimExpiresAt > nowMs) throw new JobBusyError(job.job_id, Math.ceil((claimExpiresAt - nowMs) / 1000));
    const taken =
      (await store.takeOverClaim(job.job_id, job.claim_expires_at, nowMs + this.deps.settings.claimLeaseMs, iso(nowMs), claimToken)) ??
      // A lost answer to our own takeover looks like a lost race: the token tells them apart.
      (await store
        .get(job.job_id)
        .then((current) =>
          current?.claim_token === claimToken && current.execution_id === undefined && !isSettled(current) ? current : undefined,
        ));
    if (!taken) throw new JobBusyError(job.job_id);
    if (job.claim_expires_at === 0) {
      logger.info('retrying a start whose previous attempt failed before Waterflai accepted it', { job_id: job.job_id });
    } else {
      logger.warn('took over an expired claim; a previous attempt may have started a Waterflai execution', { job_id: job.job_id });
    }
    return taken;
  }

  /**
   * POSTs the execution to Waterflai; a failure that will be retried (transient, or a refused
   * key) gives the claim back first, so the next receive may start at once instead of waiting
   * out the lease (busy retries must not use up a job's receives during a key rotation).
   */
  private async postExecution(request: JobRequest, job: JobRecord, remainingMs: () => number): Promise<string> {
    try {
      const started = await this.deps.waterflai.startExecution(request.chatbot_id, request.input_data, {
        timeoutMs: requestTimeoutFor(remainingMs()),
      });
      return started.execution_id;
    } catch (error) {
      if (!isPermanentStartError(error)) await this.releaseClaim(job);
      throw error;
    }
  }

  /**
   * Saves the accepted execution's id, then starts the state machine. A refused save is
   * decided by the record: our own save answered late (the execution is this job's), or
   * another delivery's execution or a settled job (ours is superfluous).
   */
  private async recordExecution(job: JobRecord, executionId: string, remainingMs: () => number): Promise<void> {
    const { logger } = this.deps;
    const saved = await this.saveExecutionId(job, executionId, remainingMs);
    if (saved.applied) {
      logger.info('Waterflai execution started', { job_id: job.job_id, execution_id: executionId });
      return this.startStateMachine(saved.record);
    }
    const current = saved.record;
    if (current?.execution_id === executionId && !isSettled(current)) {
      // Our own save was applied but its answer was lost (the SDK's retry then failed the
      // condition): the execution is this job's, not a superfluous one.
      logger.info('Waterflai execution started (its save was answered late)', { job_id: job.job_id, execution_id: executionId });
      return this.startStateMachine(current);
    }
    return this.discardExecution(job, executionId, current, remainingMs);
  }

  /**
   * An execution whose id could not be saved for the job (another delivery's is saved, or
   * the job settled): cancels it, then starts the state machine of a job neither settled
   * nor tracked yet.
   */
  private async discardExecution(
    job: JobRecord,
    executionId: string,
    current: JobRecord | undefined,
    remainingMs: () => number,
  ): Promise<void> {
    const { logger } = this.deps;
    if (current?.execution_id !== undefined && current.execution_id !== executionId) {
      logger.error('another delivery saved a different execution id; cancelling ours', { job_id: job.job_id, execution_id: executionId });
    } else {
      logger.warn('job settled while it was being started; cancelling the new execution', {
        job_id: job.job_id,
        execution_id: executionId,
      });
    }
    await this.cancelTracked(job.job_id, executionId, remainingMs);
    if (!current || isSettled(current) || current.state_machine_execution_arn !== undefined) return;
    return this.startStateMachine(current);
  }

  /**
   * Saves the id of an execution Waterflai accepted, retrying transient faults in-process:
   * an accepted execution whose id is not saved is one nobody tracks. When the faults
   * outlast the retries, a consistent read decides: the id was saved after all (a lost
   * answer), or it was not, and the execution is cancelled and the claim released so the
   * next receive starts the job afresh at once. Only when even the read fails is the
   * execution left running (logged with its id for operators), as before.
   */
  private async saveExecutionId(job: JobRecord, executionId: string, remainingMs: () => number): Promise<UpdateResult> {
    const { store, logger } = this.deps;
    let lastError: unknown;
    for (let attempt = 0; attempt <= SAVE_RETRY_DELAYS_MS.length; attempt += 1) {
      try {
        return await store.saveExecutionId(job.job_id, executionId, iso(this.now()));
      } catch (error) {
        if (!isRetryable(error) && !isTransientAwsError(error)) throw error;
        lastError = error;
        const delay = SAVE_RETRY_DELAYS_MS[attempt];
        // Keep room for the read, the cancel and the release below.
        if (delay === undefined || remainingMs() < delay + 2 * DEFAULT_REQUEST_TIMEOUT_MS) break;
        logger.warn('saving the execution id failed; retrying', {
          job_id: job.job_id,
          execution_id: executionId,
          error: describeError(error),
        });
        await this.sleep(delay);
      }
    }
    let current: JobRecord | undefined;
    try {
      current = await store.get(job.job_id);
    } catch (readError) {
      logger.error('an accepted Waterflai execution could not be recorded; it may run untracked', {
        job_id: job.job_id,
        execution_id: executionId,
        error: describeError(lastError),
        read_error: describeError(readError),
      });
      throw lastError;
    }
    // Saved after all, or saved by another delivery, or settled meanwhile: the caller
    // handles these as it handles a refused save.
    if (current !== undefined && (current.execution_id !== undefined || isSettled(current))) return { applied: false, record: current };
    logger.warn('an accepted Waterflai execution could not be recorded; cancelling it', {
      job_id: job.job_id,
      execution_id: executionId,
      error: describeError(lastError),
    });
    await this.cancelTracked(job.job_id, executionId, remainingMs);
    // Our own lease (conditional on it: a claim taken over meanwhile is not released).
    await this.releaseClaim(job);
    throw lastError;
  }

  /** Gives the claim back (the next receive may start at once); a failure is logged, and the lease runs out instead. */
  private async releaseClaim(job: JobRecord): Promise<void> {
    if (job.claim_expires_at === undefined || job.claim_expires_at === 0) return;
    try {
      await this.deps.store.releaseClaim(job.job_id, job.claim_expires_at, iso(this.now()));
    } catch (error) {
      this.deps.logger.warn('could not release the claim; the next attempt waits for the lease to expire', {
        job_id: job.job_id,
        error: describeError(error),
      });
    }
  }

  /** Starts (or finds) the job's state machine execution; the input is rebuilt byte-identically from the record. */
  private async startStateMachine(job: JobRecord): Promise<void> {
    const { sfn, settings, store, logger } = this.deps;
    const name = job.state_machine_execution_name ?? executionNameForJob(job.job_id);
    let executionArn: string;
    try {
      const result = await sfn.send(
        new StartExecutionCommand({ stateMachineArn: settings.stateMachineArn, name, input: JSON.stringify(this.initialState(job)) }),
      );
      executionArn = result.executionArn ?? executionArnFor(settings.stateMachineArn, name);
    } catch (error) {
      if (!(error instanceof ExecutionAlreadyExists)) throw error;
      logger.info('state machine execution already exists', { job_id: job.job_id });
      executionArn = executionArnFor(settings.stateMachineArn, name);
    }
    await store.saveStateMachineExecution(job.job_id, executionArn, iso(this.now()));
  }

  /** The poll loop's first state. Built only from stored values so that retries send the same bytes. */
  private initialState(job: JobRecord): PollState {
    return {
      job_id: job.job_id,
      chatbot_id: job.chatbot_id ?? '',
      execution_id: job.execution_id ?? '',
      accepted_at: job.accepted_at,
      deadline_at: job.deadline_at,
      status: JOB_STATUS.PENDING,
      progress: null,
      current_node: null,
      poll_count: 0,
      next_poll_seconds: this.deps.settings.firstPollSeconds,
    };
  }

  /** An invalid message: record and announce a Failed outcome when a job id is known, then dead-letter it. */
  private async rejectInvalid(message: SQSRecord, error: InvalidMessageError): Promise<void> {
    const { store, logger } = this.deps;
    const { jobId, chatbotId, metadata, delivery } = error.context;
    logger.warn('invalid job message', { message_id: message.messageId, job_id: jobId, error: error.message });
    if (jobId === undefined) return this.sendToDeadLetterQueue(message, error.code, error.message, undefined);
    const at = iso(this.now());
    const created = await store.createRejected({
      job_id: jobId,
      ...(chatbotId === undefined ? {} : { chatbot_id: chatbotId }),
      metadata: metadata ?? {},
      source_message_id: message.messageId,
      delivery: delivery ?? 'sqs',
      at,
      expires_at: this.expiresAt(this.now()),
      error_code: error.code,
      error_message: error.message,
    });
    const record = await store.get(jobId);
    if (record && isSettled(record) && (created || this.isOwnUnfinishedRejection(record, message))) {
      return this.completeRejection(record, message);
    }
    // The job id belongs to another job (or this message was already dead-lettered): its
    // outcome is that job's to announce, so this message only goes to the DLQ.
    if (!record?.dead_lettered_at || record.source_message_id !== message.messageId) {
      await this.sendToDeadLetterQueue(message, error.code, error.message, jobId);
    }
  }

  /** A job that can not be started: settle it FAILED, announce it and dead-letter the message. */
  private async giveUp(request: JobRequest, message: SQSRecord, code: string, reason: string): Promise<void> {
    const { store, logger } = this.deps;
    const at = iso(this.now());
    const rejected = await store.rejectClaimed(request.job_id, code, reason, at);
    if (rejected.applied) return this.completeRejection(rejected.record, message);

    const current = rejected.record;
    if (current === undefined) {
      const created = await store.createRejected({
        job_id: request.job_id,
        chatbot_id: request.chatbot_id,
        metadata: request.metadata,
        source_message_id: message.messageId,
        delivery: request.delivery,
        at,
        expires_at: this.expiresAt(this.now()),
        error_code: code,
        error_message: reason,
      });
      const record = created ? await store.get(request.job_id) : undefined;
      if (record && isSettled(record)) return this.completeRejection(record, message);
      throw new Error(`job ${request.job_id} changed while it was being rejected`);
    }
    if (isSettled(current)) {
      if (this.isOwnUnfinishedRejection(current, message)) return this.completeRejection(current, message);
      return;
    }
    if (current.state_machine_execution_arn !== undefined) return; // tracked by its execution: nothing to give up
    if (current.execution_id !== undefined) {
      // Waterflai runs it but no execution tracks it: stop the upstream run (and make sure of
      // it), then settle with what really happened.
      const executionId = current.execution_id;
      const outcome = await this.confirmCancel(executionId, () => 2 * DEFAULT_REQUEST_TIMEOUT_MS + DEFAULT_REQUEST_MARGIN_MS + 5_000);
      const observed =
        outcome.kind === 'finished' && outcome.execution.known_status !== 'CANCELLED'
          ? mapExecutionStatus(outcome.execution, at, this.deps.settings.maxInlineOutputBytes ?? SETTING_DEFAULTS.maxInlineOutputBytes)
          : undefined;
      const settled = await store.applyStatus(request.job_id, {
        ...(observed === undefined
          ? {
              status: JOB_STATUS.FAILED,
              fields: {
                error_code: code,
                error_message: reason,
                finished_at: at,
                upstream_cancel: outcome.kind === 'unconfirmed' ? UPSTREAM_CANCEL.UNCONFIRMED : UPSTREAM_CANCEL.CONFIRMED,
              },
            }
          : { status: observed.status, fields: observed.fields }),
        ...(outcome.kind === 'unconfirmed' ? { pendingCancels: [executionId] } : {}),
        now: at,
      });
      logger.error('gave up on a started job', { job_id: request.job_id, execution_id: executionId, upstream: outcome.kind });
      if (settled.record && isSettled(settled.record)) return this.completeRejection(settled.record, message);
    }
  }

  /** Announces a settled job's outcome (once) and dead-letters its message with the reason (once). */
  private async completeRejection(job: JobRecord, message: SQSRecord): Promise<void> {
    const { store, publisher } = this.deps;
    await announceOutcome(store, publisher, job, this.now);
    if (job.dead_lettered_at === undefined && job.source_message_id === message.messageId) {
      await this.sendToDeadLetterQueue(message, job.error_code ?? ERROR_CODE.INVALID_MESSAGE, job.error_message ?? '', job.job_id);
      await store.markDeadLettered(job.job_id, iso(this.now()));
    }
  }

  private isOwnUnfinishedRejection(job: JobRecord, message: SQSRecord): boolean {
    return (
      job.rejected_at_intake === true &&
      job.source_message_id === message.messageId &&
      (job.dead_lettered_at === undefined || job.event_published_at === undefined)
    );
  }

  /** Copies the message to the DLQ with the reason as message attributes (the body is untouched). */
  private async sendToDeadLetterQueue(message: SQSRecord, code: string, reason: string, jobId: string | undefined): Promise<void> {
    const attributes: Record<string, { DataType: 'String'; StringValue: string }> = {
      [DLQ_ATTRIBUTE.ERROR_CODE]: { DataType: 'String', StringValue: code },
      [DLQ_ATTRIBUTE.ERROR_MESSAGE]: { DataType: 'String', StringValue: sqsSafe(reason.slice(0, 1024)) || code },
      [DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]: { DataType: 'String', StringValue: message.messageId },
      [DLQ_ATTRIBUTE.FAILED_AT]: { DataType: 'String', StringValue: iso(this.now()) },
    };
    if (jobId !== undefined) attributes[DLQ_ATTRIBUTE.JOB_ID] = { DataType: 'String', StringValue: jobId };
    await this.deps.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.deps.settings.deadLetterQueueUrl,
        MessageBody: message.body || '(empty)',
        MessageAttributes: attributes,
      }),
    );
    this.deps.logger.warn('message dead-lettered', { message_id: message.messageId, job_id: jobId, error_code: code });
  }

  /**
   * Delays the message's next delivery: the server's Retry-After when it sent one, else
   * exponential backoff with full jitter on the receive count; a busy job's last receive
   * comes only once the other delivery's claim has run out.
   */
  private async deferMessage(message: SQSRecord, error: unknown, receiveCount: number): Promise<void> {
    const retryAfter = error instanceof WaterflaiHttpError ? error.retryAfterSeconds : undefined;
    let delay =
      retryAfter ??
      backoffDelay(receiveCount, { base: BACKOFF_BASE_SECONDS, cap: BACKOFF_CAP_SECONDS, jitter: 'full', random: this.random });
    if (error instanceof JobBusyError && error.leaseSeconds !== undefined && receiveCount + 1 >= this.deps.settings.maxReceiveCount) {
      // The next receive is the last: it must not find the claim still held (a live holder
      // is done long before; a dead one's lease has run out by then).
      delay = Math.max(delay, error.leaseSeconds + this.random() * BUSY_JITTER_SECONDS);
    }
    const seconds = Math.min(MAX_VISIBILITY_SECONDS, Math.max(1, Math.ceil(delay)));
    try {
      await this.deps.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.deps.settings.intakeQueueUrl,
          ReceiptHandle: message.receiptHandle,
          VisibilityTimeout: seconds,
        }),
      );
    } catch (visibilityError) {
      // The message still comes back after the queue's own visibility timeout.
      this.deps.logger.warn('could not change message visibility', {
        message_id: message.messageId,
        error: describeError(visibilityError),
      });
    }
    this.deps.logger.info('start deferred', { message_id: message.messageId, delay_seconds: seconds, error: describeError(error) });
  }

  private confirmCancel(executionId: string, remainingMs: () => number): Promise<CancelOutcome> {
    return cancelAndConfirm(this.deps.waterflai, executionId, {
      remainingMs,
      ...(this.deps.cancelRetryDelaysMs === undefined ? {} : { delaysMs: this.deps.cancelRetryDelaysMs }),
      ...(this.deps.sleep === undefined ? {} : { sleep: this.deps.sleep }),
    });
  }

  /**
   * Cancels a superfluous execution of a job (another delivery's is the one tracked, or the
   * job ended meanwhile) and makes sure of it; when Waterflai does not confirm, the
   * execution is noted on the job for the sweeper, which keeps trying.
   */
  private async cancelTracked(jobId: string, executionId: string, remainingMs: () => number): Promise<void> {
    const outcome = await this.confirmCancel(executionId, remainingMs);
    if (outcome.kind !== 'unconfirmed') return;
    try {
      await this.deps.store.addPendingCancels(jobId, [executionId], outcome.reason, iso(this.now()));
      this.deps.logger.warn('could not confirm the cancellation of a superfluous Waterflai execution; the sweeper keeps trying', {
        job_id: jobId,
        execution_id: executionId,
      });
    } catch (error) {
      this.deps.logger.error(
        'a superfluous Waterflai execution may run untracked: neither its cancellation nor a note for the sweeper succeeded',
        {
          job_id: jobId,
          execution_id: executionId,
          reason: outcome.reason,
          error: describeError(error),
        },
      );
    }
  }

  private jobDurationSeconds(request: JobRequest): number {
    const max = this.deps.settings.maxJobDurationSeconds;
    return Math.min(request.timeout_seconds ?? max, max);
  }

  private expiresAt(nowMs: number): number {
    return Math.floor(nowMs / 1000) + this.deps.settings.retentionDays * 86_400;
  }
}

/**
 * SQS attribute values may only hold #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
 * #x10000-#x10FFFF; anything else (a NUL in an unknown key an error message names, say)
 * would make SendMessage fail. Replaced by U+FFFD.
 */
export function sqsSafe(text: string): string {
  return text.replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '\uFFFD');
}

/**
 * Failures that no retry can fix: Waterflai refusing the request (4xx other than 401, 403,
 * 408, 425 and 429, or a redirect) or an identifier that may not be sent. Everything else, including
 * configuration and AWS errors, is retried: an operator can fix those without losing jobs.
 */
function isPermanentStartError(error: unknown): error is WaterflaiError | InvalidIdentifierError {
  // A refused key (401/403, even after the client re-read the secret) is the deployment's
  // problem, not the job's: a key rotation in progress, or one an operator can fix. Retried.
  if (error instanceof WaterflaiHttpError && (error.status === 401 || error.status === 403)) return false;
  return (error instanceof WaterflaiError || error instanceof InvalidIdentifierError) && !error.retryable;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
