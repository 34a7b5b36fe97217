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
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { OrchestratorConfig } from '../../lib/config';
import { LOCAL_TIME_SCALE_ENV } from '../../lambdas/poll/poll-job';
import { ENV } from '../../lambdas/contract/constants';
import { fromItem } from '../../lambdas/aws/job-store';
import type { JobRecord } from '../../lambdas/contract/job-record';
import { FAKE_ENVIRONMENT, synthesizeTemplate, type CloudFormationTemplate } from '../asl';
import { startSimulator, type Simulator, type SimulatorOptions } from '../simulator/server';
import { startAwsJsonServer, type AwsFaultHook } from './aws-json-server';
import { startLocalDynamoDb, type DynamoDbEngine, type DynamoDbEngineChoice } from './dynamodb';
import { startDynamoDbFaultProxy, type DynamoDbFaultHook, type DynamoDbResponseObserver } from './dynamodb-fault-proxy';
import { LocalEventBridge, type PutEventsEntryFaultHook } from './eventbridge';
import { applyAwsEnvironment, destroyHandlerClients, loadFunctions, type LocalFunctions } from './handlers';
import { invokeFunction, type LocalFunction } from './lambda';
import { installNetworkGuard, isLoopbackHost, type NetworkGuard, type NetworkGuardOptions } from './net-guard';
import { startSdkCallRecorder, type RecordedSdkCall, type SdkCallRecorder } from './sdk-recorder';
import { LocalSecretsManager } from './secrets';
import { startLocalSqs, type LocalSqs } from './sqs';
import { SqsEventSource, type SqsEventSourceOptions } from './sqs-event-source';
import { LocalStepFunctions, type TaskHandler } from './step-functions';
import { localResourceValues, readRuntimeModel, type RuntimeModel } from './template';
import { parseTimeScale } from './time-scale';
import { AsyncInvoker, connectRules, createLocalQueue, QueueTargetSender, type LocalQueueRef } from './triggers';

/** The largest visibility timeout SQS accepts (12 hours). */
const SQS_MAX_VISIBILITY_SECONDS = 43_200;

/** The dummy credentials every local client uses (any value works; none is ever checked). */
export const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' } as const;

export interface ExternalWaterflai {
  /** Base URL (https, or http on a loopback host only; the Waterflai client enforces it). */
  readonly baseUrl: string;
  readonly apiKey: string;
}

/**
 * Fault injection below the handlers, for chaos runs (`local/chaos/`). Every hook decides
 * per request; the handlers are not touched and see only what AWS could answer.
 */
export interface LocalRuntimeFaults {
  /** Whole-request errors of the local AWS endpoint (Step Functions, EventBridge, Secrets Manager), e.g. `ThrottlingException`. */
  readonly aws?: AwsFaultHook;
  /** Entry-level `PutEvents` failures (`FailedEntryCount` > 0). */
  readonly putEventsEntries?: PutEventsEntryFaultHook;
  /**
   * Errors of DynamoDB: with this hook the handlers reach DynamoDB through a
   * fault-injecting proxy (`dynamodb-fault-proxy.ts`); the runtime's own client does not.
   */
  readonly dynamodb?: DynamoDbFaultHook;
  /** Told about every answer the proxy gave the handlers (with `dynamodb` only). */
  readonly dynamodbResponses?: DynamoDbResponseObserver;
  /** Duplicate deliveries of received intake messages (see `SqsEventSourceOptions.duplicateDelivery`). */
  readonly duplicateDelivery?: (record: SQSRecord) => number | undefined;
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
  /** Fault injection for chaos runs. @default none */
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

/** Boots the runtime. @throws RuntimeBootError naming the service that failed */
export async function startLocalRuntime(options: LocalRuntimeOptions = {}): Promise<LocalRuntime> {
  if (booted) {
    throw new Error(
      'the local runtime can be started once per process: the handlers read their configuration when they are first imported',
    );
  }
  booted = true;
  // Process-wide SDK settings, before the first client exists.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  const progress = options.onProgress ?? (() => undefined);
  const warnings: string[] = [];
  const warn = (message: string): void => {
    warnings.push(message);
    options.onWarning?.(message);
  };
  const timeScale = parseTimeScale(options.timeScale ?? 1);
  const { region, account } = FAKE_ENVIRONMENT;
  const credentials = LOCAL_CREDENTIALS;

  const ownGuard = options.networkGuard !== false && !isGuard(options.networkGuard);
  const guard: NetworkGuard | undefined =
    options.networkGuard === false
      ? undefined
      : isGuard(options.networkGuard)
        ? options.networkGuard
        : installNetworkGuard(options.networkGuard ?? { mode: 'enforce' });

  // Closed in reverse order of registration.
  const cleanups: Array<() => Promise<void>> = [];
  const runCleanups = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    if (ownGuard) guard?.uninstall();
  };
  const step = async <T>(service: string, run: () => Promise<T> | T): Promise<T> => {
    progress(service);
    try {
      return await run();
    } catch (error) {
      throw error instanceof RuntimeBootError ? error : new RuntimeBootError(service, error);
    }
  };

