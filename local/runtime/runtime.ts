/**
 * The embedded local runtime: the whole orchestrator on one machine, on 127.0.0.1 only.
 *
 * - The project's own CDK stack is synthesized in process; everything below is configured
 *   from that template (queues, redrive, batch size and concurrency, table shape, function
 *   timeouts and environments, the state machine definition).
 * - SQS on fauxqs, DynamoDB on DynamoDB Local (or dynalite), and one local AWS JSON endpoint
 *   for EventBridge, Step Functions and Secrets Manager.
 * - The handlers run UNCHANGED: their SDK clients reach the local services through
 *   `AWS_ENDPOINT_URL_<SERVICE>`; the start handler is fed real SQS event batches by a
 *   local event source mapping; the state machine runs on aws-local-stepfunctions with every
 *   Task routed to the poll/finish handler; the template's rules deliver Step Functions
 *   status changes to the reconcile queue (fauxqs), whose local event source mapping feeds
 *   the reconcile handler, and run the sweep handler on its schedule.
 * - The template's S3 bucket (large outputs) is served by fauxqs' S3 emulation.
 * - Waterflai is the embedded simulator, or the server named by `WATERFLAI_BASE_URL` (with
 *   `WATERFLAI_API_KEY`), served to the handlers through the local Secrets Manager.
 *
 * The handlers read their configuration once, when first imported, so a process can boot
 * one runtime only.
 *
 * @example
 * const runtime = await startLocalRuntime({ timeScale: 0.2 });
 * await runtime.sendMessage(JSON.stringify({ job_id: 'j1', chatbot_id: 'bot', input_data: { query: 'hi' } }));
 * // ... watch runtime.eventBridge.events() ...
 * await runtime.close();
 */
import { randomBytes } from 'node:crypto';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, GetCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { OrchestratorConfig } from '../../lib/config';
import { injectHostClock } from '../../lambdas/platform/clock';
import { ENV } from '../../lambdas/contract/constants';
import { fromItem } from '../../lambdas/aws/job-store';
import type { JobRecord } from '../../lambdas/contract/job-record';
import { FAKE_ENVIRONMENT, synthesizeTemplate, type CloudFormationTemplate } from '../asl';
import { startAwsJsonServer, type AwsJsonServer } from '../emulators/aws-json-server';
import { startLocalDynamoDb, type DynamoDbEngine, type DynamoDbEngineChoice, type LocalDynamoDb } from '../emulators/dynamodb';
import { LocalEventBridge } from '../emulators/eventbridge';
import { LocalSecretsManager } from '../emulators/secrets';
import { startLocalSqs, type LocalSqs } from '../emulators/sqs';
import { LocalStepFunctions, type TaskHandler } from '../emulators/step-functions';
import { parseTimeScale, scaledClock } from '../emulators/time-scale';
import { startDynamoDbFaultProxy } from '../faults/dynamodb-proxy';
import type { LocalRuntimeFaults } from '../faults/hooks';
import { startSimulator, type Simulator, type SimulatorOptions } from '../simulator/server';
import { applyAwsEnvironment, destroyHandlerClients, loadFunctions, type LocalFunctions } from './handlers';
import { invokeFunction, type LocalFunction } from './lambda';
import { installNetworkGuard, isLoopbackHost, type NetworkGuard, type NetworkGuardOptions } from './net-guard';
import { startSdkCallRecorder, type RecordedSdkCall, type SdkCallRecorder } from './sdk-recorder';
import { SqsEventSource, type SqsEventSourceOptions } from './sqs-event-source';
import { localResourceValues, readRuntimeModel, type LocalResourceValues, type RuntimeModel } from './template';
import { AsyncInvoker, connectRules, createLocalQueue, QueueTargetSender, type LocalQueueRef } from './triggers';

export type { LocalRuntimeFaults } from '../faults/hooks';

/** The largest visibility timeout SQS accepts (12 hours). */
const SQS_MAX_VISIBILITY_SECONDS = 43_200;

/** The dummy credentials every local client uses (any value works; none is ever checked). */
export const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' } as const;

export interface ExternalWaterflai {
  /** Base URL (https, or http on a loopback host only; the Waterflai client enforces it). */
  readonly baseUrl: string;
  readonly apiKey: string;
}

