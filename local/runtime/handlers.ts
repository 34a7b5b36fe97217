/**
 * Loads the project's Lambda handlers, unchanged, the way Lambda would run them here: each
 * handler module is imported with exactly its own function's environment from the
 * synthesized template (the handlers read their configuration at import), with the AWS SDK
 * pointed at the local services through `AWS_ENDPOINT_URL_<SERVICE>`.
 */
import { devNull } from 'node:os';
import { ENV } from '../../lambdas/contract/constants';
import { fakeFunctionArn } from '../asl';
import { ExecutionEnvironments, type LambdaHandler, type LocalFunction } from './lambda';
import { resolveEnvironment, type FunctionRole, type LocalResourceValues, type RuntimeModel } from './template';

/** Handler code of each role (the same files lib/handler-function.ts bundles). */
const HANDLER_MODULES: Readonly<Record<FunctionRole, () => Promise<{ handler: unknown }>>> = {
  start: () => import('../../lambdas/start-execution/handler'),
  poll: () => import('../../lambdas/poll/handler'),
  finish: () => import('../../lambdas/finish/handler'),
  reconcile: () => import('../../lambdas/reconcile/handler'),
  sweep: () => import('../../lambdas/sweep/handler'),
};

/**
 * The same files, for further instances of a module (execution environments): imported
 * with a distinct query, each is a separate module instance with its own module state.
 */
const HANDLER_FILES: Readonly<Record<FunctionRole, string>> = {
  start: '../../lambdas/start-execution/handler.ts',
  poll: '../../lambdas/poll/handler.ts',
  finish: '../../lambdas/finish/handler.ts',
  reconcile: '../../lambdas/reconcile/handler.ts',
  sweep: '../../lambdas/sweep/handler.ts',
};

function handlerInstance(role: FunctionRole, instance: number): () => Promise<{ handler: unknown }> {
  if (instance === 0) return HANDLER_MODULES[role];
  const url = new URL(`${HANDLER_FILES[role]}?environment=${instance}`, import.meta.url).href;
  return () => import(url) as Promise<{ handler: unknown }>;
}

/** Variables of the process that would point the SDK somewhere else, or carry secrets. */
const SCRUBBED_VARIABLES = [
  'AWS_SESSION_TOKEN',
  'AWS_PROFILE',
  'AWS_DEFAULT_PROFILE',
  'AWS_IGNORE_CONFIGURED_ENDPOINT_URLS',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_ROLE_ARN',
  'WATERFLAI_API_KEY',
] as const;

/** Variables a Lambda's environment may carry that mean nothing in this process. */
const IGNORED_FUNCTION_VARIABLES = ['NODE_OPTIONS'] as const;

export type LocalFunctions = { readonly [Role in 'start' | 'poll' | 'finish']: LocalFunction } & {
  readonly [Role in 'reconcile' | 'sweep']?: LocalFunction;
};

/** The roles of the functions the template has, in import order. */
export function rolesOf(model: RuntimeModel): FunctionRole[] {
  return (['start', 'poll', 'finish', 'reconcile', 'sweep'] as const).filter((role) => model.functions[role] !== undefined);
}

export interface AwsEnvironmentOptions {
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  readonly sqsEndpoint: string;
  readonly dynamodbEndpoint: string;
  /** The local AWS JSON endpoint (EventBridge, Step Functions, Secrets Manager, and the catch-all). */
  readonly awsEndpoint: string;
  /** S3 (fauxqs). */
  readonly s3Endpoint: string;
  readonly logLevel: string;
}

/**
 * Points every AWS SDK client of this process at the local services, with dummy
 * credentials and no shared config files. The catch-all `AWS_ENDPOINT_URL` sends any other
 * service to the local endpoint, which refuses it: nothing falls through to AWS.
 */
export function applyAwsEnvironment(options: AwsEnvironmentOptions): void {
  for (const name of SCRUBBED_VARIABLES) delete process.env[name];
  Object.assign(process.env, {
    AWS_REGION: options.region,
    AWS_DEFAULT_REGION: options.region,
    AWS_ACCESS_KEY_ID: options.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: options.credentials.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    AWS_CONFIG_FILE: devNull,
    AWS_SHARED_CREDENTIALS_FILE: devNull,
    AWS_ENDPOINT_URL: options.awsEndpoint,
    AWS_ENDPOINT_URL_SQS: options.sqsEndpoint,
    AWS_ENDPOINT_URL_DYNAMODB: options.dynamodbEndpoint,
    AWS_ENDPOINT_URL_SFN: options.awsEndpoint,
    AWS_ENDPOINT_URL_EVENTBRIDGE: options.awsEndpoint,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: options.awsEndpoint,
    AWS_ENDPOINT_URL_LAMBDA: options.awsEndpoint,
    AWS_ENDPOINT_URL_STS: options.awsEndpoint,
    AWS_ENDPOINT_URL_S3: options.s3Endpoint,
    POWERTOOLS_LOG_LEVEL: options.logLevel,
  });
}