  try {
    const external = options.waterflai ?? (options.waterflaiFromEnvironment === false ? undefined : externalFromEnvironment());
    if (external !== undefined) allowExternalHost(external, guard, warn);

    // DynamoDB Local takes ~1.5 s to start: the JVM boots while the stack synthesizes.
    const dynamoStarting = startLocalDynamoDb({
      engine: options.dynamodb ?? 'auto',
      region,
      credentials,
      onFallback: (error) =>
        warn(`DynamoDB Local did not start (${error instanceof Error ? error.message.split('\n')[0] : String(error)}); using dynalite`),
    });
    dynamoStarting.catch(() => undefined);
    const { template, model } = await step('the CDK stack (synth)', () => {
      const synthesized = synthesizeTemplate({ config: options.stackConfig ?? {} });
      return { template: synthesized, model: readRuntimeModel(synthesized) };
    }).catch(async (error: unknown) => {
      await dynamoStarting.then((db) => db.close()).catch(() => undefined);
      throw error;
    });

    const dynamo = await step('DynamoDB', () => dynamoStarting);
    cleanups.push(() => dynamo.close());
    const { ttl } = await step('DynamoDB (job table)', () => dynamo.createTable(model.table));
    const documentClient = DynamoDBDocumentClient.from(dynamo.client, { marshallOptions: { removeUndefinedValues: true } });
    let handlersDynamoEndpoint = dynamo.endpoint;
    const dynamoFaults = options.faults?.dynamodb;
    if (dynamoFaults !== undefined) {
      const proxy = await step('DynamoDB fault proxy', () =>
        startDynamoDbFaultProxy({
          target: dynamo.endpoint,
          hook: dynamoFaults,
          ...(options.faults?.dynamodbResponses ? { onResponse: options.faults.dynamodbResponses } : {}),
        }),
      );
      cleanups.push(() => proxy.close());
      handlersDynamoEndpoint = proxy.endpoint;
    }

    const sqs = await step('SQS (fauxqs)', () =>
      startLocalSqs({
        region,
        credentials,
        deadLetterQueue: { name: model.deadLetterQueue.name, attributes: model.deadLetterQueue.attributes },
        intakeQueue: {
          name: model.intakeQueue.name,
          attributes: model.intakeQueue.attributes,
          maxReceiveCount: model.intakeQueue.maxReceiveCount,
        },
      }),
    );
    cleanups.push(() => sqs.close());
    for (const bucket of model.buckets) await step(`S3 bucket ${bucket.name} (fauxqs)`, () => sqs.createBucket(bucket.name));
    // The reconcile queue (the status-change rule's target) and its dead-letter queue. The
    // visibility timeout is the reconcile function's retry interval: scaled by the time
    // scale, as the poll loop's waits are, but never under the function timeout (a batch in
    // flight is never delivered twice).
    const reconcileQueue = await step('SQS reconcile queue (fauxqs)', async () => {
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
        Math.min(SQS_MAX_VISIBILITY_SECONDS, Math.max(timeoutSeconds, Math.ceil(visibility * timeScale))),
      );
      const queue = await createLocalQueue(
        sqs.client,
        { name: spec.name, attributes },
        { deadLetterQueue, maxReceiveCount: spec.maxReceiveCount },
      );
      return { ...queue, deadLetterQueue };
    });
    const targetQueues: Record<string, LocalQueueRef> =
      reconcileQueue === undefined || model.reconcileQueue === undefined
        ? {}
        : {
            [model.reconcileQueue.logicalId]: reconcileQueue,
            [model.reconcileQueue.deadLetterQueue.logicalId]: reconcileQueue.deadLetterQueue,
          };
    for (const id of model.otherFunctions)
      warn(`the template's function ${id} has no trigger the local runtime emulates; it does not run locally`);

    let simulator: Simulator | undefined;
    let waterflai: ExternalWaterflai;
    if (external === undefined) {
      const apiKey = `local-${randomBytes(16).toString('hex')}`;
      const started = await step('the Waterflai simulator', () => startSimulator({ ...(options.simulator ?? {}), timeScale, apiKey }));
      cleanups.push(() => started.close());
      simulator = started;
      waterflai = { baseUrl: started.url, apiKey };
    } else {
      waterflai = external;
    }

