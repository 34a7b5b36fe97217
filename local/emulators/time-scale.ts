/**
 * The time scale of the local runtime: a factor applied to every wait of the poll loop (and
 * handed to the Waterflai simulator, which scales job durations the same way), so a demo or
 * a test runs a job of minutes in seconds. 1 is real time; 0.1 runs ten times faster.
 *
 * aws-local-stepfunctions can override a Wait state's duration (`waitTimeOverrides`, in ms)
 * and a Task's retry interval (`retryIntervalOverrides`), but only with fixed values. The
 * poll loop waits `$.next_poll_seconds`, which changes from poll to poll, so the override
 * for each Wait state is a getter evaluated when the state runs, against the execution's
 * current state document, which the runtime tracks as Tasks return (see
 * {@link nextDocument}). Retry intervals are scaled as fixed values: the backoff rate and
 * jitter of a scaled retrier are not applied.
 */
import type { AslDefinition, AslState } from '../asl';
import type { Clock } from '../../lambdas/domain/clock';

/** Smallest and largest accepted scale. */
export const TIME_SCALE_LIMITS = { min: 0.001, max: 100 } as const;

/** Checks a time scale (a number or its text) and returns it. */
export function parseTimeScale(value: string | number): number {
  const scale = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(scale) || scale < TIME_SCALE_LIMITS.min || scale > TIME_SCALE_LIMITS.max) {
    throw new RangeError(
      `time scale must be a number from ${TIME_SCALE_LIMITS.min} to ${TIME_SCALE_LIMITS.max}, got ${JSON.stringify(value)}`,
    );
  }
  return scale;
}

/** State types whose effect on the state document the runtime can follow. */
const TRACKABLE_TYPES = new Set(['Task', 'Wait', 'Choice', 'Succeed', 'Fail']);

/**
 * True when every state of the definition is one whose output the runtime can compute from
 * the Task results it sees (no Pass/Parallel/Map, no ResultSelector, no OutputPath other
 * than `$`, simple ResultPaths). Otherwise Wait states that read the document run unscaled.
 */
export function canTrackDocument(definition: AslDefinition): boolean {
  return Object.values(definition.States).every(
    (state) =>
      TRACKABLE_TYPES.has(state.Type) &&
      state.ResultSelector === undefined &&
      (state.OutputPath === undefined || state.OutputPath === '$') &&
      (state.Type !== 'Wait' || state.InputPath === undefined || state.InputPath === '$') &&
      (state.ResultPath === undefined ||
        state.ResultPath === null ||
        (typeof state.ResultPath === 'string' && isSimplePath(state.ResultPath))),
  );
}

/** The state document after a Task returned `result` for raw input `input`. */
export function nextDocument(state: AslState, input: unknown, result: unknown): unknown {
  const resultPath = state.ResultPath;
  if (resultPath === undefined || resultPath === '$') return result;
  if (resultPath === null) return input;
  if (typeof resultPath !== 'string' || !isSimplePath(resultPath)) return undefined;
  const keys = pathKeys(resultPath);
  const root: Record<string, unknown> = isRecord(input) ? structuredClone(input) : {};
  let node = root;
  keys.forEach((key, index) => {
    if (index === keys.length - 1) node[key] = result;
    else {
      const child = node[key];
      node[key] = isRecord(child) ? child : {};
      node = node[key] as Record<string, unknown>;
    }
  });
  return root;
}

/** Reads a simple JSONPath (`$`, `$.a.b`) from a document; `undefined` when absent. */
export function readSimplePath(document: unknown, path: string): unknown {
  if (!isSimplePath(path)) return undefined;
  let node: unknown = document;
  for (const key of pathKeys(path)) {
    if (!isRecord(node)) return undefined;
    node = node[key];
  }
  return node;
}

/**
 * `waitTimeOverrides` for one execution: for each Wait state, a getter giving its scaled
 * duration in ms, or `undefined` (no override: real duration) when it cannot be computed.
 * `document` returns the execution's current state document.
 */
export function scaledWaitOverrides(definition: AslDefinition, scale: number, document: () => unknown): Record<string, number> {
  const overrides: Record<string, number> = {};
  if (scale === 1) return overrides;
  const trackable = canTrackDocument(definition);
  for (const [name, state] of Object.entries(definition.States)) {
    if (state.Type !== 'Wait') continue;
    const seconds = (): number | undefined => {
      if (typeof state.Seconds === 'number') return state.Seconds;
      if (trackable && typeof state.SecondsPath === 'string') {
        const value = readSimplePath(document(), state.SecondsPath);
        return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
      }
      return undefined; // Timestamp / TimestampPath: absolute times are not scaled.
    };
    Object.defineProperty(overrides, name, {
      enumerable: true,
      get: () => {
        const value = seconds();
        return value === undefined ? undefined : Math.round(value * 1000 * scale);
      },
    });
  }
  return overrides;
}

/** `retryIntervalOverrides`: each retrier's `IntervalSeconds` (default 1) scaled, in ms. */
export function scaledRetryOverrides(definition: AslDefinition, scale: number): Record<string, number[]> {
  const overrides: Record<string, number[]> = {};
  if (scale === 1) return overrides;
  for (const [name, state] of Object.entries(definition.States)) {
    const retriers = state.Retry;
    if (!Array.isArray(retriers) || retriers.length === 0) continue;
    overrides[name] = retriers.map((retrier: { IntervalSeconds?: number; MaxDelaySeconds?: number }) => {
      const interval = Math.min(retrier.IntervalSeconds ?? 1, retrier.MaxDelaySeconds ?? Number.POSITIVE_INFINITY);
      return Math.round(interval * 1000 * scale);
    });
  }
  return overrides;
}

function isSimplePath(path: string): boolean {
  return /^\$(\.[A-Za-z_][A-Za-z0-9_-]*)*$/.test(path);
}

function pathKeys(path: string): string[] {
  return path === '$' ? [] : path.slice(2).split('.');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The clock the local runtime injects into the handlers (`injectHostClock`): wall time as
 * usual, job time `1 / timeScale` times faster (0.1: a second of wall time is ten seconds of
 * job time), so the poll strategy reasons in job time as it would on AWS.
 */
export function scaledClock(timeScale: number): Clock {
  return {
    now: () => Date.now(),
    jobSeconds: (clockMs) => clockMs / 1000 / timeScale,
    clockMs: (jobSeconds) => jobSeconds * 1000 * timeScale,
  };
}
