/**
 * Cold-start figures of the Lambda bundles: each handler is bundled with the options of
 * lib/handler-function.ts (esbuild, ESM, node22, minified, names kept, the createRequire
 * banner, and the same external modules), its minified size read from the esbuild
 * metafile, and the median time to import it in a fresh Node process.
 */
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { build, type Metafile } from 'esbuild';
import { BUNDLED_EXTERNAL_MODULES, ESM_REQUIRE_BANNER, HANDLER_ENTRY } from '../lib/handler-function';

const run = promisify(execFile);
const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
/** Bundles are written inside the project so that external modules resolve from node_modules. */
export const BUNDLE_DIR = join(BENCH_DIR, '..', 'node_modules', '.cache', 'waterflai-bench');

export interface BundleFigure {
  readonly name: string;
  /** Minified bytes of the handler's bundle (index.mjs, without its source map). */
  readonly bytes: number;
  /** Median ms to import the bundle in a fresh Node process. */
  readonly importMs: number;
  /** The largest input packages of the bundle (bytes in the output). */
  readonly topPackages: ReadonlyArray<readonly [string, number]>;
}

/** Environment the handlers read at import (dummy values; nothing is contacted). */
export const HANDLER_IMPORT_ENV: Readonly<Record<string, string>> = {
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'bench',
  AWS_SECRET_ACCESS_KEY: 'bench',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  POWERTOOLS_LOG_LEVEL: 'SILENT',
  JOB_TABLE_NAME: 'jobs',
  STATE_MACHINE_ARN: 'arn:aws:states:us-east-1:123456789012:stateMachine:bench',
  EVENT_BUS_NAME: 'bench',
  DLQ_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/dlq',
  INTAKE_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/intake',
  WATERFLAI_BASE_URL: 'https://api.waterflai.ai',
  WATERFLAI_API_KEY_SECRET_ID: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-AbCdEf',
  OUTPUT_BUCKET_NAME: 'bench-outputs',
};

const HANDLER_NAMES: Readonly<Record<keyof typeof HANDLER_ENTRY, string>> = {
  START_EXECUTION: 'start-execution',
  POLL: 'poll',
  FINISH: 'finish',
  RECONCILE: 'reconcile',
  SWEEP: 'sweep',
};

/** Bundles one entry the way lib/handler-function.ts does; returns the output file and its metafile. */
export async function bundle(
  entry: string,
  outdir: string,
  external: readonly string[] = BUNDLED_EXTERNAL_MODULES,
): Promise<{ file: string; metafile: Metafile }> {
  await mkdir(outdir, { recursive: true });
  const file = join(outdir, 'index.mjs');
  const result = await build({
    entryPoints: [entry],
    outfile: file,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    minify: true,
    keepNames: true,
    sourcemap: true,
    mainFields: ['module', 'main'],
    banner: { js: ESM_REQUIRE_BANNER },
    external: [...external],
    metafile: true,
    logLevel: 'silent',
  });
  return { file, metafile: result.metafile };
}

function topPackages(metafile: Metafile, file: string): Array<[string, number]> {
  const output = Object.entries(metafile.outputs).find(([path]) => path.endsWith(file.split('/').slice(-2).join('/')))?.[1];
  const byPackage = new Map<string, number>();
  for (const [input, { bytesInOutput }] of Object.entries(output?.inputs ?? {})) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
    const name = match?.[1] ?? '(project)';
    byPackage.set(name, (byPackage.get(name) ?? 0) + bytesInOutput);
  }
  return [...byPackage.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
}

