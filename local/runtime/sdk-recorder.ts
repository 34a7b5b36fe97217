/**
 * Records every AWS SDK command the handlers send on the local runtime, with the function
 * that sent it and the resources it names, so that tests can evaluate each call against the
 * synthesized IAM policies (test/e2e/iam.test.ts).
 *
 * The local runtime runs every handler in one process, and the handlers share the SDK client
 * singletons of `lambdas/aws/clients.ts`. Two pieces, both outside the product code:
 * - {@link withinInvocation}: `invokeFunction` (lambda.ts) runs each invocation inside an
 *   `AsyncLocalStorage` scope naming the function, which follows every promise and callback
 *   of the invocation;
 * - {@link startSdkCallRecorder}: adds an `initialize`-step middleware to each shared client,
 *   which runs once per `send` (before the retry middleware: a retried call is recorded once)
 *   and reads the function from that scope.
 *
 * Off unless a runtime asks for it (`recordSdkCalls`): without a recorder no scope is
 * created and nothing is added to the clients.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/** The function an invocation belongs to. */
export interface InvocationScope {
  /** The function name (the template's FunctionName or logical id). */
  readonly functionName: string;
  /** Its (fake) ARN, whose last part is the function's logical id. */
  readonly functionArn: string;
}

/** The resource identifiers a recorded command names (as sent, before any marshalling). */
export interface SdkCallResources {
  readonly TableName?: string;
  readonly IndexName?: string;
  readonly QueueUrl?: string;
  /** PutEvents: the bus of each entry (`default` for an entry without one). */
  readonly EventBusNames?: readonly string[];
  readonly stateMachineArn?: string;
  /** StartExecution: the execution name. */
  readonly name?: string;
  readonly executionArn?: string;
  readonly SecretId?: string;
  readonly Bucket?: string;
  readonly Key?: string;
}

/** One command a handler sent. */
export interface RecordedSdkCall {
  /** The function that sent it, or undefined when it was sent outside any invocation. */
  readonly functionName?: string;
  readonly functionArn?: string;
  /** The role of that function (start, poll, ...), when the runtime knows it. */
  readonly role?: string;
  /** The SDK client's service, e.g. `DynamoDB`, `SQS`, `SFN` (the client class name without `Client`). */
  readonly service: string;
  /** The API operation, e.g. `UpdateItem` (the command class name without `Command`). */
  readonly command: string;
  readonly resources: SdkCallResources;
  /** `ok`, the error name the call ended with (e.g. `ConditionalCheckFailedException`), or `in flight`. */
  readonly outcome: string;
}

/** The outcome of a call not answered yet. */
export const IN_FLIGHT = 'in flight';

/** Name of the middleware added to the shared clients. */
export const SDK_RECORDER_MIDDLEWARE = 'localRuntimeSdkCallRecorder';

let scopes: AsyncLocalStorage<InvocationScope> | undefined;

/**
 * Runs `run` as (part of) an invocation of `scope`'s function: SDK calls made inside, in
 * any async continuation, are attributed to it. A plain call when no recorder is on.
 */
export function withinInvocation<T>(scope: InvocationScope, run: () => T): T {
  return scopes === undefined ? run() : scopes.run(scope, run);
}

/**
 * The part of an SDK client's middleware stack the recorder uses. Typed here structurally:
 * each client's `MiddlewareStack` is generic over its own service input/output unions (and
 * `add` is overloaded per step), while the recorder only reads `args.input` and passes the
 * arguments and the result through unchanged.
 */
interface RecordableMiddlewareStack {
  add(
    middleware: (
      next: (args: { readonly input: unknown }) => Promise<unknown>,
      context: { readonly clientName?: string; readonly commandName?: string },
    ) => (args: { readonly input: unknown }) => Promise<unknown>,
    options: { readonly step: 'initialize'; readonly name: string; readonly priority: 'high'; readonly override: boolean },
  ): void;
  remove(name: string): boolean;
}

/** A live recorder. */
export interface SdkCallRecorder {
  /** Every call recorded so far, oldest first. */
  calls(): readonly RecordedSdkCall[];
  /** Forgets the calls recorded so far. */
  clear(): void;
  /** Takes the middleware off the clients; later calls are not recorded. */
  stop(): void;
}

export interface SdkCallRecorderOptions {
  /**
   * The handlers' SDK clients. @default every client of `lambdas/aws/clients.ts`
   *   (each zero-argument factory is called: the singletons the handlers use)
   */
  readonly clients?: readonly object[];
  /** The role of a function, from its ARN. @default none */
  readonly roleOf?: (functionArn: string) => string | undefined;
}

