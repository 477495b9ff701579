import { useEffect, useRef, useState, type ReactNode } from 'react';
import { ApiError, getAdminStatus } from '../api/rest';
import type { AdminStatus, GpuDevice, StatusSample, UpstreamStatus } from '../api/types';
import { RefreshIcon } from './icons';
import { PageHeader } from './PageHeader';
import { Sparkline, current, latest, scaleTop, type SparkSeries } from './Sparkline';

interface Props {
  onBack: () => void;
  onToggleSidebar: () => void;
  onError: (e: unknown) => void;
}

export const DEFAULT_INTERVAL_S = 5;

/** The interval the server asks for, kept between 1 s and a minute. */
const pollSeconds = (s: AdminStatus) =>
  typeof s.interval_s === 'number' && s.interval_s > 0 ? Math.min(60, Math.max(1, s.interval_s)) : DEFAULT_INTERVAL_S;

/** Polls /api/admin/status while mounted, every interval_s; an error keeps the last answer.
 *  A 403 stops polling; a 401 goes to onError (the session ended). */
export function useAdminStatus(onError: (e: unknown) => void) {
  const [data, setData] = useState<AdminStatus | null>(null);
  const [updatedAt, setUpdatedAt] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [forbidden, setForbidden] = useState(false);
  const [asked, setAsked] = useState(0);
  // The caller's handler may change on every render; polling must not restart with it.
  const onErrorRef = useRef(onError);
  onErrorRef.current = onError;

  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let seconds = DEFAULT_INTERVAL_S;
    const poll = async () => {
      try {
        const status = await getAdminStatus();
        if (!live) return;
        seconds = pollSeconds(status);
        setData(status);
        setUpdatedAt(Date.now());
        setError(null);
      } catch (e) {
        if (!live) return;
        if (e instanceof ApiError && e.status === 403) {
          setForbidden(true);
          return;
        }
        if (e instanceof ApiError && e.status === 401) {
          onErrorRef.current(e);
          return;
        }
        setError(e instanceof Error ? e.message : 'Could not load the status.');
      }
      timer = setTimeout(() => void poll(), seconds * 1000);
    };
    void poll();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [asked]);

  return { data, updatedAt, error, forbidden, refresh: () => setAsked((n) => n + 1) };
}

// ---- formatting ----------------------------------------------------------------------------

const DASH = '—';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

export function formatNumber(v: number | null | undefined, digits = 0): string {
  return isNum(v) ? v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : DASH;
}

export function formatUptime(s: number | null | undefined): string {
  if (!isNum(s)) return DASH;
  const total = Math.floor(s);
  const [d, h, m, sec] = [Math.floor(total / 86400), Math.floor((total % 86400) / 3600), Math.floor((total % 3600) / 60), total % 60];
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${sec} s`;
  return `${sec} s`;
}

export function formatSeconds(s: number | null | undefined): string {
  if (!isNum(s)) return DASH;
  return s < 1 ? `${Math.round(s * 1000)}${NBSP}ms` : `${s.toFixed(2)}${NBSP}s`;
}

export function formatMb(mb: number | null | undefined): string {
  if (!isNum(mb)) return DASH;
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)}${NBSP}GB` : `${Math.round(mb)}${NBSP}MB`;
}

const text = (v: string | null | undefined) => (v ? v : DASH);
// A no-break space between a number and its unit: "12 %" never wraps into "12" and "%".
const NBSP = '\u00a0';
const withUnit = (v: number | null | undefined, unit: string, digits = 0) =>
  isNum(v) ? `${formatNumber(v, digits)}${NBSP}${unit}` : DASH;

/** How far back the samples go, in words ("the last 4 min"). */
function historySpan(history: StatusSample[]): string {
  if (history.length < 2) return 'Recent samples';
  const minutes = Math.round((history[history.length - 1].t - history[0].t) / 60);
  return minutes >= 1 ? `Last ${minutes} min` : `Last ${Math.round(history[history.length - 1].t - history[0].t)} s`;
}

// ---- pieces --------------------------------------------------------------------------------

function Fact({ label, children, testId }: { label: string; children: ReactNode; testId?: string }) {
  return (
    <div className="status-fact">
      <dt>{label}</dt>
      <dd data-testid={testId}>{children}</dd>
    </div>
  );
}

