/**
 * `npm run bench`: replays the seeded reference set of job traces through every polling
 * strategy in virtual time (the strategy code the poll Lambda runs), costs each with the
 * state machine shape read from the synthesized template and public prices, and prints
 * one table with the strategies side by side. Then: the Lambda bundles' sizes and import
 * times, the start handler's CPU time per message, and a short time-scaled run of real
 * jobs on the local runtime that checks the replay's poll and transition counts.
 *
 *   npm run bench                      # everything (about two minutes on 2 cores)
 *   npm run bench -- --json out.json   # also write the figures as JSON
 *   npm run bench -- --seed 7          # another reference set (held-out check)
 *   npm run bench -- --skip-real --skip-bundles
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { ENV } from '../lambdas/contract/constants';
import { readPollSettings } from '../lambdas/platform/env';
import {
  adaptiveStrategy,
  DEFAULT_ADAPTIVE_SETTINGS,
  DEFAULT_EXPONENTIAL_SETTINGS,
  exponentialStrategy,
  fixedIntervalStrategy,
  type PollStrategy,
} from '../lambdas/domain/poll-strategy';
import { synthesizeTemplate } from '../local/asl';
import { BUNDLE_DIR, measureBundles, pollPeakRssMb, type BundleFigure } from './bundles';
import { PRICES, summarise, type StrategySummary } from './metrics';
import type { RealRunInput, RealRunOutput } from './real-run';
import { REPLAY_MODEL, replayJob } from './replay';
import { loopShape, type LoopShape } from './shape';
import { buildTrace, REFERENCE_SET, referenceSet, SHAPES, type JobTrace } from './traces';

const run = promisify(execFile);

const { values: args } = parseArgs({
  options: {
    json: { type: 'string' },
    seed: { type: 'string' },
    'skip-real': { type: 'boolean', default: false },
    'skip-bundles': { type: 'boolean', default: false },
  },
  allowPositionals: false,
});

/** Targets of the shipped default strategy (issue #5). */
const TARGETS = { latencyP95Seconds: 2, historyEventsPerHour: 100, bundleBytes: 300 * 1024 } as const;
/** The real run: jobs, time scale and tolerance. */
const REAL_RUN = {
  timeScale: 0.05,
  durationsSeconds: [20, 120, 600, 1800],
  tolerance: 0.05,
  timeoutSeconds: 240,
} as const;

function log(line = ''): void {
  process.stdout.write(`${line}\n`);
}

function pollEnvironment(template: ReturnType<typeof synthesizeTemplate>, shape: LoopShape): Record<string, string | undefined> {
  const variables =
    (template.Resources?.[shape.poll.logicalId]?.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined)
      ?.Variables ?? {};
  const env: Record<string, string | undefined> = {};
  for (const name of [ENV.POLL_INTERVAL_SECONDS, ENV.POLL_MIN_SECONDS, ENV.POLL_MAX_SECONDS]) {
    const value = variables[name];
    if (typeof value === 'string') env[name] = value;
  }
  return env;
}

// ---------------------------------------------------------------------------------------
// Table
// ---------------------------------------------------------------------------------------

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

function thousands(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a';
}

function printTable(summaries: readonly StrategySummary[]): void {
  const rows: Array<[string, (s: StrategySummary) => string]> = [
    ['polls / job', (s) => fixed(s.pollsPerJob, 1)],
    ['  of which listened on the stream', (s) => fixed(s.listensPerJob, 1)],
    ['state transitions / job', (s) => fixed(s.transitionsPerJob, 1)],
    ['poll Lambda GB-s / job', (s) => fixed(s.lambdaGbSecondsPerJob, 3)],
    ['  seconds listening / job', (s) => fixed(s.listenSecondsPerJob, 0)],
    ['DynamoDB writes / job', (s) => fixed(s.dynamoWritesPerJob, 1)],
    ['$ per 1M jobs', (s) => `$${thousands(s.usdPerMillionJobs)}`],
    ['detection latency p50 (s)', (s) => fixed(s.latency.p50, 2)],
    ['detection latency p95 (s)', (s) => fixed(s.latency.p95, 2)],
    ['detection latency max (s)', (s) => fixed(s.latency.max, 1)],
    ['latency p50 (% of duration)', (s) => fixed(s.latencyPercent.p50, 2)],
    ['latency p95 (% of duration)', (s) => fixed(s.latencyPercent.p95, 2)],
    ['latency max (% of duration)', (s) => fixed(s.latencyPercent.max, 1)],
    ['max history events / hour', (s) => thousands(s.maxHistoryEventsPerHour)],
  ];
  const names = summaries.map((s) => (s.isDefault ? `${s.name} *` : s.name));
  const labelWidth = Math.max(...rows.map(([label]) => label.length));
  const widths = names.map((name, i) => Math.max(name.length, ...rows.map(([, cell]) => cell(summaries[i]!).length)));
  const line = (label: string, cells: readonly string[]): string =>
    `${label.padEnd(labelWidth)}  ${cells.map((cell, i) => cell.padStart(widths[i]!)).join('  ')}`;
  log(line('', names));
  log(
    line(
      '',
      widths.map((w) => '-'.repeat(w)),
    ),
  );
  for (const [label, cell] of rows) log(line(label, summaries.map(cell)));
  log('* the shipped default');
}

