/**
 * The reference set of job traces the benchmark replays: seeded, so every run (and every
 * strategy) sees the same jobs.
 *
 * - Durations (time RUNNING) are stratified log-uniform from 15 s to 6 h: each shape gets
 *   `perShape` jobs, one per equal slice of log(duration), at a random point in its slice.
 * - Shapes, as the Waterflai simulator defines them (local/simulator/scenario.ts):
 *   `linear` (equal nodes), `front_loaded` (node i weighs i+1: fast early progress),
 *   `back_loaded` (node i weighs N-i: slow start), `stall` (the middle node takes 80%),
 *   `none` (linear timing, but no progress, node counts or progress events at all).
 * - Noise: every node's weight is multiplied by exp(0.35 x N(0,1)); 3 to 12 nodes; a
 *   PENDING queue time log-uniform from 0.2 s to 10 s.
 */
import { deriveSeed, mulberry32, normal, type Random } from './random';

export const SHAPES = ['linear', 'front_loaded', 'back_loaded', 'stall', 'none'] as const;
export type Shape = (typeof SHAPES)[number];

export interface JobTrace {
  readonly id: string;
  readonly shape: Shape;
  /** Seconds PENDING before it runs. */
  readonly queueSeconds: number;
  /** Seconds RUNNING (the job ends at queueSeconds + durationSeconds after acceptance). */
  readonly durationSeconds: number;
  readonly nodes: number;
  /** When each node completes, in seconds after the run started (increasing; the last is durationSeconds). */
  readonly nodeEnds: readonly number[];
  /** Whether progress, completed_nodes and total_nodes are reported. */
  readonly reportsProgress: boolean;
}

export interface ReferenceSetSettings {
  readonly seed: number;
  readonly perShape: number;
  readonly minSeconds: number;
  readonly maxSeconds: number;
  readonly weightNoiseSigma: number;
  readonly minNodes: number;
  readonly maxNodes: number;
  readonly minQueueSeconds: number;
  readonly maxQueueSeconds: number;
}

export const REFERENCE_SET: ReferenceSetSettings = {
  seed: 20_250_914,
  perShape: 60,
  minSeconds: 15,
  maxSeconds: 6 * 3600,
  weightNoiseSigma: 0.35,
  minNodes: 3,
  maxNodes: 12,
  minQueueSeconds: 0.2,
  maxQueueSeconds: 10,
};

export type ReferenceSetOptions = Partial<ReferenceSetSettings>;

function logUniform(random: Random, min: number, max: number): number {
  return Math.exp(Math.log(min) + random() * (Math.log(max) - Math.log(min)));
}

function shapeWeights(shape: Shape, nodes: number): number[] {
  const stallNode = Math.floor((nodes - 1) / 2);
  return Array.from({ length: nodes }, (_, i) => {
    switch (shape) {
      case 'front_loaded':
        return i + 1;
      case 'back_loaded':
        return nodes - i;
      case 'stall':
        return i === stallNode ? 0.8 : 0.2 / (nodes - 1);
      default:
        return 1;
    }
  });
}

/** Builds one trace. */
export function buildTrace(
  id: string,
  shape: Shape,
  durationSeconds: number,
  nodes: number,
  queueSeconds: number,
  random: Random,
  sigma: number,
): JobTrace {
  const weights = shapeWeights(shape, nodes).map((weight) => weight * Math.exp(sigma * normal(random)));
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  let cumulative = 0;
  const nodeEnds = weights.map((weight, i) => {
    cumulative += weight;
    return i === nodes - 1 ? durationSeconds : (cumulative / total) * durationSeconds;
  });
  return { id, shape, queueSeconds, durationSeconds, nodes, nodeEnds, reportsProgress: shape !== 'none' };
}

/** The reference set (or a variant of it, e.g. another seed for a held-out check). */
export function referenceSet(options: ReferenceSetOptions = {}): JobTrace[] {
  const settings = { ...REFERENCE_SET, ...options };
  const traces: JobTrace[] = [];
  for (const shape of SHAPES) {
    const random = mulberry32(deriveSeed(settings.seed, shape));
    for (let i = 0; i < settings.perShape; i += 1) {
      const slice = (i + random()) / settings.perShape;
      const duration = Math.exp(Math.log(settings.minSeconds) + slice * (Math.log(settings.maxSeconds) - Math.log(settings.minSeconds)));
      const nodes = settings.minNodes + Math.floor(random() * (settings.maxNodes - settings.minNodes + 1));
      const queue = logUniform(random, settings.minQueueSeconds, settings.maxQueueSeconds);
      traces.push(
        buildTrace(
          `${shape}-${String(i).padStart(3, '0')}`,
          shape,
          Math.round(duration * 10) / 10,
          nodes,
          Math.round(queue * 10) / 10,
          random,
          settings.weightNoiseSigma,
        ),
      );
    }
  }
  return traces;
}

/** What Waterflai reports for a trace at `t` seconds after acceptance. */
export interface TraceSnapshot {
  readonly status: 'PENDING' | 'RUNNING' | 'COMPLETED';
  readonly progress: number | null;
  readonly completedNodes: number | null;
  readonly totalNodes: number | null;
  /** Index of the running node, or null. */
  readonly currentNode: number | null;
  /** Seconds after acceptance when it started running, or null while PENDING. */
  readonly startedAt: number | null;
}

export function endOf(trace: JobTrace): number {
  return trace.queueSeconds + trace.durationSeconds;
}

export function snapshotAt(trace: JobTrace, t: number): TraceSnapshot {
  const runStart = trace.queueSeconds;
  if (t < runStart) {
    return {
      status: 'PENDING',
      progress: trace.reportsProgress ? 0 : null,
      completedNodes: trace.reportsProgress ? 0 : null,
      totalNodes: trace.reportsProgress ? trace.nodes : null,
      currentNode: null,
      startedAt: null,
    };
  }
  const done = t >= endOf(trace);
  let completed = 0;
  while (completed < trace.nodes && (trace.nodeEnds[completed] ?? Infinity) <= t - runStart) completed += 1;
  if (done) completed = trace.nodes;
  return {
    status: done ? 'COMPLETED' : 'RUNNING',
    progress: trace.reportsProgress ? Math.round((completed / trace.nodes) * 10_000) / 100 : null,
    completedNodes: trace.reportsProgress ? completed : null,
    totalNodes: trace.reportsProgress ? trace.nodes : null,
    currentNode: done ? null : Math.min(completed, trace.nodes - 1),
    startedAt: runStart,
  };
}

/** Node completions (seconds after acceptance) in (from, to]: what a stream would announce. */
export function nodeCompletionsBetween(trace: JobTrace, from: number, to: number): number[] {
  const times: number[] = [];
  for (const end of trace.nodeEnds) {
    const at = trace.queueSeconds + end;
    if (at > from && at <= to) times.push(at);
  }
  return times;
}
