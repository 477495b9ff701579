import { act, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AdminStatus, User } from '../api/types';
import { Sidebar } from './Sidebar';
import { Sparkline, current, scaleTop, segments } from './Sparkline';
import { StatusPage, formatUptime } from './StatusPage';

const T0 = 1764070000;

function cpuStatus(): AdminStatus {
  return {
    app: { status: 'ok', version: '0.1.0', uptime_s: 3725.5, open_websockets: 2 },
    interval_s: 5,
    upstreams: [
      {
        url: 'http://127.0.0.1:8001',
        healthy: true,
        error: null,
        health: {
          status: 'ok',
          model: 'SmolLM2-135M-Instruct',
          device: 'cpu',
          dtype: 'bfloat16',
          quantization: 'int4',
          version: '0.2.3',
          running: 1,
          waiting: 3,
          batch_size: 4,
          kv_cache_tokens: 11650,
          kv_cache_capacity_tokens: 46603,
        },
        gpus: { available: false, devices: [] },
        history: [
          { t: T0, tokens_per_s: 40, ttft_avg_s: 0.2, running: 0, waiting: 0, gpu_utilization_pct: null, gpu_memory_used_mb: null },
          { t: T0 + 5, tokens_per_s: null, ttft_avg_s: null, running: 2, waiting: 1, gpu_utilization_pct: null, gpu_memory_used_mb: null },
          { t: T0 + 10, tokens_per_s: 48.2, ttft_avg_s: 0.12, running: 1, waiting: 3, gpu_utilization_pct: null, gpu_memory_used_mb: null },
        ],
      },
    ],
  };
}

