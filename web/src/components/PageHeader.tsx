import type { ReactNode } from 'react';
import { ArrowLeftIcon, MenuIcon } from './icons';

interface Props {
  onBack: () => void;
  onToggleSidebar: () => void;
  /** Page actions, shown after the back button (e.g. a spacer and a Refresh button). */
  children?: ReactNode;
}

/** The header of a page beside the chat (API keys, Status): the sidebar toggle and the
 *  way back to the chat, plus the page's own actions. */
export function PageHeader({ onBack, onToggleSidebar, children }: Props) {
  return (
    <header className="chat-header">
      <button type="button" className="icon-btn sidebar-toggle" data-testid="sidebar-toggle" aria-label="Show or hide the chat list" onClick={onToggleSidebar}>
        <MenuIcon />
      </button>
      <button type="button" className="ghost-btn" onClick={onBack}>
        <ArrowLeftIcon />
        <span>Back to chat</span>
      </button>
      {children}
    </header>
  );
}
