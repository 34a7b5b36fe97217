/**
 * The chaos run's checker (`local/chaos/invariants.ts`) on fabricated runs: a clean run has
 * no finding, and each kind of broken run is reported under the right invariant and fails
 * the run (`violationCount` > 0). A checker that always answered "nothing wrong" fails here.
 */
import { describe, expect, it } from 'vitest';
import type { JobRecord } from '../../lambdas/contract/job-record';
import {
  checkInvariants,
  upstreamStatusesFor,
  violationCount,
  type ChaosFindings,
  type RunObservations,
  type SentMessage,
  type UpstreamCancelFields,
} from '../../local/chaos/invariants';
import type { JobKind, OutcomeName, PlannedJob } from '../../local/chaos/plan';
import { chaosJson } from '../../local/chaos/report';
import type { ChaosResult } from '../../local/chaos/run';
import type { PublishedEvent } from '../../local/emulators/eventbridge';
import type { QueuedMessage } from '../../local/emulators/sqs';
import type { ExecutionView } from '../../local/emulators/step-functions';
import type { SimulatedExecutionView } from '../../local/simulator/server';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const TIME_SCALE = 0.1;
const iso = (ms: number): string => new Date(ms).toISOString();

type Status = 'COMPLETED' | 'FAILED' | 'CANCELLED' | 'RUNNING' | 'PENDING' | 'SUBMITTING';
type UpstreamStatus = 'PENDING' | 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELLED';

/** A mutable fabricated run: plan, messages, records, events, executions. */
interface Run {
  jobs: PlannedJob[];
  sent: SentMessage[];
  records: Array<JobRecord & UpstreamCancelFields>;
  events: PublishedEvent[];
  deadLetters: QueuedMessage[];
  executions: SimulatedExecutionView[];
  stateMachineExecutions: ExecutionView[];
  acceptThenFailByChatbot: Record<string, number>;
  faultsByJob: Record<string, number>;
  outages: Array<{ from: number; until: number; routes: string[] }>;
  firstCancelAttemptAt?: Record<string, number>;
}

function plannedJob(index: number, kind: JobKind, expected: OutcomeName[], extra: Partial<PlannedJob> = {}): PlannedJob {
  const jobId = `job-${index}`;
  return {
    index,
    jobId,
    chatbotId: `bot-${index}`,
    kind,
    simulate: {},
    viaEventBridge: false,
    body: `{"job_id":"${jobId}"}`,
    expected,
    expectsExecution: true,
    ...extra,
  };
}

function record(job: PlannedJob, status: Status, extra: Partial<JobRecord & UpstreamCancelFields> = {}): JobRecord & UpstreamCancelFields {
  return {
    job_id: job.jobId,
    chatbot_id: job.chatbotId,
    status,
    status_rank: status === 'SUBMITTING' ? 0 : status === 'PENDING' ? 1 : status === 'RUNNING' ? 2 : 3,
    version: 4,
    accepted_at: iso(T0),
    updated_at: iso(T0 + 5_000),
    deadline_at: iso(T0 + 3_600_000),
    expires_at: Math.floor(T0 / 1000) + 86_400,
    metadata: {},
    source_message_id: `msg-${job.index}`,
    delivery: 'sqs',
    execution_id: `exec-${job.index}`,
    finished_at: iso(T0 + 5_000),
    event_published_at: iso(T0 + 5_100),
    ...extra,
  };
}

function outcomeEvent(jobId: string, status: string, extra: Record<string, unknown> = {}): PublishedEvent {
  return {
    version: '0',
    id: `evt-${jobId}-${status}`,
    source: 'waterflai.orchestrator',
    'detail-type': `Waterflai Execution ${status}`,
    detail: { event_id: `${jobId}:${status.toLowerCase()}`, job_id: jobId, status, ...extra },
    time: iso(T0 + 5_100),
    region: 'us-east-1',
    account: '123456789012',
    resources: [],
    eventBusName: 'outcomes',
  };
}