function gpuStatus(): AdminStatus {
  const s = cpuStatus();
  const up = s.upstreams[0];
  up.health = { ...up.health, device: 'cuda' };
  up.gpus = {
    available: true,
    devices: [
      { index: 0, name: 'NVIDIA H100', utilization_pct: 37, memory_used_mb: 1200, memory_total_mb: 81000, temperature_c: 45, power_w: 120 },
    ],
  };
  up.history = up.history!.map((p, i) => ({ ...p, gpu_utilization_pct: 30 + i, gpu_memory_used_mb: 1000 + 100 * i }));
  return s;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

const apiError = (status: number, message: string, code: string) =>
  json(status, { error: { message, type: 'invalid_request_error', param: null, code } });

function mockFetch(...answers: (() => Response | Promise<Response>)[]) {
  const fetchMock = vi.fn(async () => {
    const next = answers.length > 1 ? answers.shift()! : answers[0];
    return next();
  });
  vi.stubGlobal('fetch', fetchMock);
  return fetchMock;
}

function renderPage(onError = vi.fn()) {
  return render(<StatusPage onBack={() => {}} onToggleSidebar={() => {}} onError={onError} />);
}

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe('StatusPage', () => {
  it('says the throughput of now: none for a server down, 0 while nothing runs', async () => {
    const s = cpuStatus();
    const history = s.upstreams[0].history!;
    history.push({ ...history[2], t: T0 + 15, tokens_per_s: 12, running: 0, waiting: 0 });
    mockFetch(() => json(200, s));
    const page = renderPage();
    expect(await screen.findByTestId('status-throughput')).toHaveTextContent('0 tokens/s');
    page.unmount();

    history.push({ ...history[2], t: T0 + 20, tokens_per_s: null, running: null, waiting: null });
    mockFetch(() => json(200, s));
    renderPage();
    expect(await screen.findByTestId('status-throughput')).toHaveTextContent('—');
  });

  it('shows the app, the model server and its charts', async () => {
    const fetchMock = mockFetch(() => json(200, cpuStatus()));
    renderPage();

    const app = await screen.findByTestId('status-app');
    expect(fetchMock).toHaveBeenCalledWith('/api/admin/status', expect.objectContaining({ method: 'GET' }));
    expect(within(app).getByTestId('status-app-version')).toHaveTextContent('0.1.0');
    expect(within(app).getByText('1 h 2 min')).toBeInTheDocument();
    expect(within(app).getByText('Open WebSockets').nextSibling).toHaveTextContent('2');
    expect(within(app).getByTestId('status-app-health')).toHaveTextContent('OK');

    const up = screen.getByTestId('status-upstream');
    expect(within(up).getByRole('heading', { level: 2 })).toHaveTextContent('http://127.0.0.1:8001');
    expect(within(up).getByTestId('status-upstream-health')).toHaveTextContent('Healthy');
    expect(within(up).getByTestId('status-model')).toHaveTextContent('SmolLM2-135M-Instruct');
    expect(within(up).getByTestId('status-device')).toHaveTextContent('cpu');
    for (const [label, value] of [
      ['Dtype', 'bfloat16'],
      ['Quantization', 'int4'],
      ['Version', '0.2.3'],
      ['Running', '1'],
      ['Waiting', '3'],
      ['Batch size', '4'],
    ]) {
      expect(within(up).getByText(label).nextSibling).toHaveTextContent(value);
    }
    expect(within(up).getByTestId('status-throughput')).toHaveTextContent('48.2 tokens/s');
    expect(within(up).getByTestId('status-ttft')).toHaveTextContent('120 ms');
    const kv = within(up).getByRole('meter', { name: 'KV cache use' });
    expect(kv).toHaveAttribute('aria-valuenow', '11650');
    expect(kv).toHaveAttribute('aria-valuemax', '46603');
    expect(kv).toHaveAttribute('aria-valuetext', '11,650 of 46,603 tokens · 25\u00a0%'); // % never wraps alone

    const throughput = within(up).getByTestId('status-chart-throughput');
    expect(throughput).toHaveAttribute('role', 'img');
    expect(throughput.getAttribute('aria-label')).toMatch(/Throughput.*scale 0 to .*now 48\.2\stokens\/s/);
    // The missing middle sample breaks the line into two dots.
    expect(throughput.querySelectorAll('path.spark-stroke')).toHaveLength(2);
    expect(within(up).getByTestId('status-chart-throughput-scale')).toHaveTextContent(/^\d[\d,.]*\stokens\/s0$/);
    expect(within(up).getByTestId('status-chart-ttft').getAttribute('aria-label')).toMatch(/now 120\sms/);
    expect(within(up).queryByText('No requests started in this window')).toBeNull();
    expect(within(up).getByTestId('status-chart-queue').getAttribute('aria-label')).toMatch(/now 1 running, 3 waiting/);
    expect(within(up).queryByTestId('status-chart-gpu-util')).toBeNull();
    expect(screen.getByText('Refreshed every 5 s', { exact: false })).toBeInTheDocument();
  });

  it('says when no request started in the window the samples cover', async () => {
    const s = cpuStatus();
    s.upstreams[0].history = s.upstreams[0].history!.map((p) => ({ ...p, ttft_avg_s: null }));
    mockFetch(() => json(200, s));
    renderPage();
    const up = await screen.findByTestId('status-upstream');
    expect(within(up).queryByTestId('status-chart-ttft')).toBeNull();
    expect(within(up).getByText('No requests started in this window')).toBeInTheDocument();
    expect(within(up).getByTestId('status-ttft')).toHaveTextContent('—');
  });

  it('says there is no GPU on a CPU model server', async () => {
    mockFetch(() => json(200, cpuStatus()));
    renderPage();
    const gpu = await screen.findByTestId('status-gpu');
    expect(within(gpu).getByTestId('status-no-gpu')).toHaveTextContent('No GPU on this model server (CPU)');
    expect(within(gpu).queryByTestId('status-gpu-device')).toBeNull();
  });

  it("shows a GPU's gauges and charts", async () => {
    mockFetch(() => json(200, gpuStatus()));
    renderPage();
    const device = await screen.findByTestId('status-gpu-device');
    expect(screen.queryByTestId('status-no-gpu')).toBeNull();
    expect(within(device).getByRole('heading')).toHaveTextContent('NVIDIA H100 (#0)');
    expect(within(device).getByRole('meter', { name: 'NVIDIA H100 (#0) utilisation' })).toHaveAttribute('aria-valuenow', '37');
    expect(within(device).getByRole('meter', { name: 'NVIDIA H100 (#0) memory' })).toHaveAttribute(
      'aria-valuetext',
      '1.2\u00a0GB of 79.1\u00a0GB',
    );
    expect(within(device).getByText('45 °C')).toBeInTheDocument();
    expect(within(device).getByText('120 W')).toBeInTheDocument();
    expect(screen.getByTestId('status-chart-gpu-util').getAttribute('aria-label')).toMatch(/now 32\s%/);
    expect(screen.getByTestId('status-chart-gpu-memory').getAttribute('aria-label')).toMatch(/now 1\.2\sGB/);
  });

  it('shows a down model server without its health', async () => {
    const s = cpuStatus();
    s.upstreams[0] = { url: 'http://127.0.0.1:8002', healthy: false, error: 'Connection refused', health: null, gpus: null, history: [] };
    mockFetch(() => json(200, s));
    renderPage();
    const up = await screen.findByTestId('status-upstream');
    expect(within(up).getByTestId('status-upstream-health')).toHaveTextContent('Down');
    expect(within(up).getByTestId('status-upstream-error')).toHaveTextContent('Connection refused');
    expect(within(up).getByTestId('status-model')).toHaveTextContent('—');
    expect(within(up).queryByTestId('status-chart-throughput')).toBeNull();
    expect(within(up).getAllByText('No samples yet')).toHaveLength(3);
  });

  it('says "Admins only" on a 403 and stops asking', async () => {
    vi.useFakeTimers();
    const fetchMock = mockFetch(() => apiError(403, 'Admins only.', 'forbidden'));
    renderPage();
    await act(() => vi.advanceTimersByTimeAsync(0));
    expect(screen.getByRole('alert')).toHaveTextContent('Admins only');
    expect(screen.queryByTestId('status-app')).toBeNull();
    await act(() => vi.advanceTimersByTimeAsync(30_000));
    expect(fetchMock).toHaveBeenCalledTimes(1);
  });

  it('hands a 401 to onError (the session ended)', async () => {
    mockFetch(() => apiError(401, 'Not signed in.', 'unauthorized'));
    const onError = vi.fn();
    renderPage(onError);
    await vi.waitFor(() => expect(onError).toHaveBeenCalledTimes(1));
    expect(onError.mock.calls[0][0]).toMatchObject({ status: 401 });
  });

  it('keeps the last figures through a network error, and recovers', async () => {
    vi.useFakeTimers();
    const fetchMock = mockFetch(
      () => json(200, cpuStatus()),
      () => Promise.reject(new TypeError('Failed to fetch')),
      () => json(200, cpuStatus()),
    );
    renderPage();
    await act(() => vi.advanceTimersByTimeAsync(0));
    expect(screen.getByTestId('status-app')).toBeInTheDocument();
    expect(screen.queryByRole('alert')).toBeNull();

    await act(() => vi.advanceTimersByTimeAsync(5000));
    expect(fetchMock).toHaveBeenCalledTimes(2);
    expect(screen.getByRole('alert')).toHaveTextContent(/Cannot reach the server.*last figures/);
    expect(screen.getByTestId('status-model')).toHaveTextContent('SmolLM2-135M-Instruct');

    await act(() => vi.advanceTimersByTimeAsync(5000));
    expect(fetchMock).toHaveBeenCalledTimes(3);
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('polls every interval_s and stops when closed', async () => {
    vi.useFakeTimers();
    const fast = { ...cpuStatus(), interval_s: 2 };
    const fetchMock = mockFetch(() => json(200, fast));
    const clearSpy = vi.spyOn(globalThis, 'clearTimeout');
    const { unmount } = renderPage();
    await act(() => vi.advanceTimersByTimeAsync(0));
    expect(fetchMock).toHaveBeenCalledTimes(1);
    expect(screen.getByText('Refreshed every 2 s', { exact: false })).toBeInTheDocument();

    await act(() => vi.advanceTimersByTimeAsync(1900));
    expect(fetchMock).toHaveBeenCalledTimes(1);
    await act(() => vi.advanceTimersByTimeAsync(100));
    expect(fetchMock).toHaveBeenCalledTimes(2);
    await act(() => vi.advanceTimersByTimeAsync(4000));
    expect(fetchMock).toHaveBeenCalledTimes(4);

    unmount();
    expect(clearSpy).toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fetchMock).toHaveBeenCalledTimes(4);
  });

  it('refreshes at once on demand', async () => {
    vi.useFakeTimers();
    const fetchMock = mockFetch(() => json(200, cpuStatus()));
    renderPage();
    await act(() => vi.advanceTimersByTimeAsync(0));
    act(() => screen.getByTestId('status-refresh').click());
    await act(() => vi.advanceTimersByTimeAsync(0));
    expect(fetchMock).toHaveBeenCalledTimes(2);
    // One timer for the next poll, not two chains.
    expect(vi.getTimerCount()).toBe(1);
  });
});

describe('Sparkline', () => {
  it('draws nothing without a number', () => {
    const { container } = render(<Sparkline times={[1, 2]} series={[{ name: 'x', values: [null, undefined] }]} label="x" />);
    expect(container.querySelector('svg')).toBeNull();
  });

  it('breaks the line at missing samples and scales to the top', () => {
    expect(segments([0, 10, 20, 30], [0, 5, null, 10], 10)).toEqual([
      [
        [0, 93],
        [80, 48],
      ],
      [[240, 3]],
    ]);
  });

  it('is an image labelled in words', () => {
    render(<Sparkline times={[1, 2]} series={[{ name: 'x', values: [1, 2] }]} label="Throughput: now 2" testId="chart" />);
    expect(screen.getByRole('img', { name: 'Throughput: now 2' })).toBe(screen.getByTestId('chart'));
  });
});

describe('formatUptime', () => {
  it('says the two largest units', () => {
    expect(formatUptime(12.5)).toBe('12 s');
    expect(formatUptime(125)).toBe('2 min 5 s');
    expect(formatUptime(90061)).toBe('1 d 1 h');
    expect(formatUptime(null)).toBe('—');
  });
});

describe('Sidebar status entry', () => {
  const user = (is_admin: boolean): User => ({ id: 'usr_1', username: 'ada', is_admin, created_at: T0 });
  const renderSidebar = (u: User) =>
    render(
      <Sidebar
        open
        conversations={[]}
        currentId={null}
        isGenerating={() => false}
        search=""
        user={u}
        theme="light"
        keysOpen={false}
        statusOpen={false}
        onSearch={() => {}}
        onSelect={() => {}}
        onNew={() => {}}
        onRename={async () => true}
        onDelete={async () => true}
        onOpenKeys={() => {}}
        onOpenStatus={() => {}}
        onToggleTheme={() => {}}
        onLogout={() => {}}
      />,
    );

  it('is shown to admins', () => {
    renderSidebar(user(true));
    expect(screen.getByTestId('nav-status')).toHaveTextContent('Status');
  });

  it('is hidden from everyone else', () => {
    renderSidebar(user(false));
    expect(screen.queryByTestId('nav-status')).toBeNull();
    expect(screen.getByTestId('open-keys')).toBeInTheDocument();
  });
});

describe('status figures said as "now"', () => {
  it('are the newest sample, never an older one', () => {
    expect(current([12, 30, null])).toBeNull();
    expect(current([12, 30])).toBe(30);
    expect(current([])).toBeNull();
    expect(scaleTop([{ name: 'a', values: [0, 0] }])).toBe(1);
    expect(scaleTop([{ name: 'a', values: [3, null, 7] }], 5)).toBe(7);
    expect(scaleTop([{ name: 'a', values: [3] }], 100)).toBe(100);
  });
});
