/**
 * What a person sees while the local runtime runs jobs:
 * - on a terminal, a live block with one line per job (status, progress bar and %, current
 *   node, polls), redrawn in place, with log lines (outcome events, notices) printed above it;
 * - otherwise plain log lines: one per job change, one per outcome event;
 * - at the end, a summary table (job, outcome, duration, polls, detail).
 */
import type { PublishedEvent } from '../emulators/eventbridge';
import type { JobView } from './tracker';

export interface DisplayOptions {
  readonly out: NodeJS.WritableStream & { columns?: number; rows?: number };
  /** Live redrawing (a TTY). */
  readonly live: boolean;
  /** ANSI colours. @default live && !NO_COLOR */
  readonly color?: boolean;
  /** Start of the run, for elapsed times. */
  readonly startedAt: number;
  readonly now?: () => number;
}

const ANSI = {
  reset: '\u001b[0m',
  dim: '\u001b[2m',
  bold: '\u001b[1m',
  red: '\u001b[31m',
  green: '\u001b[32m',
  yellow: '\u001b[33m',
  magenta: '\u001b[35m',
  cyan: '\u001b[36m',
} as const;

const SPINNER = ['-', '\\', '|', '/'];

export class Display {
  readonly #out: DisplayOptions['out'];
  readonly #live: boolean;
  readonly #color: boolean;
  readonly #startedAt: number;
  readonly #now: () => number;
  #blockLines = 0;
  #views: JobView[] = [];
  #frame = 0;
  readonly #printed = new Map<string, string>();

  constructor(options: DisplayOptions) {
    this.#out = options.out;
    this.#live = options.live;
    this.#color = options.color ?? (options.live && process.env.NO_COLOR === undefined);
    this.#startedAt = options.startedAt;
    this.#now = options.now ?? Date.now;
  }

  /** A log line (printed above the live block, or as is). */
  line(text: string): void {
    this.#clearBlock();
    this.#out.write(`${text}\n`);
    this.#drawBlock();
  }

  /** Shows the current state of the jobs. */
  update(views: readonly JobView[]): void {
    this.#views = [...views];
    if (this.#live) {
      this.#frame += 1;
      this.#clearBlock();
      this.#drawBlock();
      return;
    }
    for (const view of views) {
      const state = `${view.status}|${view.progress ?? ''}|${view.currentNode ?? ''}|${view.done}`;
      if (this.#printed.get(view.key) === state) continue;
      this.#printed.set(view.key, state);
      this.#out.write(`${this.#elapsed()}  ${this.#jobLine(view, false)}\n`);
    }
  }

  /** Announces an outcome event as it is published. */
  event(event: PublishedEvent): void {
    const detail = event.detail as { job_id?: unknown; event_id?: unknown; error?: { code?: unknown }; reason?: unknown } | null;
    const extra =
      typeof detail?.error?.code === 'string'
        ? ` error=${detail.error.code}`
        : typeof detail?.reason === 'string'
          ? ` reason=${detail.reason}`
          : '';
    const type = event['detail-type'];
    const colour = type.endsWith('Completed') ? ANSI.green : type.endsWith('Failed') ? ANSI.red : ANSI.yellow;
    this.line(
      `${this.#elapsed()}  ${this.#paint('event', ANSI.cyan)}  ${this.#paint(type, colour)}  job=${String(detail?.job_id)}  event_id=${String(detail?.event_id)}${extra}`,
    );
  }

  /** Removes the live block (before the summary or on exit). */
  stop(): void {
    this.#clearBlock();
    this.#views = [];
  }

  #elapsed(): string {
    return this.#paint(`${((this.#now() - this.#startedAt) / 1000).toFixed(1).padStart(6)}s`, ANSI.dim);
  }