function execution(
  job: PlannedJob,
  id: string,
  status: UpstreamStatus,
  extra: Partial<SimulatedExecutionView> = {},
): SimulatedExecutionView {
  const terminal = status === 'COMPLETED' || status === 'FAILED' || status === 'CANCELLED';
  return {
    execution_id: id,
    status,
    progress: null,
    current_node: null,
    completed_nodes: null,
    total_nodes: null,
    final_output: status === 'COMPLETED' ? { answer: 'x' } : null,
    error_message: status === 'FAILED' ? 'boom' : null,
    created_at: iso(T0 + 50),
    started_at: iso(T0 + 100),
    completed_at: terminal ? iso(T0 + 4_000) : null,
    retry_count: 0,
    execution_source: 'CHATBOT',
    is_temporary: true,
    cleanup_after: iso(T0 + 86_400_000),
    chatbot_id: job.chatbotId,
    input_data: { job: job.jobId },
    scenario: { duration_ms: 20_000, nodes: 2, outcome: 'completed', queue_ms: 200, progress: 'linear' },
    cancelled_by: status === 'CANCELLED' ? 'api' : null,
    start_acknowledged: true,
    ...extra,
  };
}

function stateMachineExecution(jobId: string, name = `job-${jobId}`): ExecutionView {
  return {
    executionArn: `arn:aws:states:us-east-1:123456789012:execution:Poll:${name}`,
    stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:Poll',
    name,
    status: 'SUCCEEDED',
    input: JSON.stringify({ job_id: jobId }),
    startDate: T0,
    taskInvocations: {},
  };
}

/**
 * A clean run of five jobs: one completed, one failed upstream, one timed out (its execution
 * cancelled by the orchestrator), one cancelled by its producer, one deadline race won.
 */
function cleanRun(): Run {
  const completed = plannedJob(0, 'completed', ['COMPLETED']);
  const failed = plannedJob(1, 'failed', ['FAILED:EXECUTION_FAILED']);
  const deadline = plannedJob(2, 'deadline', ['FAILED:TIMED_OUT'], { timeoutSeconds: 1 });
  const producerCancel = plannedJob(3, 'producer-cancel', ['CANCELLED:requested', 'COMPLETED']);
  const race = plannedJob(4, 'deadline-race', ['COMPLETED'], { timeoutSeconds: 3, raceMarginMs: 300 });
  const jobs = [completed, failed, deadline, producerCancel, race];
  return {
    jobs,
    sent: jobs.map((job) => ({
      message: { atMs: job.index * 40, body: job.body, purpose: 'job', jobId: job.jobId },
      messageId: `msg-${job.index}`,
      sentAt: T0,
    })),
    records: [
      record(completed, 'COMPLETED'),
      record(failed, 'FAILED', { error_code: 'EXECUTION_FAILED' }),
      record(deadline, 'FAILED', { error_code: 'TIMED_OUT', deadline_at: iso(T0 + 1_000), upstream_cancel: 'confirmed' }),
      record(producerCancel, 'CANCELLED', { cancel_reason: 'requested', upstream_cancel: 'confirmed' }),
      record(race, 'COMPLETED', { deadline_at: iso(T0 + 3_000) }),
    ],
    events: [
      outcomeEvent('job-0', 'COMPLETED'),
      outcomeEvent('job-1', 'FAILED'),
      outcomeEvent('job-2', 'FAILED', { upstream_cancel: 'confirmed' }),
      outcomeEvent('job-3', 'CANCELLED', { upstream_cancel: 'confirmed' }),
      outcomeEvent('job-4', 'COMPLETED'),
    ],
    deadLetters: [],
    executions: [
      execution(completed, 'exec-0', 'COMPLETED'),
      execution(failed, 'exec-1', 'FAILED'),
      execution(deadline, 'exec-2', 'CANCELLED'),
      execution(producerCancel, 'exec-3', 'CANCELLED'),
      // Ends on its own 2,700 ms after creation (27,000 scenario ms x 0.1), 250 ms before the deadline.
      execution(race, 'exec-4', 'COMPLETED', {
        scenario: { duration_ms: 26_500, nodes: 1, outcome: 'completed', queue_ms: 0, progress: 'none' },
      }),
    ],
    stateMachineExecutions: jobs.map((job) => stateMachineExecution(job.jobId)),
    acceptThenFailByChatbot: {},
    faultsByJob: {},
    outages: [],
  };
}

