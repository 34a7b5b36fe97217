/**
 * The installable package, used exactly as a platform team uses it: `npm run build` and
 * `npm pack` here, then a plain JavaScript (ESM) CDK app in a temporary folder outside the
 * repository installs only the tarball, `aws-cdk-lib` and `constructs` (the versions of this
 * repository's lockfile, from the npm cache), synthesizes `new WaterflaiOrchestrator(stack,
 * 'Id', {})` offline, and a subscriber script parses the sample outcome events with the
 * exported schema. Children run with a bare environment: no AWS credentials, a dummy region,
 * the instance metadata service disabled.
 *
 * Slow by nature (a build, an install, a synth): about a minute on two cores.
 */
import { type ExecFileOptions, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { App, Stack } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODE } from '../../lambdas/contract/constants';
import { PREBUNDLED_FILE } from '../../lib/handler-function';
import { WaterflaiOrchestrator } from '../../lib/orchestrator';
import { LIBRARY_ENTRIES, PREBUNDLED_LAMBDAS } from '../../scripts/build';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PACKAGE_NAME = 'waterflai-orchestrator';
const SLOW = 180_000;
/** A tarball this size or larger holds something it should not (node_modules, cdk.out). */
const MAX_TARBALL_BYTES = 4 * 1024 * 1024;

interface CfnResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
}
interface CfnTemplate {
  readonly Resources: Record<string, CfnResource>;
}
interface PackResult {
  readonly filename: string;
  readonly size: number;
  readonly files: ReadonlyArray<{ readonly path: string }>;
}
interface AssetManifest {
  readonly files: Record<string, { readonly source: { readonly path: string } }>;
}
interface SubscriberReport {
  readonly outcomes: ReadonlyArray<{ file: string; status: string; errorCode: string | null; source: boolean; detailType: boolean }>;
  readonly wrongStatusRejected: boolean;
  readonly jobAccepted: boolean;
  readonly unknownFieldRejected: boolean;
  readonly errorCodes: readonly string[];
}

const run = promisify(execFile);

/** What a fresh shell would have: no AWS or CDK settings, no npm lifecycle variables of this run. */
function bareEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const kept = new Set(['PATH', 'HOME', 'USER', 'TMPDIR', 'LANG', 'LC_ALL', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']);
  const npmSettings = new Set([
    'npm_config_cache',
    'npm_config_userconfig',
    'npm_config_globalconfig',
    'npm_config_registry',
    'npm_config_cafile',
  ]);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (kept.has(key.toUpperCase()) || npmSettings.has(key.toLowerCase())) env[key] = value;
  }
  return { ...env, AWS_EC2_METADATA_DISABLED: 'true', AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'us-east-1', ...extra };
}

async function exec(command: string, args: readonly string[], options: ExecFileOptions & { cwd: string }): Promise<string> {
  try {
    const { stdout } = await run(command, args, { env: bareEnvironment(), maxBuffer: 64 * 1024 * 1024, timeout: SLOW, ...options });
    return String(stdout);
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: unknown; stderr?: unknown };
    throw new Error(`${command} ${args.join(' ')} failed in ${options.cwd}:\n${String(stderr ?? '')}\n${String(stdout ?? '')}`, {
      cause: error,
    });
  }
}

