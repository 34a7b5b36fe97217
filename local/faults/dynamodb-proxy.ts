/**
 * A fault-injecting HTTP proxy in front of the local DynamoDB (DynamoDB Local or dynalite),
 * on 127.0.0.1, for chaos runs. The handlers' SDK clients talk to the proxy (through
 * `AWS_ENDPOINT_URL_DYNAMODB`); every request is forwarded unchanged unless the fault hook
 * decides otherwise, and then the answer is exactly what DynamoDB sends for that error:
 * the status code, `Content-Type: application/x-amz-json-1.0`, `x-amzn-RequestId`,
 * `x-amz-crc32` and a body `{"__type": "com.amazonaws.dynamodb.v20120810#<Code>", "message": ...}`,
 * so the SDK maps it to its exception class (`ProvisionedThroughputExceededException`, ...)
 * and applies its own retry rules to it.
 *
 * A fault strikes before the request is forwarded (nothing happens in the table), or, with
 * `afterApplying`, after DynamoDB processed it: the caller then gets an error (or a reset
 * connection) for a write that took effect, as when a response is lost on the network.
 */
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';
import type { DynamoDbErrorCode, DynamoDbFaultHook, DynamoDbResponseObserver } from './hooks';

/** The DynamoDB errors the proxy can answer, with DynamoDB's status code and message. */
export const DYNAMODB_ERRORS = {
  ProvisionedThroughputExceededException: {
    status: 400,
    type: 'com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException',
    message:
      'The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.',
  },
  ThrottlingException: {
    status: 400,
    type: 'com.amazon.coral.availability#ThrottlingException',
    message: 'Rate of requests exceeds the allowed throughput.',
  },
  RequestLimitExceeded: {
    status: 400,
    type: 'com.amazonaws.dynamodb.v20120810#RequestLimitExceeded',
    message:
      'Throughput exceeds the current throughput limit for your account. Please contact AWS Support at https://aws.amazon.com/support request a limit increase',
  },
  InternalServerError: {
    status: 500,
    type: 'com.amazonaws.dynamodb.v20120810#InternalServerError',
    message: 'Internal server error',
  },
} as const satisfies Record<DynamoDbErrorCode, { status: number; type: string; message: string }>;

export interface DynamoDbFaultProxyOptions {
  /** The DynamoDB endpoint to forward to, e.g. `http://127.0.0.1:8000`. */
  readonly target: string;
  /** @default none (every request is forwarded) */
  readonly hook?: DynamoDbFaultHook;
  readonly onResponse?: DynamoDbResponseObserver;
}

export interface DynamoDbFaultProxy {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  setHook(hook: DynamoDbFaultHook | undefined): void;
  close(): Promise<void>;
}

/** The AWS error code in a DynamoDB error body (`__type` without its namespace). */
export function dynamoDbErrorCode(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { __type?: unknown };
    return typeof parsed.__type === 'string' ? parsed.__type.slice(parsed.__type.lastIndexOf('#') + 1) : undefined;
  } catch {
    return undefined;
  }
}

/** Starts the proxy on 127.0.0.1. */
export async function startDynamoDbFaultProxy(options: DynamoDbFaultProxyOptions): Promise<DynamoDbFaultProxy> {
  const target = new URL(options.target);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  let hook = options.hook;
  const observe = options.onResponse ?? (() => undefined);

  const forward = (
    req: IncomingMessage,
    body: Buffer,
  ): Promise<{ status: number; headers: Record<string, string | string[]>; body: Buffer }> =>
    new Promise((resolve, reject) => {
      const headers = { ...req.headers, host: target.host, 'content-length': String(body.length) };
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const out: Record<string, string | string[]> = {};
            for (const [name, value] of Object.entries(res.headers))
              if (value !== undefined && name !== 'connection' && name !== 'keep-alive' && name !== 'transfer-encoding') out[name] = value;
            resolve({ status: res.statusCode ?? 500, headers: out, body: Buffer.concat(chunks) });
          });
          res.on('error', reject);
        },
      );
      upstream.on('error', reject);
      upstream.end(body);
    });

  const answerError = (res: ServerResponse, code: DynamoDbErrorCode): void => {
    const spec = DYNAMODB_ERRORS[code];
    const text = JSON.stringify({ __type: spec.type, message: spec.message });
    res.writeHead(spec.status, {
      'Content-Type': 'application/x-amz-json-1.0',
      'Content-Length': String(Buffer.byteLength(text)),
      'x-amzn-RequestId': randomUUID().replace(/-/g, '').toUpperCase(),
      'x-amz-crc32': String(crc32(text)),
    });
    res.end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const amzTarget = req.headers['x-amz-target'];
    const operation = typeof amzTarget === 'string' ? amzTarget.slice(amzTarget.indexOf('.') + 1) : '';
    let input: Record<string, unknown> = {};
    try {
      const parsed: unknown = JSON.parse(body.toString('utf8') || '{}');
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) input = parsed as Record<string, unknown>;
    } catch {
      // DynamoDB itself answers a body it cannot parse.
    }
    const fault = operation === '' ? undefined : hook?.(operation, input);
    if (fault !== undefined && fault.afterApplying === true) {
      // The request takes effect; its answer is lost.
      await forward(req, body).catch(() => undefined);
    }
    if (fault !== undefined) {
      observe(
        operation,
        fault.error === 'reset' ? 0 : DYNAMODB_ERRORS[fault.error].status,
        fault.error === 'reset' ? 'reset' : fault.error,
        true,
        input,
      );
      if (fault.error === 'reset') req.socket.destroy();
      else answerError(res, fault.error);
      return;
    }
    const answer = await forward(req, body);
    observe(operation, answer.status, answer.status >= 400 ? dynamoDbErrorCode(answer.body.toString('utf8')) : undefined, false, input);
    res.writeHead(answer.status, { ...answer.headers, 'content-length': String(answer.body.length) });
    res.end(answer.body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      // DynamoDB unreachable: the caller sees what it would see without the proxy, a broken connection.
      req.socket.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    setHook: (next) => {
      hook = next;
    },
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      agent.destroy();
      await closed;
    },
  };
}
