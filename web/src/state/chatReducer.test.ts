import { describe, expect, it } from 'vitest';
import type { ServerFrame } from '../api/types';
import { conv, msg } from '../test/fixtures';
import { chatReducer, initialChatState, PENDING_ID, type ChatState } from './chatReducer';



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
    request_id: 'req.1',
  });
  return frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_a', status: 'streaming' }), request_id: 'req.1' });
}

const delta = (seq: number, content: string, conversation_id = 'conv_a', message_id = 'msg_a'): ServerFrame => ({
  type: 'delta',
  conversation_id,
  message_id,
  seq,
  content,
});

const answerOf = (s: ChatState, id = 'msg_a') => s.messages.find((m) => m.id === id);

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
    expect(s.turns.conv_a).toEqual({ messageId: null, seq: 0, content: '', stopping: false, local: true });
    s = frame(s, {
      type: 'user_message',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_u', role: 'user', content: 'Hi' }),
      conversation: conv('conv_a', 20, 'Hi'),
      request_id: 'req.1',
    });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u']);
    expect(s.current?.title).toBe('Hi');
    expect(s.turns.conv_a).toMatchObject({ messageId: null, requestId: 'req.1', local: true });
  });

  it("appends another tab's user message and marks its turn", () => {
    let s = frame(opened(), {
      type: 'user_message',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_u', role: 'user', content: 'From the phone' }),
      conversation: conv('conv_a', 20, 'From the phone'),
      request_id: 'other.1',
    });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u']);
    expect(s.turns.conv_a).toEqual({ messageId: null, requestId: 'other.1', seq: 0, content: '', stopping: false });
    s = frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_a', status: 'streaming' }), request_id: 'other.1' });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a']);
  });

  it('appends delta frames in sequence to the turn and the open answer', () => {
    let s = streaming();
    expect(s.turns.conv_a).toMatchObject({ messageId: 'msg_a', requestId: 'req.1', seq: 0, content: '' });
    s = frame(s, delta(1, 'Hel'));
    s = frame(s, delta(2, 'lo'));
    expect(answerOf(s)?.content).toBe('Hello');
    expect(answerOf(s)?.status).toBe('streaming');
    expect(s.turns.conv_a).toMatchObject({ seq: 2, content: 'Hello' });
    expect(s.turns.conv_a.gap).toBeUndefined();
  });

  it('ignores a repeated delta', () => {
    let s = frame(frame(streaming(), delta(1, 'Hel')), delta(2, 'lo'));
    const again = frame(s, delta(2, 'lo'));
    expect(again).toBe(s);
    s = frame(again, delta(1, 'Hel'));
    expect(answerOf(s)?.content).toBe('Hello');
    expect(s.turns.conv_a.seq).toBe(2);
  });

  it('flags a gap on a missed delta and applies nothing until resumed', () => {
    let s = frame(streaming(), delta(1, 'Hel'));
    s = frame(s, delta(3, ' there'));
    expect(s.turns.conv_a).toMatchObject({ gap: true, seq: 1, content: 'Hel' });
    expect(answerOf(s)?.content).toBe('Hel');
    s = frame(s, delta(4, '!'));
    expect(answerOf(s)?.content).toBe('Hel');
    // The resume answer carries the whole text; the deltas go on from its seq + 1.
    s = frame(s, {
      type: 'resume',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_a', status: 'streaming', content: 'Hello there!' }),
      seq: 4,
      request_id: 'req.1',
    });
    expect(s.turns.conv_a).toMatchObject({ seq: 4, content: 'Hello there!' });
    expect(s.turns.conv_a.gap).toBeUndefined();
    s = frame(frame(s, delta(4, '!')), delta(5, ' Bye.'));
    expect(answerOf(s)?.content).toBe('Hello there! Bye.');
  });

  it('flags a gap for a delta of an answer it never saw begin', () => {
    const s = frame(opened(), delta(7, 'x', 'conv_b', 'msg_b'));
    expect(s.turns.conv_b).toMatchObject({ messageId: 'msg_b', gap: true });
  });

  it('resumes an answer after ready: the text so far, then the deltas that follow', () => {
    let s = frame(opened(), { type: 'ready' });
    s = frame(s, {
      type: 'resume',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_a', status: 'streaming', content: 'Once upon' }),
      seq: 3,
      request_id: 'req.1',
    });
    expect(s.turns.conv_a).toEqual({ messageId: 'msg_a', requestId: 'req.1', seq: 3, content: 'Once upon', stopping: false });
    expect(s.messages.map((m) => m.content)).toEqual(['Once upon']);
    s = frame(s, delta(3, ' upon'));
    s = frame(s, delta(4, ' a time'));
    expect(answerOf(s)?.content).toBe('Once upon a time');
  });

  it('replaces the stale copy of a resumed answer', () => {
    let s = chatReducer(opened(), {
      type: 'conversation/loaded',
      conversation: {
        ...conv('conv_a', 10),
        messages: [msg({ id: 'msg_u', role: 'user' }), msg({ id: 'msg_a', status: 'streaming', content: 'Once' })],
      },
    });
    s = frame(s, {
      type: 'resume',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_a', status: 'streaming', content: 'Once upon a' }),
      seq: 5,
      request_id: 'req.1',
    });
    expect(s.messages.map((m) => [m.id, m.content])).toEqual([
      ['msg_u', ''],
      ['msg_a', 'Once upon a'],
    ]);
  });

  it('keeps a resumed turn that has not begun its answer, and lets start fill it', () => {
    let s = frame(opened(), { type: 'resume', conversation_id: 'conv_a', message: null, seq: 0, request_id: 'req.1' });
    expect(s.turns.conv_a).toMatchObject({ messageId: null, seq: 0 });
    expect(s.messages).toHaveLength(0);
    s = frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_a', status: 'streaming' }), request_id: 'req.1' });
    s = frame(s, delta(1, 'Hi'));
    expect(answerOf(s)?.content).toBe('Hi');
  });

  it('clears the turns on ready: the server announces them again', () => {
    let s = frame(streaming(), delta(1, 'Hel'));
    s = chatReducer(s, { type: 'socket/status', status: 'reconnecting' });
    s = chatReducer(s, { type: 'socket/status', status: 'open' });
    s = frame(s, { type: 'ready' });
    expect(s.turns).toEqual({});
  });

  it('keeps the turns and the streaming answer when the socket drops', () => {
    const before = frame(streaming(), delta(1, 'Hel'));
    const s = chatReducer(before, { type: 'socket/status', status: 'reconnecting' });
    expect(s.socketStatus).toBe('reconnecting');
    expect(s.turns).toBe(before.turns);
    expect(answerOf(s)).toMatchObject({ status: 'streaming', content: 'Hel' });
  });

  it('follows two answers in two conversations at once', () => {
    let s = frame(streaming(), delta(1, 'A1'));
    s = frame(s, { type: 'start', conversation_id: 'conv_b', message: msg({ id: 'msg_b', conversation_id: 'conv_b', status: 'streaming' }), request_id: 'other.1' });
    s = frame(s, delta(1, 'B1', 'conv_b', 'msg_b'));
    s = frame(s, delta(2, 'A2'));
    s = frame(s, delta(2, 'B2', 'conv_b', 'msg_b'));
    expect(Object.keys(s.turns).sort()).toEqual(['conv_a', 'conv_b']);
    expect(s.turns.conv_a).toMatchObject({ seq: 2, content: 'A1A2' });
    expect(s.turns.conv_b).toMatchObject({ seq: 2, content: 'B1B2' });
    // Only the open conversation's messages are shown.
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a']);
    expect(answerOf(s)?.content).toBe('A1A2');
    s = frame(s, {
      type: 'done',
      conversation_id: 'conv_b',
      message: msg({ id: 'msg_b', conversation_id: 'conv_b', content: 'B1B2', status: 'complete' }),
      usage: null,
      finish_reason: 'stop',
      sources: [],
      request_id: 'other.1',
    });
    expect(Object.keys(s.turns)).toEqual(['conv_a']);
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a']);
  });

  it('shows the live text of a conversation opened mid-answer', () => {
    let s = frame(streaming(), { type: 'start', conversation_id: 'conv_b', message: msg({ id: 'msg_b', conversation_id: 'conv_b', status: 'streaming' }), request_id: 'r.2' });
    s = frame(s, delta(1, 'Live ', 'conv_b', 'msg_b'));
    s = frame(s, delta(2, 'text', 'conv_b', 'msg_b'));
    s = chatReducer(s, { type: 'conversation/select', id: 'conv_b' });
    // The stored copy is saved about once a second: it lags behind the live text.
    s = chatReducer(s, {
      type: 'conversation/loaded',
      conversation: {
        ...conv('conv_b', 5),
        messages: [
          msg({ id: 'msg_ub', conversation_id: 'conv_b', role: 'user', content: 'Q' }),
          msg({ id: 'msg_b', conversation_id: 'conv_b', status: 'streaming', content: 'Live' }),
        ],
      },
    });
    expect(answerOf(s, 'msg_b')).toMatchObject({ content: 'Live text', status: 'streaming' });
    s = frame(s, delta(3, '!', 'conv_b', 'msg_b'));
    expect(answerOf(s, 'msg_b')?.content).toBe('Live text!');
  });

  it('lays the live text over the stored path of a regenerate (the previous answer is a sibling)', () => {
    let s = frame(opened(), { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_new', status: 'streaming' }), request_id: 'r.2' });
    s = frame(s, delta(1, 'New', 'conv_a', 'msg_new'));
    s = chatReducer(s, {
      type: 'conversation/loaded',
      conversation: {
        ...conv('conv_a', 10),
        messages: [
          msg({ id: 'msg_u', role: 'user' }),
          msg({ id: 'msg_new', status: 'streaming', sibling_ids: ['msg_old', 'msg_new'] }),
        ],
      },
    });
    expect(s.messages.map((m) => [m.id, m.content])).toEqual([
      ['msg_u', ''],
      ['msg_new', 'New'],
    ]);
    expect(s.messages[1].sibling_ids).toEqual(['msg_old', 'msg_new']);
  });

  it('shows an edited question in place of the old one and what followed it, then its answer', () => {
    let s = chatReducer(initialChatState, { type: 'conversations/loaded', conversations: [conv('conv_a', 10)] });
    s = chatReducer(s, { type: 'conversation/select', id: 'conv_a' });
    s = chatReducer(s, {
      type: 'conversation/loaded',
      conversation: {
        ...conv('conv_a', 10),
        messages: [
          msg({ id: 'msg_u', role: 'user', content: 'One' }),
          msg({ id: 'msg_a', content: 'Answer one' }),
          msg({ id: 'msg_u2', role: 'user', parent_id: 'msg_a', content: 'Two' }),
          msg({ id: 'msg_a2', parent_id: 'msg_u2', content: 'Answer two' }),
        ],
      },
    });
    s = chatReducer(s, { type: 'turn/edit', conversationId: 'conv_a', messageId: 'msg_u2', content: 'Deux', attachments: [] });
    expect(s.messages.map((m) => [m.id, m.content])).toEqual([
      ['msg_u', 'One'],
      ['msg_a', 'Answer one'],
      [PENDING_ID, 'Deux'],
    ]);
    expect(s.messages[2].parent_id).toBe('msg_a');
    expect(s.turns.conv_a).toBeTruthy();
    const edited = msg({ id: 'msg_u3', role: 'user', parent_id: 'msg_a', content: 'Deux', sibling_ids: ['msg_u2', 'msg_u3'] });
    s = frame(s, { type: 'user_message', conversation_id: 'conv_a', message: edited, conversation: conv('conv_a', 20), request_id: 'r.3' });
    s = frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_a3', parent_id: 'msg_u3', status: 'streaming' }), request_id: 'r.3' });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a', 'msg_u3', 'msg_a3']);
    expect(s.messages[2].sibling_ids).toEqual(['msg_u2', 'msg_u3']);
  });

  it("opens the branch another tab's edit of the first question starts", () => {
    let s = opened();
    const root = msg({ id: 'msg_u9', role: 'user', parent_id: null, content: 'Again', sibling_ids: ['msg_u', 'msg_u9'] });
    s = frame(s, { type: 'user_message', conversation_id: 'conv_a', message: root, conversation: conv('conv_a', 30), request_id: 'x.1' });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u9']);
  });

  it('lets a delta that arrives while the conversation loads wait for the overlay', () => {
    let s = frame(streaming(), { type: 'start', conversation_id: 'conv_b', message: msg({ id: 'msg_b', conversation_id: 'conv_b', status: 'streaming' }), request_id: 'r.2' });
    s = chatReducer(s, { type: 'conversation/select', id: 'conv_b' });
    s = frame(s, delta(1, 'Early', 'conv_b', 'msg_b'));
    expect(s.turns.conv_b).toMatchObject({ seq: 1, content: 'Early' });
    expect(s.turns.conv_b.gap).toBeUndefined();
    s = chatReducer(s, {
      type: 'conversation/loaded',
      conversation: { ...conv('conv_b', 5), messages: [msg({ id: 'msg_b', conversation_id: 'conv_b', status: 'streaming' })] },
    });
    expect(answerOf(s, 'msg_b')?.content).toBe('Early');
  });

  it('continues an existing answer: start carries its text, the deltas append to it', () => {
    let s = chatReducer(opened(), {
      type: 'conversation/loaded',
      conversation: {
        ...conv('conv_a', 10),
        messages: [msg({ id: 'msg_u', role: 'user' }), msg({ id: 'msg_a', status: 'stopped', content: 'Once upon' })],
      },
    });
    s = chatReducer(s, { type: 'turn/continue', conversationId: 'conv_a' });
    expect(s.turns.conv_a).toMatchObject({ messageId: null, local: true });
    expect(answerOf(s)?.status).toBe('stopped');
    s = frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_a', status: 'streaming', content: 'Once upon' }), request_id: 'req.2' });
    expect(s.turns.conv_a).toMatchObject({ messageId: 'msg_a', seq: 0, content: 'Once upon' });
    s = frame(s, delta(1, ' a time'));
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a']);
    expect(answerOf(s)).toMatchObject({ content: 'Once upon a time', status: 'streaming' });
  });

  it('ignores deltas of another conversation for the open one', () => {
    const s = streaming();
    const s2 = frame(s, delta(1, 'x', 'conv_b', 'msg_b'));
    expect(s2.messages).toBe(s.messages);
  });

  it('finalizes on done with the stored message and its sources', () => {
    let s = frame(streaming(), delta(1, 'Hel'));
    s = frame(s, {
      type: 'done',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_a', content: 'Hello.', status: 'complete', finish_reason: 'stop' }),
      usage: null,
      finish_reason: 'stop',
      sources: [{ file_id: 'file_1', file_name: 'a.pdf', ordinal: null }],
      request_id: 'req.1',
    });
    expect(answerOf(s)?.status).toBe('complete');
    expect(answerOf(s)?.content).toBe('Hello.');
    expect(answerOf(s)?.sources).toHaveLength(1);
    expect(s.turns).toEqual({});
  });

  it('marks stop as requested, then stopped on done', () => {
    let s = chatReducer(streaming(), { type: 'turn/stop', conversationId: 'conv_a' });
    expect(s.turns.conv_a.stopping).toBe(true);
    // A stop already asked stays asked when frames re-announce the turn.
    s = frame(s, { type: 'resume', conversation_id: 'conv_a', message: msg({ id: 'msg_a', status: 'streaming' }), seq: 0, request_id: 'req.1' });
    expect(s.turns.conv_a.stopping).toBe(true);
    s = frame(s, {
      type: 'done',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_a', content: 'Hel', status: 'stopped' }),
      usage: null,
      finish_reason: null,
      sources: [],
      request_id: 'req.1',
    });
    expect(answerOf(s)?.status).toBe('stopped');
    expect(s.turns).toEqual({});
  });

  it('finalizes a failed answer from an error frame without a toast', () => {
    const s = frame(streaming(), {
      type: 'error',
      conversation_id: 'conv_a',
      error: 'The model API died.',
      code: 'upstream_failed',
      message: msg({ id: 'msg_a', status: 'failed', content: 'Hel', error: 'The model API died.' }),
      request_id: 'req.1',
    });
    expect(answerOf(s)?.status).toBe('failed');
    expect(answerOf(s)?.error).toBe('The model API died.');
    expect(s.turns).toEqual({});
    expect(s.toasts).toHaveLength(0);
  });

  it('toasts why a continue was refused, even with the failed answer sent back', () => {
    const s = frame(chatReducer(opened(), { type: 'turn/continue', conversationId: 'conv_a' }), {
      type: 'error',
      conversation_id: 'conv_a',
      error: 'This model cannot continue an answer.',
      code: 'continue_unsupported',
      message: msg({ id: 'msg_a', status: 'failed', content: 'Hel' }),
      request_id: 'req.2',
    });
    expect(s.turns).toEqual({});
    expect(s.toasts.map((t) => t.text)).toEqual(['This model cannot continue an answer.']);
  });

  it('turns an error without a message into a toast and takes back the unsent message', () => {
    let s = chatReducer(opened(), { type: 'turn/send', conversationId: 'conv_a', content: 'Hi', attachments: [] });
    s = frame(s, { type: 'error', conversation_id: 'conv_a', error: 'No such file.', code: 'file_not_found', message: null });
    expect(s.messages).toHaveLength(0);
    expect(s.turns).toEqual({});
    expect(s.toasts.map((t) => t.text)).toEqual(['No such file.']);
  });

  it("does not toast another tab's failed turn in a conversation this tab does not show", () => {
    let s = frame(opened(), { type: 'start', conversation_id: 'conv_b', message: msg({ id: 'msg_b', conversation_id: 'conv_b', status: 'streaming' }), request_id: 'other.1' });
    s = frame(s, { type: 'error', conversation_id: 'conv_b', error: 'Too long.', code: 'context_length_exceeded', message: null, request_id: 'other.1' });
    expect(s.turns).toEqual({});
    expect(s.toasts).toHaveLength(0);
  });

  it('keeps the streaming turn on a busy error and takes back the refused message', () => {
    // Another tab's answer is generating here; this tab's send crossed its start.
    let s = chatReducer(opened(), { type: 'turn/send', conversationId: 'conv_a', content: 'Me too', attachments: [] });
    s = frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_a', status: 'streaming' }), request_id: 'other.1' });
    s = frame(s, { type: 'error', conversation_id: 'conv_a', error: 'Busy.', code: 'busy', message: null });
    expect(s.turns.conv_a?.messageId).toBe('msg_a');
    expect(s.messages.map((m) => m.id)).toEqual(['msg_a']);
    expect(s.toasts).toHaveLength(1);
  });

  it('keeps the last answer on regenerate until the new one starts, then replaces it', () => {
    let s = streaming();
    s = frame(s, {
      type: 'done',
      conversation_id: 'conv_a',
      message: msg({ id: 'msg_a', content: 'Hello.', status: 'complete' }),
      usage: null,
      finish_reason: 'stop',
      sources: [],
      request_id: 'req.1',
    });
    s = chatReducer(s, { type: 'turn/regenerate', conversationId: 'conv_a' });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a']);
    expect(s.turns.conv_a?.messageId).toBeNull();
    const busy = frame(s, { type: 'error', conversation_id: 'conv_a', error: 'Busy.', code: 'busy', message: null });
    expect(busy.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a']);
    s = frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_new', status: 'streaming' }), request_id: 'req.2' });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_new']);
  });

  it('shows the previous answer again when a regenerate fails before the new one began', () => {
    let s = streaming();
    const previous = msg({ id: 'msg_a', content: 'Hello.', status: 'complete' });
    s = frame(s, { type: 'done', conversation_id: 'conv_a', message: previous, usage: null, finish_reason: 'stop', sources: [], request_id: 'req.1' });
    s = chatReducer(s, { type: 'turn/regenerate', conversationId: 'conv_a' });
    s = frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_new', status: 'streaming' }), request_id: 'req.2' });
    s = frame(s, {
      type: 'error',
      conversation_id: 'conv_a',
      error: 'The model is busy.',
      code: 'upstream_failed',
      message: previous,
      request_id: 'req.2',
      discarded_message_id: 'msg_new',
    });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a']);
    expect(s.messages[1].content).toBe('Hello.');
    expect(s.turns).toEqual({});
    expect(s.toasts.map((t) => t.text)).toEqual(['The model is busy.']);
  });

  it('shows the previous answer again when a regenerate is stopped before the new one began', () => {
    let s = streaming();
    const previous = msg({ id: 'msg_a', content: 'Hello.', status: 'complete' });
    s = frame(s, { type: 'done', conversation_id: 'conv_a', message: previous, usage: null, finish_reason: 'stop', sources: [], request_id: 'req.1' });
    s = chatReducer(s, { type: 'turn/regenerate', conversationId: 'conv_a' });
    s = frame(s, { type: 'start', conversation_id: 'conv_a', message: msg({ id: 'msg_new', status: 'streaming' }), request_id: 'req.2' });
    s = frame(s, {
      type: 'done',
      conversation_id: 'conv_a',
      message: previous,
      usage: null,
      finish_reason: null,
      sources: [],
      request_id: 'req.2',
      discarded_message_id: 'msg_new',
    });
    expect(s.messages.map((m) => m.id)).toEqual(['msg_u', 'msg_a']);
    expect(s.turns).toEqual({});
  });

  it('forgets a turn on idle', () => {
    const s = frame(streaming(), { type: 'idle', conversation_id: 'conv_a' });
    expect(s.turns).toEqual({});
  });

  it('clears the selection when the open conversation is deleted', () => {
    const s = chatReducer(streaming(), { type: 'conversation/remove', id: 'conv_a' });
    expect(s.currentId).toBeNull();
    expect(s.current).toBeNull();
    expect(s.turns).toEqual({});
    expect(s.conversations.map((c) => c.id)).toEqual(['conv_b']);
  });

  it('lets nothing late bring a deleted conversation or its answer back', () => {
    const before = streaming();
    let s = chatReducer(before, { type: 'conversation/remove', id: 'conv_a' });
    // Its answer's frames still on the wire: no turn (no Stop, no busy mark) comes back.
    s = frame(s, { type: 'delta', conversation_id: 'conv_a', message_id: 'msg_a', seq: 99, content: 'late' });
    s = frame(s, { type: 'resume', conversation_id: 'conv_a', message: null, seq: 0 } as ServerFrame);
    expect(s.turns).toEqual({});
    // A list fetched before the delete, and an upsert, do not show it again.
    s = chatReducer(s, { type: 'conversations/loaded', conversations: before.conversations });
    s = chatReducer(s, { type: 'conversation/upsert', conversation: before.conversations[0] });
    expect(s.conversations.map((c) => c.id)).toEqual(['conv_b']);
  });
});
