/**
 * How EventBridge rules and schedules invoke functions, locally (see {@link connectRules}):
 * - {@link AsyncInvoker}: an asynchronous (`Event`) invocation, as EventBridge makes to a
 *   Lambda target. A function error is retried twice by Lambda (after 1 and 2 minutes, scaled
 *   by the time scale); after that the event is dropped and reported.
 * - {@link parseRateExpression}: `rate(N minute|minutes|hour|hours|day|days)` schedules.
 */
import { randomUUID } from 'node:crypto';
import type { LocalEventBridge, ServiceEvent } from './eventbridge';
import { invokeFunction, type LocalFunction } from './lambda';
import type { ExecutionView, LocalStepFunctions } from './step-functions';
import { resolveTokens, type FunctionRole, type LocalResourceValues, type RuntimeModel } from './template';

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
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          this.invoke(fn, event, attempt + 1);
        }, delay * (this.options.timeScale ?? 1));
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
  readonly timeScale: number;
  readonly region: string;
  readonly account: string;
  readonly warn: (message: string) => void;
}

/**
 * Makes the template's rules work locally: Step Functions status changes are published on
 * the default bus (as Step Functions does), event-pattern rules deliver matching events to
 * their function targets, and `rate(...)` schedules invoke theirs periodically (the period
 * scaled by the time scale). Returns a function that stops the status events and schedules.
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
      const fn = functions[target.role];
      if (fn === undefined) continue;
      if (rule.scheduleExpression !== undefined) {
        const period = parseRateExpression(rule.scheduleExpression);
        if (period === undefined) {
          warn(`rule ${rule.logicalId}: schedule ${rule.scheduleExpression} is not supported locally (rate(...) only); ${fn.name} does not run on a schedule`);
          continue;
        }
        const timer = setInterval(() => invoker.invoke(fn, scheduledEvent(rule.logicalId, options.region, options.account)), Math.max(50, period * options.timeScale));
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
