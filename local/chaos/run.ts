/**
 * One chaos run: boots the local runtime with the fault hooks of a {@link FaultMix}, sends
 * the seeded plan's messages at their times, starts the plan's upstream incidents (outages
 * of the simulator, key rotations through the local Secrets Manager), waits until every job
 * reached a terminal outcome (or the deadline passed), collects what the system recorded and
 * checks the invariants. Used by `npm run chaos` (main.ts) and by test/e2e/chaos.test.ts.
 *
 * The local runtime can be started once per process, so this can run once per process too.
 */
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { DLQ_ATTRIBUTE, isTerminalStatus } from '../../lambdas/contract/constants';
import type { JobRecord } from '../../lambdas/contract/job-record';
import type { DynamoDbEngine, DynamoDbEngineChoice } from '../emulators/dynamodb';
import type { NetworkGuard, NetworkGuardOptions } from '../runtime/net-guard';
import { startLocalRuntime, type LocalRuntime } from '../runtime/runtime';
import { FAULT_KINDS, type OutageAnswer, type SimulatedExecutionView, type Simulator } from '../simulator/server';
import { jobIdOfBody } from '../faults/requests';
import { ChaosFaults, DEFAULT_FAULT_MIX, type FaultMix } from './faults';
import { cancelFields, checkInvariants, violationCount, type ChaosFindings, type ObservedOutage, type SentMessage } from './invariants';
import { buildPlan, type ChaosPlan, type PlannedMessage } from './plan';

export interface ChaosOptions {
  /** Number of jobs. @default 1000 */
  readonly jobs?: number;
  /** Seed of the plan and of every fault decision. @default 1 */
  readonly seed?: number;
  /** Time scale of the runtime (poll waits, retry intervals, simulated durations). @default 0.1 */
  readonly timeScale?: number;
  /** Job messages sent per second. @default 25 */
  readonly rate?: number;
  /** How long to wait for every job to finish, boot included. @default 900 */
  readonly timeoutSeconds?: number;
  /** @default DEFAULT_FAULT_MIX */
  readonly faults?: FaultMix;
  /** @default 'auto' */
  readonly dynamodb?: DynamoDbEngineChoice;
  /** Log level of the handlers. @default 'SILENT' */
  readonly logLevel?: string;
  /** @default the runtime's own guard ({ mode: 'enforce' }) */
  readonly networkGuard?: NetworkGuard | NetworkGuardOptions | false;
  /** Told about progress every couple of seconds. */
  readonly onProgress?: (progress: ChaosProgress) => void;
  /** Told about boot steps and runtime warnings. */
  readonly onNote?: (note: string) => void;
  /** Given the runtime once it is up (for inspection while the run goes on). */
  readonly onRuntime?: (runtime: LocalRuntime) => void;
  /**
   * Once every job has its outcome: how long to wait more while a job's upstream cancel is
   * still pending (announced unconfirmed, or executions left for the sweeper to cancel), so
   * the sweeper gets its tries before the checks look for orphaned executions. @default 90
   */
  readonly upstreamSettleSeconds?: number;
}

/** What the incidents did (times in seconds from the origin of the traces). */
export interface ChaosIncidentReport {
  readonly outages: ReadonlyArray<{ readonly routes: readonly string[]; readonly from_s: number; readonly until_s: number }>;
  readonly key_rotations: ReadonlyArray<{ readonly at_s: number; readonly old_key_refused_at_s: number }>;
  /** Requests the outages failed, in total and by how. */
  readonly outage_requests: number;
  readonly outage_by_answer: Readonly<Record<OutageAnswer, number>>;
  /** 401s the simulator answered to the rotated-out key. */
  readonly revoked_key_401s: number;
  /** DELETEs of unfinished executions answered 200 `cancelled: false` (nothing cancelled). */
  readonly refused_cancels: number;
  /** DELETEs of finished executions, by the answer given. */
  readonly finished_cancel_answers: Readonly<Record<string, number>>;
}

