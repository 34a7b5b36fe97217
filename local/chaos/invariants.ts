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
 *   or the producer decided), or with a give-up faults can explain (`START_RETRIES_EXHAUSTED`);
 *   `POLL_FAILED` is never allowed (every Waterflai fault of a chaos run is transient);
 * - orphaned executions: no Waterflai execution whose id the orchestrator received (its POST
 *   was answered with the id, or a record holds it) is still PENDING/RUNNING once its job has
 *   an outcome;
 * - outcome/upstream mismatches: the outcome of a job agrees with the final status of its
 *   execution in Waterflai (COMPLETED with COMPLETED, EXECUTION_FAILED with FAILED, a remote
 *   cancel with CANCELLED, and every outcome the orchestrator decided (TIMED_OUT, a producer's
 *   or an operator's cancel, a give-up) with CANCELLED: "TIMED_OUT = cancelled upstream");
 *   excused only when the orchestrator announced the cancel as unconfirmed while an outage
 *   of the cancel route was going on (reported);
 * - unexplained give-ups: a job that gave up met at least one injected fault (or an outage
 *   of the start route).
 *
 * Reported, not violations: duplicate executions caused by the crash window (Waterflai
 * created the execution but the start attempt failed before the id was saved) and those of
 * them still running, duplicate publications of the same event, give-ups the faults explain,
 * cancels announced as unconfirmed, executions no record points at.
 */
import { DEADLINE_ROUND_MAX_WAIT_SECONDS } from '../../lambdas/contract/settings';
import { DLQ_ATTRIBUTE, EVENT_SOURCE, isTerminalStatus, UPSTREAM_CANCEL } from '../../lambdas/contract/constants';
import type { JobRecord } from '../../lambdas/contract/job-record';
import type { PublishedEvent } from '../emulators/eventbridge';
import type { QueuedMessage } from '../emulators/sqs';
import type { ExecutionView } from '../emulators/step-functions';
import type { SimulatedExecutionView } from '../simulator/server';
import {
  EXPLAINABLE_GIVE_UPS,
  GIVE_UP_OUTCOMES,
  outcomeName,
  type ChaosPlan,
  type MessagePurpose,
  type PlannedJob,
  type PlannedMessage,
} from './plan';

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
  /**
   * Injected faults that struck each job's requests (AWS-side hooks, simulator faults,
   * outage answers, 401s for a revoked key), by job id: a give-up of a job no fault struck
   * is a bug.
   */
  readonly faultsByJob: Readonly<Record<string, number>>;
  /**
   * When the first DELETE of each execution was sent (epoch ms, by execution id), from the
   * simulator's request log: a cancel that was sent in time but did not take effect before
   * the execution completed makes a COMPLETED deadline job the truth. @default {}
   */
  readonly firstCancelAttemptAt?: Readonly<Record<string, number>>;
  /** The outage windows as they happened (absolute epoch ms). */
  readonly outages: readonly ObservedOutage[];
}

/** An outage window of the run. */
export interface ObservedOutage {
  readonly from: number;
  readonly until: number;
  readonly routes: readonly string[];
}

/**
 * The fields of a job record about its upstream cancel (`upstream_cancel`, the executions
 * left for the sweeper), read defensively: the checks work on records with or without them.
 */
export interface UpstreamCancelFields {
  readonly upstream_cancel?: string;
  readonly cancel_pending?: string;
  readonly pending_cancels?: ReadonlySet<string> | readonly string[];
  readonly last_cancel_error?: string;
}

/** A record's upstream-cancel fields. */
export function cancelFields(record: JobRecord): UpstreamCancelFields {
  return record as UpstreamCancelFields;
}

/** A job ended this long after an outage of the cancel route still counts as ended during it (its last attempts failed in it). */
export const OUTAGE_SLACK_MS = 2_000;

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
  /** Executions whose id the orchestrator received, still PENDING/RUNNING while their job has an outcome (violations). */
  readonly orphanedExecutions: readonly JobProblem[];
  /** Outcomes that contradict the final status of the job's execution in Waterflai (violations). */
  readonly outcomeUpstreamMismatches: readonly JobProblem[];
  /** Contradictions excused: the cancel was announced unconfirmed during an outage of the cancel route (reported). */
  readonly excusedUpstreamMismatches: readonly JobProblem[];
  /** Give-ups of jobs no injected fault struck (violations). */
  readonly unexplainedGiveUps: readonly JobProblem[];
  /** Jobs announced with `upstream_cancel: unconfirmed` (reported). */
  readonly unconfirmedCancels: readonly JobProblem[];
  /** Give-ups by outcome, and how many the faults explain. */
  readonly giveUps: {
    readonly total: number;
    readonly byOutcome: Readonly<Record<string, number>>;
    readonly explained: number;
    readonly unexplained: number;
  };
  /** `deadline-race` jobs: how many, how many ended COMPLETED, how many TIMED_OUT because their start came too late to win. */
  readonly deadlineRaces: { readonly jobs: number; readonly completed: number; readonly lateStart: number };
  /**
   * `deadline` jobs that ended COMPLETED because an outage of the cancel route was under way at
   * their deadline and their execution completed on its own before a cancel could get through (allowed: the result is true
   * upstream and is not thrown away).
   */
  readonly deadlineJobsCompletedDuringOutage: number;
  readonly duplicateExecutionsFromRedelivery: readonly JobProblem[];
  readonly duplicateStateMachineExecutions: readonly JobProblem[];
  readonly events: { readonly total: number; readonly jobsAnnounced: number; readonly duplicates: number };
  readonly deadLetters: {
    readonly total: number;
    readonly withReason: number;
    readonly invalidMessages: number;
    readonly rejectedJobs: number;
  };
  readonly waterflai: {
    /** Executions created for the run's jobs. */
    readonly executions: number;
    /** Jobs with more than one execution. */
    readonly jobsWithDuplicates: number;
    readonly duplicatesFromCrash: number;
    readonly duplicatesFromRedelivery: number;
    /** Executions no job record points at (crash-window duplicates, superfluous ones, starts that gave up), whatever their status. */
    readonly untracked: number;
    /** Of those, the ones the orchestrator cancelled in Waterflai (it detected them). */
    readonly untrackedCancelled: number;
    readonly acceptThenFail: number;
    /** Crash-window executions (their POST's answer was lost) still PENDING/RUNNING at the end: nobody can know their id. */
    readonly crashWindowStillRunning: number;
  };
  /** Jobs the orchestrator gave up on (START_RETRIES_EXHAUSTED, POLL_FAILED), with what happened upstream (reported; see `giveUps`). */
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
  const hasReason = (message: QueuedMessage | undefined): boolean =>
    message?.messageAttributes[DLQ_ATTRIBUTE.ERROR_CODE]?.StringValue !== undefined;

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
      slowDeadLetters.push({
        jobId: message.jobId ?? `message:${messageId}`,
        detail: `${message.purpose} message ${messageId} reached the DLQ ${Math.round((failedAt - sentAt) / 1000)} s after it was sent`,
      });
    }
    if (message.purpose === 'invalid') {
      if (deadLetter === undefined)
        lost.push({
          jobId: message.jobId ?? `message:${messageId}`,
          detail: `invalid message (${message.invalidCase}) ${messageId} is not in the dead-letter queue`,
        });
      else if (!hasReason(deadLetter))
        deadLetterProblems.push({
          jobId: message.jobId ?? `message:${messageId}`,
          detail: `invalid message ${messageId} is in the DLQ without a reason`,
        });
      continue;
    }
    const record = message.jobId === undefined ? undefined : records.get(message.jobId);
    if (record === undefined && deadLetter === undefined) {
      lost.push({
        jobId: message.jobId ?? `message:${messageId}`,
        detail: `${message.purpose} message ${messageId}: no job record and not in the dead-letter queue`,
      });
    }
  }

  // Jobs.
  const executionsByJob = groupBy(observed.executions, (execution) => (execution.input_data as { job?: unknown }).job);
  const orphaned: JobProblem[] = [];
  const upstreamMismatches: JobProblem[] = [];
  const excused: JobProblem[] = [];
  const unexplainedGiveUps: JobProblem[] = [];
  const unconfirmed: JobProblem[] = [];
  const giveUpsByOutcome: Record<string, number> = {};
  let terminal = 0;
  let untracked = 0;
  let untrackedCancelled = 0;
  let crashWindowStillRunning = 0;
  let jobsWithDuplicates = 0;
  let crashCount = 0;
  let redeliveryCount = 0;
  let acceptThenFail = 0;
  let executionsTotal = 0;
  let gaveUpWithOrphans = 0;
  const races = { jobs: 0, completed: 0, lateStart: 0 };
  let deadlineCompletedInOutage = 0;
  for (const job of plan.jobs) {
    const record = records.get(job.jobId);
    const events = eventsByJob.get(job.jobId) ?? [];
    const executions = executionsByJob.get(job.jobId) ?? [];
    executionsTotal += executions.length;
    const atf = observed.acceptThenFailByChatbot[job.chatbotId] ?? 0;
    acceptThenFail += atf;
    if (job.kind === 'deadline-race') races.jobs += 1;

    // Waterflai executions: one per job, except what the crash window explains.
    const extra = Math.max(0, executions.length - 1);
    if (extra > 0) {
      jobsWithDuplicates += 1;
      const crash = Math.min(extra, atf);
      crashCount += crash;
      redeliveryCount += extra - crash;
      const ids = executions
        .map(
          (execution) =>
            `${execution.execution_id}${execution.execution_id === record?.execution_id ? ' (adopted)' : ''}${execution.cancelled_by === 'api' ? ' (cancelled by the orchestrator)' : ''}`,
        )
        .join(', ');
      if (crash > 0)
        crashDuplicates.push({ jobId: job.jobId, detail: `${executions.length} executions, ${atf} crash-window fault(s): ${ids}` });
      if (extra > crash)
        fromRedelivery.push({ jobId: job.jobId, detail: `${executions.length} executions, only ${atf} crash-window fault(s): ${ids}` });
    }
    for (const execution of executions) {
      if (execution.execution_id === record?.execution_id) continue;
      untracked += 1;
      if (execution.cancelled_by === 'api') untrackedCancelled += 1;
    }

    // Step Functions: one execution per generation.
    const names = observed.stateMachineExecutions
      .filter((execution) => jobIdOfInput(execution.input) === job.jobId)
      .map((execution) => execution.name);
    const duplicateNames = names.filter((name, index) => names.indexOf(name) !== index);
    if (duplicateNames.length > 0)
      sfnDuplicates.push({ jobId: job.jobId, detail: `state machine executions named ${duplicateNames.join(', ')} more than once` });

    if (record === undefined) continue; // lost (above) or dead-lettered
    if (!isTerminalStatus(record.status)) {
      stuck.push({
        jobId: job.jobId,
        detail: `status ${record.status}, execution ${record.execution_id ?? 'none'}, state machine ${record.state_machine_execution_arn ?? 'none'}, updated ${record.updated_at}`,
      });
      continue;
    }
    terminal += 1;
    const outcome = outcomeName(record);
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;

    if (events.length === 0)
      unannounced.push({ jobId: job.jobId, detail: `${outcome}, event_published_at ${record.event_published_at ?? 'unset'}` });
    const expectedId = `${job.jobId}:${record.status.toLowerCase()}`;
    const wrong = events.filter((event) => {
      const detail = event.detail as { status?: unknown; event_id?: unknown };
      return detail.status !== record.status || detail.event_id !== expectedId;
    });
    if (wrong.length > 0) {
      const seen = [
        ...new Set(
          events.map(
            (event) =>
              `${String((event.detail as { status?: unknown }).status)}/${String((event.detail as { event_id?: unknown }).event_id)}`,
          ),
        ),
      ];
      conflicting.push({ jobId: job.jobId, detail: `record ${record.status}, events ${seen.join(' + ')}` });
    }

    if (record.rejected_at_intake === true) {
      const deadLetter = deadLettersBySource.get(record.source_message_id);
      if (deadLetter === undefined || !hasReason(deadLetter)) {
        deadLetterProblems.push({
          jobId: job.jobId,
          detail: `rejected at intake (${outcome}) but its message ${record.source_message_id} is not in the DLQ with a reason`,
        });
      }
    }

    const adopted = executions.find((execution) => execution.execution_id === record.execution_id);
    const cancel = cancelFields(record);
    const announcedUnconfirmed =
      cancel.upstream_cancel === UPSTREAM_CANCEL.UNCONFIRMED ||
      events.some((event) => (event.detail as { upstream_cancel?: unknown }).upstream_cancel === UPSTREAM_CANCEL.UNCONFIRMED);
    const endedAt = Date.parse(record.finished_at ?? record.updated_at);
    if (announcedUnconfirmed) {
      unconfirmed.push({
        jobId: job.jobId,
        detail: `${outcome} announced with upstream_cancel unconfirmed; Waterflai execution ${record.execution_id ?? 'none'} ${describeUpstream(adopted)} at the end${cancel.last_cancel_error ? `; last cancel error: ${cancel.last_cancel_error.slice(0, 160)}` : ''}`,
      });
    }

    // The orchestrator knew these ids: none may still run now that the job has an outcome.
    for (const execution of executions) {
      const known = execution.start_acknowledged || execution.execution_id === record.execution_id;
      if (!isActive(execution.status)) continue;
      if (!known) {
        crashWindowStillRunning += 1;
        continue;
      }
      const role =
        execution.execution_id === record.execution_id ? 'its own execution' : 'a superfluous execution whose id the start received';
      orphaned.push({
        jobId: job.jobId,
        detail: `${execution.execution_id} (${role}) is still ${execution.status} in Waterflai, but the job ended ${outcome}${cancel.upstream_cancel ? ` (upstream_cancel ${cancel.upstream_cancel})` : ''}`,
      });
    }

    // The outcome must agree with what the execution really did.
    if (record.execution_id !== undefined) {
      const contradiction = upstreamContradiction(outcome, record.execution_id, adopted);
      if (contradiction !== undefined) {
        const duringOutage = observed.outages.some(
          (outage) => outage.routes.includes('cancel') && outage.from <= endedAt && endedAt <= outage.until + OUTAGE_SLACK_MS,
        );
        if (announcedUnconfirmed && duringOutage)
          excused.push({
            jobId: job.jobId,
            detail: `${contradiction}; announced with upstream_cancel unconfirmed during an outage of the cancel route`,
          });
        else upstreamMismatches.push({ jobId: job.jobId, detail: contradiction });
      }
    }

    if ((GIVE_UP_OUTCOMES as readonly string[]).includes(outcome)) {
      giveUpsByOutcome[outcome] = (giveUpsByOutcome[outcome] ?? 0) + 1;
      const untrackedHere = executions.filter(
        (execution) => execution.execution_id !== record.execution_id && execution.cancelled_by !== 'api',
      );
      if (untrackedHere.length > 0) gaveUpWithOrphans += 1;
      const orphanNote =
        untrackedHere.length > 0
          ? `; Waterflai ran ${untrackedHere.map((execution) => `${execution.execution_id} (${execution.status})`).join(', ')} for it, untracked`
          : '';
      const struck = observed.faultsByJob[job.jobId] ?? 0;
      const acceptedAt = Date.parse(record.accepted_at);
      const startOutage = observed.outages.some(
        (outage) => outage.routes.includes('start') && outage.from <= endedAt && outage.until >= acceptedAt,
      );
      const explained = (EXPLAINABLE_GIVE_UPS as readonly string[]).includes(outcome) && (struck > 0 || startOutage);
      gaveUp.push({
        jobId: job.jobId,
        detail: `${outcome} after ${struck} injected fault(s)${startOutage ? ' and an outage of the start route' : ''}: ${(record.error_message ?? '').slice(0, 200)}${orphanNote}`,
      });
      if (outcome === 'FAILED:POLL_FAILED') {
        mismatches.push({
          jobId: job.jobId,
          detail: `${job.kind} job ended POLL_FAILED (transient faults must never fail a job before its deadline): ${(record.error_message ?? '').slice(0, 200)}; Waterflai execution ${record.execution_id ?? 'none'} ${describeUpstream(adopted)}`,
        });
      } else if (!explained) {
        unexplainedGiveUps.push({
          jobId: job.jobId,
          detail: `${outcome} although no injected fault struck the job: ${(record.error_message ?? '').slice(0, 200)}`,
        });
      }
    } else if (
      job.kind === 'deadline-race' &&
      outcome === 'FAILED:TIMED_OUT' &&
      startedTooLate(job, record.deadline_at, adopted, plan.timeScale)
    ) {
      races.lateStart += 1;
    } else if (
      job.kind === 'deadline' &&
      outcome === 'COMPLETED' &&
      adopted?.status === 'COMPLETED' &&
      (cancelBlockedUntilTheEnd(record.deadline_at, adopted, observed.outages, plan.timeScale) ||
        cancelSentBeforeTheEnd(adopted, observed.firstCancelAttemptAt) ||
        loopStartedAfterTheEnd(adopted, observed.stateMachineExecutions, job.jobId))
    ) {
      // The execution completed before a cancel could take effect (an outage of the cancel
      // route, a cancel that failed or was refused in time, or a poll loop that only started
      // after it, its start held up by faults): a finished result is never thrown away.
      deadlineCompletedInOutage += 1;
    } else if (!(job.expected as readonly string[]).includes(outcome)) {
      mismatches.push({
        jobId: job.jobId,
        detail: `${job.kind} job ended ${outcome} (expected ${job.expected.join(' or ')}); Waterflai execution ${record.execution_id ?? 'none'} ${describeUpstream(adopted)}${raceNote(job, record.deadline_at, adopted, plan.timeScale)}`,
      });
    } else if (outcome === 'CANCELLED:remote' && adopted?.cancelled_by === 'api') {
      mismatches.push({
        jobId: job.jobId,
        detail: `ended CANCELLED (remote) but the orchestrator itself cancelled its execution ${record.execution_id}`,
      });
    }
    if (job.kind === 'deadline-race' && outcome === 'COMPLETED') races.completed += 1;
  }

  // Records of invalid messages with a job id: failed and announced too.
  let invalidMessages = 0;
  for (const { message } of observed.sent) {
    if (message.purpose !== 'invalid') continue;
    invalidMessages += 1;
    if (message.jobId === undefined) continue;
    const record = records.get(message.jobId);
    if (record === undefined)
      lost.push({ jobId: message.jobId, detail: `invalid message (${message.invalidCase}) with a job id has no FAILED record` });
    else if (!isTerminalStatus(record.status)) stuck.push({ jobId: message.jobId, detail: `invalid message's record is ${record.status}` });
    else if ((eventsByJob.get(message.jobId) ?? []).length === 0)
      unannounced.push({ jobId: message.jobId, detail: `invalid message (${message.invalidCase}) has no Failed event` });
  }

  for (const message of observed.deadLetters) {
    if (!hasReason(message))
      deadLetterProblems.push({
        jobId: `message:${message.messageId}`,
        detail: `dead-lettered without a reason (SQS redrive after maxReceiveCount?): ${message.body.slice(0, 120)}`,
      });
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
    orphanedExecutions: orphaned,
    outcomeUpstreamMismatches: upstreamMismatches,
    excusedUpstreamMismatches: excused,
    unexplainedGiveUps,
    unconfirmedCancels: unconfirmed,
    giveUps: {
      total: gaveUp.length,
      byOutcome: giveUpsByOutcome,
      explained: gaveUp.length - unexplainedGiveUps.length - (giveUpsByOutcome['FAILED:POLL_FAILED'] ?? 0),
      unexplained: unexplainedGiveUps.length + (giveUpsByOutcome['FAILED:POLL_FAILED'] ?? 0),
    },
    deadlineRaces: races,
    deadlineJobsCompletedDuringOutage: deadlineCompletedInOutage,
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
      untracked,
      untrackedCancelled,
      acceptThenFail,
      crashWindowStillRunning,
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
    findings.orphanedExecutions.length +
    findings.outcomeUpstreamMismatches.length +
    findings.unexplainedGiveUps.length +
    findings.duplicateExecutionsFromRedelivery.length +
    findings.duplicateStateMachineExecutions.length
  );
}

