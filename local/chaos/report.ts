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
    dead_letters: { total: f.deadLetters.total, with_reason: f.deadLetters.withReason, invalid_messages: f.deadLetters.invalidMessages, jobs_rejected_at_intake: f.deadLetters.rejectedJobs },
    waterflai: {
      executions: f.waterflai.executions,
      jobs_with_duplicates: f.waterflai.jobsWithDuplicates,
      crash_window_faults: f.waterflai.acceptThenFail,
      orphaned_executions: f.waterflai.orphans,
      orphans_cancelled_by_orchestrator: f.waterflai.orphansCancelled,
    },
    gave_up: f.gaveUp.map((problem) => ({ job_id: problem.jobId, detail: problem.detail })),
    gave_up_with_untracked_execution: f.gaveUpWithOrphans,
    crash_duplicates: f.crashDuplicates.map((problem) => ({ job_id: problem.jobId, detail: problem.detail })),
    slow_dead_letters: f.slowDeadLetters.map((problem) => ({ job_id: problem.jobId, detail: problem.detail })),
    event_source_errors: result.eventSourceErrors,
    left_in_intake_queue: result.leftInIntake,
    violations,
    traces: result.traces,
  };
}

/** The table `npm run chaos` prints. */
export function chaosTable(result: ChaosResult): string {
  const f = result.findings;
  const rows: Array<[string, string]> = [];
  const totalFaults = Object.values(result.faults).reduce((sum, count) => sum + count, 0);
  const sent = Object.values(f.messagesSent).reduce((sum, count) => sum + count, 0);
  rows.push(['jobs', `${result.jobs} (+${f.messagesSent.invalid} invalid messages; ${sent} messages sent, ${f.messagesSent.cancel} cancel requests)`]);
  rows.push(['faults injected', `${totalFaults} in total`]);
  for (const [kind, count] of Object.entries(result.faults)) rows.push([`  ${kind}`, String(count)]);
  rows.push(['outcomes', Object.entries(f.outcomes).sort(([, a], [, b]) => b - a).map(([name, count]) => `${name} ${count}`).join(', ') || 'none']);
  const gaveUp = f.gaveUp.length > 0 ? ` (${f.gaveUp.length} gave up under faults${f.gaveUpWithOrphans > 0 ? `, ${f.gaveUpWithOrphans} of them with an untracked Waterflai execution` : ''})` : '';
  rows.push(['  terminal', `${f.terminal} of ${result.jobs} jobs${gaveUp}`]);
  rows.push(['events', `${f.events.total} published for ${f.events.jobsAnnounced} jobs; ${f.events.duplicates} re-published (same event_id); ${f.conflictingOutcomes.length} conflicting; ${f.unannounced.length} jobs unannounced`]);
  rows.push([
    'duplicates',
    `${f.messagesSent.duplicate} sent twice, ${f.messagesSent['late-duplicate']} sent again later, ${result.redeliveredRecords} redelivered by the event source; ` +
      `duplicate executions from redelivery: ${f.waterflai.duplicatesFromRedelivery}; duplicate state machine executions: ${f.duplicateStateMachineExecutions.length}`,
  ]);
  rows.push(['  conditional-check races', `${result.observed.ConditionalCheckFailedException ?? 0} (ConditionalCheckFailedException answers, observed)`]);
  rows.push([
    'dead-letter queue',
    `${f.deadLetters.total} messages (${f.deadLetters.withReason} with a reason): ${f.deadLetters.invalidMessages} invalid, ${f.deadLetters.rejectedJobs} jobs rejected at intake; ` +
      `${f.deadLetterProblems.length} problems; ${f.slowDeadLetters.length} arrived over ${SLOW_DEAD_LETTER_MS / 1000} s after sending`,
  ]);
  rows.push([
    'event source',
    `${result.eventSourceErrors.length} failed invocations/receives/deletes; ${result.leftInIntake.length} messages left in the intake queue` +
      (result.leftInIntake.length > 0 ? ` (${result.leftInIntake.map((message) => `${message.jobId ?? message.messageId} ${message.state}`).join(', ')})` : ''),
  ]);
  rows.push(['outcome mismatches', String(f.outcomeMismatches.length)]);
  rows.push(['stuck', String(f.stuck.length)]);
  rows.push(['lost', String(f.lost.length)]);
  rows.push([
    'duplicate_executions_from_crash',
    `${f.waterflai.duplicatesFromCrash} (${f.waterflai.acceptThenFail} crash-window faults; ${f.waterflai.orphans} orphaned executions, ${f.waterflai.orphansCancelled} cancelled by the orchestrator)`,
  ]);
  rows.push(['result', result.violations === 0 ? `PASS${result.completed ? '' : ' (deadline reached)'}` : `FAIL: ${result.violations} invariant violation(s)`]);

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
  section('messages dead-lettered late', f.slowDeadLetters);
  return lines;
}
