/**
 * Child process of `npm run bench`: real jobs on the embedded local runtime (the CDK
 * stack synthesized, SQS, DynamoDB, the state machine on aws-local-stepfunctions, the
 * handlers unchanged, the Waterflai simulator), time-scaled. Reads the job list as JSON
 * from argv[2]; prints one JSON line with what was counted for each job.
 */
import '../local/polyfills';
import { STATE_NAME, TERMINAL_STATUSES } from '../lambdas/contract/constants';

export interface RealRunJob {
  readonly id: string;
  readonly shape: string;
  readonly durationSeconds: number;
  readonly queueSeconds: number;
  readonly nodes: number;
}

export interface RealRunInput {
  readonly timeScale: number;
  readonly jobs: readonly RealRunJob[];
  /** Give up after this many real seconds. */
  readonly timeoutSeconds: number;
}

export interface RealRunCount {
  readonly id: string;
  readonly status: string;
  /** Poll Lambda invocations the local Step Functions made for the job. */
  readonly pollInvocations: number;
  /** The poll count the job record ends with. */
  readonly recordedPolls: number;
  /** Finish Lambda invocations. */
  readonly finishInvocations: number;
  /** Clock ms from the job's acceptance to its state machine execution starting. */
  readonly loopStartMs: number;
  /** Clock ms from the job's acceptance to Waterflai starting to run it. */
  readonly runStartMs: number;
}

export interface RealRunOutput {
  readonly bootMs: number;
  readonly runMs: number;
  readonly counts: readonly RealRunCount[];
  readonly statusReads: number;
  readonly streamOpens: number;
}

const input = JSON.parse(process.argv[2] ?? '{}') as RealRunInput;
// The runtime tells the poll function its time scale (it reasons in job time).
const { startLocalRuntime } = await import('../local/runtime/runtime');

const bootStart = Date.now();
const runtime = await startLocalRuntime({
  timeScale: input.timeScale,
  dynamodb: 'dynalite',
  waterflaiFromEnvironment: false,
  simulator: { seed: 7 },
});
const bootMs = Date.now() - bootStart;
try {
  const runStart = Date.now();
  for (const job of input.jobs) {
    const simulate = {
      duration_ms: Math.round(job.durationSeconds * 1000),
      queue_ms: Math.round(job.queueSeconds * 1000),
      nodes: job.nodes,
      progress: job.shape,
    };
    await runtime.sendMessage(JSON.stringify({ job_id: job.id, chatbot_id: 'bench-bot', input_data: { query: 'bench', simulate } }));
  }
  const terminal = new Set<string>(TERMINAL_STATUSES);
  const deadline = Date.now() + input.timeoutSeconds * 1000;
  for (;;) {
    const records = await Promise.all(input.jobs.map((job) => runtime.getJob(job.id)));
    const executions = runtime.stepFunctions.executions();
    const allDone =
      records.every((record) => record !== undefined && terminal.has(record.status)) &&
      executions.length >= input.jobs.length &&
      executions.every((execution) => execution.status !== 'RUNNING');
    if (allDone) break;
    if (Date.now() > deadline) throw new Error(`the real run did not finish within ${input.timeoutSeconds} s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const runMs = Date.now() - runStart;
  const executions = runtime.stepFunctions.executions();
  const counts: RealRunCount[] = [];
  for (const job of input.jobs) {
    const record = await runtime.getJob(job.id);
    const mine = executions.filter(
      (execution) => execution.executionArn === record?.state_machine_execution_arn || execution.name.includes(job.id),
    );
    const acceptedMs = Date.parse(record?.accepted_at ?? '');
    const loopStart = Math.min(...mine.map((execution) => execution.startDate));
    const startedAt = record?.execution_id === undefined ? null : (runtime.simulator?.execution(record.execution_id)?.started_at ?? null);
    counts.push({
      id: job.id,
      loopStartMs: loopStart - acceptedMs,
      runStartMs: startedAt === null ? Number.NaN : Date.parse(startedAt) - acceptedMs,
      status: record?.status ?? 'MISSING',
      pollInvocations: mine.reduce((sum, execution) => sum + (execution.taskInvocations[STATE_NAME.POLL] ?? 0), 0),
      recordedPolls: Number(record?.polls ?? 0),
      finishInvocations: mine.reduce((sum, execution) => sum + (execution.taskInvocations[STATE_NAME.FINISH] ?? 0), 0),
    });
  }
  const stats = runtime.simulator?.stats();
  const output: RealRunOutput = { bootMs, runMs, counts, statusReads: stats?.by_route.get ?? 0, streamOpens: stats?.by_route.stream ?? 0 };
  process.stdout.write(`${JSON.stringify(output)}\n`);
} finally {
  await runtime.close();
}