function isActive(status: string): boolean {
  return status === 'PENDING' || status === 'RUNNING';
}

/**
 * What the final status of a job's own execution must be for its outcome to be true, or
 * undefined when any ending will do (the execution was gone: EXECUTION_NOT_FOUND; or never
 * meant to run: a rejected start).
 */
export function upstreamStatusesFor(outcome: string): readonly string[] | undefined {
  switch (outcome) {
    case 'COMPLETED':
    case 'FAILED:OUTPUT_EXPIRED':
    case 'FAILED:OUTPUT_TOO_LARGE':
      return ['COMPLETED'];
    case 'FAILED:EXECUTION_FAILED':
      return ['FAILED'];
    case 'CANCELLED:remote':
      return ['CANCELLED'];
    case 'FAILED:EXECUTION_NOT_FOUND':
    case 'FAILED:WATERFLAI_REJECTED':
    case 'FAILED:INVALID_MESSAGE':
      return undefined;
    default:
      // Outcomes the orchestrator decided (TIMED_OUT, a producer's or an operator's cancel,
      // a give-up): it cancelled the execution, so Waterflai must say CANCELLED.
      return ['CANCELLED'];
  }
}

/** Why the outcome contradicts the execution's final status, or undefined when they agree (an execution still running is an orphan, not this). */
function upstreamContradiction(outcome: string, executionId: string, execution: SimulatedExecutionView | undefined): string | undefined {
  if (execution === undefined) return `the job ended ${outcome} with execution ${executionId}, which Waterflai never created`;
  if (isActive(execution.status)) return undefined;
  const allowed = upstreamStatusesFor(outcome);
  if (allowed === undefined || allowed.includes(execution.status)) return undefined;
  return `the job ended ${outcome} but its execution ${executionId} ${describeUpstream(execution)}${execution.completed_at ? ` (ended ${execution.completed_at})` : ''}`;
}

