import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Annotations, type Duration, type RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat, type NodejsFunctionProps } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';

/**
 * The handlers shipped with the orchestrator: the folder of each under `lambdas/` (source
 * `lambdas/<name>/handler.ts`, exporting `handler`) and, in the installed package,
 * under `dist/lambdas/` (prebundled `dist/lambdas/<name>/index.mjs`).
 */
export const HANDLER_NAME = {
  START_EXECUTION: 'start-execution',
  POLL: 'poll',
  FINISH: 'finish',
  RECONCILE: 'reconcile',
  SWEEP: 'sweep',
} as const;
export type HandlerName = (typeof HANDLER_NAME)[keyof typeof HANDLER_NAME];

/** The source file of each handler, by name. Each file exports `handler`. */
export const HANDLER_ENTRY: Readonly<Record<keyof typeof HANDLER_NAME, string>> = {
  START_EXECUTION: sourceEntry(HANDLER_NAME.START_EXECUTION),
  POLL: sourceEntry(HANDLER_NAME.POLL),
  FINISH: sourceEntry(HANDLER_NAME.FINISH),
  RECONCILE: sourceEntry(HANDLER_NAME.RECONCILE),
  SWEEP: sourceEntry(HANDLER_NAME.SWEEP),
};

function sourceEntry(name: HandlerName): string {
  return fileURLToPath(new URL(`../lambdas/${name}/handler.ts`, import.meta.url));
}

/** File name of a prebundled handler inside its folder (what NodejsFunction names an ESM bundle). */
export const PREBUNDLED_FILE = 'index.mjs';
/** The Lambda handler of a prebundled function: `handler` exported by `index.mjs`. */
export const PREBUNDLED_HANDLER = 'index.handler';

/**
 * The folder of a handler's prebundled code when it exists next to the compiled library: in
 * the installed package the library is `dist/index.js` and the bundles are
 * `dist/lambdas/<name>/index.mjs` (written by `npm run build`). Inside this repository the
 * library runs from `lib/`, where no such folder exists, so the handlers are bundled from
 * their sources.
 */
export function prebundledHandlerDirectory(name: HandlerName): string | undefined {
  const directory = fileURLToPath(new URL(`./lambdas/${name}`, import.meta.url));
  return existsSync(join(directory, PREBUNDLED_FILE)) ? directory : undefined;
}

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
 * bundle the pinned SDK again (when bundling from source: the installed package's prebundled
 * handlers keep the runtime's SDK).
 */
export const BUNDLED_EXTERNAL_MODULES: readonly string[] = ['@aws-sdk/*'];

/** The esbuild options every handler is bundled with (see {@link HANDLER_BUNDLING}). */
export interface HandlerBundling {
  readonly format: OutputFormat;
  readonly target: string;
  readonly minify: boolean;
  readonly keepNames: boolean;
  readonly sourceMap: boolean;
  readonly mainFields: readonly string[];
  readonly banner: string;
  readonly externalModules: readonly string[];
}

/**
 * How each handler is bundled by the local esbuild: ESM for the Node.js 22+ runtimes,
 * minified with a source map. `npm run build` prebundles the package's handlers with exactly
 * these options (scripts/build.ts), so an installed construct deploys the same code.
 */
export const HANDLER_BUNDLING: HandlerBundling = {
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
  externalModules: BUNDLED_EXTERNAL_MODULES,
};

/**
 * Props a caller may override on every orchestrator function. The entry, handler, role,
 * log group and code are owned by the orchestrator; `environment` is merged (the
 * orchestrator's own variables win); `bundling` is merged over the defaults when the
 * handlers are bundled from source (this repository), and ignored, with a warning, when the
 * installed package's prebundled code is used.
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
 * Builds one orchestrator Lambda: Node.js 24 on arm64, with its own log group and its own
 * role. The role starts with write access to that log group only, instead of the
 * AWSLambdaBasicExecutionRole managed policy (which allows writing to every log group in the
 * account).
 *
 * The code: the handler's prebundled folder when it exists next to the compiled library (the
 * installed package, see {@link prebundledHandlerDirectory}), else the handler's source
 * bundled as ESM by the local esbuild (never Docker) with {@link HANDLER_BUNDLING}. Either way
 * the function is a `NodejsFunction` whose handler is `index.handler`.
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

  const { bundling, ...overrides } = options.overrides ?? {};
  const props: NodejsFunctionProps = {
    runtime: lambda.Runtime.NODEJS_24_X,
    architecture: lambda.Architecture.ARM_64,
    memorySize: 256,
    description: options.description,
    ...overrides,
    timeout: overrides.timeout ?? options.timeout,
    role,
    logGroup,
    environment: {
      ...overrides.environment,
      NODE_OPTIONS: '--enable-source-maps',
      POWERTOOLS_SERVICE_NAME: 'waterflai-orchestrator',
      ...options.environment,
    },
  };
  const prebundled = prebundledDirectoryOf(options.entry);
  if (prebundled !== undefined) {
    const fn = new NodejsFunction(scope, id, { ...props, code: lambda.Code.fromAsset(prebundled), handler: PREBUNDLED_HANDLER });
    if (bundling !== undefined) {
      Annotations.of(fn).addWarningV2(
        'waterflai-orchestrator:bundlingIgnored',
        'functionProps.bundling is ignored: the installed package deploys its prebundled handlers (dist/lambdas/).',
      );
    }
    return { function: fn, role, logGroup };
  }
  const fn = new NodejsFunction(scope, id, {
    ...props,
    entry: options.entry,
    handler: 'handler',
    bundling: {
      forceDockerBundling: false,
      ...HANDLER_BUNDLING,
      mainFields: [...HANDLER_BUNDLING.mainFields],
      externalModules: [...HANDLER_BUNDLING.externalModules],
      ...bundling,
    },
  });
  return { function: fn, role, logGroup };
}

/** The prebundled folder of one of the orchestrator's own handlers, when the package ships it. */
function prebundledDirectoryOf(entry: string): string | undefined {
  const key = (Object.keys(HANDLER_ENTRY) as Array<keyof typeof HANDLER_ENTRY>).find((name) => HANDLER_ENTRY[name] === entry);
  return key === undefined ? undefined : prebundledHandlerDirectory(HANDLER_NAME[key]);
}
