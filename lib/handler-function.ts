import { fileURLToPath } from 'node:url';
import type { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat, type NodejsFunctionProps } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';

/**
 * The handlers shipped with the orchestrator, by name. Each file exports `handler`.
 */
export const HANDLER_ENTRY = {
  START_EXECUTION: fileURLToPath(new URL('../lambdas/start-execution/handler.ts', import.meta.url)),
  POLL: fileURLToPath(new URL('../lambdas/poll/handler.ts', import.meta.url)),
  FINISH: fileURLToPath(new URL('../lambdas/finish/handler.ts', import.meta.url)),
  RECONCILE: fileURLToPath(new URL('../lambdas/reconcile/handler.ts', import.meta.url)),
  SWEEP: fileURLToPath(new URL('../lambdas/sweep/handler.ts', import.meta.url)),
} as const;

/**
 * Makes CommonJS dependencies work inside the ESM bundle (`require` is not defined in ESM).
 */
export const ESM_REQUIRE_BANNER = "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

/**
 * Modules left out of the bundles and loaded from the Lambda runtime: the AWS SDK v3,
 * which every Node.js 18+ runtime ships (and lets ES modules import through NODE_PATH).
 * Bundling the pinned SDK instead made every bundle 0.9-1.1 MB minified; without it they
 * are a fraction of that (`npm run bench` prints the figures). The price: the SDK version
 * is the runtime's, not the one pinned in package-lock.json and used by the tests (the
 * code uses only long-stable v3 APIs), and a cold import of the unbundled SDK takes longer
 * (measured by the bench). Override with `functionProps.bundling.externalModules: []` to
 * bundle the pinned SDK again.
 */
export const BUNDLED_EXTERNAL_MODULES: readonly string[] = ['@aws-sdk/*'];

/**
 * Props a caller may override on every orchestrator function. The entry, handler, role,
 * log group and code are owned by the orchestrator; `environment` is merged (the
 * orchestrator's own variables win); `bundling` is merged over the defaults.
 */
export type HandlerFunctionOverrides = Omit<NodejsFunctionProps, 'entry' | 'handler' | 'code' | 'role' | 'logGroup' | 'logRetention'>;

/** Options of {@link createHandlerFunction}. */
export interface HandlerFunctionOptions {
  /** Absolute path of the handler file (exports `handler`). */
  readonly entry: string;
  /** What the function does (becomes the Lambda description). */
  readonly description: string;
  /** Function timeout. */
  readonly timeout: Duration;
  /** Environment variables set by the orchestrator. */
  readonly environment: Readonly<Record<string, string>>;
  /** Retention of the function's log group. */
  readonly logRetention: logs.RetentionDays;
  /** Removal policy of the function's log group. */
  readonly removalPolicy: RemovalPolicy;
  /**
   * Overrides applied on top of the defaults.
   * @default - none
   */
  readonly overrides?: HandlerFunctionOverrides;
}

/** What {@link createHandlerFunction} builds. */
export interface HandlerFunctionResources {
  readonly function: NodejsFunction;
  /** The function's execution role (least privilege: it can only write its own log group). */
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
}

/**
 * Builds one orchestrator Lambda: Node.js 24 on arm64, bundled as ESM by the local esbuild
 * (never Docker), with its own log group and its own role. The role starts with write
 * access to that log group only, instead of the AWSLambdaBasicExecutionRole managed policy
 * (which allows writing to every log group in the account).
 *
 * Creates `${id}`, `${id}LogGroup` and `${id}Role` in `scope`.
 */
export function createHandlerFunction(scope: Construct, id: string, options: HandlerFunctionOptions): HandlerFunctionResources {
  const logGroup = new logs.LogGroup(scope, `${id}LogGroup`, {
    retention: options.logRetention,
    removalPolicy: options.removalPolicy,
  });
  const role = new iam.Role(scope, `${id}Role`, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `Execution role of the ${id} function`,
  });
  logGroup.grantWrite(role);

  const overrides = options.overrides ?? {};
  const fn = new NodejsFunction(scope, id, {
    runtime: lambda.Runtime.NODEJS_24_X,
    architecture: lambda.Architecture.ARM_64,
    memorySize: 256,
    description: options.description,
    ...overrides,
    timeout: overrides.timeout ?? options.timeout,
    entry: options.entry,
    handler: 'handler',
    role,
    logGroup,
    environment: {
      ...overrides.environment,
      NODE_OPTIONS: '--enable-source-maps',
      POWERTOOLS_SERVICE_NAME: 'waterflai-orchestrator',
      ...options.environment,
    },
    bundling: {
      forceDockerBundling: false,
      format: OutputFormat.ESM,
      target: 'node22',
      minify: true,
      // Error names are part of the contract with the state machine's Retry
      // (`TransientPollError`): minification must not rename classes.
      keepNames: true,
      sourceMap: true,
      mainFields: ['module', 'main'],
      banner: ESM_REQUIRE_BANNER,
      // The runtime's AWS SDK (see BUNDLED_EXTERNAL_MODULES for the trade-off).
      externalModules: [...BUNDLED_EXTERNAL_MODULES],
      ...overrides.bundling,
    },
  });
  return { function: fn, role, logGroup };
}
