import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import type { Message } from '../api/types';
import { msg } from '../test/fixtures';
import { canContinue, groupSources, MessageItem, messageDetails } from './MessageItem';
import { MessageList } from './MessageList';

const base: Message = msg({ id: 'msg_1', content: 'Partial' });

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

  it('pages through the versions of an answer and deletes one only once confirmed', async () => {
    const onSwitch = vi.fn();
    const onDelete = vi.fn();
    const answer = { ...base, id: 'b', sibling_ids: ['a', 'b', 'c'] };
    render(
      <MessageItem message={answer} canRegenerate={false} onRegenerate={vi.fn()} canBranch onSwitchBranch={onSwitch} onDeleteBranch={onDelete} />,
    );
    expect(screen.getByTestId('branch-position')).toHaveTextContent('2/3');
    await userEvent.click(screen.getByTestId('branch-prev'));
    await userEvent.click(screen.getByTestId('branch-next'));
    expect(onSwitch.mock.calls).toEqual([['a'], ['c']]);
    await userEvent.click(screen.getByTestId('branch-delete'));
    expect(onDelete).not.toHaveBeenCalled();
    await userEvent.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(onDelete).not.toHaveBeenCalled();
    await userEvent.click(screen.getByTestId('branch-delete'));
    await userEvent.click(screen.getByTestId('confirm-delete'));
    expect(onDelete).toHaveBeenCalledWith('b');
  });

  it('shows no pager for a message without siblings, and none that works while busy', () => {
    const { rerender } = render(<MessageItem message={base} canRegenerate={false} onRegenerate={vi.fn()} onSwitchBranch={vi.fn()} />);
    expect(screen.queryByTestId('branch-switcher')).toBeNull();
    rerender(
      <MessageItem message={{ ...base, sibling_ids: ['msg_1', 'x'] }} canRegenerate={false} onRegenerate={vi.fn()} onSwitchBranch={vi.fn()} />,
    );
    expect(screen.getByTestId('branch-prev')).toBeDisabled();
    expect(screen.getByTestId('branch-next')).toBeDisabled();
  });

  it('edits a question in place: Enter saves it as a new branch, Escape cancels', async () => {
    const onEdit = vi.fn(() => true);
    const question = { ...base, role: 'user' as const, parent_id: null, content: 'Old text' };
    render(<MessageItem message={question} canRegenerate={false} onRegenerate={vi.fn()} canBranch onEdit={onEdit} />);
    await userEvent.click(screen.getByTestId('edit-message'));
    await userEvent.keyboard('{Escape}');
    expect(screen.queryByTestId('edit-input')).toBeNull();
    expect(onEdit).not.toHaveBeenCalled();
    await userEvent.click(screen.getByTestId('edit-message'));
    const input = screen.getByTestId('edit-input');
    await userEvent.clear(input);
    await userEvent.type(input, 'New text{Enter}');
    expect(onEdit).toHaveBeenCalledWith('msg_1', 'New text', []);
    expect(screen.queryByTestId('edit-input')).toBeNull();
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

describe('MessageItem details and limits', () => {
  it('says when an answer was cut by its length limit', () => {
    render(<MessageItem message={{ ...base, finish_reason: 'length' }} canRegenerate onRegenerate={vi.fn()} canContinue onContinue={vi.fn()} />);
    expect(screen.getByTestId('message-length')).toHaveTextContent('Stopped at the length limit');
    expect(screen.getByTestId('continue')).toBeInTheDocument();
  });

  it('details an answer: time, model, tokens, seconds and speed', () => {
    const answer = {
      ...base,
      created_at: 1_700_000_000,
      finished_at: 1_700_000_004,
      usage: { prompt_tokens: 10, completion_tokens: 40, total_tokens: 50 },
    };
    expect(messageDetails(answer)).toMatch(/· 40 tokens · 4\.0 s · 10\.0 tokens\/s$/);
    expect(messageDetails({ ...answer, role: 'user', usage: null })).not.toMatch(/tokens/);
    expect(messageDetails({ ...answer, model: 'SmolLM2' })).toMatch(/· SmolLM2 · 40 tokens/);
    render(<MessageItem message={answer} canRegenerate={false} onRegenerate={vi.fn()} />);
    expect(screen.getByTestId('message-details')).toHaveTextContent('40 tokens');
  });
});
