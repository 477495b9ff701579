import { act, render } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ClientFrame, ConversationWithMessages, Message, ServerFrame } from '../api/types';
import { conv, msg as message } from '../test/fixtures';
import { ChatProvider, useChat, type ChatValue } from './ChatProvider';

vi.mock('../api/rest', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../api/rest')>();
  return {
    ...actual,
    listConversations: vi.fn(),
    getConversation: vi.fn(),
    createConversation: vi.fn(),
    getMe: vi.fn(),
  };
});
const rest = await import('../api/rest');

/** The browser's WebSocket, replaced: the test plays the server. */
class FakeWebSocket {
  static last: FakeWebSocket | null = null;
  readyState = 0;
  sent: ClientFrame[] = [];
  onopen: ((ev: Event) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  readonly url: string;
  constructor(url: string) {
    this.url = url;
    FakeWebSocket.last = this;
  }
  send(data: string) {
    this.sent.push(JSON.parse(data) as ClientFrame);
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.(new Event('open'));
  }
  frame(f: ServerFrame) {
    this.onmessage?.(new MessageEvent('message', { data: JSON.stringify(f) }));
  }
}



const msg = (over: Partial<Message>): Message => message({ id: 'msg_a', ...over });

const stored = (messages: Message[]): ConversationWithMessages => ({ ...conv('conv_a'), messages });

let chat: ChatValue;
function Probe() {
  chat = useChat();
  return null;
}

async function flush() {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(0);
  });
}

/** The provider with its socket open (after `ready`) and conv_a open. */
async function mount(conversation: ConversationWithMessages) {
  vi.mocked(rest.getConversation).mockResolvedValue(conversation);
  window.location.hash = '#/c/conv_a';
  render(
    <ChatProvider onUnauthorized={() => {}}>
      <Probe />
    </ChatProvider>,
  );
  await flush();
  const ws = FakeWebSocket.last!;
  act(() => {
    ws.open();
    ws.frame({ type: 'ready' });
  });
  await flush();
  return ws;
}

const sentOf = (ws: FakeWebSocket, type: ClientFrame['type']) => ws.sent.filter((f) => f.type === type);

