/**
 * What `npm run chaos` prints (one table) and writes with `--json FILE`.
 */
import { SLOW_DEAD_LETTER_MS, type JobProblem } from './invariants';
import type { ChaosResult } from './run';

/** The figures as JSON (the keys other tools read are stable). */
export function chaosJson(result: ChaosResult): Record<string, unknown> {
  const f = result.findings;
  const violations: Array<{ invariant: string; job_id: string; detail: string }> = [];
  const add = (invariant: string, problems: readonly JobProblem[]): void => {
    for (const problem of problems) violations.push({ invariant, job_id: problem.jobId, detail: problem.detail });
  };
  add('lost', f.lost);
  add('stuck', f.stuck);
  add('unannounced', f.unannounced);
  add('conflicting_outcomes', f.conflictingOutcomes);
  add('dead_letters', f.deadLetterProblems);
  add('outcome_mismatches', f.outcomeMismatches);
  add('orphaned_executions', f.orphanedExecutions);
  add('outcome_upstream_mismatches', f.outcomeUpstreamMismatches);
  add('unexplained_give_ups', f.unexplainedGiveUps);
  add('duplicate_executions_from_redelivery', f.duplicateExecutionsFromRedelivery);
  add('duplicate_state_machine_executions', f.duplicateStateMachineExecutions);
  return {
    jobs: result.jobs,
    seed: result.seed,
    time_scale: result.timeScale,
    rate: result.rate,
    dynamodb_engine: result.dynamodbEngine,
    duration_seconds: Math.round(result.durationMs / 100) / 10,
    completed_before_deadline: result.completed,
    passed: result.violations === 0,
    lost: f.lost.length,
    stuck: f.stuck.length,
    unannounced: f.unannounced.length,
    conflicting_outcomes: f.conflictingOutcomes.length,
    dead_letter_problems: f.deadLetterProblems.length,
    outcome_mismatches: f.outcomeMismatches.length,
    orphaned_executions: f.orphanedExecutions.length,
    outcome_upstream_mismatches: f.outcomeUpstreamMismatches.length,
    outcome_upstream_mismatches_excused: problems(f.excusedUpstreamMismatches),
    give_ups: {
      total: f.giveUps.total,
      by_outcome: f.giveUps.byOutcome,
      explained_by_faults: f.giveUps.explained,
      unexplained: f.giveUps.unexplained,
    },
    unconfirmed_cancels: problems(f.unconfirmedCancels),
    deadline_races: {
      jobs: f.deadlineRaces.jobs,
      completed: f.deadlineRaces.completed,
      timed_out_after_a_late_start: f.deadlineRaces.lateStart,
    },
    deadline_jobs_completed_during_outage: f.deadlineJobsCompletedDuringOutage,
    incidents: result.incidents,
    duplicate_executions_from_redelivery: f.waterflai.duplicatesFromRedelivery,
    duplicate_executions_from_crash: f.waterflai.duplicatesFromCrash,
    duplicate_state_machine_executions: f.duplicateStateMachineExecutions.length,
    faults: result.faults,
    faults_total: Object.values(result.faults).reduce((sum, count) => sum + count, 0),
    observed: { conditional_check_failed: result.observed.ConditionalCheckFailedException ?? 0, dynamodb_errors_by_code: result.observed },
    messages: f.messagesSent,
    redelivered_records: result.redeliveredRecords,
    outcomes: f.outcomes,
    terminal: f.terminal,
    events: { published: f.events.total, jobs_announced: f.events.jobsAnnounced, republished_same_id: f.events.duplicates },
    dead_letters: {
      total: f.deadLetters.total,
      with_reason: f.deadLetters.withReason,
      invalid_messages: f.deadLetters.invalidMessages,
      jobs_rejected_at_intake: f.deadLetters.rejectedJobs,
    },
    waterflai: {
      executions: f.waterflai.executions,
      jobs_with_duplicates: f.waterflai.jobsWithDuplicates,
      crash_window_faults: f.waterflai.acceptThenFail,
      untracked_executions: f.waterflai.untracked,
      untracked_cancelled_by_orchestrator: f.waterflai.untrackedCancelled,
      crash_window_executions_still_running: f.waterflai.crashWindowStillRunning,
    },
    gave_up: problems(f.gaveUp),
    gave_up_with_untracked_execution: f.gaveUpWithOrphans,
    crash_duplicates: problems(f.crashDuplicates),
    slow_dead_letters: problems(f.slowDeadLetters),
    event_source_errors: result.eventSourceErrors,
    left_in_intake_queue: result.leftInIntake,
    violations,
    traces: result.traces,
  };
}

