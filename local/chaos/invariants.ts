/**
 * The checks after a chaos run, as a pure function of what the run observed: the plan and
 * the messages sent, the job table, the outcome events, the dead-letter queue, the
 * simulator's executions and the Step Functions executions.
 *
 * Invariants (a violation fails the run):
 * - lost: every message sent either belongs to a job that has a terminal record, or is in
 *   the dead-letter queue with its reason (`error_code`);
 * - stuck: no job record is left non-terminal;
 * - unannounced: every terminal job has at least one outcome event;
 * - conflicting outcomes: all events of a job carry the record's status and the stable
 *   event id `<job_id>:<status>` (re-publications of the same event are allowed);
 * - dead letters: every job rejected at intake has its message in the DLQ with the reason;
 *   nothing reached the DLQ without a reason;
 * - duplicate executions from redelivery: no job has more Waterflai executions than its
 *   crash-window faults explain, and no job has two Step Functions executions of the same
 *   generation;
 * - outcome mismatches: every job ends with an outcome its scenario allows (what Waterflai
 *   or the producer decided), or with a give-up outcome (retries exhausted).
 *
 * Reported, not violations: duplicate executions caused by the crash window (Waterflai
 * created the execution but the start attempt failed before the id was saved), duplicate
 * publications of the same event, jobs that gave up under faults, orphaned executions.
 */
import { DLQ_ATTRIBUTE, EVENT_SOURCE, isTerminalStatus } from '../../lambdas/shared/constants';
import type { JobRecord } from '../../lambdas/shared/job-store';
import type { PublishedEvent } from '../runtime/eventbridge';
import type { QueuedMessage } from '../runtime/sqs';
import type { ExecutionView } from '../runtime/step-functions';
import type { SimulatedExecutionView } from '../simulator/server';
import { GIVE_UP_OUTCOMES, outcomeName, type ChaosPlan, type MessagePurpose, type PlannedMessage } from './plan';

/** A message the producer sent, with the id SQS gave it. */
export interface SentMessage {
  readonly message: PlannedMessage;
  readonly messageId: string;
  /** When it was sent (epoch ms). */
  readonly sentAt?: number;
}

/** A message that reached the dead-letter queue this long after it was sent was held up (reported). */
export const SLOW_DEAD_LETTER_MS = 60_000;

export interface RunObservations {
  readonly plan: ChaosPlan;
  readonly sent: readonly SentMessage[];
  readonly records: readonly JobRecord[];
  /** Every event put on the bus (the checks keep the outcome events). */
  readonly events: readonly PublishedEvent[];
  readonly deadLetters: readonly QueuedMessage[];
  readonly executions: readonly SimulatedExecutionView[];
  readonly stateMachineExecutions: readonly ExecutionView[];
  /** POSTs the simulator answered with an `acceptThenFail` fault, by chatbot id. */
  readonly acceptThenFailByChatbot: Readonly<Record<string, number>>;
}

export interface JobProblem {
  readonly jobId: string;
  readonly detail: string;
}

export interface ChaosFindings {
  readonly jobs: number;
  readonly messagesSent: Readonly<Record<MessagePurpose, number>>;
  readonly outcomes: Readonly<Record<string, number>>;
  readonly terminal: number;
  readonly lost: readonly JobProblem[];
  readonly stuck: readonly JobProblem[];
  readonly unannounced: readonly JobProblem[];
  readonly conflictingOutcomes: readonly JobProblem[];
  readonly deadLetterProblems: readonly JobProblem[];
  readonly outcomeMismatches: readonly JobProblem[];
  readonly duplicateExecutionsFromRedelivery: readonly JobProblem[];
  readonly duplicateStateMachineExecutions: readonly JobProblem[];
  readonly events: { readonly total: number; readonly jobsAnnounced: number; readonly duplicates: number };
  readonly deadLetters: { readonly total: number; readonly withReason: number; readonly invalidMessages: number; readonly rejectedJobs: number };
  readonly waterflai: {
    /** Executions created for the run's jobs. */
    readonly executions: number;
    /** Jobs with more than one execution. */
    readonly jobsWithDuplicates: number;
    readonly duplicatesFromCrash: number;
    readonly duplicatesFromRedelivery: number;
    /** Executions no job record points at (crash-window duplicates, superfluous ones, starts that gave up). */
    readonly orphans: number;
    /** Orphans the orchestrator cancelled in Waterflai (it detected them). */
    readonly orphansCancelled: number;
    readonly acceptThenFail: number;
  };
  /** Jobs that failed because faults exhausted their retries (allowed, reported). */
  readonly gaveUp: readonly JobProblem[];
  /** Of those, jobs for which Waterflai nevertheless ran an execution that nothing tracks or cancelled. */
  readonly gaveUpWithOrphans: number;
  /** Jobs whose crash-window fault led to a duplicate execution (reported). */
  readonly crashDuplicates: readonly JobProblem[];
  /** Messages that reached the dead-letter queue more than {@link SLOW_DEAD_LETTER_MS} after they were sent (reported). */
  readonly slowDeadLetters: readonly JobProblem[];
}

