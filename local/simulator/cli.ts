import { parseArgs } from 'node:util';
import type { FaultKind, FaultSettings, FinishedCancelAnswer, OutageAnswer, OutageWindow, RouteName } from './faults';
import { FINISHED_CANCEL_ANSWERS, OUTAGE_ANSWERS, ROUTE_NAMES } from './faults';
import type { Scenario } from './scenario';
import { PROGRESS_SHAPES, SCENARIO_OUTCOMES } from './scenario';
import { DEFAULT_SIMULATOR_API_KEY, type SimulatorOptions } from './server';

export const DEFAULT_CLI_PORT = 8787;

/** CLI flag -> fault kind for the probability flags. */
const FAULT_FLAGS = {
  'fault-5xx': 'error5xx',
  'fault-429': 'rateLimit',
  'fault-reset': 'reset',
  'fault-slow': 'slow',
  'fault-hang': 'hang',
  'fault-malformed': 'malformedJson',
  'fault-unknown-status': 'unknownStatus',
  'fault-regression': 'statusRegression',
  'fault-accept-then-fail': 'acceptThenFail',
  'fault-refuse-cancel': 'refuseCancel',
} as const satisfies Record<string, FaultKind>;

export const USAGE = `Usage: npm run simulator -- [options]

A local Waterflai async-execution API on 127.0.0.1 (see local/simulator/README.md).

Server:
  --port N                    TCP port (default ${DEFAULT_CLI_PORT}; 0 = any free port)
  --api-key K                 accepted X-API-Key (default: $WATERFLAI_API_KEY, else '${DEFAULT_SIMULATOR_API_KEY}')
  --seed N                    seed of every random choice (default: random, printed at start)
  --time-scale X              multiply every scenario duration by X (default 1; 0.1 = 10x faster)
  --known-chatbots a,b        only these chatbot ids exist (others: 404); default: any
  --quiet                     no per-request log lines

Default scenario (a job's input_data.simulate overrides it):
  --duration-ms N             running time (default 2000)
  --queue-ms N                pending time (default 200)
  --nodes N                   number of nodes (default 4)
  --outcome O                 ${SCENARIO_OUTCOMES.join(' | ')} (default completed)
  --progress P                ${PROGRESS_SHAPES.join(' | ')} (default linear)
  --output-bytes N            size of the generated final_output

Faults (probability 0..1 per request, drawn from the seeded generator):
  --fault-5xx P               500/502/503
  --fault-429 P               429 with Retry-After
  --fault-reset P             connection reset, no answer
  --fault-slow P              answer after --slow-ms
  --fault-hang P              never answer
  --fault-malformed P         200 with truncated JSON
  --fault-unknown-status P    GET reports status QUEUED_FOR_REVIEW
  --fault-regression P        GET reports an earlier status than the real one
  --fault-accept-then-fail P  POST creates the execution, then answers 500 or resets
  --fault-refuse-cancel P     DELETE of an unfinished execution answers 200 cancelled:false, cancels nothing
  --fault-routes a,b          limit faults to routes: ${ROUTE_NAMES.join(',')}
  --slow-ms N                 delay of slow answers (default 2000)
  --retry-after N             Retry-After seconds of 429 answers (default 1)
  --retry-after-format F      seconds | http-date (default seconds)

Incidents and contract readings:
  --outage-at MS              an outage begins MS real ms after start (with --outage-for)
  --outage-for MS             how long the outage lasts (real ms)
  --outage-routes a,b         routes the outage affects (default all: ${ROUTE_NAMES.join(',')})
  --outage-answers a,b        how requests fail, equally often: ${OUTAGE_ANSWERS.join(',')} (default error5xx = 503)
  --finished-cancel A[,B]     answer to a DELETE of a finished execution: ${FINISHED_CANCEL_ANSWERS.join(' | ')} (default 409; a list = drawn per request)

  -h, --help                  show this help
`;

export type CliResult = { help: true } | { help: false; options: SimulatorOptions & { port: number; apiKey: string }; quiet: boolean };