describe('ChatProvider', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.stubGlobal('WebSocket', FakeWebSocket);
    vi.mocked(rest.listConversations).mockResolvedValue([conv('conv_a'), conv('conv_b')]);
    vi.mocked(rest.getMe).mockResolvedValue(null);
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
    vi.clearAllMocks();
    window.location.hash = '';
  });

  it('asks for a resume when a delta was missed, once', async () => {
    const ws = await mount(stored([]));
    act(() => {
      ws.frame({ type: 'start', conversation_id: 'conv_a', message: msg({ status: 'streaming' }), request_id: 'r.1' });
      ws.frame({ type: 'delta', conversation_id: 'conv_a', message_id: 'msg_a', seq: 1, content: 'A' });
      ws.frame({ type: 'delta', conversation_id: 'conv_a', message_id: 'msg_a', seq: 3, content: 'C' });
      ws.frame({ type: 'delta', conversation_id: 'conv_a', message_id: 'msg_a', seq: 4, content: 'D' });
    });
    await flush();
    expect(sentOf(ws, 'resume')).toEqual([{ type: 'resume', conversation_id: 'conv_a' }]);
    act(() => {
      ws.frame({ type: 'resume', conversation_id: 'conv_a', message: msg({ status: 'streaming', content: 'ABCD' }), seq: 4, request_id: 'r.1' });
    });
    await flush();
    expect(chat.state.messages.map((m) => m.content)).toEqual(['ABCD']);
    expect(sentOf(ws, 'resume')).toHaveLength(1);
  });

  it('resumes a conversation loaded mid-answer that no frame announced, and refetches it on idle', async () => {
    const ws = await mount(stored([msg({ id: 'msg_u', role: 'user' }), msg({ status: 'streaming', content: 'Par' })]));
    expect(sentOf(ws, 'resume')).toHaveLength(0); // the frames after `ready` get a moment first
    await act(async () => {
      await vi.advanceTimersByTimeAsync(400);
    });
    expect(sentOf(ws, 'resume')).toEqual([{ type: 'resume', conversation_id: 'conv_a' }]);
    const calls = vi.mocked(rest.getConversation).mock.calls.length;
    vi.mocked(rest.getConversation).mockResolvedValue(
      stored([msg({ id: 'msg_u', role: 'user' }), msg({ status: 'complete', content: 'Partial.' })]),
    );
    act(() => ws.frame({ type: 'idle', conversation_id: 'conv_a' }));
    await flush();
    expect(vi.mocked(rest.getConversation).mock.calls.length).toBe(calls + 1);
    expect(chat.state.messages[1]).toMatchObject({ status: 'complete', content: 'Partial.' });
  });

  it('does not ask for an answer the frames after ready already resumed', async () => {
    vi.mocked(rest.getConversation).mockResolvedValue(stored([msg({ status: 'streaming', content: 'Par' })]));
    window.location.hash = '#/c/conv_a';
    render(
      <ChatProvider onUnauthorized={() => {}}>
        <Probe />
      </ChatProvider>,
    );
    await flush();
    const ws = FakeWebSocket.last!;
    act(() => {
      ws.open();
      ws.frame({ type: 'ready' });
      ws.frame({ type: 'resume', conversation_id: 'conv_a', message: msg({ status: 'streaming', content: 'Parti' }), seq: 2, request_id: 'r.1' });
    });
    await act(async () => {
      await vi.advanceTimersByTimeAsync(1000);
    });
    expect(sentOf(ws, 'resume')).toHaveLength(0);
    expect(chat.state.messages[0].content).toBe('Parti');
  });

  it("stops the open conversation's answer by its id", async () => {
    const ws = await mount(stored([]));
    act(() => {
      ws.frame({ type: 'start', conversation_id: 'conv_a', message: msg({ status: 'streaming' }), request_id: 'r.1' });
    });
    act(() => chat.stop());
    expect(sentOf(ws, 'stop')).toEqual([{ type: 'stop', conversation_id: 'conv_a' }]);
    expect(chat.currentTurn?.stopping).toBe(true);
  });

  it('sends in one conversation while another generates, not in the one generating', async () => {
    const ws = await mount(stored([]));
    act(() => {
      ws.frame({ type: 'start', conversation_id: 'conv_b', message: msg({ id: 'msg_b', conversation_id: 'conv_b', status: 'streaming' }), request_id: 'r.1' });
    });
    expect(chat.currentTurn).toBeNull();
    let ok = false;
    await act(async () => {
      ok = await chat.send('Hello', []);
    });
    expect(ok).toBe(true);
    expect(sentOf(ws, 'send')).toEqual([{ type: 'send', conversation_id: 'conv_a', content: 'Hello' }]);
    await act(async () => {
      ok = await chat.send('Again', []);
    });
    expect(ok).toBe(false);
    expect(sentOf(ws, 'send')).toHaveLength(1);
  });

  it('keeps the answer through a drop and refetches once the new socket is ready', async () => {
    const ws = await mount(stored([]));
    act(() => {
      ws.frame({ type: 'start', conversation_id: 'conv_a', message: msg({ status: 'streaming' }), request_id: 'r.1' });
    });
    act(() => {
      ws.readyState = 3;
      ws.onclose?.(new CloseEvent('close', { code: 1006 }));
    });
    expect(chat.state.socketStatus).toBe('reconnecting');
    expect(chat.currentTurn?.messageId).toBe('msg_a');
    const lists = vi.mocked(rest.listConversations).mock.calls.length;
    const loads = vi.mocked(rest.getConversation).mock.calls.length;
    await act(async () => {
      await vi.advanceTimersByTimeAsync(1000);
    });
    const again = FakeWebSocket.last!;
    expect(again).not.toBe(ws);
    act(() => again.open());
    await flush();
    expect(vi.mocked(rest.getConversation).mock.calls.length).toBe(loads);
    act(() => again.frame({ type: 'ready' }));
    await flush();
    expect(vi.mocked(rest.listConversations).mock.calls.length).toBe(lists + 1);
    expect(vi.mocked(rest.getConversation).mock.calls.length).toBe(loads + 1);
    expect(chat.currentTurn).toBeNull(); // not resumed after `ready`: it ended meanwhile
  });

  it('sends continue for the open conversation', async () => {
    const ws = await mount(stored([msg({ status: 'stopped', content: 'Once' })]));
    act(() => chat.continueAnswer());
    expect(sentOf(ws, 'continue')).toEqual([{ type: 'continue', conversation_id: 'conv_a' }]);
    expect(chat.currentTurn).toMatchObject({ messageId: null, local: true });
    act(() => chat.continueAnswer());
    expect(sentOf(ws, 'continue')).toHaveLength(1);
  });
});