// ---------------------------------------------------------------------------------------
// Real run
// ---------------------------------------------------------------------------------------

/** The real run's jobs: every shape at a few durations, without noise (the simulator's own shapes). */
function realRunTraces(): JobTrace[] {
  const traces: JobTrace[] = [];
  let i = 0;
  for (const shape of SHAPES) {
    for (const duration of REAL_RUN.durationsSeconds) {
      i += 1;
      traces.push(buildTrace(`real-${shape}-${duration}`, shape, duration, 3 + (i % 6), 1 + (i % 4), () => 0.5, 0));
    }
  }
  return traces;
}

async function realRun(strategy: PollStrategy, shape: LoopShape, seed: number): Promise<boolean> {
  const traces = realRunTraces();
  const input: RealRunInput = {
    timeScale: REAL_RUN.timeScale,
    timeoutSeconds: REAL_RUN.timeoutSeconds,
    jobs: traces.map((t) => ({
      id: t.id,
      shape: t.shape,
      durationSeconds: t.durationSeconds,
      queueSeconds: t.queueSeconds,
      nodes: t.nodes,
    })),
  };
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', new URL('./real-run.ts', import.meta.url).pathname, JSON.stringify(input)],
    {
      timeout: (REAL_RUN.timeoutSeconds + 120) * 1000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT' },
    },
  );
  const output = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as RealRunOutput;
  // Replay the same jobs with the start offsets the real run had (intake and Step Functions
  // start latency, in job time), so the comparison checks the strategy and the loop.
  const replayed = traces.map((trace, i) => {
    const count = output.counts[i];
    const runStart =
      count === undefined || !Number.isFinite(count.runStartMs) ? trace.queueSeconds : count.runStartMs / 1000 / REAL_RUN.timeScale;
    const loopStart =
      count === undefined || !Number.isFinite(count.loopStartMs) ? 0 : Math.max(0, count.loopStartMs / 1000 / REAL_RUN.timeScale);
    const aligned = buildTrace(trace.id, trace.shape, trace.durationSeconds, trace.nodes, runStart, () => 0.5, 0);
    return replayJob(strategy, aligned, shape, seed, loopStart);
  });
  const realPolls = output.counts.reduce((sum, c) => sum + c.pollInvocations, 0);
  const replayPolls = replayed.reduce((sum, r) => sum + r.polls, 0);
  const realFinishes = output.counts.reduce((sum, c) => sum + c.finishInvocations, 0);
  const realTransitions = realPolls * shape.transitionsPerIteration + realFinishes * shape.transitionsToFinish;
  const replayTransitions = replayPolls * shape.transitionsPerIteration + traces.length * shape.transitionsToFinish;
  const completed = output.counts.filter((c) => c.status === 'COMPLETED').length;
  const pollsOff = Math.abs(realPolls - replayPolls) / Math.max(1, replayPolls);
  const transitionsOff = Math.abs(realTransitions - replayTransitions) / Math.max(1, replayTransitions);
  log(
    `Real jobs on the local runtime (time scale ${REAL_RUN.timeScale}, ${traces.length} jobs of ${REAL_RUN.durationsSeconds.join(' / ')} s x ${SHAPES.length} shapes, ` +
      `${completed}/${traces.length} COMPLETED, booted in ${(output.bootMs / 1000).toFixed(1)} s, ran ${(output.runMs / 1000).toFixed(1)} s):`,
  );
  log(`  ${'job'.padEnd(26)} ${'real polls'.padStart(10)} ${'replay polls'.padStart(12)}`);
  for (const [i, count] of output.counts.entries()) {
    log(`  ${count.id.padEnd(26)} ${String(count.pollInvocations).padStart(10)} ${String(replayed[i]?.polls ?? 'n/a').padStart(12)}`);
  }
  log(
    `  total polls: real ${realPolls}, replay ${replayPolls} (${(pollsOff * 100).toFixed(1)}% apart); ` +
      `state transitions: real ${realTransitions}, replay ${replayTransitions} (${(transitionsOff * 100).toFixed(1)}% apart); ` +
      `${output.statusReads} status reads, ${output.streamOpens} streams opened`,
  );
  const ok = completed === traces.length && pollsOff <= REAL_RUN.tolerance && transitionsOff <= REAL_RUN.tolerance;
  log(`  ${ok ? 'OK' : 'MISMATCH'}: the replay ${ok ? 'matches' : 'does not match'} the real run within ${REAL_RUN.tolerance * 100}%`);
  return ok;
}