export interface ChaosProgress {
  readonly elapsedMs: number;
  readonly sent: number;
  readonly messages: number;
  /** Jobs (of the plan) terminal and announced. */
  readonly finished: number;
  readonly jobs: number;
  /** Messages left in the intake queue (ready, delayed or in flight). */
  readonly intake: number;
  /** The same, by state, with receive counts: `inflight:2` = in flight, received twice. */
  readonly intakeStates: Readonly<Record<string, number>>;
  /** Step Functions executions running. */
  readonly running: number;
  /** Jobs with an outcome whose upstream cancel is still pending (the sweeper's work). */
  readonly openUpstreamCancels: number;
}

export interface ChaosResult {
  readonly seed: number;
  readonly jobs: number;
  readonly timeScale: number;
  readonly rate: number;
  readonly dynamodbEngine: DynamoDbEngine;
  readonly durationMs: number;
  /** False when the deadline passed before every job finished. */
  readonly completed: boolean;
  /** Faults injected, by kind (`waterflai.*` from the simulator, AWS-side kinds, planned duplicate sends). */
  readonly faults: Readonly<Record<string, number>>;
  /** DynamoDB errors the system produced itself (not injected), e.g. conditional-check failures from races. */
  readonly observed: Readonly<Record<string, number>>;
  /** Records the event source mapping delivered a second time. */
  readonly redeliveredRecords: number;
  /** Failures of the event source mapping (whole invocations, receives, deletes). */
  readonly eventSourceErrors: ReadonlyArray<{ readonly phase: string; readonly error: string; readonly jobIds: readonly string[] }>;
  /** Messages still in the intake queue at the end (e.g. a batch that failed as a whole comes back after the visibility timeout). */
  readonly leftInIntake: ReadonlyArray<{
    readonly messageId: string;
    readonly state: string;
    readonly receiveCount: number;
    readonly jobId?: string;
  }>;
  /**
   * What happened to the jobs the report names (violations, give-ups, crash-window
   * duplicates, messages left in the queue): injected faults, conditional-check failures,
   * deliveries and every simulator request, in order.
   */
  readonly traces: Readonly<Record<string, readonly string[]>>;
  readonly incidents: ChaosIncidentReport;
  readonly findings: ChaosFindings;
  readonly violations: number;
}

/** An in-flight message that stays invisible longer than this is parked on the visibility timeout, not deferred by the handler. */
const PARKED_MS = 60_000;

export const CHAOS_DEFAULTS = { jobs: 1000, seed: 1, timeScale: 0.1, rate: 25, timeoutSeconds: 900, upstreamSettleSeconds: 90 } as const;

/** Matches a simulator log line of a POST answered with the crash-window fault. */
const ACCEPT_THEN_FAIL_LINE = /^POST \/v1\/executions\/([^/\s]+)\/async -> .* fault=acceptThenFail$/;

