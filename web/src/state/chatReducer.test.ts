import { describe, expect, it } from 'vitest';
import type { Conversation, Message, ServerFrame } from '../api/types';
import { chatReducer, initialChatState, PENDING_ID, type ChatState } from './chatReducer';

const conv = (id: string, updated_at: number, title = id): Conversation => ({
  id,
  title,
  model: '',
  system_prompt: '',
  temperature: null,
  top_p: null,
  max_tokens: null,
  created_at: 1,
  updated_at,
});

const msg = (over: Partial<Message>): Message => ({
  id: 'msg_1',
  conversation_id: 'conv_a',
  role: 'assistant',
  content: '',
  status: 'complete',
  attachments: [],
  sources: [],
  usage: null,
  finish_reason: null,
  error: null,
  created_at: 1,
  ...over,
});

function opened(): ChatState {
  let s = chatReducer(initialChatState, { type: 'conversations/loaded', conversations: [conv('conv_b', 5), conv('conv_a', 10)] });
  s = chatReducer(s, { type: 'conversation/select', id: 'conv_a' });
  s = chatReducer(s, { type: 'conversation/loaded', conversation: { ...conv('conv_a', 10), messages: [] } });
  return chatReducer(s, { type: 'socket/status', status: 'open' });
}

const frame = (s: ChatState, f: ServerFrame) => chatReducer(s, { type: 'frame', frame: f });

/** A state with a user message stored and an answer streaming. */
function streaming(): ChatState {
  let s = opened();
  s = chatReducer(s, { type: 'turn/send', conversationId: 'conv_a', content: 'Hi', attachments: [{ id: 'file_1', name: 'a.pdf' }] });
  s = frame(s, {
    type: 'user_message',
    conversation_id: 'conv_a',
    message: msg({ id: 'msg_u', role: 'user', content: 'Hi', attachments: [{ id: 'file_1', name: 'a.pdf' }] }),
    conversation: conv('conv_a', 20, 'Hi'),
  });
  return frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_a', status: 'streaming' }) });
}

