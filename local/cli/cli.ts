/**
 * `npm start` (local/main.ts): boots the local runtime, submits job messages, shows them run
 * and exits with a code saying whether every one of them reached an outcome.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { parseArgs } from 'node:util';
import { ENV } from '../../lambdas/contract/constants';
import { Display, formatSummary } from './display';
import type { DynamoDbEngineChoice } from '../emulators/dynamodb';
import type { PublishedEvent } from '../emulators/eventbridge';
import { JobInputError, loadJobLines, loadSampleJobs, SAMPLE_JOBS_DIR, type JobInput } from './jobs';
import { RuntimeBootError, startLocalRuntime, type LocalRuntime } from '../runtime/runtime';
import { parseTimeScale } from '../emulators/time-scale';
import { JobTracker } from './tracker';

/** Exit codes (part of the interface other tools script against). */
export const EXIT_CODE = {
  /** Every submitted message reached a terminal outcome (serve mode: stopped by a signal). */
  OK: 0,
  /** The deadline passed with unfinished jobs (they are named on stderr). */
  UNFINISHED: 1,
  /** Bad arguments, or the job messages (samples folder, --jobs file) or --events-out could not be used. */
  USAGE: 2,
  /** A local service failed to start (named on stderr). */
  BOOT_FAILED: 3,
  /** Something broke while running. */
  INTERNAL: 4,
  /** Interrupted (SIGINT/SIGTERM) before every job finished. */
  INTERRUPTED: 130,
} as const;

export const DEFAULTS = {
  timeoutSeconds: 100,
  timeScale: 1,
  pollIntervalSeconds: 1,
  dynamodb: 'auto' as DynamoDbEngineChoice,
} as const;

export const USAGE = `Usage: npm start -- [options]

Runs the Waterflai orchestrator on this machine (SQS on fauxqs, DynamoDB Local or dynalite,
a local EventBridge / Step Functions / Secrets Manager endpoint, the Waterflai simulator),
everything on 127.0.0.1, submits job messages and shows them run to an outcome.

Options:
  --jobs FILE            send each non-blank line of FILE as one raw SQS message body (valid
                         or not) instead of the samples in events/samples/jobs/*.json
  --events-out FILE      write every event put on the bus to FILE, one JSON line each:
                         {"source", "detail-type", "detail"} (detail as an object)
  --timeout SECONDS      overall deadline, boot included (default ${DEFAULTS.timeoutSeconds}); ignored with --serve
  --serve                keep running (until Ctrl-C) and print the local endpoints, so other
                         programs can send jobs with the AWS SDK or CLI; submits nothing
                         unless --jobs is given
  --time-scale X         scale of the poll loop's waits and retry intervals and of simulated
                         job durations: 0.1 runs ten times faster (default ${DEFAULTS.timeScale})
  --poll-interval S      the stack's pollIntervalSeconds for this run (default ${DEFAULTS.pollIntervalSeconds};
                         the deployed default is 10)
  --dynamodb ENGINE      auto | local | dynalite (default auto: DynamoDB Local when java is
                         on the PATH, else dynalite)
  --seed N               seed of the simulator's random choices
  --log-level LEVEL      log level of the handlers' JSON logs: SILENT (default), ERROR,
                         WARN, INFO, DEBUG
  -h, --help             show this help

Environment:
  WATERFLAI_BASE_URL, WATERFLAI_API_KEY   use this Waterflai-compatible server instead of
                         the simulator (http is accepted for loopback hosts only)

Exit codes:
  0    every submitted message reached a terminal outcome (a message dead-lettered as
       invalid counts); with --serve: stopped by Ctrl-C / SIGTERM
  1    the deadline passed; the unfinished jobs are named on stderr
  2    bad arguments, or the job messages / --events-out file cannot be used
  3    a local service failed to start (named on stderr)
  4    an unexpected error while running
  130  interrupted before every job finished
`;

