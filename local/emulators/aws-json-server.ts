/**
 * One HTTP server on 127.0.0.1 that speaks the AWS JSON protocols (awsJson1_0 / awsJson1_1:
 * `POST /` with `X-Amz-Target: <Prefix>.<Operation>`) for several local services at once.
 * The AWS SDK v3 clients of the handlers reach it through `AWS_ENDPOINT_URL_<SERVICE>`.
 *
 * Errors are answered the way AWS does, so the SDK maps them to its exception classes
 * (`ExecutionAlreadyExists`, `ResourceNotFoundException`, ...): HTTP 400 (or 500), header
 * `x-amzn-errortype: <Code>` and body `{"__type": "<Code>", "message": "..."}`. Requests
 * for anything else (a REST API such as Lambda Invoke, an unknown target) are refused with
 * an error too, so no client ever falls through to a real AWS endpoint.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AwsErrorAnswer, AwsFaultHook } from '../faults/hooks';

/** An error answered in the AWS JSON error shape. */
export class AwsServiceError extends Error {
  constructor(
    /** The error code, e.g. `ExecutionAlreadyExists` (becomes `__type`). */
    readonly code: string,
    message: string,
    readonly statusCode: number = 400,
  ) {
    super(message);
    this.name = code;
  }
}

export type AwsJsonOperation = (input: Record<string, unknown>) => unknown;

export interface AwsJsonService {
  /** Human-readable name, for logs. */
  readonly name: string;
  /** The `X-Amz-Target` prefix, e.g. `AWSStepFunctions`. */
  readonly targetPrefix: string;
  readonly contentType: 'application/x-amz-json-1.0' | 'application/x-amz-json-1.1';
  readonly operations: Readonly<Record<string, AwsJsonOperation>>;
}

export interface AwsJsonServerOptions {
  readonly services: readonly AwsJsonService[];
  /** @default 0 (ephemeral) */
  readonly port?: number;
  /** Largest request body accepted. @default 1 MiB */
  readonly maxBodyBytes?: number;
  /** One line per request. @default silent */
  readonly log?: (line: string) => void;
  /** Fault injection (`local/faults/hooks.ts`, {@link AwsFaultHook}); replaceable with `setFaultHook`. @default none */
  readonly faultHook?: AwsFaultHook;
}

export interface AwsJsonServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Requests answered, by `<prefix>.<operation>` (or `unknown`). */
  requestCounts(): Record<string, number>;
  /** Replaces the fault hook (`undefined`: no faults). */
  setFaultHook(hook: AwsFaultHook | undefined): void;
  close(): Promise<void>;
}

export const LOCAL_HOST = '127.0.0.1';