describe('chatReducer', () => {
  it('keeps conversations newest first', () => {
    const s = opened();
    expect(s.conversations.map((c) => c.id)).toEqual(['conv_a', 'conv_b']);
    const s2 = chatReducer(s, { type: 'conversation/upsert', conversation: conv('conv_b', 99, 'Renamed') });
    expect(s2.conversations.map((c) => c.title)).toEqual(['Renamed', 'conv_a']);
  });

  it('shows the user message at once and replaces it with the stored one', () => {
    let s = opened();
    s = chatReducer(s, { type: 'turn/send', conversationId: 'conv_a', content: 'Hi', attachments: [] });
    expect(s.messages.map((m) => m.id)).toEqual([PENDING_ID]);
    expect(s.turn).toEqual({ conversationId: 'conv_a', messageId: null, stopping: false });
    s = frame(s, {
      type: 'user_message',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_u', role: 'user', content: 'Hi' }),
      conversation: conv('conv_a', 20, 'Hi'),
    });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u']);
    expect(s.current?.title).toBe('Hi');
  });

  it('appends delta frames to the streaming answer', () => {
    let s = streaming();
    expect(s.turn?.messageId).toBe('msg_a');
    s = frame(s, { type: 'delta', conversation_id: 'conv_a', message_id: 'msg_a', content: 'Hel' });
    s = frame(s, { type: 'delta', conversation_id: 'conv_a', message_id: 'msg_a', content: 'lo' });
    const answer = s.messages.find((m) => m.id === 'msg_a');
    expect(answer?.content).toBe('Hello');
    expect(answer?.status).toBe('streaming');
  });

  it('ignores deltas of another conversation', () => {
    const s = streaming();
    const s2 = frame(s, { type: 'delta', conversation_id: 'conv_b', message_id: 'msg_a', content: 'x' });
    expect(s2.messages).toBe(s.messages);
  });

  it('finalizes on done with the stored message and its sources', () => {
    let s = streaming();
    s = frame(s, { type: 'delta', conversation_id: 'conv_a', message_id: 'msg_a', content: 'Hel' });
    s = frame(s, {
      type: 'done',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_a', content: 'Hello.', status: 'complete', finish_reason: 'stop' }),
      usage: null,
      finish_reason: 'stop',
      sources: [{ file_id: 'file_1', file_name: 'a.pdf', ordinal: null }],
    });
    const answer = s.messages.find((m) => m.id === 'msg_a');
    expect(answer?.status).toBe('complete');
    expect(answer?.content).toBe('Hello.');
    expect(answer?.sources).toHaveLength(1);
    expect(s.turn).toBeNull();
  });

  it('marks stop as requested, then stopped on done', () => {
    let s = chatReducer(streaming(), { type: 'turn/stop' });
    expect(s.turn?.stopping).toBe(true);
    s = frame(s, {
      type: 'done',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_a', content: 'Hel', status: 'stopped' }),
      usage: null,
      finish_reason: null,
      sources: [],
    });
    expect(s.messages.find((m) => m.id === 'msg_a')?.status).toBe('stopped');
    expect(s.turn).toBeNull();
  });

  it('finalizes a failed answer from an error frame without a toast', () => {
    const s = frame(streaming(), {
      type: 'error',
      conversation_id: 'conv_a',
      error: 'The model API died.',
      code: 'upstream_failed',
      message: msg({ id: 'msg_a', status: 'failed', content: 'Hel', error: 'The model API died.' }),
    });
    const answer = s.messages.find((m) => m.id === 'msg_a');
    expect(answer?.status).toBe('failed');
    expect(answer?.error).toBe('The model API died.');
    expect(s.turn).toBeNull();
    expect(s.toasts).toHaveLength(0);
  });

  it('turns an error without a message into a toast and takes back the unsent message', () => {
    let s = chatReducer(opened(), { type: 'turn/send', conversationId: 'conv_a', content: 'Hi', attachments: [] });
    s = frame(s, { type: 'error', conversation_id: 'conv_a', error: 'No such file.', code: 'file_not_found', message: null });
    expect(s.messages).toHaveLength(0);
    expect(s.turn).toBeNull();
    expect(s.toasts.map((t) => t.text)).toEqual(['No such file.']);
  });

  it('keeps the streaming turn on a busy error', () => {
    const s = frame(streaming(), { type: 'error', conversation_id: 'conv_a', error: 'Busy.', code: 'busy', message: null });
    expect(s.turn?.messageId).toBe('msg_a');
    expect(s.toasts).toHaveLength(1);
  });

  it('drops the last answer locally on regenerate', () => {
    let s = streaming();
    s = frame(s, {
      type: 'done',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_a', content: 'Hello.', status: 'complete' }),
      usage: null,
      finish_reason: 'stop',
      sources: [],
    });
    s = chatReducer(s, { type: 'turn/regenerate', conversationId: 'conv_a' });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u']);
    expect(s.turn?.messageId).toBeNull();
  });

  it('shows the previous answer again when a regenerate fails before the new one began', () => {
    let s = streaming();
    const previous = msg({ id: 'msg_a', content: 'Hello.', status: 'complete' });
    s = frame(s, { type: 'done', conversation_id: 'conv_a', message: previous, usage: null, finish_reason: 'stop', sources: [] });
    s = chatReducer(s, { type: 'turn/regenerate', conversationId: 'conv_a' });
    s = frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_new', status: 'streaming' }) });
    s = frame(s, {
      type: 'error',
      conversation_id: 'conv_a',
      error: 'The model is busy.',
      code: 'model_busy',
      message: previous,
      discarded_message_id: 'msg_new',
    });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a']);
    expect(s.messages[1].content).toBe('Hello.');
    expect(s.turn).toBeNull();
    expect(s.toasts.map((t) => t.text)).toEqual(['The model is busy.']);
  });

  it('ends the turn when the socket drops mid-answer', () => {
    const s = chatReducer(streaming(), { type: 'socket/status', status: 'reconnecting' });
    expect(s.turn).toBeNull();
    expect(s.socketStatus).toBe('reconnecting');
    expect(s.messages.find((m) => m.id === 'msg_a')?.status).toBe('stopped');
  });

  it('clears the selection when the open conversation is deleted', () => {
    const s = chatReducer(opened(), { type: 'conversation/remove', id: 'conv_a' });
    expect(s.currentId).toBeNull();
    expect(s.current).toBeNull();
    expect(s.conversations.map((c) => c.id)).toEqual(['conv_b']);
  });
});