// ---------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------

const started = performance.now();
const seed = args.seed === undefined ? REFERENCE_SET.seed : Number(args.seed);
if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${args.seed}`);

const template = synthesizeTemplate();
const shape = loopShape(template);
const pollSettings = readPollSettings(pollEnvironment(template, shape));
const traces = referenceSet({ seed });

const strategies: Array<{ strategy: PollStrategy; isDefault: boolean }> = [
  { strategy: fixedIntervalStrategy({ intervalSeconds: 10, minSeconds: 1, maxSeconds: 300 }), isDefault: false },
  { strategy: fixedIntervalStrategy({ intervalSeconds: 30, minSeconds: 1, maxSeconds: 300 }), isDefault: false },
  { strategy: exponentialStrategy(DEFAULT_EXPONENTIAL_SETTINGS), isDefault: false },
  // Exactly what the poll Lambda builds from its environment in the synthesized template.
  { strategy: adaptiveStrategy({ ...DEFAULT_ADAPTIVE_SETTINGS, ...pollSettings }, 'ours'), isDefault: true },
];

log('Waterflai poll strategies: replay of the reference set in virtual time');
log(
  `Reference set: ${traces.length} jobs (seed ${seed}), ${REFERENCE_SET.perShape} per shape (${SHAPES.join(', ')}), ` +
    `running ${REFERENCE_SET.minSeconds} s to ${REFERENCE_SET.maxSeconds / 3600} h (stratified log-uniform), ${REFERENCE_SET.minNodes}-${REFERENCE_SET.maxNodes} nodes, ` +
    `node weights x exp(${REFERENCE_SET.weightNoiseSigma} N(0,1)), queued ${REFERENCE_SET.minQueueSeconds}-${REFERENCE_SET.maxQueueSeconds} s.`,
);
log(
  `State machine (synthesized): one poll = ${shape.iterationStates.join(' -> ')} = ${shape.transitionsPerIteration} transitions, ` +
    `${shape.historyEventsPerIteration} history events; finishing = ${shape.finishStates.join(' -> ')} = ${shape.transitionsToFinish} transitions, ` +
    `${shape.historyEventsFixed} events with ExecutionStarted/Succeeded. Poll Lambda ${shape.poll.memoryMb} MB, ${shape.poll.timeoutSeconds} s timeout; ` +
    `finish Lambda ${shape.finish.memoryMb} MB.`,
);
log(
  `Prices: $${PRICES.transition * 1000}/1k transitions, $${PRICES.lambdaRequest * 1e6}/M Lambda requests + $${PRICES.lambdaGbSecond}/GB-s (arm64), ` +
    `$${PRICES.dynamoWrite * 1e6}/M DynamoDB writes, $${PRICES.event * 1e6}/M events. Modelled: status read ${REPLAY_MODEL.getSeconds} s, ` +
    `stream event delay ${REPLAY_MODEL.streamDelaySeconds} s, outcome event ${REPLAY_MODEL.finishSeconds} s after the poll returns. ` +
    `Latency = end of the job in Waterflai -> outcome event. History events/hour = most events in any hour of a job (the whole job when shorter).`,
);
log(
  `Ours runs with pollIntervalSeconds/pollMinSeconds/pollMaxSeconds = ${pollSettings.intervalSeconds}/${pollSettings.minSeconds}/${pollSettings.maxSeconds} (the deployed defaults).`,
);
log();

const summaries = strategies.map(({ strategy, isDefault }) => summarise(strategy, isDefault, traces, shape, seed));
printTable(summaries);
log();

const ours = summaries.find((s) => s.isDefault)!;
const exponential = summaries.find((s) => s.name === exponentialStrategy().name)!;
const fixed10 = summaries.find((s) => s.name.startsWith('fixed 10'))!;
const checks: Array<[string, boolean, string]> = [
  [
    'cost per job <= exponential',
    ours.usdPerMillionJobs <= exponential.usdPerMillionJobs,
    `$${thousands(ours.usdPerMillionJobs)} vs $${thousands(exponential.usdPerMillionJobs)} per 1M jobs`,
  ],
  [
    'p95 latency <= 2 s and < fixed 10 s',
    ours.latency.p95 <= TARGETS.latencyP95Seconds && ours.latency.p95 < fixed10.latency.p95,
    `${fixed(ours.latency.p95, 2)} s vs ${fixed(fixed10.latency.p95, 2)} s`,
  ],
  [
    '<= 100 history events per hour of job time',
    ours.maxHistoryEventsPerHour <= TARGETS.historyEventsPerHour,
    `${ours.maxHistoryEventsPerHour} at most`,
  ],
];
log('Targets (ours, the shipped default):');
for (const [name, ok, detail] of checks) log(`  ${ok ? 'MET    ' : 'NOT MET'}  ${name}: ${detail}`);
const late = ours.runs.filter((r) => r.latencySeconds > TARGETS.latencyP95Seconds);
log(
  `  ours detected ${ours.runs.length - late.length}/${ours.runs.length} jobs within ${TARGETS.latencyP95Seconds} s; later: ${late.map((r) => `${r.trace.id} (${r.trace.durationSeconds.toFixed(0)} s) ${r.latencySeconds.toFixed(0)} s`).join(', ') || 'none'}`,
);
log();

let bundles: BundleFigure[] = [];
let startCpu: { messages: number; cpuMicrosPerMessage: number; wallMicrosPerMessage: number } | undefined;
let pollRssMb: number | undefined;
if (!args['skip-bundles']) {
  bundles = await measureBundles({ runs: 5 });
  log('Lambda bundles (esbuild with the options of lib/handler-function.ts; import = median of 5 fresh Node processes):');
  for (const b of bundles) {
    const verdict = b.bytes <= TARGETS.bundleBytes ? 'MET' : `NOT MET (+${thousands((b.bytes - TARGETS.bundleBytes) / 1024)} KiB)`;
    log(
      `  ${b.name.padEnd(16)} ${thousands(b.bytes).padStart(9)} bytes  import ${fixed(b.importMs, 0).padStart(4)} ms  <= 300 KiB: ${verdict}  largest: ${b.topPackages.map(([name, bytes]) => `${name} ${Math.round(bytes / 1024)} KiB`).join(', ')}`,
    );
  }
  const pollBundle = join(BUNDLE_DIR, 'poll', 'index.mjs');
  const memory = await pollPeakRssMb(pollBundle, shape.poll.memoryMb);
  pollRssMb = memory.listenPeakMb;
  log(
    `Poll function memory (${shape.poll.memoryMb} MB, heap flags as Lambda sets them): RSS ${fixed(memory.afterImportMb, 0)} MB after importing the bundle ` +
      `(peak during the import ${fixed(memory.importPeakMb, 0)} MB); peak ${fixed(memory.listenPeakMb, 0)} MB while listening to 1,000 events (0.5 KiB each, at wire speed) and a 1 MiB execution_completed.`,
  );
  const { stdout } = await run(process.execPath, ['--import', 'tsx', new URL('./start-cpu.ts', import.meta.url).pathname, '200'], {
    timeout: 120_000,
    env: { PATH: process.env.PATH ?? '' },
  });
  startCpu = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as typeof startCpu;
  log(
    `Start handler with mocked clients: ${fixed(startCpu!.cpuMicrosPerMessage, 0)} us CPU per message (${fixed(startCpu!.wallMicrosPerMessage, 0)} us wall), over ${startCpu!.messages} messages in batches of 10 after a warm-up.`,
  );
  log();
}

let realOk: boolean | undefined;
if (!args['skip-real']) realOk = await realRun(strategies.find((s) => s.isDefault)!.strategy, shape, seed);

if (args.json !== undefined) {
  const json = {
    seed,
    jobs: traces.length,
    strategies: summaries.map((s) => ({
      name: s.name,
      default: s.isDefault,
      polls_per_job: s.pollsPerJob,
      transitions_per_job: s.transitionsPerJob,
      lambda_gb_seconds_per_job: s.lambdaGbSecondsPerJob,
      dynamodb_writes_per_job: s.dynamoWritesPerJob,
      usd_per_million_jobs: s.usdPerMillionJobs,
      latency_p50_s: s.latency.p50,
      latency_p95_s: s.latency.p95,
      latency_max_s: s.latency.max,
      max_history_events_per_hour: s.maxHistoryEventsPerHour,
    })),
    bundles: bundles.map((b) => ({ name: b.name, bytes: b.bytes, import_ms: b.importMs })),
    ...(startCpu === undefined ? {} : { start_handler_cpu_us_per_message: startCpu.cpuMicrosPerMessage }),
    ...(pollRssMb === undefined ? {} : { poll_peak_rss_mb: pollRssMb }),
    ...(realOk === undefined ? {} : { real_run_matches: realOk }),
  };
  await writeFile(args.json, `${JSON.stringify(json, null, 2)}\n`);
  log(`Wrote ${args.json}`);
}
log(`Done in ${((performance.now() - started) / 1000).toFixed(0)} s.`);
