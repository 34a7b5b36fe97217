/**
 * Which scale Waterflai's `progress` uses: the contract shows both `"progress": 1` (GET)
 * and `"progress": 50.0` (stream), so a server may report fractions (0..1) or percents
 * (0..100). Reading a fraction as a percent makes every estimate 100 times too slow (0.5
 * read as 0.5 % instead of 50 %), so the scale is decided per execution from the data,
 * remembered (`PollState.progress_scale`) and used to turn each value into a percent.
 *
 * Pure: no I/O, no clock. The rules are in {@link inferProgressScale}; the reading of a
 * value while undecided in {@link toPercent}.
 *
 * @example
 * // One status read in the poll Lambda:
 * const scale = inferProgressScale(state.progress_scale, progressSampleOf(execution));
 * const mapped = mapExecutionStatus(execution, observedAt, maxOutputBytes, scale);
 * const percent = toPercent(execution.progress, scale); // what the poll strategy observes
 * const next = { ...state, ...(scale === undefined ? {} : { progress_scale: scale }) };
 */
import { WATERFLAI_STATUS } from '../contract/constants';
import type { ExecutionStatus } from '../contract/waterflai-api';

/** `fraction`: progress runs from 0 to 1; `percent`: from 0 to 100. */
export type ProgressScale = 'fraction' | 'percent';

/** What one observation (a status read or a stream event) says about progress. */
export interface ProgressSample {
  /** `progress` as Waterflai sent it (either scale), or null. */
  readonly progress: number | null;
  readonly completedNodes: number | null;
  readonly totalNodes: number | null;
  /** Waterflai's status string, when the observation carries one. */
  readonly status?: string | null;
}

/**
 * Float noise a fraction may carry above 1 (`7 * 0.1 / 0.7` is `1.0000000000000002`)
 * and the slack of every comparison below: values within it of a bound count as on it.
 */
const EPSILON = 1e-9;

/** The sample of a status read (`GET /v1/executions/{id}`). */
export function progressSampleOf(
  execution: Pick<ExecutionStatus, 'progress' | 'completed_nodes' | 'total_nodes' | 'status'>,
): ProgressSample {
  return {
    progress: execution.progress,
    completedNodes: execution.completed_nodes,
    totalNodes: execution.total_nodes,
    status: execution.status,
  };
}

/**
 * What the node counts say, when they are usable (0 <= completed <= total, total > 0):
 * the scale whose reading of `progress` agrees with the share of completed nodes while the
 * other reading does not, or `undefined` when both agree or neither does.
 *
 * "Agrees" means within one node's share `1/total` of `completed/total`: progress may count
 * part of the running node, or lag or lead the counts by one node. A percent is decided
 * only when the fraction reading misses by more than two nodes' shares: once decided,
 * percent is never revised (a fraction server never sends a value above 1 that could
 * correct it), while a wrong fraction is corrected by the first value above 1.
 */
function byNodeCounts(progress: number, completed: number | null, total: number | null): ProgressScale | 'no-counts' | undefined {
  if (
    completed === null ||
    total === null ||
    !Number.isFinite(completed) ||
    !Number.isFinite(total) ||
    total <= 0 ||
    completed < 0 ||
    completed > total
  )
    return 'no-counts';
  const share = completed / total;
  const node = 1 / total;
  const fractionMiss = Math.abs(progress - share);
  const percentMiss = Math.abs(progress / 100 - share);
  const fractionFits = fractionMiss <= node + EPSILON;
  const percentFits = percentMiss <= node + EPSILON;
  if (fractionFits && !percentFits) return 'fraction';
  if (percentFits && fractionMiss > 2 * node + EPSILON) return 'percent';
  return undefined;
}