/**
 * Starts recording the SDK commands the handlers send. Call it after the handlers are
 * loaded (the factories then return the clients they already use; a client no handler
 * created yet is created here, after the runtime's AWS environment is in place).
 */
export async function startSdkCallRecorder(options: SdkCallRecorderOptions = {}): Promise<SdkCallRecorder> {
  scopes ??= new AsyncLocalStorage<InvocationScope>();
  const invocations = scopes;
  const clients = options.clients ?? (await handlerClients());
  const recorded: RecordedSdkCall[] = [];
  const stacks: RecordableMiddlewareStack[] = [];
  for (const client of clients) {
    const stack = middlewareStackOf(client);
    if (stack === undefined) continue;
    stack.add(
      (next, context) =>
        async function recordSdkCall(args) {
          const scope = invocations.getStore();
          const role = scope === undefined ? undefined : options.roleOf?.(scope.functionArn);
          const call = {
            ...(scope === undefined ? {} : { functionName: scope.functionName, functionArn: scope.functionArn }),
            ...(role === undefined ? {} : { role }),
            service: (context.clientName ?? 'Unknown').replace(/Client$/, ''),
            command: (context.commandName ?? 'Unknown').replace(/Command$/, ''),
            resources: resourcesOf(context.commandName, args.input),
          };
          // Recorded when sent (a call still in flight when the runtime stops is kept), in send order.
          const entry: RecordedSdkCall = { ...call, outcome: IN_FLIGHT };
          recorded.push(entry);
          const settle = (outcome: string): void => {
            const at = recorded.indexOf(entry);
            if (at >= 0) recorded[at] = { ...call, outcome };
          };
          try {
            const result = await next(args);
            settle('ok');
            return result;
          } catch (error) {
            settle(error instanceof Error ? error.name : 'Error');
            throw error;
          }
        },
      { step: 'initialize', name: SDK_RECORDER_MIDDLEWARE, priority: 'high', override: true },
    );
    stacks.push(stack);
  }
  return {
    calls: () => [...recorded],
    clear: () => {
      recorded.length = 0;
    },
    stop: () => {
      for (const stack of stacks.splice(0)) stack.remove(SDK_RECORDER_MIDDLEWARE);
    },
  };
}

/** The clients of `lambdas/aws/clients.ts` (the same module instance the handlers import). */
async function handlerClients(): Promise<object[]> {
  const factories = (await import('../../lambdas/aws/clients')) as Record<string, unknown>;
  const clients: object[] = [];
  for (const create of Object.values(factories)) {
    if (typeof create !== 'function' || create.length !== 0) continue; // the client factories take no argument
    const client: unknown = (create as () => unknown)();
    if (typeof client === 'object' && client !== null && !clients.includes(client)) clients.push(client);
  }
  return clients;
}

function middlewareStackOf(client: object): RecordableMiddlewareStack | undefined {
  const stack: unknown = (client as { middlewareStack?: unknown }).middlewareStack;
  if (typeof stack !== 'object' || stack === null) return undefined;
  const candidate = stack as Partial<Record<'add' | 'remove', unknown>>;
  // See RecordableMiddlewareStack: the structural view of the SDK's generic stack.
  return typeof candidate.add === 'function' && typeof candidate.remove === 'function' ? (stack as RecordableMiddlewareStack) : undefined;
}

const STRING_RESOURCES = [
  'TableName',
  'IndexName',
  'QueueUrl',
  'stateMachineArn',
  'name',
  'executionArn',
  'SecretId',
  'Bucket',
  'Key',
] as const;

/** The resource identifiers of a command input (`commandName` as the SDK names it, e.g. `PutEventsCommand`). */
export function resourcesOf(commandName: string | undefined, input: unknown): SdkCallResources {
  if (typeof input !== 'object' || input === null) return {};
  const fields = input as Record<string, unknown>;
  const resources: Record<string, string | readonly string[]> = {};
  for (const key of STRING_RESOURCES) {
    const value = fields[key];
    if (typeof value === 'string') resources[key] = value;
  }
  if (commandName === 'PutEventsCommand' && Array.isArray(fields.Entries)) {
    const buses = (fields.Entries as unknown[]).map((entry) => {
      const bus = typeof entry === 'object' && entry !== null ? (entry as { EventBusName?: unknown }).EventBusName : undefined;
      return typeof bus === 'string' && bus !== '' ? bus : 'default';
    });
    if (buses.length > 0) resources.EventBusNames = [...new Set(buses)];
  }
  return resources as SdkCallResources;
}
