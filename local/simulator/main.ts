/**
 * `npm run simulator -- [options]`: runs the Waterflai simulator until SIGINT/SIGTERM.
 * `--help` lists the options.
 */
import { parseSimulatorArgs, USAGE } from './cli';
import { startSimulator } from './server';

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseSimulatorArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const { options, quiet } = parsed;
  const simulator = await startSimulator({
    ...options,
    log: quiet ? () => undefined : (line) => console.log(`[simulator] ${line}`),
  });
  console.log(`Waterflai simulator listening on ${simulator.url}`);
  console.log(`  WATERFLAI_BASE_URL=${simulator.url}`);
  console.log(`  WATERFLAI_API_KEY=${simulator.apiKey}`);
  console.log(`  seed=${simulator.seed} time-scale=${options.timeScale ?? 1}`);

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      console.log(`[simulator] ${signal}: shutting down`);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await simulator.close();
  const stats = simulator.stats();
  console.log(
    `[simulator] served ${stats.total_requests} requests, created ${stats.executions_created} executions, injected ${stats.faults_total} faults`,
  );
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