export interface LocalRuntimeOptions {
  /**
   * Scale of the poll loop's waits and retry intervals, and of the simulator's job
   * durations: 0.1 runs ten times faster than real time.
   * @default 1
   */
  readonly timeScale?: number;
  /** @default 'auto': DynamoDB Local when `java` is on the PATH, else dynalite */
  readonly dynamodb?: DynamoDbEngineChoice;
  /**
   * A Waterflai-compatible server to use instead of the embedded simulator.
   * @default from `WATERFLAI_BASE_URL` / `WATERFLAI_API_KEY` when `WATERFLAI_BASE_URL` is
   *   set (see `waterflaiFromEnvironment`), else the embedded simulator
   */
  readonly waterflai?: ExternalWaterflai;
  /** Read `WATERFLAI_BASE_URL` / `WATERFLAI_API_KEY` from `process.env`. @default true */
  readonly waterflaiFromEnvironment?: boolean;
  /** Options of the embedded simulator (its time scale is `timeScale`). @default {} */
  readonly simulator?: Omit<SimulatorOptions, 'timeScale' | 'apiKey' | 'port'>;
  /** Settings the stack is synthesized with (what CDK context would give). @default {} */
  readonly stackConfig?: OrchestratorConfig;
  /** Powertools log level of the handlers (`SILENT`, `ERROR`, `WARN`, `INFO`, `DEBUG`). @default `POWERTOOLS_LOG_LEVEL`, else 'SILENT' */
  readonly logLevel?: string;
  /**
   * The "nothing leaves 127.0.0.1" guard: a guard you installed (kept on close), options of
   * one the runtime installs (and removes on close), or `false` for none.
   * @default { mode: 'enforce' }
   */
  readonly networkGuard?: NetworkGuard | NetworkGuardOptions | false;
  /** Told about each boot step (for progress output). @default silent */
  readonly onProgress?: (step: string) => void;
  /** Told about problems the runtime worked around (e.g. a variable missing from the template). @default silent */
  readonly onWarning?: (message: string) => void;
  /** Fault injection for chaos runs (the hooks of `local/faults/hooks.ts`). @default none */
  readonly faults?: LocalRuntimeFaults;
  /**
   * Told when the intake queue's event source mapping fails: an invocation of the start
   * function that failed as a whole (error or timeout: its batch comes back after the
   * visibility timeout), or a receive or delete that failed. @default silent
   */
  readonly onEventSourceError?: SqsEventSourceOptions['onError'];
  /**
   * Record every AWS SDK command the handlers send (function, role, service, command,
   * resources), for `sdkCalls()` (see `sdk-recorder.ts`). @default false
   */
  readonly recordSdkCalls?: boolean;
  /**
   * Told when the reconcile queue's event source mapping fails (as `onEventSourceError`).
   * @default a runtime warning
   */
  readonly onReconcileEventSourceError?: SqsEventSourceOptions['onError'];
}

export interface LocalRuntimeEndpoints {
  /** fauxqs (SQS JSON protocol). */
  readonly sqs: string;
  readonly dynamodb: string;
  /** Where the handlers reach DynamoDB: `dynamodb`, or the fault proxy in front of it (`faults.dynamodb`). */
  readonly dynamodbForHandlers: string;
  /** EventBridge, Step Functions and Secrets Manager (AWS JSON protocols). */
  readonly aws: string;
  /** Base URL of Waterflai (the simulator, or the external server). */
  readonly waterflai: string;
}

export interface LocalRuntime {
  readonly region: string;
  readonly account: string;
  readonly credentials: typeof LOCAL_CREDENTIALS;
  readonly timeScale: number;
  readonly endpoints: LocalRuntimeEndpoints;
  readonly intakeQueueUrl: string;
  readonly deadLetterQueueUrl: string;
  readonly tableName: string;
  readonly eventBusName: string;
  readonly stateMachineArn: string;
  readonly dynamodbEngine: DynamoDbEngine;
  /** Process id of the DynamoDB Local JVM, when that engine runs. */
  readonly dynamodbPid?: number;
  /** Whether the job table's TTL is enabled (dynalite has no TTL API). */
  readonly ttl: 'enabled' | 'unsupported' | 'not configured';
  /** The embedded simulator; undefined when an external Waterflai server is used. */
  readonly simulator?: Simulator;
  readonly model: RuntimeModel;
  readonly template: CloudFormationTemplate;
  /** The runtime's network guard (undefined when disabled). */
  readonly networkGuard?: NetworkGuard;
  /** Problems the runtime worked around while booting. */
  readonly warnings: readonly string[];
  readonly eventBridge: LocalEventBridge;
  readonly stepFunctions: LocalStepFunctions;
  readonly secrets: LocalSecretsManager;
  readonly sqs: LocalSqs;
  /** The intake queue's event source mapping (feeds the start function). */
  readonly eventSource: SqsEventSource;
  /**
   * The queue the status-change rule delivers to, and its dead-letter queue (undefined when
   * the template has no reconcile queue).
   */
  readonly reconcileQueue?: LocalQueueRef & { readonly deadLetterQueue: LocalQueueRef };
  /** The reconcile queue's event source mapping (feeds the reconcile function). */
  readonly reconcileEventSource?: SqsEventSource;
  /** Deliveries of rules to their SQS targets (the reconcile queue). */
  readonly queueTargets: QueueTargetSender;
  readonly documentClient: DynamoDBDocumentClient;
  /** Sends one raw message body to the intake queue; returns its MessageId. */
  sendMessage(body: string): Promise<string>;
  getJob(jobId: string): Promise<JobRecord | undefined>;
  /** Every record of the job table. */
  scanJobs(): Promise<JobRecord[]>;
  /**
   * The AWS SDK commands the handlers sent so far, oldest first.
   * @throws Error unless the runtime was started with `recordSdkCalls: true`
   */
  sdkCalls(): readonly RecordedSdkCall[];
  /** Stops everything (pollers, executions, servers, DynamoDB Local). Idempotent. */
  close(): Promise<void>;
}

