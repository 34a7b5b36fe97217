/**
 * Public prices and the per-strategy summary of a replay: counts per job, cost per million
 * jobs, detection latency percentiles, peak history events per hour.
 */
import type { PollStrategy } from '../lambdas/domain/poll-strategy';
import { maxHistoryEventsPerHour, replayJob, REPLAY_MODEL, type JobRun } from './replay';
import type { LoopShape } from './shape';
import type { JobTrace } from './traces';

/** Public prices (us-east-1). */
export const PRICES = {
  /** Step Functions Standard, per state transition ($0.025 per 1,000). */
  transition: 0.025 / 1000,
  /** Lambda, per request ($0.20 per million). */
  lambdaRequest: 0.2 / 1e6,
  /** Lambda arm64, per GB-second. */
  lambdaGbSecond: 0.0000133334,
  /** DynamoDB on-demand, per write request unit ($0.625 per million). */
  dynamoWrite: 0.625 / 1e6,
  /** EventBridge custom events ($1.00 per million). */
  event: 1 / 1e6,
} as const;

export interface StrategySummary {
  readonly name: string;
  readonly isDefault: boolean;
  readonly jobs: number;
  readonly pollsPerJob: number;
  readonly listensPerJob: number;
  readonly listenSecondsPerJob: number;
  readonly transitionsPerJob: number;
  readonly lambdaGbSecondsPerJob: number;
  readonly dynamoWritesPerJob: number;
  readonly usdPerMillionJobs: number;
  readonly latency: Percentiles;
  readonly latencyPercent: Percentiles;
  readonly maxHistoryEventsPerHour: number;
  readonly runs: readonly JobRun[];
}

export interface Percentiles {
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

function percentiles(values: readonly number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), max: sorted[sorted.length - 1] ?? Number.NaN };
}

/** Dollars one job costs: transitions, poll and finish Lambdas, DynamoDB writes, the outcome event. */
export function jobCost(run: JobRun, shape: LoopShape): number {
  const transitions = run.polls * shape.transitionsPerIteration + shape.transitionsToFinish;
  const pollGb = shape.poll.memoryMb / 1024;
  const finishGb = shape.finish.memoryMb / 1024;
  return (
    transitions * PRICES.transition +
    (run.polls + 1) * PRICES.lambdaRequest +
    (run.pollLambdaSeconds * pollGb + REPLAY_MODEL.finishLambdaSeconds * finishGb) * PRICES.lambdaGbSecond +
    (run.writes + 1) * PRICES.dynamoWrite +
    PRICES.event
  );
}

export function summarise(
  strategy: PollStrategy,
  isDefault: boolean,
  traces: readonly JobTrace[],
  shape: LoopShape,
  seed: number,
): StrategySummary {
  const runs = traces.map((trace) => replayJob(strategy, trace, shape, seed));
  const n = runs.length;
  const mean = (f: (run: JobRun) => number): number => runs.reduce((sum, run) => sum + f(run), 0) / n;
  const pollGb = shape.poll.memoryMb / 1024;
  return {
    name: strategy.name,
    isDefault,
    jobs: n,
    pollsPerJob: mean((r) => r.polls),
    listensPerJob: mean((r) => r.listens),
    listenSecondsPerJob: mean((r) => r.listenSeconds),
    transitionsPerJob: mean((r) => r.polls * shape.transitionsPerIteration + shape.transitionsToFinish),
    lambdaGbSecondsPerJob: mean((r) => r.pollLambdaSeconds * pollGb),
    dynamoWritesPerJob: mean((r) => r.writes),
    usdPerMillionJobs: mean((r) => jobCost(r, shape)) * 1e6,
    latency: percentiles(runs.map((r) => r.latencySeconds)),
    latencyPercent: percentiles(runs.map((r) => (100 * r.latencySeconds) / r.trace.durationSeconds)),
    maxHistoryEventsPerHour: Math.max(...runs.map((r) => maxHistoryEventsPerHour(r, shape))),
    runs,
  };
}