/** Runs every check. */
export function checkInvariants(observed: RunObservations): ChaosFindings {
  const { plan } = observed;
  const records = new Map(observed.records.map((record) => [record.job_id, record]));
  const outcomeEvents = observed.events.filter((event) => event.source === EVENT_SOURCE);
  const eventsByJob = groupBy(outcomeEvents, (event) => (event.detail as { job_id?: unknown }).job_id);
  const deadLettersBySource = new Map<string, QueuedMessage>();
  for (const message of observed.deadLetters) {
    const source = message.messageAttributes[DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]?.StringValue ?? message.messageId;
    deadLettersBySource.set(source, message);
  }
  const hasReason = (message: QueuedMessage | undefined): boolean => message?.messageAttributes[DLQ_ATTRIBUTE.ERROR_CODE]?.StringValue !== undefined;

  const lost: JobProblem[] = [];
  const stuck: JobProblem[] = [];
  const unannounced: JobProblem[] = [];
  const conflicting: JobProblem[] = [];
  const deadLetterProblems: JobProblem[] = [];
  const mismatches: JobProblem[] = [];
  const gaveUp: JobProblem[] = [];
  const fromRedelivery: JobProblem[] = [];
  const crashDuplicates: JobProblem[] = [];
  const sfnDuplicates: JobProblem[] = [];
  const outcomes: Record<string, number> = {};
  const messagesSent = { job: 0, duplicate: 0, 'late-duplicate': 0, cancel: 0, invalid: 0 } as Record<MessagePurpose, number>;

  // Messages: each one ends in a terminal job or in the DLQ with its reason.
  const slowDeadLetters: JobProblem[] = [];
  for (const { message, messageId, sentAt } of observed.sent) {
    messagesSent[message.purpose] += 1;
    const deadLetter = deadLettersBySource.get(messageId);
    const failedAt = Date.parse(deadLetter?.messageAttributes[DLQ_ATTRIBUTE.FAILED_AT]?.StringValue ?? '');
    if (sentAt !== undefined && Number.isFinite(failedAt) && failedAt - sentAt > SLOW_DEAD_LETTER_MS) {
      slowDeadLetters.push({ jobId: message.jobId ?? `message:${messageId}`, detail: `${message.purpose} message ${messageId} reached the DLQ ${Math.round((failedAt - sentAt) / 1000)} s after it was sent` });
    }
    if (message.purpose === 'invalid') {
      if (deadLetter === undefined) lost.push({ jobId: message.jobId ?? `message:${messageId}`, detail: `invalid message (${message.invalidCase}) ${messageId} is not in the dead-letter queue` });
      else if (!hasReason(deadLetter)) deadLetterProblems.push({ jobId: message.jobId ?? `message:${messageId}`, detail: `invalid message ${messageId} is in the DLQ without a reason` });
      continue;
    }
    const record = message.jobId === undefined ? undefined : records.get(message.jobId);
    if (record === undefined && deadLetter === undefined) {
      lost.push({ jobId: message.jobId ?? `message:${messageId}`, detail: `${message.purpose} message ${messageId}: no job record and not in the dead-letter queue` });
    }
  }

  // Jobs.
  const executionsByJob = groupBy(observed.executions, (execution) => (execution.input_data as { job?: unknown }).job);
  let terminal = 0;
  let orphans = 0;
  let orphansCancelled = 0;
  let jobsWithDuplicates = 0;
  let crashCount = 0;
  let redeliveryCount = 0;
  let acceptThenFail = 0;
  let executionsTotal = 0;
  let gaveUpWithOrphans = 0;
  for (const job of plan.jobs) {
    const record = records.get(job.jobId);
    const events = eventsByJob.get(job.jobId) ?? [];
    const executions = executionsByJob.get(job.jobId) ?? [];
    executionsTotal += executions.length;
    const atf = observed.acceptThenFailByChatbot[job.chatbotId] ?? 0;
    acceptThenFail += atf;

    // Waterflai executions: one per job, except what the crash window explains.
    const extra = Math.max(0, executions.length - 1);
    if (extra > 0) {
      jobsWithDuplicates += 1;
      const crash = Math.min(extra, atf);
      crashCount += crash;
      redeliveryCount += extra - crash;
      const ids = executions.map((execution) => `${execution.execution_id}${execution.execution_id === record?.execution_id ? ' (adopted)' : ''}${execution.cancelled_by === 'api' ? ' (cancelled by the orchestrator)' : ''}`).join(', ');
      if (crash > 0) crashDuplicates.push({ jobId: job.jobId, detail: `${executions.length} executions, ${atf} crash-window fault(s): ${ids}` });
      if (extra > crash) fromRedelivery.push({ jobId: job.jobId, detail: `${executions.length} executions, only ${atf} crash-window fault(s): ${ids}` });
    }
    for (const execution of executions) {
      if (execution.execution_id === record?.execution_id) continue;
      orphans += 1;
      if (execution.cancelled_by === 'api') orphansCancelled += 1;
    }

    // Step Functions: one execution per generation.
    const names = observed.stateMachineExecutions.filter((execution) => jobIdOfInput(execution.input) === job.jobId).map((execution) => execution.name);
    const duplicateNames = names.filter((name, index) => names.indexOf(name) !== index);
    if (duplicateNames.length > 0) sfnDuplicates.push({ jobId: job.jobId, detail: `state machine executions named ${duplicateNames.join(', ')} more than once` });

    if (record === undefined) continue; // lost (above) or dead-lettered
    if (!isTerminalStatus(record.status)) {
      stuck.push({ jobId: job.jobId, detail: `status ${record.status}, execution ${record.execution_id ?? 'none'}, state machine ${record.state_machine_execution_arn ?? 'none'}, updated ${record.updated_at}` });
      continue;
    }
    terminal += 1;
    const outcome = outcomeName(record);
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;

    if (events.length === 0) unannounced.push({ jobId: job.jobId, detail: `${outcome}, event_published_at ${record.event_published_at ?? 'unset'}` });
    const expectedId = `${job.jobId}:${record.status.toLowerCase()}`;
    const wrong = events.filter((event) => {
      const detail = event.detail as { status?: unknown; event_id?: unknown };
      return detail.status !== record.status || detail.event_id !== expectedId;
    });
    if (wrong.length > 0) {
      const seen = [...new Set(events.map((event) => `${String((event.detail as { status?: unknown }).status)}/${String((event.detail as { event_id?: unknown }).event_id)}`))];
      conflicting.push({ jobId: job.jobId, detail: `record ${record.status}, events ${seen.join(' + ')}` });
    }

    if (record.rejected_at_intake === true) {
      const deadLetter = deadLettersBySource.get(record.source_message_id);
      if (deadLetter === undefined || !hasReason(deadLetter)) {
        deadLetterProblems.push({ jobId: job.jobId, detail: `rejected at intake (${outcome}) but its message ${record.source_message_id} is not in the DLQ with a reason` });
      }
    }

    const adopted = executions.find((execution) => execution.execution_id === record.execution_id);
    if ((GIVE_UP_OUTCOMES as readonly string[]).includes(outcome)) {
      const untracked = executions.filter((execution) => execution.execution_id !== record.execution_id && execution.cancelled_by !== 'api');
      if (untracked.length > 0) gaveUpWithOrphans += 1;
      const orphanNote = untracked.length > 0 ? `; Waterflai ran ${untracked.map((execution) => `${execution.execution_id} (${execution.status})`).join(', ')} for it, untracked` : '';
      gaveUp.push({ jobId: job.jobId, detail: `${outcome}: ${(record.error_message ?? '').slice(0, 200)}${orphanNote}` });
    } else if (!(job.expected as readonly string[]).includes(outcome)) {
      mismatches.push({ jobId: job.jobId, detail: `${job.kind} job ended ${outcome} (expected ${job.expected.join(' or ')}); Waterflai execution ${record.execution_id ?? 'none'} ${describeUpstream(adopted)}` });
    } else if (outcome === 'CANCELLED:remote' && adopted?.cancelled_by === 'api') {
      mismatches.push({ jobId: job.jobId, detail: `ended CANCELLED (remote) but the orchestrator itself cancelled its execution ${record.execution_id}` });
    }
  }

  // Records of invalid messages with a job id: failed and announced too.
  let invalidMessages = 0;
  for (const { message } of observed.sent) {
    if (message.purpose !== 'invalid') continue;
    invalidMessages += 1;
    if (message.jobId === undefined) continue;
    const record = records.get(message.jobId);
    if (record === undefined) lost.push({ jobId: message.jobId, detail: `invalid message (${message.invalidCase}) with a job id has no FAILED record` });
    else if (!isTerminalStatus(record.status)) stuck.push({ jobId: message.jobId, detail: `invalid message's record is ${record.status}` });
    else if ((eventsByJob.get(message.jobId) ?? []).length === 0) unannounced.push({ jobId: message.jobId, detail: `invalid message (${message.invalidCase}) has no Failed event` });
  }

  for (const message of observed.deadLetters) {
    if (!hasReason(message)) deadLetterProblems.push({ jobId: `message:${message.messageId}`, detail: `dead-lettered without a reason (SQS redrive after maxReceiveCount?): ${message.body.slice(0, 120)}` });
  }

  const announcedIds = new Set(outcomeEvents.map((event) => (event.detail as { event_id?: unknown }).event_id));
  return {
    jobs: plan.jobs.length,
    messagesSent,
    outcomes,
    terminal,
    lost,
    stuck,
    unannounced,
    conflictingOutcomes: conflicting,
    deadLetterProblems,
    outcomeMismatches: mismatches,
    duplicateExecutionsFromRedelivery: fromRedelivery,
    duplicateStateMachineExecutions: sfnDuplicates,
    events: { total: outcomeEvents.length, jobsAnnounced: eventsByJob.size, duplicates: outcomeEvents.length - announcedIds.size },
    deadLetters: {
      total: observed.deadLetters.length,
      withReason: observed.deadLetters.filter(hasReason).length,
      invalidMessages,
      rejectedJobs: observed.records.filter((record) => record.rejected_at_intake === true).length,
    },
    waterflai: {
      executions: executionsTotal,
      jobsWithDuplicates,
      duplicatesFromCrash: crashCount,
      duplicatesFromRedelivery: redeliveryCount,
      orphans,
      orphansCancelled,
      acceptThenFail,
    },
    gaveUp,
    gaveUpWithOrphans,
    crashDuplicates,
    slowDeadLetters,
  };
}