/** A horizontal gauge; aria-valuetext says it in words. */
function Bar({ label, value, max, valueText }: { label: string; value: number; max: number; valueText: string }) {
  const pct = max > 0 ? Math.min(100, Math.max(0, (value / max) * 100)) : 0;
  return (
    <span className="status-bar-row">
      <span
        className={`status-bar${pct >= 90 ? ' high' : ''}`}
        role="meter"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={max}
        aria-valuenow={value}
        aria-valuetext={valueText}
      >
        <span className="status-bar-fill" style={{ width: `${pct}%` }} />
      </span>
      <span className="status-bar-text">{valueText}</span>
    </span>
  );
}

function Badge({ ok, children, testId }: { ok: boolean; children: ReactNode; testId?: string }) {
  return (
    <span className={`badge ${ok ? 'badge-ok' : 'badge-failed'}`} data-testid={testId}>
      {children}
    </span>
  );
}

interface ChartProps {
  title: string;
  /** The latest value in words, shown and read out. */
  now: string;
  span: string;
  times: number[];
  series: SparkSeries[];
  max?: number;
  testId: string;
  legend?: boolean;
  /** Said instead of the chart when no sample has a value. */
  empty?: string;
  /** The top of the scale in words (with its unit), shown beside the chart. */
  scale: (top: number) => string;
}

function Chart({ title, now, span, times, series, max, testId, legend, empty = 'No samples yet', scale }: ChartProps) {
  const hasValues = series.some((s) => s.values.some(isNum));
  const top = scale(scaleTop(series, max));
  return (
    <figure className="status-chart">
      <figcaption>
        <span className="status-chart-title">{title}</span>
        <span className="status-chart-now">{now}</span>
      </figcaption>
      {hasValues ? (
        <div className="status-chart-plot">
          <span className="status-chart-axis muted" aria-hidden="true" data-testid={`${testId}-scale`}>
            <span>{top}</span>
            <span>0</span>
          </span>
          <Sparkline
            times={times}
            series={series}
            max={max}
            testId={testId}
            label={`${title}, ${span.toLowerCase()}, scale 0 to ${top}: now ${now}`}
          />
        </div>
      ) : null}
      {series.every((s) => !s.values.some(isNum)) ? (
        <p className="muted small status-chart-empty">{empty}</p>
      ) : null}
      {legend ? (
        <ul className="status-legend" aria-hidden="true">
          {series.map((s) => (
            <li key={s.name} className={`spark-line-${s.tone ?? 'accent'}`}>
              {s.name}
            </li>
          ))}
        </ul>
      ) : null}
    </figure>
  );
}

function GpuDeviceCard({ gpu }: { gpu: GpuDevice }) {
  const name = `${gpu.name ?? 'GPU'} (#${gpu.index})`;
  return (
    <li className="status-gpu-device" data-testid="status-gpu-device">
      <h4>{name}</h4>
      <dl className="status-facts">
        <Fact label="Utilisation">
          {isNum(gpu.utilization_pct) ? (
            <Bar label={`${name} utilisation`} value={gpu.utilization_pct} max={100} valueText={withUnit(gpu.utilization_pct, '%')} />
          ) : (
            DASH
          )}
        </Fact>
        <Fact label="Memory">
          {isNum(gpu.memory_used_mb) && isNum(gpu.memory_total_mb) ? (
            <Bar
              label={`${name} memory`}
              value={gpu.memory_used_mb}
              max={gpu.memory_total_mb}
              valueText={`${formatMb(gpu.memory_used_mb)} of ${formatMb(gpu.memory_total_mb)}`}
            />
          ) : (
            formatMb(gpu.memory_used_mb)
          )}
        </Fact>
        <Fact label="Temperature">{withUnit(gpu.temperature_c, '°C')}</Fact>
        <Fact label="Power">{withUnit(gpu.power_w, 'W')}</Fact>
      </dl>
    </li>
  );
}