export async function runChaos(options: ChaosOptions = {}): Promise<ChaosResult> {
  const jobs = options.jobs ?? CHAOS_DEFAULTS.jobs;
  const seed = options.seed ?? CHAOS_DEFAULTS.seed;
  const timeScale = options.timeScale ?? CHAOS_DEFAULTS.timeScale;
  const rate = options.rate ?? CHAOS_DEFAULTS.rate;
  const deadline = Date.now() + (options.timeoutSeconds ?? CHAOS_DEFAULTS.timeoutSeconds) * 1000;
  const mix = options.faults ?? DEFAULT_FAULT_MIX;
  const startedAt = Date.now();
  const plan = buildPlan({ jobs, seed, rate, timeScale, ...(mix.incidents === undefined ? {} : { incidents: mix.incidents }) });
  const settleMs = (options.upstreamSettleSeconds ?? CHAOS_DEFAULTS.upstreamSettleSeconds) * 1000;
  const faults = new ChaosFaults(mix, seed);
  const acceptThenFailByChatbot: Record<string, number> = {};
  const simulatorLines: Array<{ at: number; line: string }> = [];
  const eventSourceErrors: Array<{ at: number; phase: string; error: string; messageIds: readonly string[] }> = [];

  const runtime = await startLocalRuntime({
    timeScale,
    stackConfig: { pollIntervalSeconds: 1 },
    simulator: {
      seed,
      faults: mix.waterflai,
      log: (line) => {
        simulatorLines.push({ at: Date.now(), line });
        const match = ACCEPT_THEN_FAIL_LINE.exec(line);
        if (match !== null) {
          const chatbot = decodeURIComponent(match[1]!);
          acceptThenFailByChatbot[chatbot] = (acceptThenFailByChatbot[chatbot] ?? 0) + 1;
        }
      },
    },
    faults: faults.hooks(),
    onEventSourceError: (error, context) => {
      eventSourceErrors.push({
        at: Date.now(),
        phase: context.phase,
        error: error instanceof Error ? error.message : String(error),
        messageIds: context.messageIds,
      });
    },
    logLevel: options.logLevel ?? 'SILENT',
    dynamodb: options.dynamodb ?? 'auto',
    waterflaiFromEnvironment: false,
    ...(options.networkGuard === undefined ? {} : { networkGuard: options.networkGuard }),
    ...(options.onNote
      ? {
          onProgress: (step: string) => options.onNote?.(`starting ${step}`),
          onWarning: (warning: string) => options.onNote?.(`warning: ${warning}`),
        }
      : {}),
  });
  try {
    options.onRuntime?.(runtime);
    const sent: SentMessage[] = [];
    const sendStart = Date.now();
    const incidents = startIncidents(runtime, plan, sendStart, (note) => options.onNote?.(note));
    let producerDone = false;
    let producerError: unknown;
    const stopSending = { stopped: false };
    const producer = produce(runtime, plan, sendStart, sent, stopSending).then(
      () => {
        producerDone = true;
      },
      (error: unknown) => {
        producerError = error;
      },
    );

    let completed = false;
    let doneSince: number | undefined;
    for (;;) {
      await sleep(2_000);
      const records = new Map((await runtime.scanJobs()).map((record) => [record.job_id, record]));
      const finished = plan.jobs.filter((job) => isFinished(records.get(job.jobId))).length;
      const intakeMessages = runtime.sqs.messages(runtime.sqs.intakeQueue.name);
      const intake = intakeMessages.length;
      const intakeStates: Record<string, number> = {};
      for (const message of intakeMessages)
        intakeStates[`${message.state}:${message.receiveCount}`] = (intakeStates[`${message.state}:${message.receiveCount}`] ?? 0) + 1;
      const running = runtime.stepFunctions.executions().filter((execution) => execution.status === 'RUNNING').length;
      const openUpstreamCancels = countOpenUpstreamCancels(records, runtime.simulator);
      options.onProgress?.({
        elapsedMs: Date.now() - startedAt,
        sent: sent.length,
        messages: plan.messages.length,
        finished,
        jobs: plan.jobs.length,
        intake,
        intakeStates,
        running,
        openUpstreamCancels,
      });
      // A message whose batch failed as a whole waits out the visibility timeout (6x the start
      // function's timeout); when every job is finished the run does not wait for it (it is
      // reported as left in the queue).
      const onlyParked = intakeMessages.every(
        (message) =>
          message.state === 'inflight' &&
          (message.visibleAt ?? 0) - Date.now() > PARKED_MS &&
          isFinished(records.get(jobIdOfBody(message.body) ?? '')),
      );
      const intakeDone = intake === 0 || (onlyParked && runtime.eventSource.inFlight() === 0);
      if (producerDone && finished === plan.jobs.length && intakeDone && running === 0 && invalidMessagesDeadLettered(runtime, sent)) {
        doneSince ??= Date.now();
        // Give the sweeper its tries at cancels still pending before looking for orphans.
        if (openUpstreamCancels === 0 || Date.now() - doneSince >= settleMs) {
          completed = true;
          break;
        }
      } else {
        doneSince = undefined;
      }
      if (Date.now() > deadline || producerError !== undefined) break;
    }
    stopSending.stopped = true;
    if (producerError !== undefined) {
      throw new Error(
        `sending the plan's messages failed: ${producerError instanceof Error ? producerError.message : String(producerError)}`,
      );
    }
    await producer;
    faults.disable();
    incidents.stop();

    const executions = runtime.simulator?.executions() ?? [];
    const outages: ObservedOutage[] = (runtime.simulator?.outages() ?? []).map((outage) => ({
      from: outage.from,
      until: outage.until,
      routes: outage.routes,
    }));
    const jobByChatbot = new Map(plan.jobs.map((job) => [job.chatbotId, job.jobId]));
    const jobByExecution = new Map(
      executions.map((execution) => [execution.execution_id, (execution.input_data as { job?: unknown }).job]),
    );
    // Faults that struck each job: the AWS-side ones, and the simulator's (its log lines).
    const faultsByJob: Record<string, number> = { ...faults.struckByJob() };
    const attributed: Array<{ at: number; line: string; jobId: string }> = [];
    const firstCancelAttemptAt: Record<string, number> = {};
    for (const { at, line } of simulatorLines) {
      // `DELETE /v1/executions/<id> -> <answer> <n>ms ...`: logged when answered, sent <n> ms before.
      const cancel = /^DELETE \/v1\/executions\/([^/\s]+) .*? (\d+)ms/.exec(line);
      if (cancel !== null) {
        const id = decodeURIComponent(cancel[1]!);
        const sentAt = at - Number(cancel[2]);
        if (firstCancelAttemptAt[id] === undefined || sentAt < firstCancelAttemptAt[id]!) firstCancelAttemptAt[id] = sentAt;
      }
      const match = /^\S+ \/v1\/executions\/([^/\s]+)(\/async)?/.exec(line);
      if (match === null) continue;
      const id = decodeURIComponent(match[1]!);
      const jobId = match[2] === undefined ? jobByExecution.get(id) : jobByChatbot.get(id);
      if (typeof jobId !== 'string') continue;
      attributed.push({ at, line, jobId });
      if (/ fault=| auth=revoked-key/.test(line)) faultsByJob[jobId] = (faultsByJob[jobId] ?? 0) + 1;
    }
    const findings = checkInvariants({
      plan,
      sent,
      records: await runtime.scanJobs(),
      events: runtime.eventBridge.events(),
      deadLetters: runtime.sqs.messages(runtime.sqs.deadLetterQueue.name),
      executions,
      stateMachineExecutions: runtime.stepFunctions.executions(),
      acceptThenFailByChatbot,
      faultsByJob,
      outages,
      firstCancelAttemptAt,
    });

    // Attribute the simulator's request lines and the event source's failures to jobs.
    for (const { at, line, jobId } of attributed) faults.note(jobId, `Waterflai ${line}`, at);
    const jobByMessage = new Map(
      sent.flatMap((item) => (item.message.jobId === undefined ? [] : [[item.messageId, item.message.jobId] as const])),
    );
    const sourceErrors = eventSourceErrors.map(({ at, phase, error, messageIds }) => {
      const jobIds = messageIds.flatMap((id) => (jobByMessage.has(id) ? [jobByMessage.get(id)!] : []));
      for (const jobId of jobIds) faults.note(jobId, `event source ${phase} failed for its batch: ${error}`, at);
      return { phase, error, jobIds };
    });
    const leftInIntake = runtime.sqs.messages(runtime.sqs.intakeQueue.name).map((message) => {
      const jobId = jobByMessage.get(message.messageId);
      return {
        messageId: message.messageId,
        state: message.state,
        receiveCount: message.receiveCount,
        ...(jobId === undefined ? {} : { jobId }),
      };
    });
    const named = new Set<string>([
      ...[
        findings.lost,
        findings.stuck,
        findings.unannounced,
        findings.conflictingOutcomes,
        findings.deadLetterProblems,
        findings.outcomeMismatches,
        findings.orphanedExecutions,
        findings.outcomeUpstreamMismatches,
        findings.excusedUpstreamMismatches,
        findings.unexplainedGiveUps,
        findings.unconfirmedCancels,
      ]
        .flat()
        .map((problem) => problem.jobId),
      ...findings.duplicateExecutionsFromRedelivery.map((problem) => problem.jobId),
      ...findings.gaveUp.map((problem) => problem.jobId),
      ...findings.crashDuplicates.map((problem) => problem.jobId),
      ...findings.slowDeadLetters.map((problem) => problem.jobId),
      ...leftInIntake.flatMap((message) => (message.jobId === undefined ? [] : [message.jobId])),
    ]);
    const traces = Object.fromEntries([...named].sort().map((jobId) => [jobId, faults.trace(jobId)]));
    const simulatorFaults = runtime.simulator?.stats().faults;
    const faultCounts: Record<string, number> = {};
    for (const kind of FAULT_KINDS) faultCounts[`waterflai.${kind}`] = simulatorFaults?.[kind] ?? 0;
    const simulatorStats = runtime.simulator?.stats();
    faultCounts['waterflai.outage'] = simulatorStats?.outage_requests ?? 0;
    faultCounts['waterflai.revokedKey'] = simulatorStats?.revoked_key ?? 0;
    Object.assign(faultCounts, faults.counts());
    faultCounts['sqs.duplicateSend'] = sent.filter((item) => item.message.purpose === 'duplicate').length;
    faultCounts['sqs.lateDuplicateSend'] = sent.filter((item) => item.message.purpose === 'late-duplicate').length;
    return {
      seed,
      jobs,
      timeScale,
      rate,
      dynamodbEngine: runtime.dynamodbEngine,
      durationMs: Date.now() - startedAt,
      completed,
      faults: faultCounts,
      observed: faults.observed(),
      redeliveredRecords: runtime.eventSource.stats().duplicateDeliveries,
      eventSourceErrors: sourceErrors,
      leftInIntake,
      traces,
      incidents: {
        outages: outages.map((outage) => ({
          routes: outage.routes,
          from_s: faults.since(outage.from),
          until_s: faults.since(outage.until),
        })),
        key_rotations: incidents.rotations.map((rotation) => ({
          at_s: faults.since(rotation.at),
          old_key_refused_at_s: faults.since(rotation.at + rotation.revokeOldAfterMs),
        })),
        outage_requests: simulatorStats?.outage_requests ?? 0,
        outage_by_answer: simulatorStats?.outage_by_answer ?? { error5xx: 0, reset: 0, hang: 0 },
        revoked_key_401s: simulatorStats?.revoked_key ?? 0,
        refused_cancels: simulatorFaults?.refuseCancel ?? 0,
        finished_cancel_answers: simulatorStats?.finished_cancel_answers ?? {},
      },
      findings,
      violations: violationCount(findings),
    };
  } finally {
    faults.disable();
    await runtime.close();
  }
}

