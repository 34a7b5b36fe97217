/**
 * The "nothing leaves 127.0.0.1" guard of the local runtime.
 *
 * Two independent checks:
 * - {@link installNetworkGuard} wraps `net.Socket.prototype.connect`, the one function every
 *   outgoing TCP (and TLS) connection of this process goes through (node:http, node:https,
 *   fetch/undici, the AWS SDK, node:net). Each destination is recorded, and in `enforce`
 *   mode a destination that is not loopback (and not explicitly allowed) is refused before
 *   any packet, including the DNS lookup of a host name, is sent.
 * - {@link processSockets} lists the TCP/UDP sockets a process (this one, or a child such as
 *   the DynamoDB Local JVM, which the wrapper cannot see) holds, from `/proc` (Linux only),
 *   so a test can assert that every one is bound to and connected to loopback only.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';

/** One outgoing connection attempt seen by the guard. */
export interface ConnectionRecord {
  /** Host as given to `connect` (an IP address or a name), or `undefined` for a Unix socket. */
  readonly host?: string;
  readonly port?: number;
  /** Unix socket / named pipe path (always local). */
  readonly path?: string;
  readonly loopback: boolean;
  /** Refused by the guard (`enforce` mode, not loopback, not allowed). */
  readonly blocked: boolean;
  readonly at: number;
}

export interface NetworkGuardOptions {
  /**
   * `record`: only record destinations. `enforce`: also refuse non-loopback destinations
   * that are not in `allowHosts`.
   * @default 'enforce'
   */
  readonly mode?: 'record' | 'enforce';
  /**
   * Host names or addresses allowed besides loopback (e.g. the host of an explicitly
   * configured remote `WATERFLAI_BASE_URL`). Compared case-insensitively.
   * @default none
   */
  readonly allowHosts?: readonly string[];
}

export interface NetworkGuard {
  readonly mode: 'record' | 'enforce';
  /** Every connection attempt since this guard was installed. */
  connections(): ConnectionRecord[];
  /** The attempts whose destination was not loopback (allowed or blocked). */
  nonLoopback(): ConnectionRecord[];
  /** Adds a host to the allow list. */
  allow(host: string): void;
  /** Stops recording; the wrapper is removed once no guard is installed. */
  uninstall(): void;
}

/** Error of a connection refused by the guard. */
export class NonLoopbackConnectionError extends Error {
  readonly code = 'ERR_LOCAL_RUNTIME_NON_LOOPBACK';

  constructor(host: string, port: number | undefined) {
    super(
      `the local runtime's network guard refused a connection to ${host}${port === undefined ? '' : `:${port}`}: only 127.0.0.1 is allowed`,
    );
    this.name = 'NonLoopbackConnectionError';
  }
}

/** True for 127.0.0.0/8, ::1, IPv4-mapped 127.x and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const value = host
    .trim()
    .replace(/^\[|\]$/g, '')
    .toLowerCase();
  if (value === 'localhost' || value === 'localhost.') return true;
  if (net.isIPv4(value)) return value.startsWith('127.');
  if (net.isIPv6(value)) {
    if (value === '::1' || /^0{0,4}(:0{0,4}){6}:0{0,3}1$/.test(value)) return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(value);
    return mapped?.[1]?.startsWith('127.') === true;
  }
  return false;
}

interface Listener {
  record(destination: Omit<ConnectionRecord, 'blocked' | 'at'>): boolean;
}

const listeners = new Set<Listener>();
type ConnectFunction = (...args: unknown[]) => net.Socket;
let originalConnect: ConnectFunction | undefined;

/** Reads the destination out of the many argument shapes `Socket#connect` accepts. */
function destinationOf(args: readonly unknown[]): { host?: string; port?: number; path?: string } {
  let first = args[0];
  // net.connect() and http agents call socket.connect([options, callback]) (normalized arguments).
  if (Array.isArray(first)) first = first[0];
  if (typeof first === 'object' && first !== null) {
    const options = first as { host?: unknown; port?: unknown; path?: unknown };
    if (typeof options.path === 'string' && options.path !== '') return { path: options.path };
    const port = options.port === undefined ? undefined : Number(options.port);
    return {
      host: typeof options.host === 'string' && options.host !== '' ? options.host : 'localhost',
      ...(port === undefined ? {} : { port }),
    };
  }
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    const host = args[1];
    return { host: typeof host === 'string' && host !== '' ? host : 'localhost', port: Number(first) };
  }
  if (typeof first === 'string') return { path: first };
  return { host: 'localhost' };
}

function ensurePatched(): void {
  if (originalConnect !== undefined) return;
  const original = net.Socket.prototype.connect as unknown as ConnectFunction;
  originalConnect = original;
  const patched = function connect(this: net.Socket, ...args: unknown[]): net.Socket {
    const destination = destinationOf(args);
    const loopback = destination.path !== undefined || (destination.host !== undefined && isLoopbackHost(destination.host));
    let refuse = false;
    for (const listener of listeners) {
      if (listener.record({ ...destination, loopback })) refuse = true;
    }
    if (refuse) {
      const error = new NonLoopbackConnectionError(destination.host ?? '?', destination.port);
      process.nextTick(() => this.destroy(error));
      return this;
    }
    return original.apply(this, args);
  };
  (net.Socket.prototype as unknown as { connect: ConnectFunction }).connect = patched;
}