function check(run: Run): ChaosFindings {
  const observations: RunObservations = {
    plan: {
      seed: 1,
      timeScale: TIME_SCALE,
      jobs: run.jobs,
      messages: run.sent.map((item) => item.message),
      lastSendMs: 200,
      incidents: { outages: [], keyRotations: [] },
    },
    sent: run.sent,
    records: run.records,
    events: run.events,
    deadLetters: run.deadLetters,
    executions: run.executions,
    stateMachineExecutions: run.stateMachineExecutions,
    ...(run.firstCancelAttemptAt === undefined ? {} : { firstCancelAttemptAt: run.firstCancelAttemptAt }),
    acceptThenFailByChatbot: run.acceptThenFailByChatbot,
    faultsByJob: run.faultsByJob,
    outages: run.outages,
  };
  return checkInvariants(observations);
}

function replaceRecord(run: Run, jobId: string, change: Partial<JobRecord & UpstreamCancelFields>): void {
  const index = run.records.findIndex((item) => item.job_id === jobId);
  run.records[index] = { ...run.records[index]!, ...change };
}

function replaceExecution(run: Run, id: string, change: Partial<SimulatedExecutionView>): void {
  const index = run.executions.findIndex((item) => item.execution_id === id);
  run.executions[index] = { ...run.executions[index]!, ...change };
}

/** Every violation list, by invariant name (what `violationCount` adds up). */
function violations(findings: ChaosFindings): Record<string, string[]> {
  const lists = {
    lost: findings.lost,
    stuck: findings.stuck,
    unannounced: findings.unannounced,
    conflicting_outcomes: findings.conflictingOutcomes,
    dead_letters: findings.deadLetterProblems,
    outcome_mismatches: findings.outcomeMismatches,
    orphaned_executions: findings.orphanedExecutions,
    outcome_upstream_mismatches: findings.outcomeUpstreamMismatches,
    unexplained_give_ups: findings.unexplainedGiveUps,
    duplicate_executions_from_redelivery: findings.duplicateExecutionsFromRedelivery,
    duplicate_state_machine_executions: findings.duplicateStateMachineExecutions,
  };
  return Object.fromEntries(
    Object.entries(lists).flatMap(([name, problems]) => (problems.length === 0 ? [] : [[name, problems.map((problem) => problem.jobId)]])),
  );
}

describe('the chaos checker on a clean run', () => {
  it('finds nothing', () => {
    // Act
    const findings = check(cleanRun());

    // Assess
    expect(violations(findings)).toEqual({});
    expect(violationCount(findings)).toBe(0);
    expect(findings.terminal).toBe(5);
    expect(findings.excusedUpstreamMismatches).toEqual([]);
    expect(findings.unconfirmedCancels).toEqual([]);
    expect(findings.giveUps).toEqual({ total: 0, byOutcome: {}, explained: 0, unexplained: 0 });
    expect(findings.deadlineRaces).toEqual({ jobs: 1, completed: 1, lateStart: 0 });
    expect(findings.outcomes).toEqual({ COMPLETED: 2, 'FAILED:EXECUTION_FAILED': 1, 'FAILED:TIMED_OUT': 1, 'CANCELLED:requested': 1 });
  });
});

