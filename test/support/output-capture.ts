/**
 * Captures everything this process writes: `process.stdout` / `process.stderr` writes (where
 * Powertools' Logger writes its JSON lines outside dev mode) and every `console` method.
 * Captured output is kept in memory and not passed on, so a test can assert on it (and a
 * DEBUG-level run does not flood the test output).
 */
import { format } from 'node:util';

export interface OutputCapture {
  /** Everything captured so far, as one string. */
  text(): string;
  /** Captured output split into non-empty lines. */
  lines(): string[];
  /** The lines that are JSON objects (structured log lines), parsed. */
  jsonLines(): Array<Record<string, unknown>>;
  /** Restores the original writers. Idempotent. */
  stop(): void;
}

const CONSOLE_METHODS = ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir'] as const;

type Write = typeof process.stdout.write;

function chunkText(chunk: unknown, encoding?: unknown): string {
  if (typeof chunk === 'string') return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk).toString(typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  return String(chunk);
}

/** Starts capturing. Call `stop()` in `afterAll`. */
export function captureProcessOutput(): OutputCapture {
  const parts: string[] = [];
  const originalStdout = process.stdout.write;
  const originalStderr = process.stderr.write;
  const originalConsole = Object.fromEntries(CONSOLE_METHODS.map((method) => [method, console[method]])) as Record<
    (typeof CONSOLE_METHODS)[number],
    (...args: unknown[]) => void
  >;

  const capturingWrite = ((chunk: unknown, encodingOrCallback?: unknown, callback?: unknown): boolean => {
    parts.push(chunkText(chunk, typeof encodingOrCallback === 'function' ? undefined : encodingOrCallback));
    const done = typeof encodingOrCallback === 'function' ? encodingOrCallback : callback;
    if (typeof done === 'function') queueMicrotask(() => (done as (error?: Error | null) => void)(null));
    return true;
  }) as Write;
  process.stdout.write = capturingWrite;
  process.stderr.write = capturingWrite;
  for (const method of CONSOLE_METHODS) {
    console[method] = (...args: unknown[]): void => {
      parts.push(`${format(...args)}\n`);
    };
  }

  let stopped = false;
  const text = (): string => parts.join('');
  const lines = (): string[] =>
    text()
      .split(/\r?\n/)
      .filter((line) => line.trim() !== '');
  return {
    text,
    lines,
    jsonLines() {
      const parsed: Array<Record<string, unknown>> = [];
      for (const line of lines()) {
        if (!line.trimStart().startsWith('{')) continue;
        try {
          const value: unknown = JSON.parse(line);
          if (typeof value === 'object' && value !== null && !Array.isArray(value)) parsed.push(value as Record<string, unknown>);
        } catch {
          // not a structured log line
        }
      }
      return parsed;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      process.stdout.write = originalStdout;
      process.stderr.write = originalStderr;
      for (const method of CONSOLE_METHODS) console[method] = originalConsole[method];
    },
  };
}