  #paint(text: string, colour: string): string {
    return this.#color ? `${colour}${text}${ANSI.reset}` : text;
  }

  #statusColour(view: JobView): string {
    switch (view.outcome ?? view.status) {
      case 'COMPLETED':
        return ANSI.green;
      case 'FAILED':
        return ANSI.red;
      case 'CANCELLED':
        return ANSI.yellow;
      case 'DEAD-LETTERED':
        return ANSI.magenta;
      default:
        return ANSI.cyan;
    }
  }

  #jobLine(view: JobView, live: boolean): string {
    const width = Math.max(60, this.#out.columns || 100);
    const name = truncate(view.key, 40).padEnd(Math.min(40, Math.max(24, view.key.length)));
    const mark = view.done ? (view.outcome === 'COMPLETED' ? 'ok' : '--') : live ? SPINNER[this.#frame % SPINNER.length]! : '..';
    const status = this.#paint(view.status.padEnd(13), this.#statusColour(view));
    const percent = view.progress === null ? '    ' : `${Math.round(view.progress).toString().padStart(3)}%`;
    const bar = live ? ` ${progressBar(view.progress, view.done && view.outcome === 'COMPLETED', 12)}` : '';
    const node = view.currentNode === null ? '' : ` ${truncate(view.currentNode, 20)}`;
    const polls = ` polls=${view.polls}`;
    const detail = view.done && view.detail !== undefined ? `  ${this.#paint(view.detail, ANSI.dim)}` : '';
    const line = `${mark} ${name} ${status} ${percent}${bar}${node}${polls}${detail}`;
    return live ? truncateAnsi(line, width - 1) : line;
  }

  #drawBlock(): void {
    if (!this.#live || this.#views.length === 0) return;
    const maxLines = Math.max(3, (this.#out.rows || 24) - 4);
    const views = this.#views;
    let shown = views;
    const lines: string[] = [];
    if (views.length > maxLines) {
      const open = views.filter((view) => !view.done);
      const finished = views.filter((view) => view.done);
      shown = [...open, ...finished.slice(-(maxLines - 1 - Math.min(open.length, maxLines - 1)))].slice(0, maxLines - 1);
    }
    for (const view of shown) lines.push(this.#jobLine(view, true));
    const done = views.filter((view) => view.done).length;
    lines.push(
      this.#paint(
        `${done}/${views.length} jobs done${views.length > shown.length ? ` (${views.length - shown.length} not shown)` : ''}`,
        ANSI.bold,
      ),
    );
    this.#out.write(`${lines.join('\n')}\n`);
    this.#blockLines = lines.length;
  }

  #clearBlock(): void {
    if (!this.#live || this.#blockLines === 0) return;
    this.#out.write(`\u001b[${this.#blockLines}F\u001b[J`);
    this.#blockLines = 0;
  }
}

function progressBar(progress: number | null, complete: boolean, width: number): string {
  const value = complete ? 100 : (progress ?? 0);
  const filled = Math.round((Math.min(100, Math.max(0, value)) / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}~`;
}

/** Truncates a line to `max` visible characters, keeping ANSI sequences intact. */
function truncateAnsi(text: string, max: number): string {
  let visible = 0;
  let result = '';
  for (let i = 0; i < text.length; i += 1) {
    if (text[i] === '\u001b') {
      const end = text.indexOf('m', i);
      if (end > i) {
        result += text.slice(i, end + 1);
        i = end;
        continue;
      }
    }
    if (visible >= max) continue;
    result += text[i];
    visible += 1;
  }
  return result;
}

/** Milliseconds as `1.2 s` / `3 min 05 s`. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return '-';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')} s`;
}

/** The summary table printed at the end of a run. */
export function formatSummary(views: readonly JobView[]): string {
  const header = ['JOB', 'OUTCOME', 'DURATION', 'POLLS', 'DETAIL'];
  const rows = views.map((view) => [
    view.key,
    view.outcome ?? `UNFINISHED (${view.status})`,
    formatDuration(view.durationMs),
    String(view.polls),
    truncate((view.detail ?? '').replace(/\s+/g, ' '), 70),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const format = (row: readonly string[]): string =>
    row
      .map((cell, column) => (column === 3 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  const counts = new Map<string, number>();
  for (const view of views) {
    const outcome = view.outcome ?? 'UNFINISHED';
    counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
  }
  const totals = [...counts.entries()].map(([outcome, count]) => `${count} ${outcome.toLowerCase()}`).join(', ');
  return [format(header), rule, ...rows.map(format), rule, `${views.length} job(s): ${totals || 'none'}`].join('\n');
}