/** A boot step failed; `service` names it. */
export class RuntimeBootError extends Error {
  constructor(
    readonly service: string,
    cause: unknown,
  ) {
    super(`could not start ${service}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'RuntimeBootError';
  }
}

let booted = false;

/**
 * Boots the runtime, one named step after another; each step registers what closes it.
 * @throws RuntimeBootError naming the service that failed
 */
export async function startLocalRuntime(options: LocalRuntimeOptions = {}): Promise<LocalRuntime> {
  claimTheProcess();
  const boot = new Boot(options);
  try {
    const external = externalWaterflai(boot);
    // DynamoDB Local takes ~1.5 s to start: the JVM boots while the stack synthesizes.
    const dynamoStarting = startDynamoDbEngine(boot);
    const { template, model } = await synthesizeStack(boot, dynamoStarting);
    const table = await startJobTable(boot, dynamoStarting, model);
    const queues = await startQueues(boot, model);
    warnAboutFunctionsWithoutTrigger(boot, model);
    const waterflai = await startWaterflai(boot, external);
    const functions: FunctionSlot = {};
    const services = await startAwsServices(boot, model, waterflai, functions);
    const { loaded, values } = await loadHandlers(boot, { template, model, table, queues, services, waterflai });
    functions.loaded = loaded;
    const recorder = await startSdkCallRecorderFor(boot, loaded);
    const reconcileEventSource = startReconcileEventSource(boot, model, queues, loaded);
    const queueTargets = connectTemplateRules(boot, { model, queues, services, functions: loaded, values });
    const eventSource = startIntakeEventSource(boot, model, queues, loaded);
    return runtimeHandle(boot, {
      template,
      model,
      table,
      queues,
      waterflai,
      services,
      eventSource,
      reconcileEventSource,
      queueTargets,
      recorder,
    });
  } catch (error) {
    await boot.close();
    throw error instanceof RuntimeBootError ? error : new RuntimeBootError('the local runtime', error);
  }
}

// ---------------------------------------------------------------------------------------
// The boot: its settings, its steps, and what closes them
// ---------------------------------------------------------------------------------------

/** The handlers read their configuration when first imported: one runtime per process. */
function claimTheProcess(): void {
  if (booted) {
    throw new Error(
      'the local runtime can be started once per process: the handlers read their configuration when they are first imported',
    );
  }
  booted = true;
  // Process-wide SDK settings, before the first client exists.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
}

/** What every boot step shares: the settings, the warnings, the network guard, and the cleanups. */
class Boot {
  readonly region = FAKE_ENVIRONMENT.region;
  readonly account = FAKE_ENVIRONMENT.account;
  readonly credentials = LOCAL_CREDENTIALS;
  readonly timeScale: number;
  readonly warnings: string[] = [];
  /** The runtime's network guard (undefined when disabled). */
  readonly guard: NetworkGuard | undefined;
  readonly #ownGuard: boolean;
  readonly #progress: (step: string) => void;
  /** Closed in reverse order of registration. */
  readonly #cleanups: Array<() => Promise<void>> = [];
  #closing: Promise<void> | undefined;

  constructor(readonly options: LocalRuntimeOptions) {
    this.#progress = options.onProgress ?? (() => undefined);
    this.timeScale = parseTimeScale(options.timeScale ?? 1);
    this.#ownGuard = options.networkGuard !== false && !isGuard(options.networkGuard);
    this.guard =
      options.networkGuard === false
        ? undefined
        : isGuard(options.networkGuard)
          ? options.networkGuard
          : installNetworkGuard(options.networkGuard ?? { mode: 'enforce' });
  }

  readonly warn = (message: string): void => {
    this.warnings.push(message);
    this.options.onWarning?.(message);
  };

  /** Runs one boot step, named for its service (told to `onProgress`); a failure names it. */
  readonly step = async <T>(service: string, run: () => Promise<T> | T): Promise<T> => {
    this.#progress(service);
    try {
      return await run();
    } catch (error) {
      throw error instanceof RuntimeBootError ? error : new RuntimeBootError(service, error);
    }
  };

  /** Registers what `close` stops (in reverse order of registration). */
  onClose(cleanup: () => Promise<void>): void {
    this.#cleanups.push(cleanup);
  }

  /** Stops everything registered so far, then removes the guard the runtime installed. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#runCleanups();
    return this.#closing;
  }

  async #runCleanups(): Promise<void> {
    for (const cleanup of this.#cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    if (this.#ownGuard) this.guard?.uninstall();
  }
}

// ---------------------------------------------------------------------------------------
// Emulators: DynamoDB, SQS and S3, Waterflai, the AWS JSON endpoint
// ---------------------------------------------------------------------------------------

/** Starts DynamoDB Local (or dynalite); awaited by {@link startJobTable}. */
function startDynamoDbEngine(boot: Boot): Promise<LocalDynamoDb> {
  const starting = startLocalDynamoDb({
    engine: boot.options.dynamodb ?? 'auto',
    region: boot.region,
    credentials: boot.credentials,
    onFallback: (error) =>
      boot.warn(`DynamoDB Local did not start (${error instanceof Error ? error.message.split('\n')[0] : String(error)}); using dynalite`),
  });
  starting.catch(() => undefined);
  return starting;
}

/** Synthesizes the project's stack and reads the runtime model out of its template (DynamoDB is closed if this fails). */
async function synthesizeStack(
  boot: Boot,
  dynamoStarting: Promise<LocalDynamoDb>,
): Promise<{ template: CloudFormationTemplate; model: RuntimeModel }> {
  return boot
    .step('the CDK stack (synth)', () => {
      const synthesized = synthesizeTemplate({ config: boot.options.stackConfig ?? {} });
      return { template: synthesized, model: readRuntimeModel(synthesized) };
    })
    .catch(async (error: unknown) => {
      await dynamoStarting.then((db) => db.close()).catch(() => undefined);
      throw error;
    });
}

interface JobTable {
  readonly dynamo: LocalDynamoDb;
  readonly ttl: LocalRuntime['ttl'];
  readonly documentClient: DynamoDBDocumentClient;
  /** Where the handlers reach DynamoDB: the engine, or the fault proxy in front of it. */
  readonly handlersEndpoint: string;
}

/** Waits for DynamoDB, creates the job table from the template, and puts the fault proxy in front when asked. */
async function startJobTable(boot: Boot, dynamoStarting: Promise<LocalDynamoDb>, model: RuntimeModel): Promise<JobTable> {
  const dynamo = await boot.step('DynamoDB', () => dynamoStarting);
  boot.onClose(() => dynamo.close());
  const { ttl } = await boot.step('DynamoDB (job table)', () => dynamo.createTable(model.table));
  const documentClient = DynamoDBDocumentClient.from(dynamo.client, { marshallOptions: { removeUndefinedValues: true } });
  const handlersEndpoint = await interposeDynamoDbFaults(boot, dynamo.endpoint);
  return { dynamo, ttl, documentClient, handlersEndpoint };
}

/** With `faults.dynamodb`, the handlers reach DynamoDB through the fault proxy (`local/faults/`); the runtime's own client does not. */
async function interposeDynamoDbFaults(boot: Boot, target: string): Promise<string> {
  const faults = boot.options.faults;
  const hook = faults?.dynamodb;
  if (hook === undefined) return target;
  const proxy = await boot.step('DynamoDB fault proxy', () =>
    startDynamoDbFaultProxy({ target, hook, ...(faults?.dynamodbResponses ? { onResponse: faults.dynamodbResponses } : {}) }),
  );
  boot.onClose(() => proxy.close());
  return proxy.endpoint;
}

type ReconcileQueue = LocalQueueRef & { readonly deadLetterQueue: LocalQueueRef };

interface Queues {
  readonly sqs: LocalSqs;
  readonly reconcileQueue: ReconcileQueue | undefined;
  /** The queues rules deliver to (the reconcile queue and its DLQ), by logical id. */
  readonly targetQueues: Record<string, LocalQueueRef>;
}

/** fauxqs: the intake queue and its DLQ, the template's buckets, the reconcile queue and its DLQ. */
async function startQueues(boot: Boot, model: RuntimeModel): Promise<Queues> {
  const sqs = await boot.step('SQS (fauxqs)', () =>
    startLocalSqs({
      region: boot.region,
      credentials: boot.credentials,
      deadLetterQueue: { name: model.deadLetterQueue.name, attributes: model.deadLetterQueue.attributes },
      intakeQueue: {
        name: model.intakeQueue.name,
        attributes: model.intakeQueue.attributes,
        maxReceiveCount: model.intakeQueue.maxReceiveCount,
      },
    }),
  );
  boot.onClose(() => sqs.close());
  for (const bucket of model.buckets) await boot.step(`S3 bucket ${bucket.name} (fauxqs)`, () => sqs.createBucket(bucket.name));
  const reconcileQueue = await boot.step('SQS reconcile queue (fauxqs)', () => createReconcileQueue(boot, model, sqs));
  const targetQueues: Record<string, LocalQueueRef> =
    reconcileQueue === undefined || model.reconcileQueue === undefined
      ? {}
      : {
          [model.reconcileQueue.logicalId]: reconcileQueue,
          [model.reconcileQueue.deadLetterQueue.logicalId]: reconcileQueue.deadLetterQueue,
        };
  return { sqs, reconcileQueue, targetQueues };
}

/**
 * The reconcile queue (the status-change rule's target) and its dead-letter queue. The
 * visibility timeout is the reconcile function's retry interval: scaled by the time scale, as
 * the poll loop's waits are, but never under the function timeout (a batch in flight is never
 * delivered twice).
 */
async function createReconcileQueue(boot: Boot, model: RuntimeModel, sqs: LocalSqs): Promise<ReconcileQueue | undefined> {
  const spec = model.reconcileQueue;
  if (spec === undefined) return undefined;
  const known: Record<string, LocalQueueRef> = {
    [model.intakeQueue.logicalId]: sqs.intakeQueue,
    [model.deadLetterQueue.logicalId]: sqs.deadLetterQueue,
  };
  const deadLetterQueue = known[spec.deadLetterQueue.logicalId] ?? (await createLocalQueue(sqs.client, spec.deadLetterQueue));
  const attributes: Record<string, string> = { ...spec.attributes };
  const visibility = Number(attributes.VisibilityTimeout ?? '30');
  const timeoutSeconds = model.functions.reconcile?.timeoutSeconds ?? 0;
  attributes.VisibilityTimeout = String(
    Math.min(SQS_MAX_VISIBILITY_SECONDS, Math.max(timeoutSeconds, Math.ceil(visibility * boot.timeScale))),
  );
  const queue = await createLocalQueue(
    sqs.client,
    { name: spec.name, attributes },
    { deadLetterQueue, maxReceiveCount: spec.maxReceiveCount },
  );
  return { ...queue, deadLetterQueue };
}

function warnAboutFunctionsWithoutTrigger(boot: Boot, model: RuntimeModel): void {
  for (const id of model.otherFunctions)
    boot.warn(`the template's function ${id} has no trigger the local runtime emulates; it does not run locally`);
}

/** The external Waterflai server, if one is configured; its host is let through the network guard. */
function externalWaterflai(boot: Boot): ExternalWaterflai | undefined {
  const { options } = boot;
  const external = options.waterflai ?? (options.waterflaiFromEnvironment === false ? undefined : externalFromEnvironment());
  if (external !== undefined) allowExternalHost(external, boot.guard, boot.warn);
  return external;
}

interface WaterflaiEndpoint extends ExternalWaterflai {
  /** The embedded simulator; undefined when an external Waterflai server is used. */
  readonly simulator?: Simulator;
}

/** The external Waterflai server, or the embedded simulator with a fresh API key. */
async function startWaterflai(boot: Boot, external: ExternalWaterflai | undefined): Promise<WaterflaiEndpoint> {
  if (external !== undefined) return external;
  const apiKey = `local-${randomBytes(16).toString('hex')}`;
  const simulator = await boot.step('the Waterflai simulator', () =>
    startSimulator({ ...(boot.options.simulator ?? {}), timeScale: boot.timeScale, apiKey }),
  );
  boot.onClose(() => simulator.close());
  return { baseUrl: simulator.url, apiKey, simulator };
}

/** The handlers, once loaded (the state machine's Tasks are routed to them; they load after the endpoint is up). */
interface FunctionSlot {
  loaded?: LocalFunctions;
}

interface AwsServices {
  readonly eventBridge: LocalEventBridge;
  readonly secrets: LocalSecretsManager;
  readonly stepFunctions: LocalStepFunctions;
  /** The local AWS JSON endpoint serving the three. */
  readonly endpoint: AwsJsonServer;
}

/** One local AWS JSON endpoint: EventBridge, Step Functions, Secrets Manager (holding the Waterflai API key). */
async function startAwsServices(
  boot: Boot,
  model: RuntimeModel,
  waterflai: ExternalWaterflai,
  functions: FunctionSlot,
): Promise<AwsServices> {
  const faults = boot.options.faults;
  const eventBridge = new LocalEventBridge({
    region: boot.region,
    account: boot.account,
    busNames: busNamesOf(model),
    ...(faults?.putEventsEntries === undefined ? {} : { entryFaultHook: faults.putEventsEntries }),
  });
  const secrets = new LocalSecretsManager(boot.region, boot.account);
  secrets.put(model.apiKeySecretId, waterflai.apiKey);
  const taskHandlers = taskHandlersOf(model, functions);
  const stepFunctions = await boot.step(
    'Step Functions (aws-local-stepfunctions)',
    () =>
      new LocalStepFunctions({
        timeScale: boot.timeScale,
        stateMachines: [
          { arn: model.stateMachine.arn, name: model.stateMachine.name, definition: model.stateMachine.definition, taskHandlers },
        ],
      }),
  );
  const endpoint = await boot.step('the local AWS endpoint', () =>
    startAwsJsonServer({
      services: [eventBridge.service(), stepFunctions.service(), secrets.service()],
      ...(faults?.aws === undefined ? {} : { faultHook: faults.aws }),
    }),
  );
  boot.onClose(() => endpoint.close());
  return { eventBridge, secrets, stepFunctions, endpoint };
}

/** The template's bus and every bus a rule listens on. */
function busNamesOf(model: RuntimeModel): string[] {
  return [...new Set([model.eventBusName, ...model.rules.flatMap((rule) => (rule.eventBusName === undefined ? [] : [rule.eventBusName]))])];
}

/** Every Task state routed to the function of its role. */
function taskHandlersOf(model: RuntimeModel, functions: FunctionSlot): Record<string, TaskHandler> {
  const taskHandlers: Record<string, TaskHandler> = {};
  for (const [stateName, role] of Object.entries(model.stateMachine.taskRoles)) {
    taskHandlers[stateName] = async (input) => {
      const fn = functions.loaded?.[role];
      if (fn === undefined) throw new Error(`the ${role} function is not loaded`);
      return (await invokeFunction(fn, input)) as never;
    };
  }
  return taskHandlers;
}

// ---------------------------------------------------------------------------------------
// The handlers, and what triggers them
// ---------------------------------------------------------------------------------------

/** The handlers, unchanged, with their template environments pointing at local resources. */
async function loadHandlers(
  boot: Boot,
  parts: {
    readonly template: CloudFormationTemplate;
    readonly model: RuntimeModel;
    readonly table: JobTable;
    readonly queues: Queues;
    readonly services: AwsServices;
    readonly waterflai: ExternalWaterflai;
  },
): Promise<{ loaded: LocalFunctions; values: LocalResourceValues }> {
  const { template, model, table, queues, services, waterflai } = parts;
  const { sqs } = queues;
  pointSdkClientsAtLocalServices(boot, { table, queues, services });
  const values = localResourceValues(template, model, {
    tableName: model.table.name,
    intake: sqs.intakeQueue,
    deadLetter: sqs.deadLetterQueue,
    stateMachineArn: model.stateMachine.arn,
    queues: queues.targetQueues,
  });
  // The poll function reasons in job time: the handlers take this clock when they are
  // imported, so a time-scaled run polls as often, in job time, as a deployment would.
  injectHostClock(scaledClock(boot.timeScale));
  const loaded = await loadFunctions({
    model,
    values,
    waterflaiBaseUrl: waterflai.baseUrl,
    fills: environmentFills(model, sqs),
    warn: boot.warn,
    step: boot.step,
    // The event source runs up to maxConcurrency invocations at once; on Lambda each has an
    // execution environment of its own (the start handler keeps per-invocation state in
    // Powertools' BatchProcessor), so it gets that many module instances. So does the
    // reconcile function, fed by the reconcile queue's event source.
    environments: {
      start: model.eventSource.maxConcurrency,
      ...(model.reconcileQueue === undefined ? {} : { reconcile: model.reconcileQueue.eventSource.maxConcurrency }),
    },
  });
  boot.onClose(() => destroyHandlerClients());
  return { loaded, values };
}

/** Values for variables a handler reads that its template environment lacks (each filled one is reported as a warning). */
function environmentFills(model: RuntimeModel, sqs: LocalSqs): Record<string, string> {
  return {
    [ENV.INTAKE_QUEUE_URL]: sqs.intakeQueue.url,
    [ENV.DLQ_URL]: sqs.deadLetterQueue.url,
    [ENV.MAX_RECEIVE_COUNT]: String(model.intakeQueue.maxReceiveCount),
    [ENV.STATE_MACHINE_ARN]: model.stateMachine.arn,
    [ENV.JOB_TABLE_NAME]: model.table.name,
    [ENV.EVENT_BUS_NAME]: model.eventBusName,
    [ENV.WATERFLAI_API_KEY_SECRET_ID]: model.apiKeySecretId,
  };
}

/** The handlers' AWS SDK clients reach the local services (`AWS_ENDPOINT_URL_<SERVICE>`, dummy credentials). */
function pointSdkClientsAtLocalServices(
  boot: Boot,
  parts: { readonly table: JobTable; readonly queues: Queues; readonly services: AwsServices },
): void {
  const { sqs } = parts.queues;
  applyAwsEnvironment({
    region: boot.region,
    credentials: boot.credentials,
    sqsEndpoint: sqs.endpoint,
    dynamodbEndpoint: parts.table.handlersEndpoint,
    awsEndpoint: parts.services.endpoint.url,
    s3Endpoint: sqs.endpoint,
    logLevel: boot.options.logLevel ?? process.env.POWERTOOLS_LOG_LEVEL ?? 'SILENT',
  });
}

/** With `recordSdkCalls`, the recorder of every AWS SDK command the handlers send. */
async function startSdkCallRecorderFor(boot: Boot, loaded: LocalFunctions): Promise<SdkCallRecorder | undefined> {
  if (boot.options.recordSdkCalls !== true) return undefined;
  const roles = new Map(Object.entries(loaded).map(([role, fn]) => [fn.arn, role]));
  const recorder = await boot.step('the SDK call recorder', () => startSdkCallRecorder({ roleOf: (arn) => roles.get(arn) }));
  boot.onClose(async () => recorder.stop());
  return recorder;
}

/**
 * The reconcile queue's event source mapping feeds the reconcile function (stopped after the
 * rules are disconnected, so it handles what they delivered).
 */
function startReconcileEventSource(boot: Boot, model: RuntimeModel, queues: Queues, loaded: LocalFunctions): SqsEventSource | undefined {
  const { reconcileQueue } = queues;
  if (model.reconcileQueue === undefined || reconcileQueue === undefined || loaded.reconcile === undefined) return undefined;
  const reconcileFunction = loaded.reconcile as LocalFunction<SQSEvent, SQSBatchResponse>;
  const source = model.reconcileQueue.eventSource;
  const eventSource = new SqsEventSource({
    client: queues.sqs.client,
    queueUrl: reconcileQueue.url,
    queueArn: reconcileQueue.arn,
    region: boot.region,
    batchSize: source.batchSize,
    maxConcurrency: source.maxConcurrency,
    maxBatchingWindowSeconds: source.maxBatchingWindowSeconds,
    reportBatchItemFailures: source.reportBatchItemFailures,
    invoke: (event) => invokeFunction(reconcileFunction, event),
    onError:
      boot.options.onReconcileEventSourceError ??
      ((error, context) =>
        boot.warn(
          `the reconcile queue's event source (${context.phase}) failed: ${error instanceof Error ? error.message : String(error)}`,
        )),
  });
  eventSource.start();
  boot.onClose(() => eventSource.stop());
  return eventSource;
}

/** Rules and schedules of the template: status changes to the reconcile queue, periodic sweeps. */
function connectTemplateRules(
  boot: Boot,
  parts: {
    readonly model: RuntimeModel;
    readonly queues: Queues;
    readonly services: AwsServices;
    readonly functions: LocalFunctions;
    readonly values: LocalResourceValues;
  },
): QueueTargetSender {
  const { model, queues, services, functions, values } = parts;
  const queueTargets = new QueueTargetSender({
    client: queues.sqs.client,
    timeScale: boot.timeScale,
    onDropped: (delivery, error) =>
      boot.warn(
        `an event for ${delivery.queue.name} was dropped after EventBridge's retries: ${error instanceof Error ? error.message : String(error)}`,
      ),
  });
  boot.onClose(() => queueTargets.close());
  const invoker = new AsyncInvoker({
    timeScale: boot.timeScale,
    onDropped: (fn, error) =>
      boot.warn(`an event for ${fn.name} was dropped after Lambda's retries: ${error instanceof Error ? error.message : String(error)}`),
  });
  boot.onClose(() => invoker.close());
  const disconnectRules = connectRules({
    model,
    functions,
    eventBridge: services.eventBridge,
    stepFunctions: services.stepFunctions,
    values,
    invoker,
    queues: queues.targetQueues,
    sender: queueTargets,
    timeScale: boot.timeScale,
    region: boot.region,
    account: boot.account,
    warn: boot.warn,
  });
  boot.onClose(async () => {
    disconnectRules(); // executions aborted by the shutdown are not reconciled
    await services.stepFunctions.stopAll();
  });
  return queueTargets;
}

/** The intake queue's event source mapping feeds the start function. */
function startIntakeEventSource(boot: Boot, model: RuntimeModel, queues: Queues, loaded: LocalFunctions): SqsEventSource {
  const { options } = boot;
  const { sqs } = queues;
  const startFunction = loaded.start as LocalFunction<SQSEvent, SQSBatchResponse>;
  const eventSource = new SqsEventSource({
    client: sqs.client,
    queueUrl: sqs.intakeQueue.url,
    queueArn: sqs.intakeQueue.arn,
    region: boot.region,
    batchSize: model.eventSource.batchSize,
    maxConcurrency: model.eventSource.maxConcurrency,
    maxBatchingWindowSeconds: model.eventSource.maxBatchingWindowSeconds,
    reportBatchItemFailures: model.eventSource.reportBatchItemFailures,
    invoke: (event) => invokeFunction(startFunction, event),
    ...(options.faults?.duplicateDelivery === undefined ? {} : { duplicateDelivery: options.faults.duplicateDelivery }),
    ...(options.onEventSourceError === undefined ? {} : { onError: options.onEventSourceError }),
  });
  eventSource.start();
  boot.onClose(() => eventSource.stop());
  return eventSource;
}

// ---------------------------------------------------------------------------------------
// The running runtime
// ---------------------------------------------------------------------------------------

/** What the caller holds: the endpoints, the services, and the job table's reads. */
function runtimeHandle(
  boot: Boot,
  parts: {
    readonly template: CloudFormationTemplate;
    readonly model: RuntimeModel;
    readonly table: JobTable;
    readonly queues: Queues;
    readonly waterflai: WaterflaiEndpoint;
    readonly services: AwsServices;
    readonly eventSource: SqsEventSource;
    readonly reconcileEventSource: SqsEventSource | undefined;
    readonly queueTargets: QueueTargetSender;
    readonly recorder: SdkCallRecorder | undefined;
  },
): LocalRuntime {
  const { template, model, table, queues, waterflai, services, eventSource, reconcileEventSource, queueTargets, recorder } = parts;
  const { dynamo, documentClient } = table;
  const { sqs, reconcileQueue } = queues;
  const { simulator } = waterflai;
  const { guard } = boot;
  return {
    region: boot.region,
    account: boot.account,
    credentials: boot.credentials,
    timeScale: boot.timeScale,
    endpoints: {
      sqs: sqs.endpoint,
      dynamodb: dynamo.endpoint,
      dynamodbForHandlers: table.handlersEndpoint,
      aws: services.endpoint.url,
      waterflai: waterflai.baseUrl,
    },
    intakeQueueUrl: sqs.intakeQueue.url,
    deadLetterQueueUrl: sqs.deadLetterQueue.url,
    tableName: model.table.name,
    eventBusName: model.eventBusName,
    stateMachineArn: model.stateMachine.arn,
    dynamodbEngine: dynamo.engine,
    ...(dynamo.pid === undefined ? {} : { dynamodbPid: dynamo.pid }),
    ttl: table.ttl,
    ...(simulator === undefined ? {} : { simulator }),
    model,
    template,
    ...(guard === undefined ? {} : { networkGuard: guard }),
    warnings: boot.warnings,
    eventBridge: services.eventBridge,
    stepFunctions: services.stepFunctions,
    secrets: services.secrets,
    sqs,
    eventSource,
    ...(reconcileQueue === undefined ? {} : { reconcileQueue }),
    ...(reconcileEventSource === undefined ? {} : { reconcileEventSource }),
    queueTargets,
    documentClient,
    async sendMessage(body) {
      const sent = await sqs.client.send(new SendMessageCommand({ QueueUrl: sqs.intakeQueue.url, MessageBody: body }));
      if (sent.MessageId === undefined) throw new Error('SQS returned no MessageId');
      return sent.MessageId;
    },
    getJob: (jobId) => getJob(documentClient, model, jobId),
    scanJobs: () => scanJobs(documentClient, model),
    sdkCalls() {
      if (recorder === undefined) throw new Error('SDK calls are recorded only when the runtime is started with recordSdkCalls: true');
      return recorder.calls();
    },
    close: () => boot.close(),
  };
}

async function getJob(documentClient: DynamoDBDocumentClient, model: RuntimeModel, jobId: string): Promise<JobRecord | undefined> {
  const tableKey = model.table.keySchema[0]?.AttributeName ?? 'job_id';
  const result = await documentClient.send(
    new GetCommand({ TableName: model.table.name, Key: { [tableKey]: jobId }, ConsistentRead: true }),
  );
  return result.Item === undefined ? undefined : fromItem(result.Item);
}

async function scanJobs(documentClient: DynamoDBDocumentClient, model: RuntimeModel): Promise<JobRecord[]> {
  const items: JobRecord[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await documentClient.send(
      new ScanCommand({ TableName: model.table.name, ConsistentRead: true, ExclusiveStartKey: startKey }),
    );
    items.push(...(page.Items ?? []).map((item) => fromItem(item)));
    startKey = page.LastEvaluatedKey;
  } while (startKey !== undefined);
  return items;
}

// ---------------------------------------------------------------------------------------
// Waterflai from the environment, and the guard
// ---------------------------------------------------------------------------------------

function isGuard(value: unknown): value is NetworkGuard {
  return typeof value === 'object' && value !== null && typeof (value as NetworkGuard).connections === 'function';
}

function externalFromEnvironment(): ExternalWaterflai | undefined {
  const baseUrl = process.env[ENV.WATERFLAI_BASE_URL]?.trim();
  if (baseUrl === undefined || baseUrl === '') return undefined;
  const apiKey = process.env.WATERFLAI_API_KEY?.trim();
  if (apiKey === undefined || apiKey === '') {
    throw new RuntimeBootError(
      'Waterflai',
      new Error('WATERFLAI_BASE_URL is set but WATERFLAI_API_KEY is not: set both to use an external Waterflai server'),
    );
  }
  return { baseUrl, apiKey };
}

/** An explicitly configured remote Waterflai host is the one non-loopback destination allowed. */
function allowExternalHost(external: ExternalWaterflai, guard: NetworkGuard | undefined, warn: (message: string) => void): void {
  let host: string;
  try {
    host = new URL(external.baseUrl).hostname;
  } catch {
    throw new RuntimeBootError('Waterflai', new Error(`WATERFLAI_BASE_URL is not a URL: ${JSON.stringify(external.baseUrl)}`));
  }
  if (isLoopbackHost(host) || guard === undefined) return;
  guard.allow(host);
  warn(`WATERFLAI_BASE_URL points at ${host}, which is not loopback: the network guard lets connections to it through`);
}