function GpuSection({ upstream }: { upstream: UpstreamStatus }) {
  const devices = upstream.gpus?.devices ?? [];
  return (
    <section className="status-gpu" data-testid="status-gpu" aria-label={`GPU of ${upstream.url}`}>
      <h3>GPU</h3>
      {upstream.gpus?.available && devices.length ? (
        <ul className="status-gpu-list">
          {devices.map((gpu) => (
            <GpuDeviceCard key={gpu.index} gpu={gpu} />
          ))}
        </ul>
      ) : upstream.gpus?.available === false ? (
        <p className="muted" data-testid="status-no-gpu">
          No GPU on this model server (CPU)
        </p>
      ) : (
        <p className="muted">No GPU figures: the model server did not report them.</p>
      )}
    </section>
  );
}

function UpstreamCard({ upstream }: { upstream: UpstreamStatus }) {
  const h = upstream.health ?? null;
  const history = upstream.history ?? [];
  const times = history.map((p) => p.t);
  const pick = (key: keyof StatusSample) => history.map((p) => p[key] as number | null | undefined);
  const span = historySpan(history);
  // The newest sample's rate, "—" when it has none (the server down, or just restarted);
  // nothing running or waiting there is 0, whatever the last interval's rate was.
  const idle = current(pick('running')) === 0 && current(pick('waiting')) === 0;
  const rate = current(pick('tokens_per_s'));
  const throughput = idle && rate !== null ? 0 : rate;
  const ttft = latest(pick('ttft_avg_s'));
  const gpuUtil = pick('gpu_utilization_pct');
  const gpuMem = pick('gpu_memory_used_mb');
  const kvUsed = h?.kv_cache_tokens;
  const kvCap = h?.kv_cache_capacity_tokens;
  const memTotal = upstream.gpus?.devices?.[0]?.memory_total_mb ?? undefined;
  const titleId = `upstream-${upstream.url.replace(/[^a-z0-9]+/gi, '-')}`;

  return (
    <article className="status-card" data-testid="status-upstream" data-url={upstream.url} aria-labelledby={titleId}>
      <div className="status-card-head">
        <h2 id={titleId}>
          Model server <code>{upstream.url}</code>
        </h2>
        <Badge ok={upstream.healthy} testId="status-upstream-health">
          {upstream.healthy ? 'Healthy' : 'Down'}
        </Badge>
      </div>
      {upstream.error ? (
        <p className="status-upstream-error" data-testid="status-upstream-error">
          {upstream.error}
        </p>
      ) : null}
      <dl className="status-facts">
        <Fact label="Model" testId="status-model">{text(h?.model)}</Fact>
        <Fact label="Device" testId="status-device">{text(h?.device)}</Fact>
        <Fact label="Dtype">{text(h?.dtype)}</Fact>
        <Fact label="Quantization">{text(h?.quantization)}</Fact>
        <Fact label="Version">{text(h?.version)}</Fact>
        <Fact label="Running">{formatNumber(h?.running)}</Fact>
        <Fact label="Waiting">{formatNumber(h?.waiting)}</Fact>
        <Fact label="Batch size">{formatNumber(h?.batch_size)}</Fact>
        <Fact label="Throughput" testId="status-throughput">{withUnit(throughput, 'tokens/s', 1)}</Fact>
        <Fact label="TTFT (average)" testId="status-ttft">{formatSeconds(ttft)}</Fact>
        <Fact label="KV cache">
          {isNum(kvUsed) && isNum(kvCap) && kvCap > 0 ? (
            <Bar
              label="KV cache use"
              value={kvUsed}
              max={kvCap}
              valueText={`${formatNumber(kvUsed)} of ${formatNumber(kvCap)} tokens · ${Math.round((kvUsed / kvCap) * 100)}${NBSP}%`}
            />
          ) : (
            DASH
          )}
        </Fact>
      </dl>

      <h3>{span}</h3>
      <div className="status-charts">
        <Chart
          title="Throughput"
          now={withUnit(throughput, 'tokens/s', 1)}
          span={span}
          times={times}
          series={[{ name: 'tokens/s', values: pick('tokens_per_s') }]}
          testId="status-chart-throughput"
          scale={(top) => withUnit(top, 'tokens/s', top < 10 ? 1 : 0)}
        />
        <Chart
          title="Time to first token"
          now={formatSeconds(ttft)}
          span={span}
          times={times}
          series={[{ name: 'TTFT', values: pick('ttft_avg_s'), tone: 'info' }]}
          testId="status-chart-ttft"
          scale={formatSeconds}
          empty={history.length ? 'No requests started in this window' : undefined}
        />
        <Chart
          title="Queue"
          now={`${formatNumber(latest(pick('running')))} running, ${formatNumber(latest(pick('waiting')))} waiting`}
          span={span}
          times={times}
          series={[
            { name: 'running', values: pick('running') },
            { name: 'waiting', values: pick('waiting'), tone: 'warn' },
          ]}
          testId="status-chart-queue"
          scale={(top) => formatNumber(top)}
          legend
        />
        {gpuUtil.some(isNum) ? (
          <Chart
            title="GPU utilisation"
            now={withUnit(latest(gpuUtil), '%')}
            span={span}
            times={times}
            series={[{ name: 'utilisation', values: gpuUtil, tone: 'info' }]}
            max={100}
            testId="status-chart-gpu-util"
            scale={(top) => withUnit(top, '%')}
          />
        ) : null}
        {gpuMem.some(isNum) ? (
          <Chart
            title="GPU memory"
            now={formatMb(latest(gpuMem))}
            span={span}
            times={times}
            series={[{ name: 'memory', values: gpuMem, tone: 'warn' }]}
            max={memTotal ?? 0}
            testId="status-chart-gpu-memory"
            scale={formatMb}
          />
        ) : null}
      </div>

      <GpuSection upstream={upstream} />
    </article>
  );
}

