import { render, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
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