export interface LoadFunctionsOptions {
  readonly model: RuntimeModel;
  /** Local values of the template's resources (see `localResourceValues`). */
  readonly values: LocalResourceValues;
  readonly waterflaiBaseUrl: string;
  /**
   * Values the runtime can give a handler that reads a variable its function's template
   * environment lacks (each use is reported through `warn`: the deployed function would fail).
   */
  readonly fills: Readonly<Record<string, string>>;
  readonly warn: (message: string) => void;
  /** Wraps each import (boot-step reporting). */
  readonly step: <T>(name: string, run: () => Promise<T>) => Promise<T>;
  /**
   * Execution environments per role: that many instances of the module, each running one
   * invocation at a time (see `LocalFunction.environments`). Roles not listed get one
   * instance shared by concurrent invocations. @default {}
   */
  readonly environments?: Readonly<Partial<Record<FunctionRole, number>>>;
}

/**
 * Imports every handler of the template with its own environment; afterwards the process
 * keeps the union of the environments (the start function's values win where two differ).
 */
export async function loadFunctions(options: LoadFunctionsOptions): Promise<LocalFunctions> {
  const { model, values, fills, warn } = options;
  const environments: Partial<Record<FunctionRole, Record<string, string>>> = {};
  for (const role of rolesOf(model)) {
    const resolved = resolveEnvironment(model.functions[role]!.environment, values);
    for (const name of IGNORED_FUNCTION_VARIABLES) delete resolved[name];
    resolved[ENV.WATERFLAI_BASE_URL] = options.waterflaiBaseUrl;
    const maxReceiveCount = resolved[ENV.MAX_RECEIVE_COUNT];
    if (maxReceiveCount !== undefined && maxReceiveCount !== String(model.intakeQueue.maxReceiveCount)) {
      warn(
        `the ${role} function's ${ENV.MAX_RECEIVE_COUNT} (${maxReceiveCount}) differs from the intake queue's maxReceiveCount (${model.intakeQueue.maxReceiveCount})`,
      );
    }
    environments[role] = resolved;
  }

  const allVariables = new Set(Object.values(environments).flatMap((environment) => Object.keys(environment)));
  const functions: Partial<Record<FunctionRole, LocalFunction>> = {};
  for (const role of rolesOf(model)) {
    const environment = environments[role]!;
    const fn = model.functions[role]!;
    const count = Math.max(1, Math.floor(options.environments?.[role] ?? 1));
    const handlers: LambdaHandler[] = [];
    for (let instance = 0; instance < count; instance += 1) {
      for (const name of allVariables) delete process.env[name];
      const label =
        count === 1
          ? `the ${role} function (${fn.logicalId})`
          : `the ${role} function (${fn.logicalId}), environment ${instance + 1} of ${count}`;
      const loaded = await options.step(label, () =>
        importWithEnvironment(handlerInstance(role, instance), environment, fills, (name, value) => {
          environment[name] = value;
          warn(
            `the ${role} function reads ${name}, which the synthesized template does not set for ${fn.logicalId}; the local runtime gives it ${value}`,
          );
        }),
      );
      const handler = loaded.handler;
      if (typeof handler !== 'function') throw new Error(`the ${role} function's module exports no handler function`);
      handlers.push(handler as LambdaHandler);
    }
    functions[role] = {
      name: fn.name,
      arn: fakeFunctionArn(fn.logicalId),
      timeoutMs: fn.timeoutSeconds * 1000,
      memorySize: fn.memorySize,
      handler: handlers[0]!,
      ...(count > 1 ? { environments: new ExecutionEnvironments(handlers) } : {}),
    };
  }
  for (const role of [...rolesOf(model)].reverse()) Object.assign(process.env, environments[role]);
  return functions as LocalFunctions;
}

/**
 * Imports a module while `process.env` shows exactly `environment` on top of the process's
 * own variables. A variable the module reads that is missing but has a value in `fills` is
 * given that value (and reported through `onFill`).
 */
export async function importWithEnvironment<T>(
  load: () => Promise<T>,
  environment: Readonly<Record<string, string>>,
  fills: Readonly<Record<string, string>>,
  onFill: (name: string, value: string) => void,
): Promise<T> {
  const original = process.env;
  const target: Record<string, string | undefined> = { ...original, ...environment };
  const fill = (key: string | symbol): void => {
    if (typeof key !== 'string' || target[key] !== undefined) return;
    const value = fills[key];
    if (value === undefined) return;
    target[key] = value;
    onFill(key, value);
  };
  process.env = new Proxy(target, {
    get(object, key) {
      fill(key);
      return Reflect.get(object, key);
    },
    has(object, key) {
      fill(key);
      return Reflect.has(object, key);
    },
  }) as NodeJS.ProcessEnv;
  try {
    return await load();
  } finally {
    process.env = original;
  }
}

/** Closes the handlers' shared SDK clients (module singletons) so no socket outlives the runtime. */
export async function destroyHandlerClients(): Promise<void> {
  const clients = (await import('../../lambdas/aws/clients')) as Record<string, unknown>;
  for (const create of Object.values(clients)) {
    if (typeof create !== 'function' || create.length !== 0) continue; // the client factories take no argument
    try {
      const client = (create as () => { destroy?: () => void })();
      client.destroy?.();
    } catch {
      // already gone
    }
  }
}