function problems(list: readonly JobProblem[]): Array<{ job_id: string; detail: string }> {
  return list.map((problem) => ({ job_id: problem.jobId, detail: problem.detail }));
}

/** The table `npm run chaos` prints. */
export function chaosTable(result: ChaosResult): string {
  const f = result.findings;
  const rows: Array<[string, string]> = [];
  const totalFaults = Object.values(result.faults).reduce((sum, count) => sum + count, 0);
  const sent = Object.values(f.messagesSent).reduce((sum, count) => sum + count, 0);
  rows.push([
    'jobs',
    `${result.jobs} (+${f.messagesSent.invalid} invalid messages; ${sent} messages sent, ${f.messagesSent.cancel} cancel requests)`,
  ]);
  rows.push(['faults injected', `${totalFaults} in total`]);
  for (const [kind, count] of Object.entries(result.faults)) rows.push([`  ${kind}`, String(count)]);
  rows.push([
    'outcomes',
    Object.entries(f.outcomes)
      .sort(([, a], [, b]) => b - a)
      .map(([name, count]) => `${name} ${count}`)
      .join(', ') || 'none',
  ]);
  rows.push(['  terminal', `${f.terminal} of ${result.jobs} jobs`]);
  const byOutcome = Object.entries(f.giveUps.byOutcome)
    .map(([name, count]) => `${name} ${count}`)
    .join(', ');
  rows.push([
    'give-ups',
    `${f.giveUps.total}${byOutcome === '' ? '' : ` (${byOutcome})`}: ${f.giveUps.explained} explained by faults, ${f.giveUps.unexplained} not` +
      (f.gaveUpWithOrphans > 0 ? `; ${f.gaveUpWithOrphans} with an untracked Waterflai execution` : ''),
  ]);
  if (f.deadlineRaces.jobs > 0) {
    rows.push([
      'deadline races',
      `${f.deadlineRaces.jobs} jobs: ${f.deadlineRaces.completed} COMPLETED, ${f.deadlineRaces.lateStart} TIMED_OUT after a start too late to win`,
    ]);
  }
  if (f.deadlineJobsCompletedDuringOutage > 0) {
    rows.push([
      'deadline jobs completed',
      `${f.deadlineJobsCompletedDuringOutage} (the deadline passed in an outage of the cancel route, the execution completed before a cancel got through)`,
    ]);
  }
  const incidents = result.incidents;
  for (const outage of incidents.outages) {
    rows.push([
      'incident: outage',
      `${outage.routes.join(',')} from +${outage.from_s.toFixed(1)} s to +${outage.until_s.toFixed(1)} s; ${incidents.outage_requests} requests failed (${Object.entries(
        incidents.outage_by_answer,
      )
        .map(([answer, count]) => `${answer} ${count}`)
        .join(', ')})`,
    ]);
  }
  for (const rotation of incidents.key_rotations) {
    rows.push([
      'incident: key rotation',
      `new key at +${rotation.at_s.toFixed(1)} s, old key refused from +${rotation.old_key_refused_at_s.toFixed(1)} s; ${incidents.revoked_key_401s} requests answered 401 for the old key`,
    ]);
  }
  rows.push([
    'cancels',
    `${incidents.refused_cancels} refused (200 cancelled:false); DELETEs of finished executions answered ${
      Object.entries(incidents.finished_cancel_answers)
        .map(([status, count]) => `${status} x${count}`)
        .join(', ') || 'never'
    }; ` + `${f.unconfirmedCancels.length} jobs announced with upstream_cancel unconfirmed`,
  ]);
  rows.push([
    'events',
    `${f.events.total} published for ${f.events.jobsAnnounced} jobs; ${f.events.duplicates} re-published (same event_id); ${f.conflictingOutcomes.length} conflicting; ${f.unannounced.length} jobs unannounced`,
  ]);
  rows.push([
    'duplicates',
    `${f.messagesSent.duplicate} sent twice, ${f.messagesSent['late-duplicate']} sent again later, ${result.redeliveredRecords} redelivered by the event source; ` +
      `duplicate executions from redelivery: ${f.waterflai.duplicatesFromRedelivery}; duplicate state machine executions: ${f.duplicateStateMachineExecutions.length}`,
  ]);
  rows.push([
    '  conditional-check races',
    `${result.observed.ConditionalCheckFailedException ?? 0} (ConditionalCheckFailedException answers, observed)`,
  ]);
  rows.push([
    'dead-letter queue',
    `${f.deadLetters.total} messages (${f.deadLetters.withReason} with a reason): ${f.deadLetters.invalidMessages} invalid, ${f.deadLetters.rejectedJobs} jobs rejected at intake; ` +
      `${f.deadLetterProblems.length} problems; ${f.slowDeadLetters.length} arrived over ${SLOW_DEAD_LETTER_MS / 1000} s after sending`,
  ]);
  rows.push([
    'event source',
    `${result.eventSourceErrors.length} failed invocations/receives/deletes; ${result.leftInIntake.length} messages left in the intake queue` +
      (result.leftInIntake.length > 0
        ? ` (${result.leftInIntake.map((message) => `${message.jobId ?? message.messageId} ${message.state}`).join(', ')})`
        : ''),
  ]);
  rows.push(['outcome mismatches', String(f.outcomeMismatches.length)]);
  rows.push([
    'orphaned_executions',
    `${f.orphanedExecutions.length} (executions whose id the orchestrator received, still running after their job ended)`,
  ]);
  rows.push([
    'outcome_upstream_mismatches',
    `${f.outcomeUpstreamMismatches.length}${f.excusedUpstreamMismatches.length > 0 ? ` (+${f.excusedUpstreamMismatches.length} excused: cancel unconfirmed during an outage)` : ''}`,
  ]);
  rows.push(['stuck', String(f.stuck.length)]);
  rows.push(['lost', String(f.lost.length)]);
  rows.push([
    'duplicate_executions_from_crash',
    `${f.waterflai.duplicatesFromCrash} (${f.waterflai.acceptThenFail} crash-window faults; ${f.waterflai.untracked} untracked executions, ${f.waterflai.untrackedCancelled} cancelled by the orchestrator, ${f.waterflai.crashWindowStillRunning} crash-window ones still running)`,
  ]);
  rows.push([
    'result',
    result.violations === 0 ? `PASS${result.completed ? '' : ' (deadline reached)'}` : `FAIL: ${result.violations} invariant violation(s)`,
  ]);

  const width = Math.max(...rows.map(([name]) => name.length));
  const title = `chaos run: seed ${result.seed}, ${result.jobs} jobs, time scale ${result.timeScale}, ${result.rate} jobs/s, DynamoDB ${result.dynamodbEngine}, ${(result.durationMs / 1000).toFixed(1)} s`;
  const rule = '-'.repeat(Math.max(title.length, width + 40));
  return [title, rule, ...rows.map(([name, value]) => `${name.padEnd(width)}  ${value}`), rule].join('\n');
}