    // One local AWS JSON endpoint: EventBridge, Step Functions, Secrets Manager.
    const busNames = new Set([
      model.eventBusName,
      ...model.rules.flatMap((rule) => (rule.eventBusName === undefined ? [] : [rule.eventBusName])),
    ]);
    const entryFaults = options.faults?.putEventsEntries;
    const eventBridge = new LocalEventBridge({
      region,
      account,
      busNames: [...busNames],
      ...(entryFaults === undefined ? {} : { entryFaultHook: entryFaults }),
    });
    const secrets = new LocalSecretsManager(region, account);
    secrets.put(model.apiKeySecretId, waterflai.apiKey);
    let functions: LocalFunctions | undefined;
    const taskHandlers: Record<string, TaskHandler> = {};
    for (const [stateName, role] of Object.entries(model.stateMachine.taskRoles)) {
      taskHandlers[stateName] = async (input) => {
        const fn = functions?.[role];
        if (fn === undefined) throw new Error(`the ${role} function is not loaded`);
        return (await invokeFunction(fn, input)) as never;
      };
    }
    const stepFunctions = await step(
      'Step Functions (aws-local-stepfunctions)',
      () =>
        new LocalStepFunctions({
          timeScale,
          stateMachines: [
            { arn: model.stateMachine.arn, name: model.stateMachine.name, definition: model.stateMachine.definition, taskHandlers },
          ],
        }),
    );
    const awsFaults = options.faults?.aws;
    const aws = await step('the local AWS endpoint', () =>
      startAwsJsonServer({
        services: [eventBridge.service(), stepFunctions.service(), secrets.service()],
        ...(awsFaults === undefined ? {} : { faultHook: awsFaults }),
      }),
    );
    cleanups.push(() => aws.close());

    // The handlers, unchanged, with their template environments pointing at local resources.
    applyAwsEnvironment({
      region,
      credentials,
      sqsEndpoint: sqs.endpoint,
      dynamodbEndpoint: handlersDynamoEndpoint,
      awsEndpoint: aws.url,
      s3Endpoint: sqs.endpoint,
      logLevel: options.logLevel ?? process.env.POWERTOOLS_LOG_LEVEL ?? 'SILENT',
    });
    const values = localResourceValues(template, model, {
      tableName: model.table.name,
      intake: sqs.intakeQueue,
      deadLetter: sqs.deadLetterQueue,
      stateMachineArn: model.stateMachine.arn,
      queues: targetQueues,
    });
    // The poll function reasons in job time: it reads the scale when it is imported, so a
    // time-scaled run polls as often, in job time, as a deployment would.
    process.env[LOCAL_TIME_SCALE_ENV] = String(timeScale);
    const loaded = await loadFunctions({
      model,
      values,
      waterflaiBaseUrl: waterflai.baseUrl,
      fills: {
        [ENV.INTAKE_QUEUE_URL]: sqs.intakeQueue.url,
        [ENV.DLQ_URL]: sqs.deadLetterQueue.url,
        [ENV.MAX_RECEIVE_COUNT]: String(model.intakeQueue.maxReceiveCount),
        [ENV.STATE_MACHINE_ARN]: model.stateMachine.arn,
        [ENV.JOB_TABLE_NAME]: model.table.name,
        [ENV.EVENT_BUS_NAME]: model.eventBusName,
        [ENV.WATERFLAI_API_KEY_SECRET_ID]: model.apiKeySecretId,
      },
      warn,
      step,
      // The event source runs up to maxConcurrency invocations at once; on Lambda each has an
      // execution environment of its own (the start handler keeps per-invocation state in
      // Powertools' BatchProcessor), so it gets that many module instances. So does the
      // reconcile function, fed by the reconcile queue's event source.
      environments: {
        start: model.eventSource.maxConcurrency,
        ...(model.reconcileQueue === undefined ? {} : { reconcile: model.reconcileQueue.eventSource.maxConcurrency }),
      },
    });
    functions = loaded;
    cleanups.push(() => destroyHandlerClients());
    let recorder: SdkCallRecorder | undefined;
    if (options.recordSdkCalls === true) {
      const roles = new Map(Object.entries(loaded).map(([role, fn]) => [fn.arn, role]));
      const started = await step('the SDK call recorder', () => startSdkCallRecorder({ roleOf: (arn) => roles.get(arn) }));
      cleanups.push(async () => started.stop());
      recorder = started;
    }