describe('the chaos checker reports each broken run', () => {
  it('a wrong outcome: a job Waterflai completes ends FAILED', () => {
    const run = cleanRun();
    replaceRecord(run, 'job-0', { status: 'FAILED', error_code: 'EXECUTION_FAILED' });
    run.events[0] = outcomeEvent('job-0', 'FAILED');
    replaceExecution(run, 'exec-0', { status: 'FAILED', final_output: null, error_message: 'boom' });

    const findings = check(run);

    expect(violations(findings)).toEqual({ outcome_mismatches: ['job-0'] });
    expect(findings.outcomeMismatches[0]?.detail).toContain('expected COMPLETED');
  });

  it('a duplicate execution no crash-window fault explains', () => {
    const run = cleanRun();
    run.executions.push(execution(run.jobs[0]!, 'exec-0b', 'COMPLETED'));

    const findings = check(run);

    expect(violations(findings)).toEqual({ duplicate_executions_from_redelivery: ['job-0'] });
    expect(findings.waterflai.duplicatesFromRedelivery).toBe(1);
  });

  it('a crash-window duplicate is reported, not failed, and its execution running on is not an orphan', () => {
    const run = cleanRun();
    run.executions.push(execution(run.jobs[0]!, 'exec-0-lost', 'RUNNING', { start_acknowledged: false }));
    run.acceptThenFailByChatbot['bot-0'] = 1;

    const findings = check(run);

    expect(violations(findings)).toEqual({});
    expect(findings.crashDuplicates.map((problem) => problem.jobId)).toEqual(['job-0']);
    expect(findings.waterflai.crashWindowStillRunning).toBe(1);
  });

  it('a second state machine execution of the same name', () => {
    const run = cleanRun();
    run.stateMachineExecutions.push(stateMachineExecution('job-1'));

    expect(violations(check(run))).toEqual({ duplicate_state_machine_executions: ['job-1'] });
  });

  it('an unannounced job', () => {
    const run = cleanRun();
    run.events = run.events.filter((event) => (event.detail as { job_id: string }).job_id !== 'job-1');

    expect(violations(check(run))).toEqual({ unannounced: ['job-1'] });
  });

  it('an event that conflicts with the record', () => {
    const run = cleanRun();
    run.events.push(outcomeEvent('job-0', 'FAILED'));

    expect(violations(check(run))).toEqual({ conflicting_outcomes: ['job-0'] });
  });

  it('a stuck job', () => {
    const run = cleanRun();
    replaceRecord(run, 'job-0', { status: 'RUNNING', status_rank: 2 });
    replaceExecution(run, 'exec-0', { status: 'RUNNING', completed_at: null, final_output: null });

    const findings = check(run);

    expect(violations(findings)).toEqual({ stuck: ['job-0'] });
  });

  it('a lost message: no record and not in the dead-letter queue', () => {
    const run = cleanRun();
    const ghost = plannedJob(9, 'completed', ['COMPLETED']);
    run.jobs.push(ghost);
    run.sent.push({ message: { atMs: 400, body: ghost.body, purpose: 'job', jobId: ghost.jobId }, messageId: 'msg-9', sentAt: T0 });

    expect(violations(check(run))).toEqual({ lost: ['job-9'] });
  });

  it('an invalid message missing from the dead-letter queue, and one there without a reason', () => {
    const run = cleanRun();
    run.sent.push({ message: { atMs: 10, body: '{', purpose: 'invalid', invalidCase: 'not-json' }, messageId: 'msg-bad', sentAt: T0 });
    run.deadLetters.push({ messageId: 'dlq-1', body: '[]', messageAttributes: {}, receiveCount: 0, sentTimestamp: T0, state: 'ready' });

    const findings = check(run);

    expect(violations(findings)).toEqual({ lost: ['message:msg-bad'], dead_letters: ['message:dlq-1'] });
  });

  it('an orphan: the job timed out but its execution still runs upstream (a refused cancel taken for a success)', () => {
    const run = cleanRun();
    replaceExecution(run, 'exec-2', { status: 'RUNNING', completed_at: null, cancelled_by: null });

    const findings = check(run);

    expect(violations(findings)).toEqual({ orphaned_executions: ['job-2'] });
    expect(findings.orphanedExecutions[0]?.detail).toContain('exec-2 (its own execution) is still RUNNING');
  });

  it('an orphan: a superfluous execution whose id the start received, left running', () => {
    const run = cleanRun();
    run.executions.push(execution(run.jobs[0]!, 'exec-0-extra', 'PENDING', { completed_at: null, final_output: null }));
    run.acceptThenFailByChatbot['bot-0'] = 1; // the duplicate itself is explained

    const findings = check(run);

    expect(violations(findings)).toEqual({ orphaned_executions: ['job-0'] });
    expect(findings.orphanedExecutions[0]?.detail).toContain('superfluous');
  });

  it.each([
    ['job-2', 'TIMED_OUT while the execution COMPLETED', 'exec-2', { status: 'COMPLETED', cancelled_by: null }],
    ['job-3', 'CANCELLED (requested) while the execution COMPLETED', 'exec-3', { status: 'COMPLETED', cancelled_by: null }],
    ['job-0', 'COMPLETED while the execution was CANCELLED', 'exec-0', { status: 'CANCELLED', cancelled_by: 'api' }],
    ['job-1', 'EXECUTION_FAILED while the execution COMPLETED', 'exec-1', { status: 'COMPLETED', cancelled_by: null }],
  ] as const)('an upstream mismatch: %s %s', (jobId, _what, executionId, change) => {
    const run = cleanRun();
    replaceExecution(run, executionId, change);

    const findings = check(run);

    expect(findings.outcomeUpstreamMismatches.map((problem) => problem.jobId)).toEqual([jobId]);
    expect(violationCount(findings)).toBeGreaterThan(0);
  });

  it('an upstream mismatch: the recorded execution does not exist in Waterflai', () => {
    const run = cleanRun();
    replaceRecord(run, 'job-0', { execution_id: 'exec-nowhere' });

    const findings = check(run);

    expect(findings.outcomeUpstreamMismatches.map((problem) => problem.jobId)).toEqual(['job-0']);
    expect(findings.outcomeUpstreamMismatches[0]?.detail).toContain('never created');
  });

  it('excuses a mismatch only when the cancel was announced unconfirmed during an outage of the cancel route', () => {
    // Prepare: the deadline job's execution completed on its own after an unconfirmed cancel
    const unconfirmed = (): Run => {
      const run = cleanRun();
      replaceRecord(run, 'job-2', { upstream_cancel: 'unconfirmed', finished_at: iso(T0 + 5_000) });
      run.events[2] = outcomeEvent('job-2', 'FAILED', { upstream_cancel: 'unconfirmed' });
      replaceExecution(run, 'exec-2', { status: 'COMPLETED', cancelled_by: null });
      return run;
    };
    const duringOutage = unconfirmed();
    duringOutage.outages.push({ from: T0 + 1_000, until: T0 + 120_000, routes: ['get', 'cancel', 'stream'] });
    const outageOfGetsOnly = unconfirmed();
    outageOfGetsOnly.outages.push({ from: T0 + 1_000, until: T0 + 120_000, routes: ['get'] });

    // Act
    const excused = check(duringOutage);
    const notExcused = check(outageOfGetsOnly);
    const noOutage = check(unconfirmed());

    // Assess
    expect(violations(excused)).toEqual({});
    expect(excused.excusedUpstreamMismatches.map((problem) => problem.jobId)).toEqual(['job-2']);
    expect(excused.unconfirmedCancels.map((problem) => problem.jobId)).toEqual(['job-2']);
    expect(violations(notExcused)).toEqual({ outcome_upstream_mismatches: ['job-2'] });
    expect(violations(noOutage)).toEqual({ outcome_upstream_mismatches: ['job-2'] });
  });

  it('POLL_FAILED is a violation (transient faults must never fail a job), and a give-up', () => {
    const run = cleanRun();
    replaceRecord(run, 'job-0', { status: 'FAILED', error_code: 'POLL_FAILED', error_message: 'Waterflai answered 503' });
    run.events[0] = outcomeEvent('job-0', 'FAILED');
    replaceExecution(run, 'exec-0', { status: 'CANCELLED', cancelled_by: 'api' });
    run.faultsByJob['job-0'] = 12;

    const findings = check(run);

    expect(violations(findings)).toEqual({ outcome_mismatches: ['job-0'] });
    expect(findings.outcomeMismatches[0]?.detail).toContain('POLL_FAILED');
    expect(findings.giveUps).toEqual({ total: 1, byOutcome: { 'FAILED:POLL_FAILED': 1 }, explained: 0, unexplained: 1 });
  });

  it('POLL_FAILED that threw a finished result away is an upstream mismatch too', () => {
    const run = cleanRun();
    replaceRecord(run, 'job-0', { status: 'FAILED', error_code: 'POLL_FAILED' });
    run.events[0] = outcomeEvent('job-0', 'FAILED');

    expect(violations(check(run))).toEqual({ outcome_mismatches: ['job-0'], outcome_upstream_mismatches: ['job-0'] });
  });

  it('START_RETRIES_EXHAUSTED is a give-up the faults explain when some struck the job, else a violation', () => {
    const gaveUp = (faults: number): ChaosFindings => {
      const run = cleanRun();
      replaceRecord(run, 'job-0', { status: 'FAILED', error_code: 'START_RETRIES_EXHAUSTED', execution_id: undefined });
      run.events[0] = outcomeEvent('job-0', 'FAILED');
      run.executions = run.executions.filter((item) => item.execution_id !== 'exec-0');
      if (faults > 0) run.faultsByJob['job-0'] = faults;
      return check(run);
    };

    const explained = gaveUp(5);
    const unexplained = gaveUp(0);

    expect(violations(explained)).toEqual({});
    expect(explained.giveUps).toEqual({ total: 1, byOutcome: { 'FAILED:START_RETRIES_EXHAUSTED': 1 }, explained: 1, unexplained: 0 });
    expect(violations(unexplained)).toEqual({ unexplained_give_ups: ['job-0'] });
  });

  it('a deadline race lost although the execution completed before the deadline', () => {
    const run = cleanRun();
    replaceRecord(run, 'job-4', { status: 'FAILED', error_code: 'TIMED_OUT' });
    run.events[4] = outcomeEvent('job-4', 'FAILED');

    const findings = check(run);

    expect(violations(findings)).toEqual({ outcome_mismatches: ['job-4'], outcome_upstream_mismatches: ['job-4'] });
    expect(findings.outcomeMismatches[0]?.detail).toMatch(/ended on its own \d+ ms before the deadline/);
  });

  it('a deadline race whose start came too late to win may time out (its execution cancelled)', () => {
    const run = cleanRun();
    replaceRecord(run, 'job-4', { status: 'FAILED', error_code: 'TIMED_OUT', upstream_cancel: 'confirmed' });
    run.events[4] = outcomeEvent('job-4', 'FAILED');
    // Created 400 ms after acceptance: it would end 150 ms after the deadline.
    replaceExecution(run, 'exec-4', { status: 'CANCELLED', cancelled_by: 'api', created_at: iso(T0 + 400) });

    const findings = check(run);

    expect(violations(findings)).toEqual({});
    expect(findings.deadlineRaces).toEqual({ jobs: 1, completed: 0, lateStart: 1 });
  });

  it('a deadline job that ends COMPLETED is allowed only when an outage of the cancel route overlapped its deadline and the end of its execution', () => {
    const completedAfterDeadline = (): Run => {
      const run = cleanRun();
      replaceRecord(run, 'job-2', { status: 'COMPLETED', error_code: undefined, upstream_cancel: undefined });
      run.events[2] = outcomeEvent('job-2', 'COMPLETED');
      // Deadline T0 + 1 s; the execution completed on its own at T0 + 4 s.
      replaceExecution(run, 'exec-2', { status: 'COMPLETED', cancelled_by: null });
      return run;
    };
    const inOutage = completedAfterDeadline();
    inOutage.outages.push({ from: T0 + 500, until: T0 + 8_000, routes: ['get', 'cancel', 'stream'] });
    const outageAfterDeadline = completedAfterDeadline();
    outageAfterDeadline.outages.push({ from: T0 + 5_000, until: T0 + 6_000, routes: ['get', 'cancel', 'stream'] });
    const outageOfReadsOnly = completedAfterDeadline();
    outageOfReadsOnly.outages.push({ from: T0 + 500, until: T0 + 8_000, routes: ['get', 'stream'] });

    const allowed = check(inOutage);

    expect(violations(allowed)).toEqual({});
    expect(allowed.deadlineJobsCompletedDuringOutage).toBe(1);
    expect(violations(check(outageAfterDeadline))).toEqual({ outcome_mismatches: ['job-2'] });
    expect(violations(check(outageOfReadsOnly))).toEqual({ outcome_mismatches: ['job-2'] });
    expect(violations(check(completedAfterDeadline()))).toEqual({ outcome_mismatches: ['job-2'] });
  });

  it('a deadline job that ends COMPLETED is allowed when its cancel was sent before the execution completed (it did not take effect in time)', () => {
    const completedAfterDeadline = (): Run => {
      const run = cleanRun();
      replaceRecord(run, 'job-2', { status: 'COMPLETED', error_code: undefined, upstream_cancel: undefined });
      run.events[2] = outcomeEvent('job-2', 'COMPLETED');
      replaceExecution(run, 'exec-2', { status: 'COMPLETED', cancelled_by: null });
      return run;
    };
    const cancelInTime = { ...completedAfterDeadline(), firstCancelAttemptAt: { 'exec-2': T0 + 1_500 } };
    const cancelTooLate = { ...completedAfterDeadline(), firstCancelAttemptAt: { 'exec-2': T0 + 9_000 } };

    expect(violations(check(cancelInTime))).toEqual({});
    expect(violations(check(cancelTooLate))).toEqual({ outcome_mismatches: ['job-2'] });
  });

  it('a deadline job that ends COMPLETED is allowed when its poll loop only started after the execution completed', () => {
    const completedBeforeTheLoop = (loopStartMs: number): Run => {
      const run = cleanRun();
      replaceRecord(run, 'job-2', { status: 'COMPLETED', error_code: undefined, upstream_cancel: undefined });
      run.events[2] = outcomeEvent('job-2', 'COMPLETED');
      replaceExecution(run, 'exec-2', { status: 'COMPLETED', cancelled_by: null });
      run.stateMachineExecutions = run.stateMachineExecutions.map((execution) =>
        (JSON.parse(execution.input) as { job_id?: string }).job_id === 'job-2' ? { ...execution, startDate: loopStartMs } : execution,
      );
      return run;
    };

    expect(violations(check(completedBeforeTheLoop(T0 + 5_000)))).toEqual({});
    expect(violations(check(completedBeforeTheLoop(T0 + 500)))).toEqual({ outcome_mismatches: ['job-2'] });
  });

  it('a remote cancel the orchestrator did itself', () => {
    const run = cleanRun();
    const remote = plannedJob(5, 'remote-cancel', ['CANCELLED:remote']);
    run.jobs.push(remote);
    run.sent.push({ message: { atMs: 200, body: remote.body, purpose: 'job', jobId: remote.jobId }, messageId: 'msg-5', sentAt: T0 });
    run.records.push(record(remote, 'CANCELLED', { cancel_reason: 'remote' }));
    run.events.push(outcomeEvent('job-5', 'CANCELLED'));
    run.executions.push(execution(remote, 'exec-5', 'CANCELLED', { cancelled_by: 'api' }));
    run.stateMachineExecutions.push(stateMachineExecution('job-5'));

    expect(violations(check(run))).toEqual({ outcome_mismatches: ['job-5'] });
  });
});

