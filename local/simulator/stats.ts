/** The simulator's request counters (`Simulator.stats()`). */
import { FAULT_KINDS, OUTAGE_ANSWERS, type FaultKind, type OutageAnswer, type RouteName } from './faults';

/** Request counters. Every field is a plain copy: safe to keep and compare. */
export interface SimulatorStats {
  /** Every request received (any path, any method, faulted or not). */
  total_requests: number;
  /** Requests matching a route and method; `other` = unknown path (404) or wrong method (405). */
  by_route: Record<RouteName | 'other', number>;
  /** Requests by HTTP method, e.g. `{ GET: 3, POST: 1 }`. */
  by_method: Record<string, number>;
  /** Answers by HTTP status code, e.g. `{ 202: 1, 200: 3 }` (counted when the head is sent). */
  by_status: Record<number, number>;
  /** Requests closed without any answer (`reset`, `hang`, client gone during `slow`). */
  no_response: number;
  /** 401 answers (missing or wrong `X-API-Key`, revoked keys included). */
  unauthorized: number;
  /** Of those, 401 answers to a key that was accepted before and has been revoked (a rotation). */
  revoked_key: number;
  /** Requests failed by an outage window. */
  outage_requests: number;
  /** The same, by how they failed. */
  outage_by_answer: Record<OutageAnswer, number>;
  /** DELETEs of finished executions, by the answer given (`409`, `400`, `404`, `200`). */
  finished_cancel_answers: Record<string, number>;
  /** Faults that really struck, by kind. */
  faults: Record<FaultKind, number>;
  faults_total: number;
  /** POST requests to `/v1/executions/{chatbot_id}/async` by chatbot id, whatever their answer. */
  starts_by_chatbot: Record<string, number>;
  /** Executions created (accepted), by chatbot id. */
  executions_by_chatbot: Record<string, number>;
  executions_created: number;
  /** SSE streams currently open. */
  open_streams: number;
}

export function emptyStats(): SimulatorStats {
  return {
    total_requests: 0,
    by_route: { start: 0, get: 0, cancel: 0, stream: 0, other: 0 },
    by_method: {},
    by_status: {},
    no_response: 0,
    unauthorized: 0,
    revoked_key: 0,
    outage_requests: 0,
    outage_by_answer: Object.fromEntries(OUTAGE_ANSWERS.map((answer) => [answer, 0])) as Record<OutageAnswer, number>,
    finished_cancel_answers: {},
    faults: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
    faults_total: 0,
    starts_by_chatbot: {},
    executions_by_chatbot: {},
    executions_created: 0,
    open_streams: 0,
  };
}

export function increment(record: Record<string | number, number>, key: string | number): void {
  record[key] = (record[key] ?? 0) + 1;
}