function lockedVersion(name: string): string {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
  const version = lock.packages[`node_modules/${name}`]?.version;
  if (version === undefined) throw new Error(`${name} is not in package-lock.json`);
  return version;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function filesUnder(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

function resourcesOf(template: CfnTemplate, type: string): Array<[string, CfnResource]> {
  return Object.entries(template.Resources).filter(([, resource]) => resource.Type === type);
}

/** The template with each function's code replaced by a marker (asset hashes differ between bundled and prebundled code). */
function withoutFunctionCode(template: CfnTemplate): CfnTemplate {
  const resources = Object.entries(template.Resources).map(([id, resource]): [string, CfnResource] =>
    resource.Type === 'AWS::Lambda::Function'
      ? [id, { ...resource, Properties: { ...resource.Properties, Code: 'CODE' } }]
      : [id, resource],
  );
  return { ...template, Resources: Object.fromEntries(resources) };
}

const APP = `import { App, Stack } from 'aws-cdk-lib';
import { WaterflaiOrchestrator } from '${PACKAGE_NAME}';

const app = new App();
const stack = new Stack(app, 'ConsumerStack');
new WaterflaiOrchestrator(stack, 'Id', {});
app.synth();
`;

const SUBSCRIBER = `import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DETAIL_TYPE, ERROR_CODE, EVENT_SOURCE, jobRequestSchema, outcomeDetailSchema } from '${PACKAGE_NAME}/events';

const [outcomeFolder, jobFile] = process.argv.slice(2);
const read = (path) => JSON.parse(readFileSync(path, 'utf8'));
const events = readdirSync(outcomeFolder).sort().map((file) => [file, read(join(outcomeFolder, file))]);
const outcomes = events.map(([file, event]) => {
  const detail = outcomeDetailSchema.parse(event.detail);
  return {
    file,
    status: detail.status,
    errorCode: detail.error?.code ?? null,
    source: event.source === EVENT_SOURCE,
    detailType: Object.values(DETAIL_TYPE).includes(event['detail-type']),
  };
});
const job = read(jobFile);
console.log(JSON.stringify({
  outcomes,
  wrongStatusRejected: !outcomeDetailSchema.safeParse({ ...events[0][1].detail, status: 'DONE' }).success,
  jobAccepted: jobRequestSchema.safeParse(job).success,
  unknownFieldRejected: !jobRequestSchema.safeParse({ ...job, base_url: 'https://elsewhere.example' }).success,
  errorCodes: Object.keys(ERROR_CODE),
}));
`;

describe('the npm package, installed in a plain JavaScript CDK app', { timeout: SLOW }, () => {
  let work = '';
  let packed: PackResult;
  let installed = '';
  let consumerNodeModules = '';
  let template: CfnTemplate;
  let cdkOut = '';
  let subscriber: SubscriberReport;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'waterflai-package-'));
    const packFolder = join(work, 'pack');
    const app = join(work, 'app');
    cdkOut = join(work, 'cdk.out');
    mkdirSync(packFolder);
    mkdirSync(app);

    await exec('npm', ['run', 'build'], { cwd: ROOT });
    const packOutput = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packFolder], { cwd: ROOT });
    const [result] = JSON.parse(packOutput) as PackResult[];
    if (result === undefined) throw new Error(`npm pack printed no result: ${packOutput}`);
    packed = result;

    writeFileSync(join(app, 'package.json'), `${JSON.stringify({ name: 'consumer-app', private: true, type: 'module' }, null, 2)}\n`);
    writeFileSync(join(app, 'app.mjs'), APP);
    writeFileSync(join(app, 'subscriber.mjs'), SUBSCRIBER);
    await exec(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        '--save-exact',
        join(packFolder, packed.filename),
        `aws-cdk-lib@${lockedVersion('aws-cdk-lib')}`,
        `constructs@${lockedVersion('constructs')}`,
      ],
      { cwd: app },
    );
    consumerNodeModules = join(app, 'node_modules');
    installed = join(consumerNodeModules, PACKAGE_NAME);

    await exec('node', ['app.mjs'], { cwd: app, env: bareEnvironment({ CDK_OUTDIR: cdkOut }) });
    template = JSON.parse(readFileSync(join(cdkOut, 'ConsumerStack.template.json'), 'utf8')) as CfnTemplate;

    const report = await exec(
      'node',
      ['subscriber.mjs', join(ROOT, 'events/samples/outcomes'), join(ROOT, 'events/samples/jobs/01-summarise-report-completes.json')],
      { cwd: app },
    );
    subscriber = JSON.parse(report) as SubscriberReport;
  }, SLOW);

  afterAll(() => {
    if (work !== '') rmSync(work, { recursive: true, force: true });
  });

  it('packs the built library, its declarations and the five prebundled Lambdas, and nothing else', () => {
    const paths = packed.files.map((file) => file.path);
    expect(paths).toEqual(expect.arrayContaining(['package.json', ...Object.keys(LIBRARY_ENTRIES).map((name) => `dist/${name}.js`)]));
    for (const name of PREBUNDLED_LAMBDAS) {
      expect(paths).toContain(`dist/lambdas/${name}/${PREBUNDLED_FILE}`);
      expect(paths).toContain(`dist/lambdas/${name}/${PREBUNDLED_FILE}.map`);
    }
    expect(paths.filter((path) => !path.startsWith('dist/') && path !== 'package.json' && !/^readme\.md$/i.test(path))).toEqual([]);
    expect(paths.filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts'))).toEqual([]);
    expect(packed.size).toBeLessThan(MAX_TARBALL_BYTES);
  });

  it('installs nothing but the package, zod, aws-cdk-lib and constructs (with its own dependencies)', () => {
    const packages = readdirSync(consumerNodeModules)
      .filter((name) => !name.startsWith('.'))
      .flatMap((name) => (name.startsWith('@') ? readdirSync(join(consumerNodeModules, name)).map((inner) => `${name}/${inner}`) : [name]));
    const expected = [PACKAGE_NAME, 'zod', 'aws-cdk-lib', 'constructs'];
    expect(packages.filter((name) => !expected.includes(name) && !name.startsWith('@aws-cdk/'))).toEqual([]);
    expect(packages).toEqual(expect.arrayContaining(expected));
  });

  it('resolves every export and every relative import of its declarations the Node ESM way (explicit extensions)', () => {
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
      exports: Record<string, string | Record<string, string>>;
    };
    expect(Object.keys(manifest.exports)).toEqual(expect.arrayContaining(['.', './events']));
    for (const target of Object.values(manifest.exports).flatMap((entry) => (typeof entry === 'string' ? [entry] : Object.values(entry)))) {
      expect(existsSync(join(installed, target)), target).toBe(true);
    }
    const declarations = filesUnder(installed).filter((path) => path.endsWith('.d.ts'));
    expect(declarations.length).toBeGreaterThan(2);
    const unresolved: string[] = [];
    for (const file of declarations) {
      for (const match of readFileSync(file, 'utf8').matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)["'](\.{1,2}\/[^"']*)["']/g)) {
        const specifier = match[1] ?? '';
        const target = resolve(dirname(file), specifier.replace(/\.js$/, '.d.ts'));
        if (!specifier.endsWith('.js') || !existsSync(target))
          unresolved.push(`${posix.normalize(relative(installed, file))}: ${specifier}`);
      }
    }
    expect(unresolved).toEqual([]);
  });

  it('synthesizes the orchestrator from the prebundled code: five functions with asset code, the state machine, the table, the queues', () => {
    const functions = resourcesOf(template, 'AWS::Lambda::Function');
    expect(functions).toHaveLength(PREBUNDLED_LAMBDAS.length);
    const assets = JSON.parse(readFileSync(join(cdkOut, 'ConsumerStack.assets.json'), 'utf8')) as AssetManifest;
    const deployed = functions.map(([id, resource]) => {
      const code = resource.Properties?.Code as { S3Key?: unknown; ZipFile?: unknown };
      expect(code.ZipFile, id).toBeUndefined();
      expect(resource.Properties?.Handler, id).toBe('index.handler');
      const key = String(code.S3Key);
      expect(key, id).toMatch(/^[0-9a-f]{64}\.zip$/);
      const asset = assets.files[key.replace(/\.zip$/, '')];
      expect(asset, id).toBeDefined();
      return sha256(join(cdkOut, asset?.source.path ?? '', PREBUNDLED_FILE));
    });
    // The staged code is the package's prebundled code, one bundle per function.
    const shipped = PREBUNDLED_LAMBDAS.map((name) => sha256(join(installed, 'dist/lambdas', name, PREBUNDLED_FILE)));
    expect(deployed.sort()).toEqual(shipped.sort());

    expect(resourcesOf(template, 'AWS::StepFunctions::StateMachine')).toHaveLength(1);
    expect(resourcesOf(template, 'AWS::DynamoDB::Table')).toHaveLength(1);
    expect(resourcesOf(template, 'AWS::SQS::Queue').length).toBeGreaterThanOrEqual(2);
  });

  it('synthesizes the same template as the construct in this repository, bar the function code', () => {
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const stack = new Stack(app, 'ConsumerStack');
    new WaterflaiOrchestrator(stack, 'Id', {});
    const here = app.synth().getStackByName('ConsumerStack').template as CfnTemplate;
    expect(withoutFunctionCode(template)).toEqual(withoutFunctionCode(here));
  });

  it('exports the event contract: the sample outcome events parse with the outcome schema', () => {
    expect(subscriber.outcomes.map((outcome) => outcome.status).sort()).toEqual(['CANCELLED', 'COMPLETED', 'FAILED']);
    for (const outcome of subscriber.outcomes) {
      expect(outcome.source, outcome.file).toBe(true);
      expect(outcome.detailType, outcome.file).toBe(true);
    }
    expect(subscriber.outcomes.find((outcome) => outcome.status === 'FAILED')?.errorCode).toBe(ERROR_CODE.EXECUTION_FAILED);
    expect(subscriber.wrongStatusRejected).toBe(true);
    expect(subscriber.jobAccepted).toBe(true);
    expect(subscriber.unknownFieldRejected).toBe(true);
    expect(subscriber.errorCodes).toEqual(Object.keys(ERROR_CODE));
  });
});
