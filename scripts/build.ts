/**
 * Builds the installable package into `dist/` (`npm run build`; `npm pack` runs it first):
 *
 * - `dist/index.js` (the construct, `lib/index.ts`) and `dist/events.js` (the event contract,
 *   `lambdas/contract/index.ts`): ES modules bundled by esbuild, so Node ESM consumers need no
 *   extension-less import resolution. `aws-cdk-lib`, `constructs` and `zod` stay imports (the
 *   first two are peer dependencies, zod a dependency); the build fails if anything else from
 *   node_modules would be bundled into them.
 * - `dist/types/`: declarations from `tsconfig.build.json`, with every relative import given
 *   its `.js` extension so they resolve under `moduleResolution: node16/nodenext` too.
 * - `dist/lambdas/<name>/index.mjs` (and its source map): each handler bundled with exactly
 *   the options the construct bundles it with (`HANDLER_BUNDLING` in lib/handler-function.ts).
 *   The installed construct deploys these instead of bundling (see `prebundledHandlerDirectory`).
 *
 * Not product code: it lives outside lib/ and lambdas/ (see .dependency-cruiser.cjs).
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { build } from 'esbuild';
import ts from 'typescript';
import { HANDLER_BUNDLING, HANDLER_ENTRY, HANDLER_NAME, PREBUNDLED_FILE } from '../lib/handler-function';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = join(ROOT, 'dist');

/** The package's JavaScript entry points: `dist/<name>.js` from each source. */
export const LIBRARY_ENTRIES = {
  index: 'lib/index.ts',
  events: 'lambdas/contract/index.ts',
} as const;

/** What the library bundles import instead of bundling (peer dependencies and dependencies of the package). */
export const LIBRARY_EXTERNALS: readonly string[] = ['aws-cdk-lib', 'aws-cdk-lib/*', 'constructs', 'zod'];

/** The prebundled handlers, `dist/lambdas/<name>/index.mjs`. */
export const PREBUNDLED_LAMBDAS: readonly string[] = Object.values(HANDLER_NAME);

/** Oldest Node.js the package supports (package.json `engines`). */
const LIBRARY_TARGET = 'node20.19';

async function buildLibrary(): Promise<void> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: Object.fromEntries(Object.entries(LIBRARY_ENTRIES).map(([name, source]) => [name, join(ROOT, source)])),
    outdir: DIST,
    bundle: true,
    // Shared code (the contract constants) lands once, in a chunk beside the entries: every
    // file of the library sits directly in dist/, so `import.meta.url` finds dist/lambdas/.
    splitting: true,
    chunkNames: 'shared-[hash]',
    format: 'esm',
    platform: 'node',
    target: LIBRARY_TARGET,
    external: [...LIBRARY_EXTERNALS],
    metafile: true,
    logLevel: 'warning',
  });
  const bundledPackages = Object.keys(result.metafile.inputs).filter((input) => input.includes('node_modules/'));
  if (bundledPackages.length > 0) {
    throw new Error(
      `the library bundles must import, not bundle, their dependencies; add them to LIBRARY_EXTERNALS and package.json: ${bundledPackages.join(', ')}`,
    );
  }
}

async function buildLambdas(): Promise<void> {
  if (HANDLER_BUNDLING.format !== OutputFormat.ESM) throw new Error(`prebundled handlers are ESM (${PREBUNDLED_FILE})`);
  for (const key of Object.keys(HANDLER_NAME) as Array<keyof typeof HANDLER_NAME>) {
    // The options NodejsFunction turns HANDLER_BUNDLING into (`esbuild --bundle <entry> --platform=node ...`).
    await build({
      absWorkingDir: ROOT,
      entryPoints: [HANDLER_ENTRY[key]],
      outfile: join(DIST, 'lambdas', HANDLER_NAME[key], PREBUNDLED_FILE),
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: HANDLER_BUNDLING.target,
      minify: HANDLER_BUNDLING.minify,
      keepNames: HANDLER_BUNDLING.keepNames,
      sourcemap: HANDLER_BUNDLING.sourceMap,
      mainFields: [...HANDLER_BUNDLING.mainFields],
      banner: { js: HANDLER_BUNDLING.banner },
      external: [...HANDLER_BUNDLING.externalModules],
      logLevel: 'warning',
    });
  }
}

/**
 * The specifier a declaration file needs for Node ESM resolution: `./orchestrator` becomes
 * `./orchestrator.js`, a folder `./x` becomes `./x/index.js`; package imports stay as they are.
 */