/**
 * Starts the plan's incidents relative to `sendStart`: the outage windows go to the
 * simulator at once (it keeps the times), key rotations run on timers (the new key is
 * accepted by the simulator and written to the secret; the old one is refused later).
 */
function startIncidents(
  runtime: LocalRuntime,
  plan: ChaosPlan,
  sendStart: number,
  note: (note: string) => void,
): { rotations: Array<{ at: number; revokeOldAfterMs: number }>; stop: () => void } {
  const simulator = runtime.simulator;
  const rotations: Array<{ at: number; revokeOldAfterMs: number }> = [];
  const timers: NodeJS.Timeout[] = [];
  const { outages, keyRotations } = plan.incidents;
  if (simulator === undefined) {
    if (outages.length + keyRotations.length > 0) note('warning: the incidents need the embedded simulator; none started');
    return { rotations, stop: () => undefined };
  }
  for (const outage of outages) {
    simulator.scheduleOutage({
      startMs: Math.max(0, sendStart + outage.atMs - Date.now()),
      durationMs: outage.durationMs,
      routes: outage.routes,
      answers: outage.answers,
    });
  }
  for (const rotation of keyRotations) {
    timers.push(
      setTimeout(
        () => {
          simulator.rotateApiKey(rotation.newKey, { revokeOldAfterMs: rotation.revokeOldAfterMs });
          runtime.secrets.update(runtime.model.apiKeySecretId, rotation.newKey);
          rotations.push({ at: Date.now(), revokeOldAfterMs: rotation.revokeOldAfterMs });
        },
        Math.max(0, sendStart + rotation.atMs - Date.now()),
      ),
    );
  }
  return {
    rotations,
    stop: () => {
      for (const timer of timers) clearTimeout(timer);
    },
  };
}