/** Median of numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** ms to import `file` in a fresh Node process (measured inside it). */
export async function importTime(file: string): Promise<{ ms: number; rssMb: number }> {
  const script = `const t = performance.now(); await import(${JSON.stringify(pathToFileURL(file).href)}); const ms = performance.now() - t; process.stdout.write(JSON.stringify({ ms, rssMb: process.memoryUsage().rss / 1048576 }));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
    env: { PATH: process.env.PATH ?? '', ...HANDLER_IMPORT_ENV },
    timeout: 60_000,
  });
  return JSON.parse(stdout) as { ms: number; rssMb: number };
}

/**
 * Peak memory (RSS, MB) of a fresh Node process, with the heap flags Lambda gives a function of `memoryMb`,
 * that imports the poll bundle and then listens, with the bundled stream listener, to a
 * stream of `events` node events (512 bytes of padding each) and a 1 MiB
 * execution_completed (served by this process): RSS after the import, the process's peak
 * during the import (getrusage), and the peak sampled every 2 ms while listening.
 */
export async function pollPeakRssMb(
  pollBundle: string,
  memoryMb = 128,
  dir: string = BUNDLE_DIR,
  events = 1_000,
): Promise<{ afterImportMb: number; importPeakMb: number; listenPeakMb: number }> {
  const { file: listener } = await bundle(
    fileURLToPath(new URL('../lambdas/waterflai/stream.ts', import.meta.url)),
    join(dir, 'stream-listener'),
  );
  const server = createServer(async (_request, response) => {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    for (let i = 1; i <= events; i += 1) {
      const ok = response.write(
        `data: ${JSON.stringify({ type: 'node_completed', node_id: `node-${i}`, completed_nodes: i, total_nodes: events + 1, padding: 'x'.repeat(512) })}\n\n`,
      );
      if (!ok) await new Promise((resolve) => response.once('drain', resolve));
    }
    response.end(
      `data: ${JSON.stringify({ type: 'execution_completed', status: 'COMPLETED', final_output: 'x'.repeat(1024 * 1024) })}\n\n`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/stream`;
  const script = `
    await import(${JSON.stringify(pathToFileURL(pollBundle).href)});
    const afterImportMb = process.memoryUsage().rss / 1048576;
    const importPeakMb = process.resourceUsage().maxRSS / 1024;
    const { listenToExecution } = await import(${JSON.stringify(pathToFileURL(listener).href)});
    let listenPeakMb = 0;
    const sample = setInterval(() => { listenPeakMb = Math.max(listenPeakMb, process.memoryUsage.rss() / 1048576); }, 2);
    const result = await listenToExecution({ url: ${JSON.stringify(url)}, apiKey: () => 'bench-key-0123', windowMs: 60000, onEvent: () => undefined });
    clearInterval(sample);
    if (result.outcome !== 'completed') throw new Error('the listen ended ' + result.outcome);
    process.stdout.write(JSON.stringify({ afterImportMb, importPeakMb, listenPeakMb }));
  `;
  try {
    // The heap flags Lambda's Node.js bootstrap derives from the memory size (new space =
    // memory / 10, half of it per semi-space, the rest old space): 128 MB -> 6 / 116.
    const newSpace = Math.floor(memoryMb / 10);
    const heapFlags = [`--max-semi-space-size=${Math.floor(newSpace / 2)}`, `--max-old-space-size=${memoryMb - newSpace}`];
    const { stdout } = await run(process.execPath, [...heapFlags, '--input-type=module', '-e', script], {
      env: { PATH: process.env.PATH ?? '', ...HANDLER_IMPORT_ENV },
      timeout: 120_000,
    });
    return JSON.parse(stdout) as { afterImportMb: number; importPeakMb: number; listenPeakMb: number };
  } finally {
    server.close();
  }
}

/** Sizes and import times of the five handler bundles. */
export async function measureBundles(options: { runs?: number; external?: readonly string[]; dir?: string } = {}): Promise<BundleFigure[]> {
  const runs = options.runs ?? 5;
  const dir = options.dir ?? BUNDLE_DIR;
  await rm(dir, { recursive: true, force: true });
  const figures: BundleFigure[] = [];
  for (const [key, entry] of Object.entries(HANDLER_ENTRY) as Array<[keyof typeof HANDLER_ENTRY, string]>) {
    const name = HANDLER_NAMES[key];
    const { file, metafile } = await bundle(entry, join(dir, name), options.external);
    const bytes = Object.entries(metafile.outputs).find(([path]) => path.endsWith('index.mjs'))?.[1].bytes ?? Number.NaN;
    const times: number[] = [];
    for (let i = 0; i < runs; i += 1) times.push((await importTime(file)).ms);
    figures.push({ name, bytes, importMs: median(times), topPackages: topPackages(metafile, file) });
  }
  return figures;
}
