/**
 * `npm run chaos`: N jobs through the local runtime under a seeded fault mix, then the
 * invariants. `npm run chaos -- --help` lists the options and exit codes.
 */
import '../polyfills';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { DynamoDbEngineChoice } from '../emulators/dynamodb';
import { RuntimeBootError } from '../runtime/runtime';
import { parseTimeScale } from '../emulators/time-scale';
import { FINISHED_CANCEL_ANSWERS, type FinishedCancelAnswer } from '../simulator/server';
import { DEFAULT_FAULT_MIX, DEFAULT_INCIDENTS, DEFAULT_OUTAGE, NO_FAULTS, NO_INCIDENTS, type FaultMix } from './faults';
import { chaosJson, chaosTable, reportedLines, violationLines } from './report';
import { CHAOS_DEFAULTS, runChaos } from './run';

export const EXIT_CODE = { OK: 0, VIOLATIONS: 1, USAGE: 2, BOOT_FAILED: 3, INTERNAL: 4 } as const;

const USAGE = `Usage: npm run chaos -- [options]

Runs N jobs through the local runtime (everything on 127.0.0.1) under a seeded fault mix
(local/chaos/README.md), waits until every job reached a terminal outcome, checks the
invariants and prints one table.

Options:
  --jobs N           number of jobs (default ${CHAOS_DEFAULTS.jobs}); about 2% invalid messages come on top
  --seed N           seed of the plan and of every fault (default ${CHAOS_DEFAULTS.seed})
  --json FILE        also write the figures as JSON to FILE
  --time-scale X     scale of poll waits, retry intervals and simulated durations (default ${CHAOS_DEFAULTS.timeScale})
  --rate N           job messages sent per second (default ${CHAOS_DEFAULTS.rate})
  --timeout SECONDS  give up waiting after this long, boot included (default ${CHAOS_DEFAULTS.timeoutSeconds})
  --no-faults        the same plan without any injected fault or incident (a baseline)
  --no-incidents     the fault mix without the outage and the key rotation
  --outage-seconds S length of the outage of Waterflai's status/cancel/stream routes
                     (default ${DEFAULT_OUTAGE.durationMs / 1000}; 0 = no outage)
  --finished-cancel A[,B]  how the simulator answers a DELETE of a finished execution:
                     ${FINISHED_CANCEL_ANSWERS.join(', ')} (default: all four, drawn per request)
  --settle SECONDS   once every job has its outcome, wait up to this long for pending
                     upstream cancels (the sweeper) before the checks (default ${CHAOS_DEFAULTS.upstreamSettleSeconds})
  --dynamodb ENGINE  auto | local | dynalite (default auto)
  --log-level LEVEL  the handlers' log level (default SILENT)
  -h, --help         show this help

Exit codes:
  0  every invariant held (crash-window duplicate executions are reported, not failed;
     orphaned_executions and outcome_upstream_mismatches are 0)
  1  an invariant failed (the violations are listed on stderr; --json has each job's
     trace: the faults injected, conditional-check failures, deliveries, Waterflai requests)
  2  bad arguments
  3  a local service failed to start
  4  an unexpected error
`;

function positiveInteger(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number < 1)
    throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return number;
}

function nonNegativeInteger(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number))
    throw new UsageError(`--${name} must be an integer >= 0, got ${JSON.stringify(value)}`);
  return number;
}