    // The reconcile queue's event source mapping feeds the reconcile function (stopped after
    // the rules are disconnected, so it handles what they delivered).
    let reconcileEventSource: SqsEventSource | undefined;
    if (model.reconcileQueue !== undefined && reconcileQueue !== undefined && loaded.reconcile !== undefined) {
      const reconcileFunction = loaded.reconcile as LocalFunction<SQSEvent, SQSBatchResponse>;
      const source = model.reconcileQueue.eventSource;
      reconcileEventSource = new SqsEventSource({
        client: sqs.client,
        queueUrl: reconcileQueue.url,
        queueArn: reconcileQueue.arn,
        region,
        batchSize: source.batchSize,
        maxConcurrency: source.maxConcurrency,
        maxBatchingWindowSeconds: source.maxBatchingWindowSeconds,
        reportBatchItemFailures: source.reportBatchItemFailures,
        invoke: (event) => invokeFunction(reconcileFunction, event),
        onError:
          options.onReconcileEventSourceError ??
          ((error, context) =>
            warn(
              `the reconcile queue's event source (${context.phase}) failed: ${error instanceof Error ? error.message : String(error)}`,
            )),
      });
      reconcileEventSource.start();
      const started = reconcileEventSource;
      cleanups.push(() => started.stop());
    }
    const queueTargets = new QueueTargetSender({
      client: sqs.client,
      timeScale,
      onDropped: (delivery, error) =>
        warn(
          `an event for ${delivery.queue.name} was dropped after EventBridge's retries: ${error instanceof Error ? error.message : String(error)}`,
        ),
    });
    cleanups.push(() => queueTargets.close());

    // Rules and schedules of the template (status changes to the reconcile queue, periodic sweeps).
    const invoker = new AsyncInvoker({
      timeScale,
      onDropped: (fn, error) =>
        warn(`an event for ${fn.name} was dropped after Lambda's retries: ${error instanceof Error ? error.message : String(error)}`),
    });
    cleanups.push(() => invoker.close());
    const disconnectRules = connectRules({
      model,
      functions: loaded,
      eventBridge,
      stepFunctions,
      values,
      invoker,
      queues: targetQueues,
      sender: queueTargets,
      timeScale,
      region,
      account,
      warn,
    });
    cleanups.push(async () => {
      disconnectRules(); // executions aborted by the shutdown are not reconciled
      await stepFunctions.stopAll();
    });

    // The intake queue's event source mapping feeds the start function.
    const startFunction = loaded.start as LocalFunction<SQSEvent, SQSBatchResponse>;
    const eventSource = new SqsEventSource({
      client: sqs.client,
      queueUrl: sqs.intakeQueue.url,
      queueArn: sqs.intakeQueue.arn,
      region,
      batchSize: model.eventSource.batchSize,
      maxConcurrency: model.eventSource.maxConcurrency,
      maxBatchingWindowSeconds: model.eventSource.maxBatchingWindowSeconds,
      reportBatchItemFailures: model.eventSource.reportBatchItemFailures,
      invoke: (event) => invokeFunction(startFunction, event),
      ...(options.faults?.duplicateDelivery === undefined ? {} : { duplicateDelivery: options.faults.duplicateDelivery }),
      ...(options.onEventSourceError === undefined ? {} : { onError: options.onEventSourceError }),
    });
    eventSource.start();
    cleanups.push(() => eventSource.stop());

    let closing: Promise<void> | undefined;
    const tableKey = model.table.keySchema[0]?.AttributeName ?? 'job_id';
    return {
      region,
      account,
      credentials,
      timeScale,
      endpoints: {
        sqs: sqs.endpoint,
        dynamodb: dynamo.endpoint,
        dynamodbForHandlers: handlersDynamoEndpoint,
        aws: aws.url,
        waterflai: waterflai.baseUrl,
      },
      intakeQueueUrl: sqs.intakeQueue.url,
      deadLetterQueueUrl: sqs.deadLetterQueue.url,
      tableName: model.table.name,
      eventBusName: model.eventBusName,
      stateMachineArn: model.stateMachine.arn,
      dynamodbEngine: dynamo.engine,
      ...(dynamo.pid === undefined ? {} : { dynamodbPid: dynamo.pid }),
      ttl,
      ...(simulator === undefined ? {} : { simulator }),
      model,
      template,
      ...(guard === undefined ? {} : { networkGuard: guard }),
      warnings,
      eventBridge,
      stepFunctions,
      secrets,
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
      async getJob(jobId) {
        const result = await documentClient.send(
          new GetCommand({ TableName: model.table.name, Key: { [tableKey]: jobId }, ConsistentRead: true }),
        );
        return result.Item === undefined ? undefined : fromItem(result.Item);
      },
      async scanJobs() {
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
      },
      sdkCalls() {
        if (recorder === undefined) throw new Error('SDK calls are recorded only when the runtime is started with recordSdkCalls: true');
        return recorder.calls();
      },
      close() {
        closing ??= runCleanups();
        return closing;
      },
    };
  } catch (error) {
    await runCleanups();
    throw error instanceof RuntimeBootError ? error : new RuntimeBootError('the local runtime', error);
  }
}

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