export interface CliOptions {
  readonly help: boolean;
  readonly jobsFile?: string;
  readonly eventsOut?: string;
  readonly timeoutSeconds: number;
  readonly serve: boolean;
  readonly timeScale: number;
  readonly pollIntervalSeconds: number;
  readonly dynamodb: DynamoDbEngineChoice;
  readonly seed?: number;
  readonly logLevel?: string;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const LOG_LEVELS = ['SILENT', 'CRITICAL', 'ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'];

/** Parses the command line. @throws UsageError */
export function parseCliArgs(argv: readonly string[]): CliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        jobs: { type: 'string' },
        'events-out': { type: 'string' },
        timeout: { type: 'string' },
        serve: { type: 'boolean', default: false },
        'time-scale': { type: 'string' },
        'poll-interval': { type: 'string' },
        dynamodb: { type: 'string' },
        seed: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const values = parsed.values;
  const number = (name: string, text: string | undefined, fallback: number, check: (value: number) => boolean, rule: string): number => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (text.trim() === '' || !Number.isFinite(value) || !check(value))
      throw new UsageError(`--${name} must be ${rule}, got ${JSON.stringify(text)}`);
    return value;
  };
  const timeoutSeconds = number('timeout', values.timeout, DEFAULTS.timeoutSeconds, (value) => value > 0, 'a positive number of seconds');
  let timeScale: number;
  try {
    timeScale = parseTimeScale(values['time-scale'] ?? DEFAULTS.timeScale);
  } catch (error) {
    throw new UsageError(`--time-scale: ${error instanceof Error ? error.message : String(error)}`);
  }
  const pollIntervalSeconds = number(
    'poll-interval',
    values['poll-interval'],
    DEFAULTS.pollIntervalSeconds,
    (value) => Number.isInteger(value) && value >= 1 && value <= 300,
    'a whole number of seconds from 1 to 300',
  );
  const engines: Record<string, DynamoDbEngineChoice> = {
    auto: 'auto',
    local: 'dynamodb-local',
    'dynamodb-local': 'dynamodb-local',
    dynalite: 'dynalite',
  };
  const dynamodb = values.dynamodb === undefined ? DEFAULTS.dynamodb : engines[values.dynamodb];
  if (dynamodb === undefined) throw new UsageError(`--dynamodb must be auto, local or dynalite, got ${JSON.stringify(values.dynamodb)}`);
  const seed =
    values.seed === undefined
      ? undefined
      : number('seed', values.seed, 0, (value) => Number.isInteger(value) && value >= 0, 'a non-negative integer');
  const logLevel = values['log-level']?.toUpperCase();
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel))
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(values['log-level'])}`);
  for (const name of ['jobs', 'events-out'] as const) {
    if (values[name] !== undefined && values[name].trim() === '') throw new UsageError(`--${name} needs a file name`);
  }
  return {
    help: values.help,
    ...(values.jobs === undefined ? {} : { jobsFile: values.jobs }),
    ...(values['events-out'] === undefined ? {} : { eventsOut: values['events-out'] }),
    timeoutSeconds,
    serve: values.serve,
    timeScale,
    pollIntervalSeconds,
    dynamodb,
    ...(seed === undefined ? {} : { seed }),
    ...(logLevel === undefined ? {} : { logLevel }),
  };
}

export interface CliIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number; rows?: number };
  readonly stderr: NodeJS.WritableStream;
  /** Resolves when the user asks to stop (SIGINT/SIGTERM). */
  readonly interrupted: Promise<NodeJS.Signals>;
}

const REFRESH_MS = 200;

/** Runs the CLI; resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  // The deadline counts from the start of the process (module loading included).
  const startedAt = Date.now() - Math.round(process.uptime() * 1000);
  const err = (text: string): void => {
    io.stderr.write(`${text}\n`);
  };

  let options: CliOptions;
  try {
    options = parseCliArgs(argv);
  } catch (error) {
    err(`error: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return EXIT_CODE.USAGE;
  }
  if (options.help) {
    io.stdout.write(USAGE);
    return EXIT_CODE.OK;
  }

  let inputs: JobInput[] = [];
  try {
    if (options.jobsFile !== undefined) inputs = loadJobLines(options.jobsFile);
    else if (!options.serve) inputs = loadSampleJobs(SAMPLE_JOBS_DIR);
  } catch (error) {
    err(`error: ${error instanceof JobInputError ? error.message : String(error)}`);
    return EXIT_CODE.USAGE;
  }

  let eventsOut: WriteStream | undefined;
  if (options.eventsOut !== undefined) {
    try {
      eventsOut = await openForWriting(options.eventsOut);
    } catch (error) {
      err(`error: cannot write --events-out ${options.eventsOut}: ${error instanceof Error ? error.message : String(error)}`);
      return EXIT_CODE.USAGE;
    }
  }

  const live = io.stdout.isTTY === true;
  const display = new Display({ out: io.stdout, live, startedAt });
  const deadline = options.serve ? Number.POSITIVE_INFINITY : startedAt + options.timeoutSeconds * 1000;
  let interruptedBy: NodeJS.Signals | undefined;
  void io.interrupted.then((signal) => {
    interruptedBy = signal;
  });

  const external = process.env[ENV.WATERFLAI_BASE_URL];
  display.line(
    `Starting the local runtime (time scale ${options.timeScale}, poll interval ${options.pollIntervalSeconds} s, ` +
      `Waterflai: ${external ? `${external} (WATERFLAI_BASE_URL)` : 'embedded simulator'})...`,
  );

  // Boot, bounded by the deadline and by Ctrl-C.
  const booting = startLocalRuntime({
    timeScale: options.timeScale,
    dynamodb: options.dynamodb,
    stackConfig: { pollIntervalSeconds: options.pollIntervalSeconds },
    ...(options.seed === undefined ? {} : { simulator: { seed: options.seed } }),
    ...(options.logLevel === undefined ? {} : { logLevel: options.logLevel }),
    onWarning: (message) => err(`warning: ${message}`),
  });
  let runtime: LocalRuntime;
  try {
    const outcome = await Promise.race([
      booting.then((value) => ({ kind: 'booted' as const, value })),
      sleepUntil(deadline).then(() => ({ kind: 'deadline' as const })),
      io.interrupted.then(() => ({ kind: 'interrupted' as const })),
    ]);
    if (outcome.kind !== 'booted') {
      // Let the boot finish (bounded) and close what it started, so nothing is left running.
      await Promise.race([booting.then((value) => value.close()).catch(() => undefined), sleep(20_000)]);
      eventsOut?.end();
      if (outcome.kind === 'deadline') {
        err(`error: the deadline of ${options.timeoutSeconds} s passed while the local services were starting; no job was submitted`);
        return EXIT_CODE.UNFINISHED;
      }
      return EXIT_CODE.INTERRUPTED;
    }
    runtime = outcome.value;
  } catch (error) {
    eventsOut?.end();
    if (error instanceof RuntimeBootError) {
      err(`error: ${error.message}`);
      return EXIT_CODE.BOOT_FAILED;
    }
    err(`error: the local runtime failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return EXIT_CODE.BOOT_FAILED;
  }

  const tracker = new JobTracker(runtime, { discover: options.serve, eventBusName: runtime.eventBusName });
  const unsubscribe = runtime.eventBridge.subscribe((event) => {
    if (event.eventBusName !== runtime.eventBusName) return; // e.g. aws.states status changes on the default bus
    display.event(event);
    eventsOut?.write(`${eventLine(event)}\n`);
  });
  try {
    display.line(
      `Local runtime ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s: ` +
        `SQS (fauxqs) ${runtime.endpoints.sqs}, DynamoDB (${runtime.dynamodbEngine}) ${runtime.endpoints.dynamodb}, ` +
        `EventBridge/Step Functions/Secrets Manager ${runtime.endpoints.aws}, Waterflai ${runtime.simulator ? 'simulator' : 'server'} ${runtime.endpoints.waterflai}`,
    );
    if (options.serve) display.line(serveBanner(runtime));

    const notSent: Array<{ source: string; reason: string }> = [];
    if (inputs.length > 0) display.line(`Submitting ${inputs.length} message(s) to ${runtime.intakeQueueUrl}`);
    for (const input of inputs) {
      try {
        const messageId = await runtime.sendMessage(input.body);
        tracker.submit({ messageId, body: input.body, submittedAt: Date.now() });
      } catch (error) {
        const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        notSent.push({ source: input.source, reason });
        display.line(`SQS refused the message from ${input.source}: ${reason}`);
      }
    }

    for (;;) {
      await tracker.refresh();
      display.update(tracker.views());
      if (interruptedBy !== undefined) break;
      if (!options.serve && tracker.allDone()) break;
      if (Date.now() >= deadline) break;
      await Promise.race([sleep(Math.min(REFRESH_MS, Math.max(0, deadline - Date.now()))), io.interrupted]);
    }
    if (!options.serve && tracker.allDone()) {
      // Let the finished executions reach their end state before shutting down.
      await Promise.race([runtime.stepFunctions.whenIdle(), sleep(2_000)]);
    }

    display.stop();
    const views = tracker.views();
    io.stdout.write(`\n${formatSummary(views)}\n`);
    for (const item of notSent) io.stdout.write(`not sent: ${item.source} (${item.reason})\n`);
    const unfinished = views.filter((view) => !view.done);
    if (options.serve) return EXIT_CODE.OK;
    if (unfinished.length === 0) return EXIT_CODE.OK;
    const names = unfinished.map((view) => `${view.key} (${view.status})`).join(', ');
    if (interruptedBy !== undefined) {
      err(`interrupted (${interruptedBy}) with ${unfinished.length} unfinished job(s): ${names}`);
      return EXIT_CODE.INTERRUPTED;
    }
    err(`error: timed out after ${options.timeoutSeconds} s with ${unfinished.length} unfinished job(s): ${names}`);
    return EXIT_CODE.UNFINISHED;
  } catch (error) {
    display.stop();
    err(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return EXIT_CODE.INTERNAL;
  } finally {
    unsubscribe();
    tracker.close();
    await runtime.close();
    if (eventsOut !== undefined) await new Promise<void>((resolve) => eventsOut.end(resolve));
  }
}

/** One `--events-out` line: `{"source","detail-type","detail"}` with `detail` as an object. */
export function eventLine(event: PublishedEvent): string {
  return JSON.stringify({ source: event.source, 'detail-type': event['detail-type'], detail: event.detail });
}

/** What `--serve` prints so other programs can reach the runtime. */
export function serveBanner(runtime: LocalRuntime): string {
  const { accessKeyId, secretAccessKey } = runtime.credentials;
  const endpoints = {
    region: runtime.region,
    accessKeyId,
    secretAccessKey,
    sqsEndpoint: runtime.endpoints.sqs,
    intakeQueueUrl: runtime.intakeQueueUrl,
    deadLetterQueueUrl: runtime.deadLetterQueueUrl,
    dynamodbEndpoint: runtime.endpoints.dynamodb,
    jobTableName: runtime.tableName,
    awsEndpoint: runtime.endpoints.aws,
    eventBusName: runtime.eventBusName,
    stateMachineArn: runtime.stateMachineArn,
    waterflaiBaseUrl: runtime.endpoints.waterflai,
  };
  const example = JSON.stringify({ chatbot_id: 'demo-bot', input_data: { query: 'hello', simulate: { duration_ms: 3000 } } });
  return [
    '',
    'Serving on 127.0.0.1 (Ctrl-C to stop):',
    `  region                 ${endpoints.region}`,
    `  credentials            AWS_ACCESS_KEY_ID=${accessKeyId} AWS_SECRET_ACCESS_KEY=${secretAccessKey} (dummy)`,
    `  SQS endpoint           ${endpoints.sqsEndpoint}`,
    `  intake queue URL       ${endpoints.intakeQueueUrl}`,
    `  dead-letter queue URL  ${endpoints.deadLetterQueueUrl}`,
    `  DynamoDB endpoint      ${endpoints.dynamodbEndpoint} (table ${endpoints.jobTableName})`,
    `  EventBridge / Step Functions / Secrets Manager endpoint  ${endpoints.awsEndpoint}`,
    `  event bus              ${endpoints.eventBusName}`,
    `  Waterflai              ${endpoints.waterflaiBaseUrl}`,
    '',
    'Send a job:',
    `  AWS_ACCESS_KEY_ID=${accessKeyId} AWS_SECRET_ACCESS_KEY=${secretAccessKey} aws --region ${endpoints.region} --endpoint-url ${endpoints.sqsEndpoint} \\`,
    `    sqs send-message --queue-url ${endpoints.intakeQueueUrl} --message-body '${example}'`,
    '',
    `LOCAL_RUNTIME_ENDPOINTS ${JSON.stringify(endpoints)}`,
    '',
  ].join('\n');
}

async function openForWriting(file: string): Promise<WriteStream> {
  const stream = createWriteStream(file, { flags: 'w' });
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', reject);
  });
  return stream;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves at `deadline` (never when it is infinite); its timer does not keep the process alive. */
function sleepUntil(deadline: number): Promise<void> {
  if (!Number.isFinite(deadline)) return new Promise(() => undefined);
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())).unref());
}