/** The violations, one line each (at most `limit` per invariant). */
export function violationLines(result: ChaosResult, limit = 20): string[] {
  const f = result.findings;
  const lines: string[] = [];
  const section = (name: string, problems: readonly JobProblem[]): void => {
    if (problems.length === 0) return;
    lines.push(`${name} (${problems.length}):`);
    for (const problem of problems.slice(0, limit)) lines.push(`  ${problem.jobId}: ${problem.detail}`);
    if (problems.length > limit) lines.push(`  ... and ${problems.length - limit} more (see --json)`);
  };
  section('lost', f.lost);
  section('stuck', f.stuck);
  section('unannounced', f.unannounced);
  section('conflicting outcomes', f.conflictingOutcomes);
  section('dead-letter problems', f.deadLetterProblems);
  section('outcome mismatches', f.outcomeMismatches);
  section('orphaned executions', f.orphanedExecutions);
  section('outcome/upstream mismatches', f.outcomeUpstreamMismatches);
  section('unexplained give-ups', f.unexplainedGiveUps);
  section('duplicate executions from redelivery', f.duplicateExecutionsFromRedelivery);
  section('duplicate state machine executions', f.duplicateStateMachineExecutions);
  return lines;
}

/** What is reported without failing the run: give-ups, late dead letters (at most `limit` each). */
export function reportedLines(result: ChaosResult, limit = 10): string[] {
  const f = result.findings;
  const lines: string[] = [];
  const section = (name: string, problems: readonly JobProblem[]): void => {
    if (problems.length === 0) return;
    lines.push(`${name} (${problems.length}, reported):`);
    for (const problem of problems.slice(0, limit)) lines.push(`  ${problem.jobId}: ${problem.detail}`);
    if (problems.length > limit) lines.push(`  ... and ${problems.length - limit} more (see --json)`);
  };
  section('jobs that gave up under faults', f.gaveUp);
  section('cancels announced unconfirmed', f.unconfirmedCancels);
  section('outcome/upstream mismatches excused by an outage', f.excusedUpstreamMismatches);
  section('messages dead-lettered late', f.slowDeadLetters);
  return lines;
}