/** Number of violated invariants' findings (0: the run passed). */
export function violationCount(findings: ChaosFindings): number {
  return (
    findings.lost.length +
    findings.stuck.length +
    findings.unannounced.length +
    findings.conflictingOutcomes.length +
    findings.deadLetterProblems.length +
    findings.outcomeMismatches.length +
    findings.duplicateExecutionsFromRedelivery.length +
    findings.duplicateStateMachineExecutions.length
  );
}

function describeUpstream(execution: SimulatedExecutionView | undefined): string {
  if (execution === undefined) return '(not found in the simulator)';
  return `is ${execution.status}${execution.cancelled_by ? ` (cancelled by ${execution.cancelled_by === 'api' ? 'the orchestrator' : 'Waterflai'})` : ''}`;
}

function jobIdOfInput(input: string): string | undefined {
  try {
    const state = JSON.parse(input) as { job_id?: unknown };
    return typeof state.job_id === 'string' ? state.job_id : undefined;
  } catch {
    return undefined;
  }
}

function groupBy<T>(items: readonly T[], key: (item: T) => unknown): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const value = key(item);
    if (typeof value !== 'string') continue;
    const group = groups.get(value);
    if (group === undefined) groups.set(value, [item]);
    else group.push(item);
  }
  return groups;
}
