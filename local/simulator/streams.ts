/**
 * The Server-Sent Events stream of an execution (`GET /v1/executions/{id}/stream`): one
 * `data: {json}` frame per event, nothing replayed on connect (the first event is the current
 * state), `execution_completed` for every ending and then the end of the stream, keep-alive
 * comments every `heartbeatMs`.
 */
import type { ServerResponse } from 'node:http';
import { WATERFLAI_STATUS } from '../../lambdas/contract/constants';
import { nodeName, type SimulatedExecution, type TimelineEvent } from './scenario';
import { increment, type SimulatorStats } from './stats';

export interface ExecutionStreamsOptions {
  /** Interval of `: keep-alive` comments; 0 disables. */
  readonly heartbeatMs: number;
  /** The current counters (replaced by `resetStats`). */
  readonly stats: () => SimulatorStats;
  readonly now: () => number;
}

/** Every open stream: to end them all (`close`), or cut them (an outage of the stream route). */
export class ExecutionStreams {
  readonly #closers = new Set<() => void>();
  readonly #cutters = new Set<() => void>();

  constructor(readonly options: ExecutionStreamsOptions) {}

  /** Answers a stream request for `execution`. */
  open(execution: SimulatedExecution, res: ServerResponse): void {
    new ExecutionStream(execution, res, this.options, this.#closers, this.#cutters).begin();
  }

  /** Destroys every open stream (no clean end), as an outage does. */
  cutAll(): void {
    for (const cut of [...this.#cutters]) cut();
  }

  /** Ends every open stream cleanly. */
  closeAll(): void {
    for (const finish of [...this.#closers]) finish();
  }
}

class ExecutionStream {
  #done = false;
  #timer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #cursor = 0;
  #unsubscribe: () => void = () => undefined;

  constructor(
    private readonly execution: SimulatedExecution,
    private readonly res: ServerResponse,
    private readonly options: ExecutionStreamsOptions,
    private readonly closers: Set<() => void>,
    private readonly cutters: Set<() => void>,
  ) {}

  begin(): void {
    const { execution, res, options } = this;
    this.#writeHead();
    this.#cursor = options.now();
    this.#unsubscribe = execution.subscribe(this.#pump);
    this.closers.add(this.#finish);
    this.cutters.add(this.#cut);
    res.on('close', () => this.cutters.delete(this.#cut));
    // Not req.on('close'): since Node 16 it fires once the request is read, not on disconnect.
    res.on('close', this.#finish);

    if (execution.isTerminalAt(this.#cursor)) {
      this.#send(completedPayload(execution, this.#cursor));
      this.#finish();
      return;
    }
    this.#send(currentStatePayload(execution, this.#cursor));
    if (options.heartbeatMs > 0) this.#heartbeat = setInterval(() => res.write(': keep-alive\n\n'), options.heartbeatMs);
    this.#schedule(this.#cursor);
  }

  #writeHead(): void {
    const stats = this.options.stats();
    increment(stats.by_status, 200);
    this.res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    stats.open_streams += 1;
  }

  #send(payload: Record<string, unknown>): void {
    this.res.write(`data: ${JSON.stringify(payload)}\n\n`);
  }

  /** Sends what happened since the last wake-up; ends the stream once the execution ended. */
  readonly #pump = (): void => {
    if (this.#done) return;
    const t = this.options.now();
    for (const event of this.execution.effectiveEvents()) {
      if (event.at > this.#cursor && event.at <= t) this.#send(eventPayload(this.execution, event));
    }
    this.#cursor = t;
    if (this.execution.isTerminalAt(t)) {
      this.#send(completedPayload(this.execution, t));
      this.#finish();
      return;
    }
    this.#schedule(t);
  };

  #schedule(t: number): void {
    const next = this.execution.nextChangeAfter(t);
    if (next === undefined) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    // +1: wake just after the event's millisecond, Date.now() may lag a timer by a fraction.
    this.#timer = setTimeout(this.#pump, Math.min(Math.max(1, Math.ceil(next - t) + 1), 2 ** 31 - 1));
  }

  readonly #finish = (): void => {
    if (this.#done) return;
    this.#done = true;
    this.options.stats().open_streams -= 1;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#unsubscribe();
    this.closers.delete(this.#finish);
    if (!this.res.writableEnded) this.res.end();
  };

  readonly #cut = (): void => {
    this.cutters.delete(this.#cut);
    this.res.destroy();
  };
}

/** The first event of a stream: the execution's current state. */
function currentStatePayload(execution: SimulatedExecution, t: number): Record<string, unknown> {
  const body = execution.bodyAt(t);
  return {
    type: 'progress_update',
    execution_id: execution.id,
    timestamp: new Date(t).toISOString(),
    status: body.status,
    progress: body.progress,
    completed_nodes: body.completed_nodes,
    total_nodes: body.total_nodes,
    current_node: body.current_node,
  };
}

function eventPayload(execution: SimulatedExecution, event: TimelineEvent): Record<string, unknown> {
  const reportsProgress = execution.scenario.progress !== 'none';
  const total = reportsProgress ? execution.scenario.nodes : null;
  const base = { execution_id: execution.id, timestamp: new Date(Math.floor(event.at)).toISOString() };
  switch (event.type) {
    case 'node_started':
      return { type: 'node_started', ...base, node_id: nodeName(event.node), total_nodes: total };
    case 'node_completed':
      return {
        type: 'node_completed',
        ...base,
        node_id: nodeName(event.node),
        completed_nodes: reportsProgress ? event.completed : null,
        total_nodes: total,
      };
    case 'progress_update':
      return {
        type: 'progress_update',
        ...base,
        status: WATERFLAI_STATUS.RUNNING,
        progress: Math.round((event.completed / execution.scenario.nodes) * 10_000) / 100,
        completed_nodes: event.completed,
        total_nodes: total,
      };
  }
}

function completedPayload(execution: SimulatedExecution, t: number): Record<string, unknown> {
  const body = execution.bodyAt(t);
  return {
    type: 'execution_completed',
    execution_id: execution.id,
    timestamp: body.completed_at,
    status: body.status,
    progress: body.progress,
    completed_nodes: body.completed_nodes,
    total_nodes: body.total_nodes,
    final_output: body.final_output,
    error_message: body.error_message,
    completed_at: body.completed_at,
  };
}