/**
 * Jobs with an outcome whose upstream cancel is still pending: announced unconfirmed or with
 * executions left for the sweeper (`cancel_pending`), and an execution of theirs still
 * PENDING/RUNNING in the simulator.
 */
function countOpenUpstreamCancels(records: ReadonlyMap<string, JobRecord>, simulator: Simulator | undefined): number {
  if (simulator === undefined) return 0;
  const active = (id: string | undefined): boolean => {
    if (id === undefined) return false;
    const execution: SimulatedExecutionView | undefined = simulator.execution(id);
    return execution !== undefined && (execution.status === 'PENDING' || execution.status === 'RUNNING');
  };
  let open = 0;
  for (const record of records.values()) {
    if (!isTerminalStatus(record.status)) continue;
    const cancel = cancelFields(record);
    const pending = cancel.upstream_cancel === 'unconfirmed' || cancel.cancel_pending !== undefined;
    if (!pending) continue;
    if (active(record.execution_id) || [...(cancel.pending_cancels ?? [])].some(active)) open += 1;
  }
  return open;
}

function isFinished(record: JobRecord | undefined): boolean {
  return record !== undefined && isTerminalStatus(record.status) && record.event_published_at !== undefined;
}

function invalidMessagesDeadLettered(runtime: LocalRuntime, sent: readonly SentMessage[]): boolean {
  const sources = new Set(
    runtime.sqs
      .messages(runtime.sqs.deadLetterQueue.name)
      .map((message) => message.messageAttributes[DLQ_ATTRIBUTE.SOURCE_MESSAGE_ID]?.StringValue ?? message.messageId),
  );
  return sent.every((item) => item.message.purpose !== 'invalid' || sources.has(item.messageId));
}