function explicitSpecifier(fromDirectory: string, specifier: string): string {
  if (!specifier.startsWith('./') && !specifier.startsWith('../')) return specifier;
  if (/\.(?:m|c)?js$/.test(specifier)) return specifier;
  const target = resolve(fromDirectory, specifier);
  if (existsSync(`${target}.ts`) || existsSync(`${target}.d.ts`)) return `${specifier}.js`;
  if (existsSync(join(target, 'index.ts'))) return `${specifier}/index.js`;
  throw new Error(`cannot resolve ${specifier} from ${relative(ROOT, fromDirectory)}`);
}

/** A declaration transform that gives every relative import, export and `import()` type its extension. */
const withExplicitExtensions: ts.TransformerFactory<ts.SourceFile | ts.Bundle> = (context) => (root) => {
  if (!ts.isSourceFile(root)) return root;
  const { factory } = context;
  const directory = dirname(root.fileName);
  const literal = (node: ts.StringLiteral): ts.StringLiteral => factory.createStringLiteral(explicitSpecifier(directory, node.text));
  const visit = (node: ts.Node): ts.Node => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      return factory.updateImportDeclaration(node, node.modifiers, node.importClause, literal(node.moduleSpecifier), node.attributes);
    }
    if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      return factory.updateExportDeclaration(
        node,
        node.modifiers,
        node.isTypeOnly,
        node.exportClause,
        literal(node.moduleSpecifier),
        node.attributes,
      );
    }
    if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      return factory.updateImportTypeNode(
        node,
        factory.updateLiteralTypeNode(node.argument, literal(node.argument.literal)),
        node.attributes,
        node.qualifier,
        node.typeArguments,
        node.isTypeOf,
      );
    }
    return ts.visitEachChild(node, visit, context);
  };
  return ts.visitEachChild(root, visit, context);
};

function emitDeclarations(): void {
  const host: ts.ParseConfigFileHost = {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
      throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
    },
  };
  const config = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.build.json'), undefined, host);
  if (config === undefined) throw new Error('cannot read tsconfig.build.json');
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
  const result = program.emit(undefined, undefined, undefined, true, { afterDeclarations: [withExplicitExtensions] });
  // Type errors are `npx tsc --noEmit`'s job (npm test); a full check here would double the
  // build time. What can break the declarations themselves is reported here.
  const errors = [
    ...config.errors,
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...program.getSyntacticDiagnostics(),
    ...result.diagnostics,
  ].filter((diagnostic) => diagnostic.category === ts.DiagnosticCategory.Error);
  if (errors.length > 0) {
    const formatHost: ts.FormatDiagnosticsHost = {
      getCanonicalFileName: (name) => name,
      getCurrentDirectory: () => ROOT,
      getNewLine: () => '\n',
    };
    throw new Error(`declarations:\n${ts.formatDiagnostics(errors, formatHost)}`);
  }
}

/** Bytes of every file under `directory`. */
function sizeOf(directory: string): number {
  return readdirSync(directory, { withFileTypes: true }).reduce((total, entry) => {
    const path = join(directory, entry.name);
    return total + (entry.isDirectory() ? sizeOf(path) : statSync(path).size);
  }, 0);
}

/** Builds the whole package into dist/ (removing what was there). */
export async function buildPackage(log: (line: string) => void = () => {}): Promise<void> {
  const timed = async (what: string, step: () => unknown): Promise<void> => {
    const started = Date.now();
    await step();
    log(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  };
  rmSync(DIST, { recursive: true, force: true });
  await timed('library bundles', buildLibrary);
  await timed('prebundled handlers', buildLambdas);
  await timed('declarations', emitDeclarations);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const started = Date.now();
  await buildPackage((line) => console.log(line));
  const kib = (bytes: number): string => `${(bytes / 1024).toFixed(0)} KiB`;
  console.log(`dist/ built in ${((Date.now() - started) / 1000).toFixed(1)} s (${kib(sizeOf(DIST))}):`);
  for (const name of Object.keys(LIBRARY_ENTRIES)) console.log(`  dist/${name}.js  ${kib(statSync(join(DIST, `${name}.js`)).size)}`);
  for (const name of PREBUNDLED_LAMBDAS) {
    console.log(`  dist/lambdas/${name}/${PREBUNDLED_FILE}  ${kib(statSync(join(DIST, 'lambdas', name, PREBUNDLED_FILE)).size)}`);
  }
  console.log(`  dist/types/  ${kib(sizeOf(join(DIST, 'types')))}`);
}
