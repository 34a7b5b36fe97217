/**
 * How EventBridge rules and schedules reach their targets, locally (see {@link connectRules}):
 * - {@link QueueTargetSender}: an SQS target, as EventBridge delivers to one: the event JSON
 *   is the message body; a failed send is retried with backoff within the target's
 *   `RetryPolicy`, then goes to the target's dead-letter queue with EventBridge's
 *   `ERROR_CODE` / `ERROR_MESSAGE` / `RULE_ARN` / `TARGET_ARN` attributes (or is reported
 *   as dropped when the target has none). The status-change rule delivers to the reconcile
 *   queue this way; the reconcile function consumes it through a local event source mapping.
 * - {@link AsyncInvoker}: an asynchronous (`Event`) invocation, as EventBridge makes to a
 *   Lambda target (the sweep schedule). A function error is retried twice by Lambda (after
 *   1 and 2 minutes, scaled by the time scale); after that the event is dropped and reported.
 * - {@link createLocalQueue}: a queue of the template (with its redrive policy) on fauxqs.
 * - {@link parseRateExpression}: `rate(N minute|minutes|hour|hours|day|days)` schedules.
 */
import { randomUUID } from 'node:crypto';
import { CreateQueueCommand, GetQueueAttributesCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { LocalEventBridge, ServiceEvent } from '../emulators/eventbridge';
import { invokeFunction, type LocalFunction } from './lambda';
import type { ExecutionView, LocalStepFunctions } from '../emulators/step-functions';
import { resolveTokens, type FunctionRole, type LocalResourceValues, type QueueModel, type RuleModel, type RuntimeModel } from './template';

/** Lambda's retry delays for a failed asynchronous invocation. */
export const ASYNC_RETRY_DELAYS_MS = [60_000, 120_000] as const;

export interface AsyncInvokerOptions {
  /** Scale of the retry delays. @default 1 */
  readonly timeScale?: number;
  /** Told about an event dropped after the last retry. */
  readonly onDropped?: (fn: LocalFunction, error: unknown) => void;
}

export class AsyncInvoker {
  readonly #pending = new Set<Promise<void>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #closed = false;
  #invocations = 0;
  #failures = 0;

  constructor(private readonly options: AsyncInvokerOptions = {}) {}

  /** Queues an asynchronous invocation (returns at once, as `InvocationType: Event` does). */
  invoke(fn: LocalFunction, event: unknown, attempt = 0): void {
    if (this.#closed) return;
    const run = (async () => {
      this.#invocations += 1;
      try {
        await invokeFunction(fn, event);
      } catch (error) {
        this.#failures += 1;
        const delay = ASYNC_RETRY_DELAYS_MS[attempt];
        if (delay === undefined || this.#closed) {
          this.options.onDropped?.(fn, error);
          return;
        }
        const timer = setTimeout(
          () => {
            this.#timers.delete(timer);
            this.invoke(fn, event, attempt + 1);
          },
          delay * (this.options.timeScale ?? 1),
        );
        this.#timers.add(timer);
      }
    })();
    this.#pending.add(run);
    void run.finally(() => this.#pending.delete(run));
  }

  stats(): { invocations: number; failures: number } {
    return { invocations: this.#invocations, failures: this.#failures };
  }

  /** Stops retrying and waits (at most `graceMs`) for the invocations under way. */
  async close(graceMs = 10_000): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.#pending]), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
  }
}

/** A queue on the local SQS (fauxqs). */
export interface LocalQueueRef {
  readonly name: string;
  readonly url: string;
  readonly arn: string;
}

/**
 * Creates a queue of the template on the local SQS, with a redrive policy when `redrive` is
 * given, and returns its URL and ARN.
 */
export async function createLocalQueue(
  client: SQSClient,
  spec: Pick<QueueModel, 'name' | 'attributes'>,
  redrive?: { readonly deadLetterQueue: LocalQueueRef; readonly maxReceiveCount: number },
): Promise<LocalQueueRef> {
  const attributes: Record<string, string> = { ...spec.attributes };
  if (redrive !== undefined) {
    attributes.RedrivePolicy = JSON.stringify({
      deadLetterTargetArn: redrive.deadLetterQueue.arn,
      maxReceiveCount: String(redrive.maxReceiveCount),
    });
  }
  const created = await client.send(new CreateQueueCommand({ QueueName: spec.name, Attributes: attributes }));
  if (created.QueueUrl === undefined) throw new Error(`the local SQS returned no URL for queue ${spec.name}`);
  const read = await client.send(new GetQueueAttributesCommand({ QueueUrl: created.QueueUrl, AttributeNames: ['QueueArn'] }));
  const arn = read.Attributes?.QueueArn;
  if (arn === undefined) throw new Error(`the local SQS returned no ARN for queue ${spec.name}`);
  return { name: spec.name, url: created.QueueUrl, arn };
}

/**
 * Delays between EventBridge's attempts to deliver to a target that failed (exponential from
 * 1 s, at most 60 s; scaled by the time scale). EventBridge does not publish its exact
 * schedule; its limits are the target's `RetryPolicy`.
 */
export const TARGET_RETRY_DELAY_MS = { first: 1_000, max: 60_000 } as const;
/** Locally, at most this many retries whatever the `RetryPolicy` says (185 over 24 h would outlive any run). */
export const LOCAL_TARGET_RETRY_LIMIT = 8;
/** EventBridge's defaults when a target sets no `RetryPolicy`. */
const TARGET_RETRY_DEFAULTS = { maximumRetryAttempts: 185, maximumEventAgeSeconds: 86_400 } as const;

/** One SQS target of one rule. */
export interface QueueTargetDelivery {
  readonly ruleArn: string;
  readonly queue: LocalQueueRef;
  /** Where events go that cannot be delivered (the target's `DeadLetterConfig`). */
  readonly deadLetterQueue?: LocalQueueRef;
  /** @default 185 */
  readonly maximumRetryAttempts?: number;
  /** @default 86,400 */
  readonly maximumEventAgeSeconds?: number;
}

export interface QueueTargetSenderOptions {
  readonly client: SQSClient;
  /** Scale of the retry delays and of the maximum event age. @default 1 */
  readonly timeScale?: number;
  /** Told about an event that could neither be delivered nor dead-lettered. */
  readonly onDropped?: (delivery: QueueTargetDelivery, error: unknown) => void;
}

export interface QueueTargetSenderStats {
  readonly sent: number;
  readonly retries: number;
  readonly deadLettered: number;
  readonly dropped: number;
}

/** Delivers events to SQS targets as EventBridge does (see the module comment). */
export class QueueTargetSender {
  readonly #pending = new Set<Promise<void>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #closed = false;
  #stats = { sent: 0, retries: 0, deadLettered: 0, dropped: 0 };

  constructor(private readonly options: QueueTargetSenderOptions) {}

  /** Sends `body` (the event JSON) to the target's queue; returns at once. */
  send(delivery: QueueTargetDelivery, body: string): void {
    this.#attempt(delivery, body, 0, Date.now());
  }

  stats(): QueueTargetSenderStats {
    return { ...this.#stats };
  }

  /** Stops retrying and waits (at most `graceMs`) for the sends under way. */
  async close(graceMs = 10_000): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.#pending]), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
  }

  #attempt(delivery: QueueTargetDelivery, body: string, attempt: number, firstAt: number): void {
    if (this.#closed) return;
    const run = (async () => {
      try {
        await this.options.client.send(new SendMessageCommand({ QueueUrl: delivery.queue.url, MessageBody: body }));
        this.#stats.sent += 1;
      } catch (error) {
        const scale = this.options.timeScale ?? 1;
        const delay = Math.min(TARGET_RETRY_DELAY_MS.max, TARGET_RETRY_DELAY_MS.first * 2 ** attempt) * scale;
        const maxRetries = Math.min(LOCAL_TARGET_RETRY_LIMIT, delivery.maximumRetryAttempts ?? TARGET_RETRY_DEFAULTS.maximumRetryAttempts);
        const maxAgeMs = (delivery.maximumEventAgeSeconds ?? TARGET_RETRY_DEFAULTS.maximumEventAgeSeconds) * 1000 * scale;
        const exhausted =
          attempt >= maxRetries ? 'MaximumRetryAttempts' : Date.now() + delay - firstAt > maxAgeMs ? 'MaximumEventAge' : undefined;
        if (exhausted === undefined && !this.#closed) {
          this.#stats.retries += 1;
          const timer = setTimeout(() => {
            this.#timers.delete(timer);
            this.#attempt(delivery, body, attempt + 1, firstAt);
          }, delay);
          this.#timers.add(timer);
          return;
        }
        await this.#deadLetter(delivery, body, error, exhausted ?? 'MaximumRetryAttempts', attempt);
      }
    })();
    this.#pending.add(run);
    void run.finally(() => this.#pending.delete(run));
  }

  async #deadLetter(delivery: QueueTargetDelivery, body: string, error: unknown, exhausted: string, retries: number): Promise<void> {
    if (delivery.deadLetterQueue === undefined) {
      this.#stats.dropped += 1;
      this.options.onDropped?.(delivery, error);
      return;
    }
    const text = (value: string) => ({ DataType: 'String', StringValue: value });
    try {
      await this.options.client.send(
        new SendMessageCommand({
          QueueUrl: delivery.deadLetterQueue.url,
          MessageBody: body,
          MessageAttributes: {
            ERROR_CODE: text('SDK_CLIENT_ERROR'),
            ERROR_MESSAGE: text((error instanceof Error ? error.message : String(error)).slice(0, 1024) || 'unknown error'),
            EXHAUSTED_RETRY_CONDITION: text(exhausted),
            RETRY_ATTEMPTS: { DataType: 'Number', StringValue: String(retries) },
            RULE_ARN: text(delivery.ruleArn),
            TARGET_ARN: text(delivery.queue.arn),
          },
        }),
      );
      this.#stats.deadLettered += 1;
    } catch (deadLetterError) {
      this.#stats.dropped += 1;
      this.options.onDropped?.(delivery, deadLetterError);
    }
  }
}

const RATE_UNITS_MS: Readonly<Record<string, number>> = {
  minute: 60_000,
  minutes: 60_000,
  hour: 3_600_000,
  hours: 3_600_000,
  day: 86_400_000,
  days: 86_400_000,
};

/** The period of a `rate(...)` schedule in ms, or undefined for anything else (e.g. `cron(...)`). */
export function parseRateExpression(expression: string): number | undefined {
  const match = /^rate\(\s*(\d+)\s+([a-z]+)\s*\)$/.exec(expression.trim());
  if (match === null) return undefined;
  const unit = RATE_UNITS_MS[match[2]!];
  const value = Number(match[1]);
  return unit === undefined || value < 1 ? undefined : value * unit;
}

export interface ConnectRulesOptions {
  readonly model: RuntimeModel;
  readonly functions: Readonly<Partial<Record<FunctionRole, LocalFunction>>>;
  readonly eventBridge: LocalEventBridge;
  readonly stepFunctions: LocalStepFunctions;
  /** Local values of the template's resources, to resolve the rules' event patterns. */
  readonly values: LocalResourceValues;
  readonly invoker: AsyncInvoker;
  /** Local queues of the template, by logical id (the targets of queue-target rules and their dead-letter queues). */
  readonly queues: Readonly<Record<string, LocalQueueRef>>;
  readonly sender: QueueTargetSender;
  readonly timeScale: number;
  readonly region: string;
  readonly account: string;
  readonly warn: (message: string) => void;
}

/**
 * Makes the template's rules work locally: Step Functions status changes are published on
 * the default bus (as Step Functions does), event-pattern rules deliver matching events to
 * their SQS targets (through `sender`) and function targets, and `rate(...)` schedules
 * invoke theirs periodically (the period scaled by the time scale). Returns a function that
 * stops the status events and schedules.
 */
export function connectRules(options: ConnectRulesOptions): () => void {
  const { model, functions, eventBridge, invoker, warn } = options;
  const stopStatusEvents = options.stepFunctions.subscribe((notice) => {
    if (notice.type !== 'task') eventBridge.publish(executionStatusChange(notice.execution));
  });
  const timers: NodeJS.Timeout[] = [];
  for (const rule of model.rules) {
    if (!rule.enabled) continue;
    for (const target of rule.targets) {
      if (target.kind === 'queue') {
        connectQueueTarget(options, rule, target);
        continue;
      }
      const fn = functions[target.role];
      if (fn === undefined) continue;
      if (rule.scheduleExpression !== undefined) {
        const period = parseRateExpression(rule.scheduleExpression);
        if (period === undefined) {
          warn(
            `rule ${rule.logicalId}: schedule ${rule.scheduleExpression} is not supported locally (rate(...) only); ${fn.name} does not run on a schedule`,
          );
          continue;
        }
        const timer = setInterval(
          () => invoker.invoke(fn, scheduledEvent(rule.logicalId, options.region, options.account)),
          Math.max(50, period * options.timeScale),
        );
        timer.unref();
        timers.push(timer);
        continue;
      }
      try {
        eventBridge.addRule({
          name: `${rule.logicalId}/${target.id}`,
          busName: rule.eventBusName ?? 'default',
          pattern: resolveTokens(rule.eventPattern, options.values, `rule ${rule.logicalId} EventPattern`),
          deliver: ({ eventBusName: _bus, ...event }) => invoker.invoke(fn, event),
        });
      } catch (error) {
        warn(`rule ${rule.logicalId} is not emulated: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
  return () => {
    stopStatusEvents();
    for (const timer of timers) clearInterval(timer);
  };
}

/** An event-pattern rule's SQS target: matching events are sent to the local queue. */
function connectQueueTarget(
  options: ConnectRulesOptions,
  rule: RuleModel,
  target: Extract<RuleModel['targets'][number], { kind: 'queue' }>,
): void {
  const { warn } = options;
  const where = `rule ${rule.logicalId} target ${target.id}`;
  if (rule.scheduleExpression !== undefined) {
    warn(`${where}: a schedule with an SQS target is not emulated locally`);
    return;
  }
  if (target.inputTransformation !== undefined) {
    warn(`${where}: ${target.inputTransformation} is not emulated locally; the target receives nothing`);
    return;
  }
  const queue = options.queues[target.queueLogicalId];
  if (queue === undefined) {
    warn(`${where}: queue ${target.queueLogicalId} does not exist locally; the target receives nothing`);
    return;
  }
  const deadLetterQueue = target.deadLetterQueueLogicalId === undefined ? undefined : options.queues[target.deadLetterQueueLogicalId];
  if (target.deadLetterQueueLogicalId !== undefined && deadLetterQueue === undefined) {
    warn(`${where}: dead-letter queue ${target.deadLetterQueueLogicalId} does not exist locally; undeliverable events are dropped`);
  }
  const busName = rule.eventBusName ?? 'default';
  const delivery: QueueTargetDelivery = {
    ruleArn: `arn:aws:events:${options.region}:${options.account}:rule/${busName === 'default' ? '' : `${busName}/`}${rule.logicalId}`,
    queue,
    ...(deadLetterQueue === undefined ? {} : { deadLetterQueue }),
    ...(target.maximumRetryAttempts === undefined ? {} : { maximumRetryAttempts: target.maximumRetryAttempts }),
    ...(target.maximumEventAgeSeconds === undefined ? {} : { maximumEventAgeSeconds: target.maximumEventAgeSeconds }),
  };
  try {
    options.eventBridge.addRule({
      name: `${rule.logicalId}/${target.id}`,
      busName,
      pattern: resolveTokens(rule.eventPattern, options.values, `rule ${rule.logicalId} EventPattern`),
      // The message body is the event as EventBridge hands it to targets (no local fields).
      deliver: ({ eventBusName: _bus, ...event }) => options.sender.send(delivery, JSON.stringify(event)),
    });
  } catch (error) {
    warn(`rule ${rule.logicalId} is not emulated: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** The "Step Functions Execution Status Change" event Step Functions puts on the default bus. */
export function executionStatusChange(execution: ExecutionView): ServiceEvent {
  return {
    source: 'aws.states',
    detailType: 'Step Functions Execution Status Change',
    busName: 'default',
    resources: [execution.executionArn],
    detail: {
      executionArn: execution.executionArn,
      stateMachineArn: execution.stateMachineArn,
      name: execution.name,
      status: execution.status,
      startDate: execution.startDate,
      stopDate: execution.stopDate ?? null,
      input: execution.input,
      output: execution.output ?? null,
      inputDetails: { included: true },
      outputDetails: execution.output === undefined ? null : { included: true },
      error: execution.error ?? null,
      cause: execution.cause ?? null,
    },
  };
}

/** The event a schedule rule hands its targets. */
export function scheduledEvent(ruleId: string, region: string, account: string): Record<string, unknown> {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account,
    time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region,
    resources: [`arn:aws:events:${region}:${account}:rule/${ruleId}`],
    detail: {},
  };
}
