/**
 * `npm start`: the embedded local runtime. Boots the whole orchestrator on 127.0.0.1
 * (fauxqs, DynamoDB Local or dynalite, a local EventBridge / Step Functions / Secrets
 * Manager endpoint, the Waterflai simulator), submits the sample job messages (or
 * `--jobs FILE`) and shows them run. `npm start -- --help` lists the options and exit codes.
 */
import './polyfills';
import { runCli } from './cli/cli';

const interrupted = new Promise<NodeJS.Signals>((resolve) => {
  const onSignal = (signal: NodeJS.Signals): void => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // A second Ctrl-C while shutting down stops at once.
    process.once('SIGINT', () => process.exit(130));
    resolve(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
});

runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, interrupted }).then(
  (code) => {
    process.exitCode = code;
    // Everything is closed by now; if a stray handle still keeps the event loop alive, do not hang.
    setTimeout(() => {
      process.stderr.write('warning: open handles remained after shutdown; exiting anyway\n');
      process.exit(code);
    }, 3_000).unref();
  },
  (error: unknown) => {
    process.stderr.write(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(4);
  },
);