describe('what each outcome requires upstream', () => {
  it.each([
    ['COMPLETED', ['COMPLETED']],
    ['FAILED:EXECUTION_FAILED', ['FAILED']],
    ['CANCELLED:remote', ['CANCELLED']],
    ['FAILED:TIMED_OUT', ['CANCELLED']],
    ['CANCELLED:requested', ['CANCELLED']],
    ['CANCELLED:stopped', ['CANCELLED']],
    ['FAILED:POLL_FAILED', ['CANCELLED']],
    ['FAILED:OUTPUT_EXPIRED', ['COMPLETED']],
    ['FAILED:EXECUTION_NOT_FOUND', undefined],
  ] as const)('%s: %o', (outcome, statuses) => {
    expect(upstreamStatusesFor(outcome)).toEqual(statuses);
  });
});

describe('the JSON report', () => {
  it('carries the new fields and lists each violation under its invariant', () => {
    // Prepare: an orphan and an upstream mismatch
    const run = cleanRun();
    replaceExecution(run, 'exec-2', { status: 'RUNNING', completed_at: null, cancelled_by: null });
    replaceExecution(run, 'exec-3', { status: 'COMPLETED', cancelled_by: null });
    const findings = check(run);
    const result: ChaosResult = {
      seed: 1,
      jobs: run.jobs.length,
      timeScale: TIME_SCALE,
      rate: 25,
      dynamodbEngine: 'dynalite',
      durationMs: 1_000,
      completed: true,
      faults: {},
      observed: {},
      redeliveredRecords: 0,
      eventSourceErrors: [],
      leftInIntake: [],
      traces: {},
      incidents: {
        outages: [],
        key_rotations: [],
        outage_requests: 0,
        outage_by_answer: { error5xx: 0, reset: 0, hang: 0 },
        revoked_key_401s: 0,
        refused_cancels: 0,
        finished_cancel_answers: {},
      },
      findings,
      violations: violationCount(findings),
    };

    // Act
    const json = chaosJson(result);

    // Assess
    expect(json).toMatchObject({
      passed: false,
      orphaned_executions: 1,
      outcome_upstream_mismatches: 1,
      give_ups: { total: 0, unexplained: 0 },
    });
    expect(json.violations).toEqual([
      { invariant: 'orphaned_executions', job_id: 'job-2', detail: expect.stringContaining('still RUNNING') as unknown },
      { invariant: 'outcome_upstream_mismatches', job_id: 'job-3', detail: expect.stringContaining('COMPLETED') as unknown },
    ]);
  });
});
