/**
 * Follows submitted messages to their outcome, from what the system itself records: the job
 * table (status, progress, current node, polls), the outcome events on the bus, and the
 * dead-letter queue. A message is done when
 * - it is a valid job request, its job's record is terminal and its outcome event was
 *   published (and, when the job was rejected at intake because of this very message, the
 *   message is in the dead-letter queue too); or
 * - it is in the dead-letter queue (an invalid message, with or without a job id, or a
 *   message SQS redrove after maxReceiveCount).
 */
import { DLQ_ATTRIBUTE, isTerminalStatus } from '../../lambdas/contract/constants';
import { InvalidMessageError } from '../../lambdas/contract/errors';
import { parseJobMessage } from '../../lambdas/contract/job-request';
import type { JobRecord } from '../../lambdas/contract/job-record';
import type { PublishedEvent } from '../emulators/eventbridge';
import type { QueuedMessage } from '../emulators/sqs';

/** What the tracker reads. A {@link LocalRuntime} fits. */
export interface TrackerSource {
  scanJobs(): Promise<JobRecord[]>;
  readonly eventBridge: { subscribe(listener: (event: PublishedEvent) => void): () => void; events(): PublishedEvent[] };
  readonly sqs: { messages(queueName: string): QueuedMessage[]; readonly deadLetterQueue: { readonly name: string } };
}

export interface Submission {
  readonly messageId: string;
  readonly body: string;
  readonly submittedAt: number;
}

export type Outcome = 'COMPLETED' | 'FAILED' | 'CANCELLED' | 'DEAD-LETTERED';

export interface JobView {
  /** The job id, or `message:<MessageId>` for a message without one. */
  readonly key: string;
  readonly jobId?: string;
  readonly messageIds: readonly string[];
  /** `QUEUED` until the job has a record, then the record's status; `DEAD-LETTERED` for a message that only reached the DLQ. */
  readonly status: string;
  readonly progress: number | null;
  readonly currentNode: string | null;
  readonly polls: number;
  readonly done: boolean;
  readonly outcome?: Outcome;
  /** Error code and message, cancel reason, or dead-letter reason. */
  readonly detail?: string;
  readonly durationMs?: number;
  /** Outcome events seen on the bus for this job id. */
  readonly events: number;
  readonly deadLettered: boolean;
  readonly firstSeenAt: number;
}

interface MessageState {
  readonly submission: Submission;
  readonly jobId?: string;
  readonly invalid: boolean;
  dlq?: { code?: string; message?: string; seenAt: number };
}

export interface JobTrackerOptions {
  /** Also follow jobs found in the table that were not submitted through {@link JobTracker.submit} (serve mode). @default false */
  readonly discover?: boolean;
  /** Only events on this bus count as outcome events. @default every bus */
  readonly eventBusName?: string;
  readonly now?: () => number;
}

export class JobTracker {
  readonly #messages: MessageState[] = [];
  readonly #records = new Map<string, JobRecord>();
  readonly #eventCounts = new Map<string, number>();
  readonly #unsubscribe: () => void;
  readonly #now: () => number;
  readonly #firstSeen = new Map<string, number>();

  constructor(
    private readonly source: TrackerSource,
    private readonly options: JobTrackerOptions = {},
  ) {
    this.#now = options.now ?? Date.now;
    for (const event of source.eventBridge.events()) this.#count(event);
    this.#unsubscribe = source.eventBridge.subscribe((event) => this.#count(event));
  }

