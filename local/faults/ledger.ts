/**
 * What fault injection did, for the report: faults injected by kind, faults that struck each
 * job, error answers that were not injected (by code), and a trace per job of everything that
 * happened to it below the handlers, timed from the ledger's creation
 * (`+12.345s DynamoDB UpdateItem[execution_id,status] -> ThrottlingException (injected)`).
 */
export class FaultLedger<K extends string> {
  readonly #kinds: readonly K[];
  readonly #counts = new Map<string, number>();
  readonly #observed = new Map<string, number>();
  readonly #trace = new Map<string, string[]>();
  readonly #struck = new Map<string, number>();
  readonly #startedAt = Date.now();

  constructor(kinds: readonly K[]) {
    this.#kinds = kinds;
    for (const kind of kinds) this.#counts.set(kind, 0);
  }

  /** Counts one injected fault of `kind`. */
  count(kind: K): void {
    this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + 1);
  }

  /** Faults injected so far, by kind. */
  counts(): Record<K, number> {
    return Object.fromEntries(this.#kinds.map((kind) => [kind, this.#counts.get(kind) ?? 0])) as Record<K, number>;
  }

  /** Records that a fault struck a request of `jobId` (ignored without a job). */
  strike(jobId: string | undefined): void {
    if (jobId === undefined || jobId === '-' || jobId === '') return;
    this.#struck.set(jobId, (this.#struck.get(jobId) ?? 0) + 1);
  }

  /** Faults that struck each job's requests so far (by job id). */
  struckByJob(): Record<string, number> {
    return Object.fromEntries(this.#struck);
  }

  /** Counts an error answer that was not injected (e.g. `ConditionalCheckFailedException`). */
  observe(errorCode: string): void {
    this.#observed.set(errorCode, (this.#observed.get(errorCode) ?? 0) + 1);
  }

  /** Error answers that were not injected, by error code. */
  observed(): Record<string, number> {
    return Object.fromEntries(this.#observed);
  }

  /** Adds a line to a job's trace, timed `atMs`. */
  note(jobId: string, line: string, atMs: number = Date.now()): void {
    const lines = this.#trace.get(jobId);
    const entry = `+${((atMs - this.#startedAt) / 1000).toFixed(3)}s ${line}`;
    if (lines === undefined) this.#trace.set(jobId, [entry]);
    else lines.push(entry);
  }

  /** A job's trace, in time order. */
  trace(jobId: string): readonly string[] {
    const at = (line: string): number => Number(/^\+([\d.]+)s/.exec(line)?.[1] ?? 0);
    return [...(this.#trace.get(jobId) ?? [])].sort((a, b) => at(a) - at(b));
  }

  /** Seconds from the creation of the ledger (the origin of the traces) to `atMs`. */
  since(atMs: number): number {
    return Math.round((atMs - this.#startedAt) / 10) / 100;
  }
}
