/**
 * Runs handler code the way Lambda does, in process: a fresh Context per invocation whose
 * `getRemainingTimeInMillis()` counts down from the function's configured timeout, the event
 * and the result passed through JSON (no shared references, exactly what survives the wire),
 * and the timeout enforced. A thrown error becomes a {@link LambdaFunctionError} carrying the
 * `errorType` / `errorMessage` Lambda would report.
 */
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { withinInvocation } from './sdk-recorder';

/** A handler as the Lambda Node.js runtime calls it. */
export type LambdaHandler<E = unknown, R = unknown> = (event: E, context: Context) => Promise<R>;

export interface LocalFunction<E = unknown, R = unknown> {
  /** The function name (the template's FunctionName or logical id). */
  readonly name: string;
  readonly arn: string;
  readonly timeoutMs: number;
  readonly memorySize: number;
  readonly handler: LambdaHandler<E, R>;
  /**
   * Execution environments: separate instances of the handler module (the first one's
   * handler is `handler`). When set, each invocation runs alone on an idle environment, as
   * on Lambda, and waits while all are busy; a module may then keep state for the
   * invocation under way (Powertools' `BatchProcessor` does). Without it, concurrent
   * invocations share `handler`.
   */
  readonly environments?: ExecutionEnvironments<E, R>;
}

/**
 * A fixed set of execution environments of one function: one invocation at a time on each.
 * An environment is busy until its handler's promise settles, even after the invocation
 * timed out (Lambda would recycle it; here the code keeps running until it ends).
 */
export class ExecutionEnvironments<E = unknown, R = unknown> {
  readonly #idle: Array<LambdaHandler<E, R>>;
  readonly #waiting: Array<(handler: LambdaHandler<E, R>) => void> = [];
  readonly size: number;

  constructor(handlers: ReadonlyArray<LambdaHandler<E, R>>) {
    if (handlers.length === 0) throw new RangeError('at least one execution environment is needed');
    this.#idle = [...handlers];
    this.size = handlers.length;
  }

  /** Environments running an invocation right now. */
  busy(): number {
    return this.size - this.#idle.length;
  }

  /** Waits for an idle environment and takes it. */
  acquire(): Promise<LambdaHandler<E, R>> {
    const idle = this.#idle.shift();
    if (idle !== undefined) return Promise.resolve(idle);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Gives an environment back (to the longest waiting invocation, if any). */
  release(handler: LambdaHandler<E, R>): void {
    const next = this.#waiting.shift();
    if (next !== undefined) next(handler);
    else this.#idle.push(handler);
  }
}

/** A handler failure as Lambda reports it (`errorType` is the thrown error's `name`). */
export class LambdaFunctionError extends Error {
  constructor(
    readonly functionName: string,
    readonly errorType: string,
    readonly errorMessage: string,
    readonly trace: readonly string[] = [],
  ) {
    super(`${functionName} failed: ${errorType}: ${errorMessage}`);
    this.name = 'LambdaFunctionError';
  }

  /** The `Cause` Step Functions records for a failed Lambda Task. */
  stepFunctionsCause(): string {
    return JSON.stringify({ errorType: this.errorType, errorMessage: this.errorMessage, trace: this.trace });
  }
}

/** Lambda's error type for a function that ran out of time. */
export const LAMBDA_TIMEOUT_ERROR_TYPE = 'Sandbox.Timedout';

let invocationCounter = 0;

/** A Lambda Context for one invocation that started at `startedAt`. */
export function createLambdaContext(
  fn: Pick<LocalFunction, 'name' | 'arn' | 'timeoutMs' | 'memorySize'>,
  startedAt: number = Date.now(),
): Context {
  const deadline = startedAt + fn.timeoutMs;
  invocationCounter += 1;
  const stream = `${new Date(startedAt).toISOString().slice(0, 10).replace(/-/g, '/')}/[$LATEST]local${String(invocationCounter).padStart(8, '0')}`;
  const unsupported = (): never => {
    throw new Error('context.done/succeed/fail are not supported by async handlers');
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: fn.name,
    functionVersion: '$LATEST',
    invokedFunctionArn: fn.arn,
    memoryLimitInMB: String(fn.memorySize),
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${fn.name}`,
    logStreamName: stream,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

/** JSON round trip: what a value looks like after crossing the Lambda boundary. */
export function overTheWire<T>(value: unknown): T {
  const text = JSON.stringify(value);
  return (text === undefined ? null : JSON.parse(text)) as T;
}

/**
 * Invokes `fn` with `event` like Lambda would.
 * @throws LambdaFunctionError when the handler throws or times out
 */
export async function invokeFunction<E, R>(fn: LocalFunction<E, R>, event: E): Promise<R> {
  const environments = fn.environments;
  const handler = environments === undefined ? fn.handler : await environments.acquire();
  const startedAt = Date.now();
  const context = createLambdaContext(fn, startedAt);
  let payload: E;
  try {
    payload = overTheWire<E>(event);
  } catch (error) {
    environments?.release(handler);
    throw error;
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new LambdaFunctionError(fn.name, LAMBDA_TIMEOUT_ERROR_TYPE, `Task timed out after ${(fn.timeoutMs / 1000).toFixed(2)} seconds`),
      );
    }, fn.timeoutMs);
  });
  try {
    let running: Promise<R>;
    try {
      // The invocation's scope: SDK calls the handler makes are attributed to this function (sdk-recorder.ts).
      running = Promise.resolve(withinInvocation({ functionName: fn.name, functionArn: fn.arn }, () => handler(payload, context)));
    } catch (error) {
      running = Promise.reject(error);
    }
    if (environments !== undefined) {
      const release = (): void => environments.release(handler);
      running.then(release, release);
    }
    const result = await Promise.race([running, timedOut]);
    return overTheWire<R>(result);
  } catch (error) {
    if (error instanceof LambdaFunctionError) throw error;
    if (error instanceof Error) {
      throw new LambdaFunctionError(
        fn.name,
        error.name || 'Error',
        error.message,
        (error.stack ?? '')
          .split('\n')
          .slice(1, 8)
          .map((line) => line.trim()),
      );
    }
    throw new LambdaFunctionError(fn.name, 'Error', String(error));
  } finally {
    clearTimeout(timer);
  }
}
