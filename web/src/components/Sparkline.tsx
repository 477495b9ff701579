/** A small inline SVG line chart of recent samples (no chart library: a few paths are enough). */

export interface SparkSeries {
  name: string;
  values: (number | null | undefined)[];
  /** Colours the line (see .spark-line-* in app.css). */
  tone?: 'accent' | 'warn' | 'info';
}

interface Props {
  /** Sample times in seconds, one per value of every series. */
  times: number[];
  series: SparkSeries[];
  /** What the chart says in words, for screen readers (the latest value). */
  label: string;
  /** The top of the scale; the largest value when bigger. */
  max?: number;
  testId?: string;
}

const WIDTH = 240;
const HEIGHT = 96;
const PAD = 3;

/** The last value that is a number, or null. */
export function latest(values: (number | null | undefined)[]): number | null {
  for (let i = values.length - 1; i >= 0; i--) {
    const v = values[i];
    if (typeof v === 'number' && Number.isFinite(v)) return v;
  }
  return null;
}

/** The top of a chart's scale: `max`, or the largest value when bigger (1 when all are 0). */
export function scaleTop(series: SparkSeries[], max = 0): number {
  const numbers = series.flatMap((s) => s.values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)));
  return Math.max(max, ...numbers) || 1;
}

/** The value of the newest sample, or null when it has none: a figure said as "now" must not
 * be an older sample's (an upstream down for minutes still showing its last throughput). */
export function current(values: (number | null | undefined)[]): number | null {
  const v = values[values.length - 1];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** Runs of consecutive numbers as [x, y] points: a missing sample breaks the line. */
export function segments(
  times: number[],
  values: (number | null | undefined)[],
  top: number,
): [number, number][][] {
  const first = times[0] ?? 0;
  const span = (times[times.length - 1] ?? 0) - first;
  const runs: [number, number][][] = [];
  let run: [number, number][] = [];
  values.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || i >= times.length) {
      if (run.length) runs.push(run);
      run = [];
      return;
    }
    const x = span > 0 ? ((times[i] - first) / span) * WIDTH : WIDTH;
    const y = HEIGHT - PAD - (Math.max(0, v) / top) * (HEIGHT - 2 * PAD);
    run.push([round(x), round(y)]);
  });
  if (run.length) runs.push(run);
  return runs;
}

const round = (n: number) => Math.round(n * 10) / 10;

function linePath(run: [number, number][]): string {
  // A lone sample is drawn as a dot: a zero-length line with round caps.
  if (run.length === 1) return `M${run[0][0]} ${run[0][1]}h0.01`;
  return run.map(([x, y], i) => `${i ? 'L' : 'M'}${x} ${y}`).join('');
}

function areaPath(run: [number, number][]): string {
  if (run.length < 2) return '';
  const base = HEIGHT - PAD;
  return `${linePath(run)}L${run[run.length - 1][0]} ${base}L${run[0][0]} ${base}Z`;
}

/** Lines over the sample times; null when no series has a single number to show. */
export function Sparkline({ times, series, label, max = 0, testId }: Props) {
  const numbers = series.flatMap((s) => s.values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)));
  if (numbers.length === 0) return null;
  const top = scaleTop(series, max);
  const fill = series.length === 1;
  return (
    <svg
      className="sparkline"
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      preserveAspectRatio="none"
      role="img"
      aria-label={label}
      data-testid={testId}
    >
      {series.map((s) => {
        const runs = segments(times, s.values, top);
        const tone = s.tone ?? 'accent';
        return (
          <g key={s.name} className={`spark-line spark-line-${tone}`}>
            {fill ? runs.map((run, i) => <path key={`a${i}`} className="spark-area" d={areaPath(run)} />) : null}
            {runs.map((run, i) => (
              <path key={i} className="spark-stroke" d={linePath(run)} vectorEffect="non-scaling-stroke" />
            ))}
          </g>
        );
      })}
    </svg>
  );
}