function number(flag: string, raw: string | undefined, check: (n: number) => boolean, expectation: string): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value) || !check(value)) {
    throw new Error(`--${flag} must be ${expectation}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function oneOf<T extends string>(flag: string, raw: string | undefined, allowed: readonly T[]): T | undefined {
  if (raw === undefined) return undefined;
  const found = allowed.find((a) => a === raw);
  if (found === undefined) throw new Error(`--${flag} must be one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
  return found;
}

function list(raw: string | undefined): string[] | undefined {
  return raw === undefined
    ? undefined
    : raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
}

/**
 * Parses the simulator's command line.
 * @throws Error with a message naming the bad flag
 */
export function parseSimulatorArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): CliResult {
  const stringFlags = [
    'port',
    'api-key',
    'seed',
    'time-scale',
    'known-chatbots',
    'duration-ms',
    'queue-ms',
    'nodes',
    'outcome',
    'progress',
    'output-bytes',
    ...Object.keys(FAULT_FLAGS),
    'fault-routes',
    'slow-ms',
    'retry-after',
    'retry-after-format',
    'outage-at',
    'outage-for',
    'outage-routes',
    'outage-answers',
    'finished-cancel',
  ];
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      ...Object.fromEntries(stringFlags.map((f) => [f, { type: 'string' as const }])),
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  // The option table is built dynamically, so parseArgs cannot type the string flags by name.
  const loose = values as Record<string, unknown>;
  const str = (flag: string): string | undefined => {
    const v = loose[flag];
    return typeof v === 'string' ? v : undefined;
  };
  if (values.help === true) return { help: true };

  const nonNegative = (n: number): boolean => n >= 0;
  const nonNegativeInt = (n: number): boolean => Number.isInteger(n) && n >= 0;
  const probability = (n: number): boolean => n >= 0 && n <= 1;

  const port = number('port', str('port'), (n) => Number.isInteger(n) && n >= 0 && n <= 65535, 'a port number 0-65535') ?? DEFAULT_CLI_PORT;
  const apiKey = str('api-key') ?? (env.WATERFLAI_API_KEY || undefined) ?? DEFAULT_SIMULATOR_API_KEY;
  const seed = number('seed', str('seed'), (n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32, 'an integer 0..2^32-1');
  const timeScale = number('time-scale', str('time-scale'), nonNegative, 'a number >= 0');

  const defaults: Partial<Scenario> = {};
  const durationMs = number('duration-ms', str('duration-ms'), nonNegative, 'a number of ms >= 0');
  if (durationMs !== undefined) defaults.duration_ms = durationMs;
  const queueMs = number('queue-ms', str('queue-ms'), nonNegative, 'a number of ms >= 0');
  if (queueMs !== undefined) defaults.queue_ms = queueMs;
  const nodes = number('nodes', str('nodes'), (n) => Number.isInteger(n) && n >= 1, 'an integer >= 1');
  if (nodes !== undefined) defaults.nodes = nodes;
  const outcome = oneOf('outcome', str('outcome'), SCENARIO_OUTCOMES);
  if (outcome !== undefined) defaults.outcome = outcome;
  const progress = oneOf('progress', str('progress'), PROGRESS_SHAPES);
  if (progress !== undefined) defaults.progress = progress;
  const outputBytes = number('output-bytes', str('output-bytes'), nonNegativeInt, 'an integer >= 0');
  if (outputBytes !== undefined) defaults.output_bytes = outputBytes;

  const faults: FaultSettings = {};
  for (const [flag, kind] of Object.entries(FAULT_FLAGS)) {
    const p = number(flag, str(flag), probability, 'a probability 0..1');
    if (p !== undefined) faults[kind] = p;
  }
  const routes = list(str('fault-routes'));
  if (routes !== undefined) {
    faults.routes = routes.map((r) => {
      const route = oneOf<RouteName>('fault-routes', r, ROUTE_NAMES);
      if (route === undefined) throw new Error('--fault-routes: empty route');
      return route;
    });
  }
  const slowMs = number('slow-ms', str('slow-ms'), nonNegative, 'a number of ms >= 0');
  if (slowMs !== undefined) faults.slowMs = slowMs;
  const retryAfter = number('retry-after', str('retry-after'), nonNegativeInt, 'an integer number of seconds >= 0');
  if (retryAfter !== undefined) faults.retryAfterSeconds = retryAfter;
  const retryAfterFormat = oneOf('retry-after-format', str('retry-after-format'), ['seconds', 'http-date'] as const);
  if (retryAfterFormat !== undefined) faults.retryAfterFormat = retryAfterFormat;

  const outageAt = number('outage-at', str('outage-at'), nonNegative, 'a number of ms >= 0');
  const outageFor = number('outage-for', str('outage-for'), nonNegative, 'a number of ms >= 0');
  const outageRoutes = list(str('outage-routes'));
  const outageAnswers = list(str('outage-answers'));
  if (outageFor === undefined && (outageAt !== undefined || outageRoutes !== undefined || outageAnswers !== undefined)) {
    throw new Error('--outage-at, --outage-routes and --outage-answers need --outage-for');
  }
  if (outageFor !== undefined) {
    const outage: OutageWindow = { startMs: outageAt ?? 0, durationMs: outageFor };
    if (outageRoutes !== undefined) outage.routes = outageRoutes.map((r) => oneOf<RouteName>('outage-routes', r, ROUTE_NAMES) ?? 'get');
    if (outageAnswers !== undefined) {
      const answers: Partial<Record<OutageAnswer, number>> = {};
      for (const answer of outageAnswers) answers[oneOf<OutageAnswer>('outage-answers', answer, OUTAGE_ANSWERS) ?? 'error5xx'] = 1;
      outage.answers = answers;
    }
    faults.outages = [outage];
  }
  const finishedCancel = list(str('finished-cancel'));
  if (finishedCancel !== undefined) {
    const answers = finishedCancel.map((raw) => {
      const answer = FINISHED_CANCEL_ANSWERS.find((candidate) => String(candidate) === raw);
      if (answer === undefined)
        throw new Error(`--finished-cancel must be one or more of ${FINISHED_CANCEL_ANSWERS.join(', ')}, got ${JSON.stringify(raw)}`);
      return answer;
    });
    faults.finishedCancelAnswer = answers.length === 1 ? (answers[0] as FinishedCancelAnswer) : answers;
  }

  const knownChatbots = list(str('known-chatbots'));
  return {
    help: false,
    quiet: values.quiet === true,
    options: {
      port,
      apiKey,
      ...(seed === undefined ? {} : { seed }),
      ...(timeScale === undefined ? {} : { timeScale }),
      defaults,
      faults,
      ...(knownChatbots === undefined ? {} : { knownChatbots }),
    },
  };
}