/** When a simulated execution ends on its own (natural end or scheduled remote cancel), epoch ms. */
function naturalEndMs(execution: SimulatedExecutionView, timeScale: number): number {
  const created = Date.parse(execution.created_at);
  const natural = created + (execution.scenario.queue_ms + execution.scenario.duration_ms) * timeScale;
  const scheduled = execution.scenario.cancel_after_ms === undefined ? Infinity : created + execution.scenario.cancel_after_ms * timeScale;
  return Math.min(natural, scheduled);
}

/**
 * Whether an outage of the cancel route overlapped the time from the job's deadline to the
 * end of its execution (so the deadline's cancel could not get through: its first attempt may
 * also be held up by a request that hung just before) and the execution completed within one
 * cancel round of the outage's end: the poll loop retries an unconfirmed cancel on its next
 * polls, at most {@link MAX_DEADLINE_ROUND_GAP_JOB_SECONDS} of job time apart, each round
 * retrying for about {@link CANCEL_ROUND_MS} of real time. Completing then is the truth upstream.
 */
function cancelBlockedUntilTheEnd(
  deadlineAt: string,
  execution: SimulatedExecutionView,
  outages: readonly ObservedOutage[],
  timeScale: number,
): boolean {
  const deadline = Date.parse(deadlineAt);
  const end = Date.parse(execution.completed_at ?? '');
  if (!Number.isFinite(deadline) || !Number.isFinite(end)) return false;
  const gap = MAX_DEADLINE_ROUND_GAP_JOB_SECONDS * 1000 * timeScale + CANCEL_ROUND_MS + OUTAGE_SLACK_MS;
  return outages.some(
    (outage) =>
      outage.routes.includes('cancel') && outage.from <= end && outage.until + OUTAGE_SLACK_MS >= deadline && end <= outage.until + gap,
  );
}

