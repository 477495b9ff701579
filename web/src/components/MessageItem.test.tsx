import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import type { Message } from '../api/types';
import { canContinue, groupSources, MessageItem } from './MessageItem';
import { MessageList } from './MessageList';

const base: Message = {
  id: 'msg_1',
  conversation_id: 'conv_a',
  role: 'assistant',
  content: 'Partial',
  status: 'complete',
  attachments: [],
  sources: [],
  usage: null,
  finish_reason: null,
  error: null,
  created_at: 1,
};

describe('MessageItem', () => {
  it('marks a failed answer with its error', () => {
    render(<MessageItem message={{ ...base, status: 'failed', error: 'Model down.' }} canRegenerate onRegenerate={vi.fn()} />);
    expect(screen.getByTestId('message')).toHaveAttribute('data-status', 'failed');
    expect(screen.getByTestId('message-status')).toHaveTextContent('Failed: Model down.');
    expect(screen.getByTestId('regenerate')).toBeInTheDocument();
  });

  it('marks a stopped answer', () => {
    render(<MessageItem message={{ ...base, status: 'stopped' }} canRegenerate={false} onRegenerate={vi.fn()} />);
    expect(screen.getByTestId('message-status')).toHaveTextContent('Stopped');
    expect(screen.queryByTestId('regenerate')).toBeNull();
  });

  it('shows a user message as plain text with its attachments', () => {
    render(
      <MessageItem
        message={{ ...base, role: 'user', content: '<b>hi</b>', attachments: [{ id: 'f', name: '<x>.txt' }] }}
        canRegenerate={false}
        onRegenerate={vi.fn()}
      />,
    );
    expect(screen.getByTestId('message-content')).toHaveTextContent('<b>hi</b>');
    expect(screen.getByTestId('message-attachments')).toHaveTextContent('<x>.txt');
  });

  it('groups sources by file name', () => {
    expect(
      groupSources([
        { file_id: 'f1', file_name: 'a.pdf', ordinal: 0 },
        { file_id: 'f1', file_name: 'a.pdf', ordinal: 3 },
        { file_id: 'f2', file_name: 'b.txt', ordinal: null },
      ]),
    ).toEqual([
      { name: 'a.pdf', whole: false, parts: 2 },
      { name: 'b.txt', whole: true, parts: 0 },
    ]);
    render(
      <MessageItem
        message={{ ...base, sources: [{ file_id: 'f2', file_name: 'b.txt', ordinal: null }] }}
        canRegenerate={false}
        onRegenerate={vi.fn()}
      />,
    );
    expect(screen.getByTestId('message-sources')).toHaveTextContent('b.txt');
  });

  it('offers Continue for an answer cut by its length, stopped or failed, with text', () => {
    expect(canContinue({ ...base, finish_reason: 'length' })).toBe(true);
    expect(canContinue({ ...base, status: 'stopped' })).toBe(true);
    expect(canContinue({ ...base, status: 'failed' })).toBe(true);
    expect(canContinue({ ...base, finish_reason: 'stop' })).toBe(false);
    expect(canContinue({ ...base, status: 'stopped', content: '' })).toBe(false);
    expect(canContinue({ ...base, status: 'streaming' })).toBe(false);
    expect(canContinue({ ...base, role: 'user', status: 'stopped' })).toBe(false);
  });

  it('shows Continue next to Regenerate and sends it', async () => {
    const onContinue = vi.fn();
    render(
      <MessageItem message={{ ...base, status: 'stopped' }} canRegenerate onRegenerate={vi.fn()} canContinue onContinue={onContinue} />,
    );
    expect(screen.getByTestId('regenerate')).toBeInTheDocument();
    const button = screen.getByRole('button', { name: 'Continue' });
    expect(button).toHaveAttribute('data-testid', 'continue');
    await userEvent.click(button);
    expect(onContinue).toHaveBeenCalledTimes(1);
  });
});

describe('MessageList', () => {
  const user: Message = { ...base, id: 'msg_u', role: 'user', content: 'Tell me a story' };
  const list = (messages: Message[], busy = false) =>
    render(<MessageList messages={messages} loading={false} busy={busy} onRegenerate={vi.fn()} onContinue={vi.fn()} />);

  it('shows Continue on the last answer when it was stopped and nothing generates', () => {
    list([user, { ...base, status: 'stopped' }]);
    expect(screen.getByTestId('continue')).toBeInTheDocument();
  });

  it('shows Continue on an answer cut by its length limit', () => {
    list([user, { ...base, finish_reason: 'length' }]);
    expect(screen.getByTestId('continue')).toBeInTheDocument();
  });

  it('hides Continue while this conversation generates', () => {
    list([user, { ...base, status: 'stopped' }], true);
    expect(screen.queryByTestId('continue')).toBeNull();
    expect(screen.queryByTestId('regenerate')).toBeNull();
  });

  it('hides Continue for an answer that ended by itself, or an empty one', () => {
    const { unmount } = list([user, { ...base, finish_reason: 'stop' }]);
    expect(screen.queryByTestId('continue')).toBeNull();
    expect(screen.getByTestId('regenerate')).toBeInTheDocument();
    unmount();
    list([user, { ...base, status: 'failed', content: '' }]);
    expect(screen.queryByTestId('continue')).toBeNull();
  });

  it('hides Continue on an answer that is not the last', () => {
    list([user, { ...base, status: 'stopped' }, { ...user, id: 'msg_u2' }]);
    expect(screen.queryByTestId('continue')).toBeNull();
  });

  it('hides Continue while the answer streams', () => {
    list([user, { ...base, status: 'streaming' }]);
    expect(screen.queryByTestId('continue')).toBeNull();
  });
});
