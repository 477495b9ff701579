import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay, ChatSocket, CLOSE_REPLACED, CLOSE_SESSION_ENDED, type SocketStatus, type WebSocketLike } from './socket';
import type { ServerFrame } from './types';

class FakeSocket implements WebSocketLike {
  readyState = 0;
  sent: string[] = [];
  closed = false;
  onopen: ((ev: Event) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.closed = true;
    this.readyState = 3;
  }
  serverOpen() {
    this.readyState = 1;
    this.onopen?.(new Event('open'));
  }
  serverSend(frame: unknown) {
    this.onmessage?.(new MessageEvent('message', { data: JSON.stringify(frame) }));
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.(new CloseEvent('close', { code, reason }));
  }
}

describe('ChatSocket', () => {
  let sockets: FakeSocket[];
  let frames: ServerFrame[];
  let statuses: SocketStatus[];
  let client: ChatSocket;

  beforeEach(() => {
    vi.useFakeTimers();
    sockets = [];
    frames = [];
    statuses = [];
    client = new ChatSocket({
      url: 'wss://example.test/ws',
      onFrame: (f) => frames.push(f),
      onStatus: (s) => statuses.push(s),
      createSocket: () => {
        const s = new FakeSocket();
        sockets.push(s);
        return s;
      },
      initialDelayMs: 100,
      maxDelayMs: 1000,
    });
  });
  afterEach(() => {
    client.close();
    vi.useRealTimers();
  });

  it('opens, parses frames and sends JSON', () => {
    client.connect();
    expect(statuses).toEqual(['connecting']);
    sockets[0].serverOpen();
    sockets[0].serverSend({ type: 'ready' });
    expect(frames).toEqual([{ type: 'ready' }]);
    expect(client.send({ type: 'stop' })).toBe(true);
    expect(JSON.parse(sockets[0].sent[0])).toEqual({ type: 'stop' });
  });

  it('refuses to send while not open', () => {
    client.connect();
    expect(client.send({ type: 'stop' })).toBe(false);
  });

  it('ignores frames that are not JSON objects with a type', () => {
    client.connect();
    sockets[0].serverOpen();
    sockets[0].onmessage?.(new MessageEvent('message', { data: 'not json' }));
    sockets[0].serverSend({ nope: 1 });
    expect(frames).toEqual([]);
  });

  it('reconnects after a drop with doubling backoff, and resets it once open', () => {
    client.connect();
    sockets[0].serverOpen();
    sockets[0].drop();
    expect(client.status).toBe('reconnecting');
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(99);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(2);
    sockets[1].drop(); // the handshake failed
    vi.advanceTimersByTime(199);
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(3);
    sockets[2].serverOpen();
    expect(client.status).toBe('open');
    sockets[2].drop();
    vi.advanceTimersByTime(100);
    expect(sockets).toHaveLength(4);
    expect(statuses).toEqual(['connecting', 'open', 'reconnecting', 'open', 'reconnecting']);
  });

  it('caps the delay', () => {
    expect(backoffDelay(0, 100, 1000)).toBe(100);
    expect(backoffDelay(3, 100, 1000)).toBe(800);
    expect(backoffDelay(10, 100, 1000)).toBe(1000);
    expect(backoffDelay(1000, 100, 1000)).toBe(1000);
  });

  it('does not reconnect after close()', () => {
    client.connect();
    sockets[0].serverOpen();
    client.close();
    expect(sockets[0].closed).toBe(true);
    sockets[0].drop();
    vi.advanceTimersByTime(10_000);
    expect(sockets).toHaveLength(1);
    expect(client.status).toBe('closed');
  });

  it('reconnectNow skips the wait', () => {
    client.connect();
    sockets[0].serverOpen();
    sockets[0].drop();
    client.reconnectNow();
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(10_000);
    expect(sockets).toHaveLength(2);
  });

  it.each([CLOSE_SESSION_ENDED, CLOSE_REPLACED])('does not reconnect when the server ends it (%i)', (code) => {
    const ended: [number, string][] = [];
    client = new ChatSocket({
      url: 'wss://example.test/ws',
      onFrame: () => {},
      onStatus: (s) => statuses.push(s),
      onEnded: (c, r) => ended.push([c, r]),
      createSocket: () => {
        const s = new FakeSocket();
        sockets.push(s);
        return s;
      },
      initialDelayMs: 100,
    });
    client.connect();
    sockets[0].serverOpen();
    sockets[0].drop(code, 'why');
    vi.advanceTimersByTime(10_000);
    expect(sockets).toHaveLength(1);
    expect(client.status).toBe('ended');
    expect(ended).toEqual([[code, 'why']]);
    client.connect(); // the user asks: it connects again
    expect(sockets).toHaveLength(2);
  });
});
