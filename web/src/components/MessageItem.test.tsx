import { render, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import type { Message } from '../api/types';
import { groupSources, MessageItem } from './MessageItem';

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
});