/** The fault mix the options ask for. */
function faultMix(args: {
  'no-faults'?: boolean;
  'no-incidents'?: boolean;
  'outage-seconds'?: string;
  'finished-cancel'?: string;
}): FaultMix {
  if (args['no-faults']) return NO_FAULTS;
  const outageSeconds = nonNegativeInteger('outage-seconds', args['outage-seconds'], DEFAULT_OUTAGE.durationMs / 1000);
  let finishedCancelAnswer: FinishedCancelAnswer | FinishedCancelAnswer[] | undefined;
  if (args['finished-cancel'] !== undefined) {
    const answers = args['finished-cancel'].split(',').map((raw) => {
      const answer = FINISHED_CANCEL_ANSWERS.find((candidate) => String(candidate) === raw.trim());
      if (answer === undefined)
        throw new UsageError(
          `--finished-cancel must list some of ${FINISHED_CANCEL_ANSWERS.join(', ')}, got ${JSON.stringify(args['finished-cancel'])}`,
        );
      return answer;
    });
    finishedCancelAnswer = answers.length === 1 ? answers[0] : answers;
  }
  const incidents = args['no-incidents']
    ? NO_INCIDENTS
    : {
        ...DEFAULT_INCIDENTS,
        outages: outageSeconds === 0 ? [] : DEFAULT_INCIDENTS.outages.map((outage) => ({ ...outage, durationMs: outageSeconds * 1000 })),
      };
  return {
    ...DEFAULT_FAULT_MIX,
    waterflai: { ...DEFAULT_FAULT_MIX.waterflai, ...(finishedCancelAnswer === undefined ? {} : { finishedCancelAnswer }) },
    incidents,
  };
}

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        jobs: { type: 'string' },
        seed: { type: 'string' },
        json: { type: 'string' },
        'time-scale': { type: 'string' },
        rate: { type: 'string' },
        timeout: { type: 'string' },
        'no-faults': { type: 'boolean' },
        'no-incidents': { type: 'boolean' },
        'outage-seconds': { type: 'string' },
        'finished-cancel': { type: 'string' },
        settle: { type: 'string' },
        dynamodb: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return EXIT_CODE.USAGE;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return EXIT_CODE.OK;
  }
  let options;
  try {
    const dynamodb = args.dynamodb ?? 'auto';
    if (!['auto', 'local', 'dynalite'].includes(dynamodb))
      throw new UsageError(`--dynamodb must be auto, local or dynalite, got ${JSON.stringify(dynamodb)}`);
    let timeScale: number = CHAOS_DEFAULTS.timeScale;
    if (args['time-scale'] !== undefined) {
      try {
        timeScale = parseTimeScale(args['time-scale']);
      } catch (error) {
        throw new UsageError(`--time-scale: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    const seed = args.seed === undefined ? CHAOS_DEFAULTS.seed : Number(args.seed);
    if (!/^\d+$/.test(args.seed ?? '0') || !Number.isSafeInteger(seed) || seed > 0xffffffff)
      throw new UsageError(`--seed must be an integer from 0 to 4294967295, got ${JSON.stringify(args.seed)}`);
    options = {
      jobs: positiveInteger('jobs', args.jobs, CHAOS_DEFAULTS.jobs),
      seed,
      timeScale,
      rate: positiveInteger('rate', args.rate, CHAOS_DEFAULTS.rate),
      timeoutSeconds: positiveInteger('timeout', args.timeout, CHAOS_DEFAULTS.timeoutSeconds),
      faults: faultMix(args),
      upstreamSettleSeconds: nonNegativeInteger('settle', args.settle, CHAOS_DEFAULTS.upstreamSettleSeconds),
      dynamodb: (dynamodb === 'local' ? 'dynamodb-local' : dynamodb) as DynamoDbEngineChoice,
      logLevel: args['log-level'] ?? 'SILENT',
    };
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${error.message}\n\n${USAGE}`);
    return EXIT_CODE.USAGE;
  }

  const incidents = options.faults.incidents ?? NO_INCIDENTS;
  const incidentNote = [
    ...incidents.outages.map((outage) => `a ${outage.durationMs / 1000} s outage of ${outage.routes.join(',')}`),
    ...incidents.keyRotations.map(() => 'a key rotation'),
  ].join(', ');
  process.stderr.write(
    `chaos: ${options.jobs} jobs, seed ${options.seed}, time scale ${options.timeScale}, ${options.rate} jobs/s${args['no-faults'] ? ', no faults' : ''}${incidentNote === '' ? '' : `, ${incidentNote}`}\n`,
  );
  let lastProgress = 0;
  let result;
  try {
    result = await runChaos({
      ...options,
      onNote: (note) => {
        if (note.startsWith('warning')) process.stderr.write(`  ${note}\n`);
      },
      onProgress: (progress) => {
        if (progress.elapsedMs - lastProgress < 10_000) return;
        lastProgress = progress.elapsedMs;
        process.stderr.write(
          `  ${Math.round(progress.elapsedMs / 1000)} s: sent ${progress.sent}/${progress.messages} messages, ${progress.finished}/${progress.jobs} jobs finished, ` +
            `${progress.intake} in the intake queue${progress.intake > 0 ? ` ${JSON.stringify(progress.intakeStates)}` : ''}, ${progress.running} poll loops running` +
            `${progress.openUpstreamCancels > 0 ? `, ${progress.openUpstreamCancels} upstream cancels pending` : ''}\n`,
        );
      },
    });
  } catch (error) {
    if (error instanceof RuntimeBootError) {
      process.stderr.write(`error: ${error.message}\n`);
      return EXIT_CODE.BOOT_FAILED;
    }
    throw error;
  }
  process.stdout.write(`${chaosTable(result)}\n`);
  const lines = [...violationLines(result), ...reportedLines(result)];
  if (lines.length > 0) process.stderr.write(`${lines.join('\n')}\n`);
  if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(chaosJson(result), null, 2)}\n`);
  return result.violations === 0 ? EXIT_CODE.OK : EXIT_CODE.VIOLATIONS;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Everything is closed by now; a stray handle must not keep the process alive.
    setTimeout(() => process.exit(code), 3_000).unref();
  },
  (error: unknown) => {
    process.stderr.write(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(EXIT_CODE.INTERNAL);
  },
);
