import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import type { User } from '../api/types';
import { conv as fixtureConv } from '../test/fixtures';
import { Sidebar } from './Sidebar';

const conv = (id: string, title: string) => fixtureConv(id, 1, title);

const user: User = { id: 'usr_1', username: 'ada', is_admin: false, created_at: 1 };

function renderSidebar(generating: string[], currentId: string | null = 'conv_a') {
  return render(
    <Sidebar
      open
      conversations={[conv('conv_a', 'Open one'), conv('conv_b', 'Elsewhere'), conv('conv_c', 'Quiet')]}
      currentId={currentId}
      isGenerating={(id) => generating.includes(id)}
      search=""
      user={user}
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
}

const item = (id: string) =>
  screen.getAllByTestId('conversation-item').find((li) => li.dataset.id === id) as HTMLElement;

describe('Sidebar answer-in-progress mark', () => {
  it('marks every conversation with an answer generating, open or not', () => {
    renderSidebar(['conv_a', 'conv_b']);
    expect(screen.getAllByTestId('conversation-generating')).toHaveLength(2);
    expect(within(item('conv_a')).getByRole('img', { name: 'Answer in progress' })).toBeInTheDocument();
    expect(within(item('conv_b')).getByRole('img', { name: 'Answer in progress' })).toBeInTheDocument();
    expect(within(item('conv_c')).queryByTestId('conversation-generating')).toBeNull();
  });

  it('shows no mark when nothing generates', () => {
    renderSidebar([]);
    expect(screen.queryByTestId('conversation-generating')).toBeNull();
  });
});

describe('Sidebar search hits', () => {
  it('shows the snippet with the matched words marked, and opens the conversation at that message', async () => {
    const onSelect = vi.fn();
    const hit = {
      ...conv('conv_a', 'Fruit'),
      match: { message_id: 'msg_9', role: 'assistant' as const, snippet: 'A kumquat is small <b>', highlights: [[2, 9]] as [number, number][] },
    };
    render(
      <Sidebar
        open
        conversations={[hit, conv('conv_b', 'Kumquat title')]}
        currentId={null}
        isGenerating={() => false}
        search="kumquat"
        user={user}
        theme="light"
        keysOpen={false}
        statusOpen={false}
        onSearch={() => {}}
        onSelect={onSelect}
        onNew={() => {}}
        onRename={async () => true}
        onDelete={async () => true}
        onOpenKeys={() => {}}
        onOpenStatus={() => {}}
        onToggleTheme={() => {}}
        onLogout={() => {}}
      />,
    );
    const snippet = within(item('conv_a')).getByTestId('conversation-snippet');
    expect(snippet).toHaveTextContent('Answer: A kumquat is small <b>');
    expect(within(snippet).getByText('kumquat').tagName).toBe('MARK');
    expect(within(item('conv_b')).queryByTestId('conversation-snippet')).toBeNull();
    await userEvent.click(within(item('conv_a')).getByRole('button', { name: /Fruit/ }));
    expect(onSelect).toHaveBeenCalledWith('conv_a', 'msg_9');
  });
});