function restoreIfUnused(): void {
  if (listeners.size > 0 || originalConnect === undefined) return;
  (net.Socket.prototype as unknown as { connect: ConnectFunction }).connect = originalConnect;
  originalConnect = undefined;
}

/**
 * Installs a guard. Several guards may be installed at once; each records independently and
 * a connection is refused when any `enforce` guard refuses it.
 *
 * @example
 * const guard = installNetworkGuard({ mode: 'enforce' });
 * // ... run things ...
 * expect(guard.nonLoopback()).toEqual([]);
 * guard.uninstall();
 */
export function installNetworkGuard(options: NetworkGuardOptions = {}): NetworkGuard {
  const mode = options.mode ?? 'enforce';
  const allowed = new Set((options.allowHosts ?? []).map((host) => host.toLowerCase().replace(/^\[|\]$/g, '')));
  const records: ConnectionRecord[] = [];
  const listener: Listener = {
    record(destination) {
      const blocked = mode === 'enforce' && !destination.loopback && !allowed.has((destination.host ?? '').toLowerCase());
      records.push({ ...destination, blocked, at: Date.now() });
      return blocked;
    },
  };
  listeners.add(listener);
  ensurePatched();
  return {
    mode,
    connections: () => records.map((record) => ({ ...record })),
    nonLoopback: () => records.filter((record) => !record.loopback).map((record) => ({ ...record })),
    allow: (host) => {
      allowed.add(host.toLowerCase().replace(/^\[|\]$/g, ''));
    },
    uninstall: () => {
      listeners.delete(listener);
      restoreIfUnused();
    },
  };
}

/** A socket held by a process, from `/proc`. */
export interface ProcessSocket {
  readonly protocol: 'tcp' | 'tcp6' | 'udp' | 'udp6';
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** TCP state name (`LISTEN`, `ESTABLISHED`, ...), or the hex code for UDP. */
  readonly state: string;
}

const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

function parseIpv4(hex: string): string {
  // /proc prints the address as a little-endian 32-bit word.
  const bytes = hex.match(/../g) ?? [];
  return bytes
    .map((byte) => parseInt(byte, 16))
    .reverse()
    .join('.');
}

function parseIpv6(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((word) => (word.match(/../g) ?? []).reverse());
  const groups: string[] = [];
  for (let i = 0; i < bytes.length; i += 2) groups.push(`${bytes[i]}${bytes[i + 1]}`.replace(/^0+(?=.)/, '').toLowerCase());
  const text = groups.join(':');
  if (/^0:0:0:0:0:ffff:/.test(text)) {
    const v4 = bytes
      .slice(12)
      .map((byte) => parseInt(byte, 16))
      .join('.');
    return `::ffff:${v4}`;
  }
  if (text === '0:0:0:0:0:0:0:1') return '::1';
  if (text === '0:0:0:0:0:0:0:0') return '::';
  return text;
}

/**
 * The TCP and UDP sockets held by process `pid` (default: this process), read from
 * `/proc/<pid>/fd` and `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`. Linux only; returns
 * `undefined` where `/proc` is not available.
 */
export function processSockets(pid: number = process.pid): ProcessSocket[] | undefined {
  let inodes: Set<string>;
  try {
    inodes = new Set(
      readdirSync(`/proc/${pid}/fd`)
        .map((fd) => {
          try {
            return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
          } catch {
            return undefined; // closed while listing
          }
        })
        .filter((inode): inode is string => inode !== undefined),
    );
  } catch {
    return undefined;
  }
  const sockets: ProcessSocket[] = [];
  for (const protocol of ['tcp', 'tcp6', 'udp', 'udp6'] as const) {
    let table: string;
    try {
      table = readFileSync(`/proc/${pid}/net/${protocol}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of table.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [, local, remote, state, , , , , , inode] = fields;
      if (local === undefined || remote === undefined || state === undefined || inode === undefined || !inodes.has(inode)) continue;
      const [localHex = '', localPort = '0'] = local.split(':');
      const [remoteHex = '', remotePort = '0'] = remote.split(':');
      const parse = protocol.endsWith('6') ? parseIpv6 : parseIpv4;
      sockets.push({
        protocol,
        localAddress: parse(localHex),
        localPort: parseInt(localPort, 16),
        remoteAddress: parse(remoteHex),
        remotePort: parseInt(remotePort, 16),
        state: protocol.startsWith('tcp') ? (TCP_STATES[state] ?? state) : state,
      });
    }
  }
  return sockets;
}

/** True when a socket is bound to loopback and its peer (if any) is loopback. */
export function isLoopbackSocket(socket: ProcessSocket): boolean {
  const unspecified = (address: string): boolean => address === '0.0.0.0' || address === '::';
  return isLoopbackHost(socket.localAddress) && (unspecified(socket.remoteAddress) || isLoopbackHost(socket.remoteAddress));
}