  /** Starts following a message sent to the intake queue. */
  submit(submission: Submission): void {
    let jobId: string | undefined;
    let invalid = false;
    try {
      jobId = parseJobMessage(submission.body, submission.messageId).job_id;
    } catch (error) {
      invalid = true;
      if (error instanceof InvalidMessageError) jobId = error.jobId;
    }
    this.#messages.push({ submission, ...(jobId === undefined ? {} : { jobId }), invalid });
    const key = jobId ?? `message:${submission.messageId}`;
    if (!this.#firstSeen.has(key)) this.#firstSeen.set(key, submission.submittedAt);
  }

  /** Reads the table and the dead-letter queue again. */
  async refresh(): Promise<void> {
    const records = await this.source.scanJobs();
    for (const record of records) {
      this.#records.set(record.job_id, record);
      if (this.options.discover === true && !this.#firstSeen.has(record.job_id)) this.#firstSeen.set(record.job_id, this.#now());
    }
    const deadLettered = this.source.sqs.messages(this.source.sqs.deadLetterQueue.name);
    for (const state of this.#messages) {
      if (state.dlq !== undefined) continue;
      const id = state.submission.messageId;
      const found = deadLettered.find(
        (message) => message.messageId === id || message.messageAttributes[DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]?.StringValue === id,
      );
      if (found !== undefined) {
        const code = found.messageAttributes[DLQ_ATTRIBUTE.ERROR_CODE]?.StringValue;
        const message = found.messageAttributes[DLQ_ATTRIBUTE.ERROR_MESSAGE]?.StringValue;
        state.dlq = { ...(code === undefined ? {} : { code }), ...(message === undefined ? {} : { message }), seenAt: this.#now() };
      }
    }
  }

  /** One view per job (or per message without a job id), in the order first seen. */
  views(): JobView[] {
    const groups = new Map<string, MessageState[]>();
    for (const state of this.#messages) {
      const key = state.jobId ?? `message:${state.submission.messageId}`;
      groups.set(key, [...(groups.get(key) ?? []), state]);
    }
    if (this.options.discover === true) {
      for (const jobId of this.#records.keys()) if (!groups.has(jobId)) groups.set(jobId, []);
    }
    return [...groups.entries()].map(([key, states]) => this.#view(key, states)).sort((a, b) => a.firstSeenAt - b.firstSeenAt);
  }

  allDone(): boolean {
    return this.views().every((view) => view.done);
  }

  unfinished(): JobView[] {
    return this.views().filter((view) => !view.done);
  }

  close(): void {
    this.#unsubscribe();
  }

  #count(event: PublishedEvent): void {
    if (this.options.eventBusName !== undefined && event.eventBusName !== this.options.eventBusName) return;
    const detail = event.detail as { job_id?: unknown } | null;
    if (typeof detail?.job_id === 'string') this.#eventCounts.set(detail.job_id, (this.#eventCounts.get(detail.job_id) ?? 0) + 1);
  }

  #view(key: string, states: MessageState[]): JobView {
    const jobId = states[0]?.jobId ?? (key.startsWith('message:') ? undefined : key);
    const record = jobId === undefined ? undefined : this.#records.get(jobId);
    const events = jobId === undefined ? 0 : (this.#eventCounts.get(jobId) ?? 0);
    const terminal = record !== undefined && isTerminalStatus(record.status);
    const messageDone = (state: MessageState): boolean => {
      if (state.dlq !== undefined) return true;
      if (state.invalid) return false;
      if (!terminal || record === undefined || events === 0) return false;
      const rejectedByThisMessage = record.rejected_at_intake === true && record.source_message_id === state.submission.messageId;
      return !rejectedByThisMessage || record.dead_lettered_at !== undefined;
    };
    const done = states.length > 0 ? states.every(messageDone) : terminal && events > 0;
    const deadLetter = states.find((state) => state.dlq !== undefined)?.dlq;
    let outcome: Outcome | undefined;
    if (terminal && record !== undefined) outcome = record.status as Outcome;
    else if (done && deadLetter !== undefined) outcome = 'DEAD-LETTERED';

    let detail: string | undefined;
    if (record?.error_code !== undefined && record.status === 'FAILED')
      detail = `${record.error_code}: ${record.error_message ?? ''}`.trim();
    else if (record?.status === 'CANCELLED') detail = `reason: ${record.cancel_reason ?? 'remote'}`;
    else if (deadLetter !== undefined)
      detail = `${deadLetter.code ?? 'redriven by SQS'}${deadLetter.message ? `: ${deadLetter.message}` : ''}`;

    const firstSeenAt = this.#firstSeen.get(key) ?? this.#now();
    let durationMs: number | undefined;
    if (terminal && record?.finished_at !== undefined)
      durationMs = Math.max(0, Date.parse(record.finished_at) - Date.parse(record.accepted_at));
    else if (done && deadLetter !== undefined) durationMs = Math.max(0, deadLetter.seenAt - firstSeenAt);

    return {
      key,
      ...(jobId === undefined ? {} : { jobId }),
      messageIds: states.map((state) => state.submission.messageId),
      status: record?.status ?? (deadLetter !== undefined ? 'DEAD-LETTERED' : 'QUEUED'),
      progress: typeof record?.progress === 'number' ? record.progress : null,
      currentNode: typeof record?.current_node === 'string' ? record.current_node : null,
      polls: record?.polls ?? 0,
      done,
      ...(outcome === undefined ? {} : { outcome }),
      ...(detail === undefined ? {} : { detail }),
      ...(durationMs === undefined ? {} : { durationMs }),
      events,
      deadLettered: deadLetter !== undefined,
      firstSeenAt,
    };
  }
}