/**
 * The scale of an execution's progress after one more observation. `previous` is what the
 * earlier observations decided (`undefined`: nothing yet); the result is `undefined` while
 * nothing decides. Rules, in order:
 *
 * 1. **Decided percent stays percent.** Whatever a fraction server sends (0..1) a percent
 *    server may send too, so no later value can show the decision wrong.
 * 2. **No usable value, no change.** A `progress` that is null, not finite or negative
 *    keeps `previous`.
 * 3. **A value above 1 is a percent**, final, and overrides an earlier `fraction` (the only
 *    contradiction a decision can meet). A fraction that float arithmetic pushed a hair
 *    above 1 (at most 1e-9) does not count.
 * 4. **Decided fraction stays fraction** (barring rule 3).
 * 5. **COMPLETED with exactly 1 is a fraction**: a percent server reports 100 when done.
 *    Should it not, reading its 1 as a fraction records 100 % for a finished job, which is
 *    true anyway.
 * 6. **Node counts, when usable** (`0 <= completed <= total`, `total > 0`): the reading
 *    (`progress` or `progress / 100`) within one node's share of `completed / total` while
 *    the other is not decides; percent needs the fraction reading to miss by over two
 *    shares (see below). `1` with 1 of 100 nodes done is a percent (1 % against 1 %, not
 *    100 %); `1` with 100 of 100 is a fraction. When the counts fit both readings (few
 *    nodes, early on) nothing is decided, and rule 7 does not apply either: a percent
 *    server can send 0.4 with 0 of 3 nodes done.
 * 7. **Without node counts, a value strictly between 0 and 1 is a fraction**: a
 *    percent server computing `completed / total * 100` sends 0 or at least 1 for any
 *    workflow of up to 100 nodes. Should a percent server send such a value after all,
 *    the wrong `fraction` lasts until its first value above 1 (rule 3), and meanwhile
 *    progress reads too high, so polls come early, never late.
 * 8. **0 and exactly 1 decide nothing** on their own (they read the same, or are the
 *    ambiguous 1 % / 100 %).
 *
 * Why percent is harder to reach than fraction (rules 1, 6): a wrong percent is never
 * corrected and reads a fraction server's 0.5 as 0.5 %, so estimates are 100 times late for
 * the rest of the job; a wrong fraction errs early and is corrected by rule 3.
 *
 * Soundness: if each value is the true completion `f` in the true scale, nondecreasing,
 * with `|f - completed/total| <= 1/total` whenever counts are present, and a COMPLETED
 * observation reports `f = 1`, then with node counts on every observation the result is
 * never the wrong scale (rules 3, 5 and 6 only fire on what the other scale can not send;
 * rule 7 needs counts absent). Without counts, a percent series may be taken for a
 * fraction until its first value above 1; a fraction series is never taken for percent.
 */
export function inferProgressScale(previous: ProgressScale | undefined, sample: ProgressSample): ProgressScale | undefined {
  if (previous === 'percent') return previous;
  const { progress } = sample;
  if (progress === null || !Number.isFinite(progress) || progress < 0) return previous;
  if (progress > 1 + EPSILON) return 'percent';
  if (previous === 'fraction') return previous;
  if (sample.status === WATERFLAI_STATUS.COMPLETED && Math.abs(progress - 1) <= EPSILON) return 'fraction';
  const nodes = byNodeCounts(progress, sample.completedNodes, sample.totalNodes);
  if (nodes !== 'no-counts') return nodes;
  if (progress > EPSILON && progress < 1 - EPSILON) return 'fraction';
  return undefined;
}

/**
 * A progress value as a percent in [0, 100], or null when there is none.
 *
 * Undecided (`scale` undefined) reads as a percent. What stays undecided is 0 (the same
 * either way), a lone exactly-1, and early values whose node counts fit both readings.
 * Reading those as percent errs towards later polls, and only until the next evidence
 * (any value between 0 and 1 without counts, any value above 1, counts that discriminate, or a
 * COMPLETED with 1, see {@link inferProgressScale}), which for a fraction server typically
 * comes with its next value. Reading them as fractions would err the other way for the
 * whole job on a percent server at 1 %: its estimate would say "done", it would poll at the
 * fastest rate, and 100 % would be recorded for a job that has barely started. Pass the
 * scale decided with this observation included, so a COMPLETED `1` from a fraction server
 * records 100.
 */
export function toPercent(progress: number | null, scale: ProgressScale | undefined): number | null {
  if (progress === null || !Number.isFinite(progress)) return null;
  const percent = scale === 'fraction' ? progress * 100 : progress;
  return Math.min(100, Math.max(0, percent));
}

/** Both steps at once: the scale after `sample`, and its progress as a percent under that scale. */
export function readProgress(
  previous: ProgressScale | undefined,
  sample: ProgressSample,
): { readonly scale: ProgressScale | undefined; readonly percent: number | null } {
  const scale = inferProgressScale(previous, sample);
  return { scale, percent: toPercent(sample.progress, scale) };
}