function AppCard({ app }: { app: AdminStatus['app'] }) {
  return (
    <section className="status-card" data-testid="status-app" aria-labelledby="status-app-title">
      <div className="status-card-head">
        <h2 id="status-app-title">App service</h2>
        <Badge ok={app.status === 'ok'} testId="status-app-health">
          {app.status === 'ok' ? 'OK' : text(app.status)}
        </Badge>
      </div>
      <dl className="status-facts">
        <Fact label="Version" testId="status-app-version">{text(app.version)}</Fact>
        <Fact label="Uptime">{formatUptime(app.uptime_s)}</Fact>
        <Fact label="Open WebSockets">{formatNumber(app.open_websockets)}</Fact>
      </dl>
    </section>
  );
}

/** For admins: each service's health and version, the model server's load and GPU, refreshed
 *  every interval_s with charts of the samples the app service keeps. */
export function StatusPage({ onBack, onToggleSidebar, onError }: Props) {
  const { data, updatedAt, error, forbidden, refresh } = useAdminStatus(onError);
  const every = data ? pollSeconds(data) : DEFAULT_INTERVAL_S;

  return (
    <section className="status-page" data-testid="status-page" aria-labelledby="status-title">
      <PageHeader onBack={onBack} onToggleSidebar={onToggleSidebar}>
        <span className="header-spacer" />
        {!forbidden ? (
          <button type="button" className="ghost-btn" data-testid="status-refresh" onClick={refresh}>
            <RefreshIcon />
            <span>Refresh</span>
          </button>
        ) : null}
      </PageHeader>
      <div className="status-body">
        <h1 id="status-title">Status</h1>
        {!forbidden ? (
          <p className="muted small" data-testid="status-updated">
            Refreshed every {every} s{updatedAt ? ` · updated ${new Date(updatedAt).toLocaleTimeString()}` : ''}
          </p>
        ) : null}
        {forbidden ? (
          <p className="status-error" role="alert" data-testid="status-error">
            Admins only: this page needs an admin account.
          </p>
        ) : null}
        {error ? (
          <p className="status-error" role="alert" data-testid="status-error">
            {error}
            {data ? ' Showing the last figures received.' : ''}
          </p>
        ) : null}
        {!data && !error && !forbidden ? <p className="muted">Loading…</p> : null}
        {data && !forbidden ? (
          <>
            <AppCard app={data.app} />
            {data.upstreams.length === 0 ? <p className="muted">No model servers are configured.</p> : null}
            {data.upstreams.map((u) => (
              <UpstreamCard key={u.url} upstream={u} />
            ))}
          </>
        ) : null}
      </div>
    </section>
  );
}