/** Sends the plan's messages at their times (due ones together, in batches of 10), until stopped. */
async function produce(
  runtime: LocalRuntime,
  plan: ChaosPlan,
  startMs: number,
  sent: SentMessage[],
  stop: { readonly stopped: boolean },
): Promise<void> {
  let next = 0;
  while (next < plan.messages.length && !stop.stopped) {
    const wait = startMs + plan.messages[next]!.atMs - Date.now();
    if (wait > 0) await sleep(Math.min(wait, 1_000));
    const due: PlannedMessage[] = [];
    while (next < plan.messages.length && startMs + plan.messages[next]!.atMs <= Date.now() && due.length < 10)
      due.push(plan.messages[next++]!);
    if (due.length > 0) sent.push(...(await sendBatch(runtime, due)));
  }
}

async function sendBatch(runtime: LocalRuntime, messages: readonly PlannedMessage[]): Promise<SentMessage[]> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const result = await runtime.sqs.client.send(
        new SendMessageBatchCommand({
          QueueUrl: runtime.intakeQueueUrl,
          Entries: messages.map((message, index) => ({ Id: `m${index}`, MessageBody: message.body })),
        }),
      );
      if ((result.Failed ?? []).length > 0)
        throw new Error(`SendMessageBatch failed for ${result.Failed!.length} message(s): ${result.Failed![0]!.Message ?? ''}`);
      const ids = new Map((result.Successful ?? []).map((entry) => [entry.Id, entry.MessageId]));
      const sentAt = Date.now();
      return messages.map((message, index) => {
        const messageId = ids.get(`m${index}`);
        if (messageId === undefined) throw new Error('SendMessageBatch returned no MessageId');
        return { message, messageId, sentAt };
      });
    } catch (error) {
      if (attempt >= 3) throw error;
      await sleep(200 * attempt);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
