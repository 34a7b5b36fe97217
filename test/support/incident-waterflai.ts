/**
 * A small Waterflai-compatible server written from the contract alone (it imports nothing
 * from the product or the simulator), for the upstream-incident tests. It reads the contract
 * differently from our simulator where the contract is silent: a DELETE of a finished
 * execution is answered 400 with a FastAPI-style `detail`, the stream is not offered (503),
 * and progress is never reported.
 *
 * What each execution does is chosen by its chatbot id (see {@link IncidentScenario}); times
 * are real milliseconds from the execution's creation.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface IncidentScenario {
  /** When the execution completes (ms after creation). */
  readonly completesAfterMs: number;
  /** GETs of the execution are answered 503 until this long after creation (an outage). */
  readonly outageMs?: number;
  /** Requests about the execution are answered 401 until this long after creation. */
  readonly unauthorizedMs?: number;
  /** The first N DELETEs are answered 200 `cancelled: false` without cancelling. */
  readonly refusedCancels?: number;
}

interface Execution {
  readonly id: string;
  readonly chatbotId: string;
  readonly createdAt: number;
  readonly scenario: IncidentScenario;
  cancelledAt?: number;
  refusals: number;
  deletes: number;
}

export interface IncidentServerStats {
  readonly answered: Readonly<Record<string, number>>;
}

export class IncidentWaterflai {
  readonly #executions = new Map<string, Execution>();
  readonly #answered: Record<string, number> = {};
  readonly #server = http.createServer((req, res) => this.#handle(req, res));

  private constructor(
    private readonly apiKey: string,
    private readonly scenarios: Readonly<Record<string, IncidentScenario>>,
  ) {}

  static async start(apiKey: string, scenarios: Readonly<Record<string, IncidentScenario>>): Promise<IncidentWaterflai> {
    const server = new IncidentWaterflai(apiKey, scenarios);
    await new Promise<void>((resolve) => server.#server.listen(0, '127.0.0.1', resolve));
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** The status the server would report now, per execution. */
  statuses(): Array<{ id: string; chatbotId: string; status: string; deletes: number }> {
    return [...this.#executions.values()].map((execution) => ({
      id: execution.id,
      chatbotId: execution.chatbotId,
      status: this.#status(execution),
      deletes: execution.deletes,
    }));
  }

  /** Answers by `<method> <status>`, e.g. `GET 503`. */
  stats(): IncidentServerStats {
    return { answered: { ...this.#answered } };
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #status(execution: Execution): string {
    if (execution.cancelledAt !== undefined) return 'CANCELLED';
    return Date.now() - execution.createdAt >= execution.scenario.completesAfterMs ? 'COMPLETED' : 'RUNNING';
  }

  #send(req: http.IncomingMessage, res: http.ServerResponse, status: number, body: unknown): void {
    const key = `${req.method ?? '?'} ${status}`;
    this.#answered[key] = (this.#answered[key] ?? 0) + 1;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.resume();
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (req.headers['x-api-key'] !== this.apiKey) {
        this.#send(req, res, 401, { detail: 'Invalid API key' });
        return;
      }
      const start = /^\/v1\/executions\/([^/]+)\/async$/.exec(path);
      if (req.method === 'POST' && start) {
        this.#start(req, res, decodeURIComponent(start[1]!));
        return;
      }
      const one = /^\/v1\/executions\/([^/]+)(\/stream)?$/.exec(path);
      const execution = one ? this.#executions.get(decodeURIComponent(one[1]!)) : undefined;
      if (!one || execution === undefined) {
        this.#send(req, res, 404, { detail: 'Not found' });
        return;
      }
      const age = Date.now() - execution.createdAt;
      if (age < (execution.scenario.unauthorizedMs ?? 0)) {
        this.#send(req, res, 401, { detail: 'Invalid API key' });
        return;
      }
      if (one[2] !== undefined) {
        this.#send(req, res, 503, { detail: 'Streaming is not available' });
        return;
      }
      if (req.method === 'GET') {
        if (age < (execution.scenario.outageMs ?? 0)) {
          this.#send(req, res, 503, { detail: 'Service unavailable' });
          return;
        }
        this.#send(req, res, 200, this.#view(execution));
        return;
      }
      if (req.method === 'DELETE') {
        this.#cancel(req, res, execution);
        return;
      }
      this.#send(req, res, 405, { detail: 'Method not allowed' });
    });
  }

  #start(req: http.IncomingMessage, res: http.ServerResponse, chatbotId: string): void {
    const scenario = this.scenarios[chatbotId];
    if (scenario === undefined) {
      this.#send(req, res, 404, { detail: `Chatbot ${chatbotId} not found` });
      return;
    }
    const id = `inc-${randomUUID()}`;
    this.#executions.set(id, { id, chatbotId, createdAt: Date.now(), scenario, refusals: 0, deletes: 0 });
    const base = `${this.url}/v1/executions/${id}`;
    this.#send(req, res, 202, { execution_id: id, status_url: base, stream_url: `${base}/stream`, cancel_url: base });
  }

  #cancel(req: http.IncomingMessage, res: http.ServerResponse, execution: Execution): void {
    execution.deletes += 1;
    const status = this.#status(execution);
    if (status !== 'RUNNING') {
      this.#send(req, res, 400, { detail: `Execution is already ${status.toLowerCase()}` });
      return;
    }
    if (execution.refusals < (execution.scenario.refusedCancels ?? 0)) {
      execution.refusals += 1;
      this.#send(req, res, 200, {
        execution_id: execution.id,
        cancelled: false,
        message: 'The execution is busy; try again',
        previous_status: 'RUNNING',
      });
      return;
    }
    execution.cancelledAt = Date.now();
    this.#send(req, res, 200, { execution_id: execution.id, cancelled: true, message: 'Cancelled', previous_status: 'RUNNING' });
  }

  #view(execution: Execution): Record<string, unknown> {
    const status = this.#status(execution);
    return {
      execution_id: execution.id,
      status,
      current_node: null,
      final_output: status === 'COMPLETED' ? { answer: `done by ${execution.chatbotId}` } : null,
      error_message: null,
      created_at: new Date(execution.createdAt).toISOString(),
      started_at: new Date(execution.createdAt).toISOString(),
      completed_at: status === 'COMPLETED' ? new Date(execution.createdAt + execution.scenario.completesAfterMs).toISOString() : null,
      execution_source: 'API',
      is_temporary: false,
    };
  }
}