/** Starts the server on 127.0.0.1. */
export async function startAwsJsonServer(options: AwsJsonServerOptions): Promise<AwsJsonServer> {
  const byPrefix = new Map(options.services.map((service) => [service.targetPrefix, service]));
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const log = options.log ?? (() => undefined);
  const counts: Record<string, number> = {};
  let faultHook = options.faultHook;

  const send = (
    res: ServerResponse,
    status: number,
    contentType: string,
    body: unknown,
    extraHeaders: Record<string, string> = {},
  ): void => {
    const text = JSON.stringify(body ?? {});
    res.writeHead(status, {
      'Content-Type': contentType,
      'Content-Length': String(Buffer.byteLength(text)),
      'x-amzn-RequestId': randomUUID(),
      ...extraHeaders,
    });
    res.end(text);
  };
  const sendError = (res: ServerResponse, contentType: string, error: AwsErrorAnswer): void => {
    send(res, error.statusCode, contentType, { __type: error.code, message: error.message }, { 'x-amzn-ErrorType': error.code });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBodyBytes) {
        sendError(
          res,
          'application/x-amz-json-1.1',
          new AwsServiceError('RequestEntityTooLargeException', `request body over ${maxBodyBytes} bytes`, 413),
        );
        req.destroy();
        return;
      }
      chunks.push(chunk);
    }
    const target = req.headers['x-amz-target'];
    const [prefix, operationName] = typeof target === 'string' ? (target.split('.', 2) as [string, string | undefined]) : ['', undefined];
    const service = byPrefix.get(prefix);
    const contentType = service?.contentType ?? 'application/x-amz-json-1.1';
    if (req.method !== 'POST' || service === undefined || operationName === undefined) {
      counts.unknown = (counts.unknown ?? 0) + 1;
      log(`${req.method ?? '?'} ${req.url ?? ''} target=${String(target)} -> refused`);
      sendError(
        res,
        contentType,
        new AwsServiceError(
          'UnknownOperationException',
          `the local runtime does not serve ${req.method ?? ''} ${req.url ?? ''} ${typeof target === 'string' ? target : '(no X-Amz-Target)'}`,
          400,
        ),
      );
      return;
    }
    const key = `${prefix}.${operationName}`;
    counts[key] = (counts[key] ?? 0) + 1;
    const operation = service.operations[operationName];
    if (operation === undefined) {
      log(`${key} -> UnknownOperationException`);
      sendError(
        res,
        contentType,
        new AwsServiceError(
          'UnknownOperationException',
          `${service.name} operation ${operationName} is not supported by the local runtime`,
        ),
      );
      return;
    }
    let input: unknown;
    try {
      const text = Buffer.concat(chunks).toString('utf8');
      input = text.trim() === '' ? {} : JSON.parse(text);
    } catch {
      sendError(res, contentType, new AwsServiceError('SerializationException', 'request body is not valid JSON'));
      return;
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      sendError(res, contentType, new AwsServiceError('SerializationException', 'request body must be a JSON object'));
      return;
    }
    const fault = faultHook?.(key, input as Record<string, unknown>);
    if (fault !== undefined && fault.afterApplying !== true) {
      log(`${key} -> ${fault.error.statusCode} ${fault.error.code} (injected)`);
      sendError(res, contentType, fault.error);
      return;
    }
    try {
      const output = await operation(input as Record<string, unknown>);
      if (fault !== undefined) {
        log(`${key} -> applied, then ${fault.error.statusCode} ${fault.error.code} (injected)`);
        sendError(res, contentType, fault.error);
        return;
      }
      log(`${key} -> 200`);
      send(res, 200, contentType, output);
    } catch (error) {
      if (error instanceof AwsServiceError) {
        log(`${key} -> ${error.statusCode} ${error.code}`);
        sendError(res, contentType, error);
        return;
      }
      log(`${key} -> 500 ${error instanceof Error ? error.message : String(error)}`);
      sendError(res, contentType, new AwsServiceError('InternalFailure', error instanceof Error ? error.message : String(error), 500));
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendError(res, 'application/x-amz-json-1.1', new AwsServiceError('InternalFailure', String(error), 500));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, LOCAL_HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${LOCAL_HOST}:${port}`,
    requestCounts: () => ({ ...counts }),
    setFaultHook: (hook) => {
      faultHook = hook;
    },
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/** Reads a required string member of a request, or throws a `ValidationException`. */
export function requireString(input: Record<string, unknown>, member: string): string {
  const value = input[member];
  if (typeof value !== 'string' || value === '')
    throw new AwsServiceError(
      'ValidationException',
      `1 validation error detected: Value at '${member}' failed to satisfy constraint: Member must not be null`,
    );
  return value;
}

/** Reads an optional string member of a request, or throws a `ValidationException` for a wrong type. */
export function optionalString(input: Record<string, unknown>, member: string): string | undefined {
  const value = input[member];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new AwsServiceError('ValidationException', `Value at '${member}' must be a string`);
  return value;
}

/** An AWS JSON timestamp: epoch seconds (fractional). */
export function awsTimestamp(ms: number): number {
  return ms / 1000;
}
