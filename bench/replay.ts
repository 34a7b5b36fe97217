/**
 * Replays job traces through a polling strategy in VIRTUAL time, running the strategy code
 * the poll Lambda runs (lambdas/domain/poll-strategy.ts) and mirroring the poll Lambda's
 * steps (lambdas/poll/poll-job.ts): read the status, record it when it changed, ask the
 * strategy, maybe listen on the stream (and read the status again after a listen that did
 * not see the end), return the wait. Latencies of the pieces are the constants of
 * {@link REPLAY_MODEL}; they are the same for every strategy.
 */
import { listenBudgetSeconds } from '../lambdas/waterflai/stream';
import type { JobObservation, PollStrategy, StrategyMemory } from '../lambdas/domain/poll-strategy';
import { deriveSeed, mulberry32 } from './random';
import type { LoopShape } from './shape';
import { endOf, nodeCompletionsBetween, snapshotAt, type JobTrace, type TraceSnapshot } from './traces';

/** Modelled durations (seconds), identical for every strategy. */
export const REPLAY_MODEL = {
  /** From the end of the Wait state to the poll code running (Task scheduling, warm start). */
  taskStartSeconds: 0.05,
  /** One status read (GET) from Waterflai. */
  getSeconds: 0.15,
  /** One conditional DynamoDB write. */
  writeSeconds: 0.03,
  /** Handler overhead per invocation (parsing, logging). */
  invocationOverheadSeconds: 0.02,
  /** Opening the stream until its first event. */
  streamOpenSeconds: 0.1,
  /** From an event happening in Waterflai to the listener seeing it. */
  streamDelaySeconds: 0.05,
  /** From the poll Lambda returning a terminal state to the outcome event going out (Choice, finish Lambda, PutEvents). */
  finishSeconds: 0.4,
  /** How often a listening poll re-checks whether listening is still worth it. */
  listenCheckSeconds: 5,
  /** Billed duration of the finish Lambda. */
  finishLambdaSeconds: 0.25,
} as const;

export interface JobRun {
  readonly trace: JobTrace;
  /** Poll Lambda invocations (loop iterations). */
  readonly polls: number;
  /** Invocations that listened on the stream, and the seconds they listened. */
  readonly listens: number;
  readonly listenSeconds: number;
  /** Billed seconds of the poll Lambda. */
  readonly pollLambdaSeconds: number;
  /** DynamoDB writes of the poll Lambda. */
  readonly writes: number;
  /** From the end of the job in Waterflai to the outcome event, in seconds. */
  readonly latencySeconds: number;
  /** When each iteration's poll started (seconds after acceptance). */
  readonly pollTimes: readonly number[];
  /** When the execution ended (seconds after acceptance). */
  readonly finishedAt: number;
}

interface Recorded {
  status: string;
  progress: number | null;
  node: number | null;
}

function observationOf(snapshot: TraceSnapshot, at: number, exact = false): JobObservation {
  return {
    at,
    exact,
    currentNode: snapshot.currentNode === null ? null : `node-${snapshot.currentNode + 1}`,
    status: snapshot.status,
    progress: snapshot.progress,
    completedNodes: snapshot.completedNodes,
    totalNodes: snapshot.totalNodes,
    startedAt: snapshot.startedAt,
  };
}

/**
 * Replays one job. `seed` seeds the strategy's jitter; `loopStartSeconds` is when the
 * state machine execution starts after the job's acceptance (0: at once).
 */
