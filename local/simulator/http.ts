/** The simulator's HTTP plumbing: routing, request bodies, and answers (counted in the stats). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RouteName } from './faults';
import { increment, type SimulatorStats } from './stats';

export type RouteMatch =
  | { kind: 'route'; route: RouteName; param: string }
  | { kind: 'wrong_method'; allow: string }
  | { kind: 'not_found' };

const EXECUTIONS_PREFIX = '/v1/executions/';

export function matchRoute(method: string, pathname: string): RouteMatch {
  if (!pathname.startsWith(EXECUTIONS_PREFIX)) return { kind: 'not_found' };
  const segments = pathname.slice(EXECUTIONS_PREFIX.length).split('/');
  let decoded: string[];
  try {
    decoded = segments.map((s) => decodeURIComponent(s));
  } catch {
    return { kind: 'not_found' };
  }
  const [first, second, ...rest] = decoded;
  if (first === undefined || first === '' || rest.length > 0) return { kind: 'not_found' };
  if (second === undefined) {
    if (method === 'GET') return { kind: 'route', route: 'get', param: first };
    if (method === 'DELETE') return { kind: 'route', route: 'cancel', param: first };
    return { kind: 'wrong_method', allow: 'GET, DELETE' };
  }
  if (second === 'async') {
    return method === 'POST' ? { kind: 'route', route: 'start', param: first } : { kind: 'wrong_method', allow: 'POST' };
  }
  if (second === 'stream') {
    return method === 'GET' ? { kind: 'route', route: 'stream', param: first } : { kind: 'wrong_method', allow: 'GET' };
  }
  return { kind: 'not_found' };
}

/** Sends a JSON answer; false when it could not be sent (the client is gone, or an answer went out already). */
export function sendJson(
  res: ServerResponse,
  stats: SimulatorStats,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): boolean {
  if (res.headersSent || res.destroyed) return false;
  const text = JSON.stringify(body);
  increment(stats.by_status, status);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
  return true;
}

export function sendRaw(res: ServerResponse, stats: SimulatorStats, status: number, contentType: string, text: string): void {
  if (res.headersSent || res.destroyed) return;
  increment(stats.by_status, status);
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(Buffer.byteLength(text)) });
  res.end(text);
}

/** The request body, `too_large` above `maxBodyBytes` (read to the end), or `aborted`. */
export function readBody(req: IncomingMessage, maxBodyBytes: number): Promise<Buffer | 'too_large' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBodyBytes) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooLarge ? 'too_large' : Buffer.concat(chunks)));
    req.on('error', () => resolve('aborted'));
    req.on('close', () => {
      if (!req.complete) resolve('aborted');
    });
  });
}

/** Truncated JSON bodies served by the `malformedJson` fault. */
export function malformedBody(route: RouteName, param: string): string {
  switch (route) {
    case 'start':
      return '{"execution_id": "exec_';
    case 'get':
      return `{"execution_id": ${JSON.stringify(param)}, "status": "RUNN`;
    case 'cancel':
      return `{"execution_id": ${JSON.stringify(param)}, "cancelled": tr`;
    case 'stream':
      return 'data: {"type": "progress_update", "progress": 5\n\n';
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