/**
 * Whether the job's first poll-loop execution started only after the Waterflai execution
 * completed (its start was held up, e.g. by Step Functions throttling and the SQS retry): the
 * loop's first read then finds the result, which it keeps.
 */
function loopStartedAfterTheEnd(
  execution: SimulatedExecutionView,
  stateMachineExecutions: readonly ExecutionView[],
  jobId: string,
): boolean {
  const end = Date.parse(execution.completed_at ?? '');
  const starts = stateMachineExecutions
    .filter((candidate) => jobIdOfInput(candidate.input) === jobId)
    .map((candidate) => candidate.startDate);
  return Number.isFinite(end) && starts.length > 0 && Math.min(...starts) >= end;
}

/**
 * Whether the orchestrator sent a DELETE for the execution before it completed (the cancel
 * was in time, but failed or was refused until the execution completed on its own).
 */
function cancelSentBeforeTheEnd(
  execution: SimulatedExecutionView,
  firstCancelAttemptAt: Readonly<Record<string, number>> | undefined,
): boolean {
  const sent = firstCancelAttemptAt?.[execution.execution_id ?? ''];
  const end = Date.parse(execution.completed_at ?? '');
  return sent !== undefined && Number.isFinite(end) && sent <= end;
}

/** The longest wait between two deadline cancel rounds of the poll loop (job seconds). */
const MAX_DEADLINE_ROUND_GAP_JOB_SECONDS = DEADLINE_ROUND_MAX_WAIT_SECONDS;
/** How long one cancel round retries in real time (its DELETEs, reads and waits). */
const CANCEL_ROUND_MS = 4_000;

/** A deadline race the start lost: the execution (if any) could only end at or after the job's deadline. */
function startedTooLate(job: PlannedJob, deadlineAt: string, execution: SimulatedExecutionView | undefined, timeScale: number): boolean {
  if (job.kind !== 'deadline-race') return false;
  if (execution === undefined) return true;
  return naturalEndMs(execution, timeScale) >= Date.parse(deadlineAt);
}

function raceNote(job: PlannedJob, deadlineAt: string, execution: SimulatedExecutionView | undefined, timeScale: number): string {
  if (job.kind !== 'deadline-race' || execution === undefined) return '';
  const lead = Date.parse(deadlineAt) - naturalEndMs(execution, timeScale);
  return `; it ended on its own ${Math.round(lead)} ms before the deadline ${deadlineAt}`;
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