export function replayJob(strategy: PollStrategy, trace: JobTrace, shape: LoopShape, seed: number, loopStartSeconds = 0): JobRun {
  const m = REPLAY_MODEL;
  const random = mulberry32(deriveSeed(seed, `${strategy.name}/${trace.id}`));
  const end = endOf(trace);
  let memory: StrategyMemory | undefined;
  let recorded: Recorded = { status: 'PENDING', progress: null, node: null };
  let t = loopStartSeconds;
  let wait = strategy.firstWaitSeconds(random);
  let polls = 0;
  let listens = 0;
  let listenSeconds = 0;
  let lambdaSeconds = 0;
  let writes = 0;
  const pollTimes: number[] = [];
  const timeoutSeconds = shape.poll.timeoutSeconds;

  const record = (snapshot: TraceSnapshot): number => {
    const changed =
      snapshot.status !== recorded.status || snapshot.progress !== recorded.progress || snapshot.currentNode !== recorded.node;
    if (!changed && snapshot.status !== 'COMPLETED') return 0;
    recorded = { status: snapshot.status, progress: snapshot.progress, node: snapshot.currentNode };
    writes += 1;
    return m.writeSeconds;
  };

  for (;;) {
    if (polls > 100_000) throw new Error(`${strategy.name} never finished ${trace.id}`);
    t += wait + m.taskStartSeconds;
    polls += 1;
    const invocationStart = t;
    pollTimes.push(t);
    const billed = (): number => t - invocationStart + m.invocationOverheadSeconds;

    // Read the status; record it when it changed.
    const snapshot = snapshotAt(trace, t);
    t += m.getSeconds;
    t += record(snapshot);
    if (snapshot.status === 'COMPLETED') return finished(billed());
    memory = strategy.observe(memory, observationOf(snapshot, t));

    const plan = strategy.plan(memory, {
      now: t,
      pollCount: polls,
      stream: 'available',
      maxListenSeconds: listenBudgetSeconds(timeoutSeconds * 1000 - billed() * 1000),
      random,
    });
    memory = plan.memory;
    wait = plan.waitSeconds;
    if (plan.listenSeconds > 0) {
      listens += 1;
      const opened = t + m.streamOpenSeconds;
      const windowEnd = opened + plan.listenSeconds;
      // execution_completed is heard at `heardEnd` (at once if the job ended before the stream opened).
      const heardEnd = Math.max(opened, end + m.streamDelaySeconds);
      const until = Math.min(windowEnd, heardEnd);
      // Fold what the stream announces; stop early when the strategy no longer wants to
      // listen (it is asked after each event and every tick, as the poll Lambda does).
      let closedAt: number | undefined;
      const events = nodeCompletionsBetween(trace, opened, until)
        .map((at) => at + m.streamDelaySeconds)
        .filter((at) => at < until);
      for (let tick = opened + m.listenCheckSeconds; closedAt === undefined; tick += m.listenCheckSeconds) {
        const next = Math.min(tick, until);
        while (closedAt === undefined && events.length > 0 && events[0]! <= next) {
          const at = events.shift()!;
          memory = strategy.observe(memory, observationOf(snapshotAt(trace, at - m.streamDelaySeconds), at, true));
          if (!strategy.keepListening(memory, at)) closedAt = at;
        }
        if (closedAt !== undefined || next >= until) break;
        if (!strategy.keepListening(memory, next)) closedAt = next;
      }
      if (closedAt === undefined && heardEnd <= windowEnd) {
        // The end was heard; confirm with a status read.
        listenSeconds += heardEnd - opened;
        t = heardEnd + m.getSeconds;
        t += record(snapshotAt(trace, t));
        return finished(billed());
      }
      closedAt ??= windowEnd;
      memory = strategy.streamWorked(memory);
      listenSeconds += closedAt - opened;
      t = closedAt;
      const after = snapshotAt(trace, t);
      t += m.getSeconds;
      t += record(after);
      if (after.status === 'COMPLETED') return finished(billed());
      memory = strategy.observe(memory, observationOf(after, t));
      const after2 = strategy.plan(memory, { now: t, pollCount: polls, stream: 'listened', maxListenSeconds: 0, random });
      memory = after2.memory;
      wait = after2.waitSeconds;
    }
    lambdaSeconds += billed();
  }

  function finished(lastBilled: number): JobRun {
    lambdaSeconds += lastBilled;
    const detectedAt = t;
    return {
      trace,
      polls,
      listens,
      listenSeconds,
      pollLambdaSeconds: lambdaSeconds,
      writes,
      latencySeconds: detectedAt + m.finishSeconds - end,
      pollTimes,
      finishedAt: detectedAt + m.finishSeconds,
    };
  }
}

/** Most history events in any one-hour window of the job (the whole job when shorter). */
export function maxHistoryEventsPerHour(run: JobRun, shape: LoopShape): number {
  const events: Array<[number, number]> = [[0, 1]];
  for (const at of run.pollTimes) events.push([at, shape.historyEventsPerIteration]);
  events.push([run.finishedAt, shape.historyEventsFixed - 1]);
  let best = 0;
  let sum = 0;
  let left = 0;
  for (let right = 0; right < events.length; right += 1) {
    sum += events[right]![1];
    while (events[right]![0] - events[left]![0] >= 3600) {
      sum -= events[left]![1];
      left += 1;
    }
    best = Math.max(best, sum);
  }
  return best;
}
