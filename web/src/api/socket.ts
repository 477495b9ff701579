/** The chat WebSocket client: one socket, JSON frames, reconnects by itself with backoff. */
import type { ClientFrame, ServerFrame } from './types';

export type SocketStatus = 'connecting' | 'open' | 'reconnecting' | 'closed' | 'ended';

/** Close codes the server uses when it ends a socket on purpose (docs/protocol.md): the
 * client must not reconnect by itself, or two tabs would keep closing each other. */
export const CLOSE_SESSION_ENDED = 4001;
export const CLOSE_REPLACED = 4008;
const ENDED_BY_SERVER = new Set([CLOSE_SESSION_ENDED, CLOSE_REPLACED]);

/** The part of the browser's WebSocket this client uses (a fake one stands in for tests). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: Event) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

export interface ChatSocketOptions {
  url: string;
  onFrame: (frame: ServerFrame) => void;
  onStatus?: (status: SocketStatus) => void;
  /** The server ended the socket on purpose (status 'ended'): its close code and reason. */
  onEnded?: (code: number, reason: string) => void;
  createSocket?: WebSocketFactory;
  /** First retry delay; it doubles per failed attempt up to maxDelayMs. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

const OPEN = 1;

/** The default URL: the same origin, wss on https. */
export function defaultSocketUrl(loc: Location = window.location): string {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

/** The delay before reconnect attempt number `attempt` (0-based). */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
}

export class ChatSocket {
  private ws: WebSocketLike | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempts = 0;
  private stopped = false;
  private everOpened = false;
  private _status: SocketStatus = 'closed';
  private readonly opts: Required<ChatSocketOptions>;

  constructor(options: ChatSocketOptions) {
    this.opts = {
      onStatus: () => {},
      onEnded: () => {},
      createSocket: (url) => new WebSocket(url),
      initialDelayMs: 500,
      maxDelayMs: 15_000,
      ...options,
    };
  }

  get status(): SocketStatus {
    return this._status;
  }

  /** Open the socket (idempotent). */
  connect(): void {
    this.stopped = false;
    if (this.ws || this.timer) return;
    this.open();
  }

  /** Close for good: no reconnect. */
  close(): void {
    this.stopped = true;
    this.clearTimer();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onclose = ws.onerror = ws.onmessage = null;
      ws.close(1000, 'bye');
    }
    this.setStatus('closed');
  }

  /** Skip the remaining backoff wait (e.g. the browser came back online). */
  reconnectNow(): void {
    if (this.stopped || this.ws) return;
    this.clearTimer();
    this.open();
  }

  /** Send a frame; false when the socket is not open (the caller tells the user). */
  send(frame: ClientFrame): boolean {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  private open(): void {
    this.setStatus(this.everOpened || this.attempts > 0 ? 'reconnecting' : 'connecting');
    let ws: WebSocketLike;
    try {
      ws = this.opts.createSocket(this.opts.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempts = 0;
      this.everOpened = true;
      this.setStatus('open');
    };
    ws.onmessage = (ev: MessageEvent) => {
      let frame: ServerFrame;
      try {
        frame = JSON.parse(String(ev.data)) as ServerFrame;
      } catch {
        return;
      }
      if (frame && typeof frame === 'object' && typeof frame.type === 'string') this.opts.onFrame(frame);
    };
    ws.onerror = () => {
      // A close event always follows; reconnecting is handled there.
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) {
        this.setStatus('closed');
        return;
      }
      if (ev && ENDED_BY_SERVER.has(ev.code)) {
        this.stopped = true;
        this.setStatus('ended');
        this.opts.onEnded(ev.code, ev.reason);
        return;
      }
      this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    this.setStatus('reconnecting');
    const delay = backoffDelay(this.attempts, this.opts.initialDelayMs, this.opts.maxDelayMs);
    this.attempts += 1;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.open();
    }, delay);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private setStatus(status: SocketStatus): void {
    if (status === this._status) return;
    this._status = status;
    this.opts.onStatus(status);
  }
}
