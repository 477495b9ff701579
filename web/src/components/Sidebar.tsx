import { useRef, useState, type KeyboardEvent } from 'react';
import type { Conversation, ListedConversation, SearchMatch, User } from '../api/types';
import type { Theme } from '../state/theme';
import { ConfirmDialog } from './ConfirmDialog';
import { DownloadIcon, KeyIcon, LogoutIcon, MoonIcon, PencilIcon, PlusIcon, SearchIcon, SunIcon, TrashIcon } from './icons';

const PulseIcon = () => (
  <svg width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true" focusable="false">
    <path d="M3 12h4l3-8 4 16 3-8h4" />
  </svg>
);

interface Props {
  open: boolean;
  conversations: ListedConversation[];
  currentId: string | null;
  /** Whether an answer is generating in that conversation (in any tab). */
  isGenerating: (id: string) => boolean;
  search: string;
  user: User | null;
  theme: Theme;
  keysOpen: boolean;
  statusOpen: boolean;
  onSearch: (q: string) => void;
  /** Open a conversation; from a search hit, at the message that matched. */
  onSelect: (id: string, focusId?: string) => void;
  onNew: () => void;
  onRename: (id: string, title: string) => Promise<boolean>;
  onDelete: (id: string) => Promise<boolean>;
  onOpenKeys: () => void;
  /** Import a ChatGPT or chatstack export (a .json file). */
  onImport?: (file: File) => void;
  /** Shown to admins only. */
  onOpenStatus: () => void;
  onToggleTheme: () => void;
  onShowShortcuts?: () => void;
  onLogout: () => void;
}

/** A search hit's snippet with the matched words marked (offsets from the server, so no
 * markup is ever parsed out of message text). */
export function Snippet({ match }: { match: SearchMatch }) {
  const parts: { text: string; hit: boolean }[] = [];
  let at = 0;
  for (const [start, end] of match.highlights) {
    if (start < at || end > match.snippet.length) continue;
    if (start > at) parts.push({ text: match.snippet.slice(at, start), hit: false });
    parts.push({ text: match.snippet.slice(start, end), hit: true });
    at = end;
  }
  if (at < match.snippet.length) parts.push({ text: match.snippet.slice(at), hit: false });
  return (
    <span className="conversation-snippet" data-testid="conversation-snippet">
      {match.role === 'assistant' ? <span className="snippet-role">Answer: </span> : null}
      {parts.map((p, i) => (p.hit ? <mark key={i}>{p.text}</mark> : <span key={i}>{p.text}</span>))}
    </span>
  );
}

/** Conversations newest first, with search, new, rename and delete; the account's actions below. */
export function Sidebar(props: Props) {
  const { open, conversations, currentId, search, user, theme } = props;
  const [editing, setEditing] = useState<string | null>(null);
  const [draft, setDraft] = useState('');
  const [hovered, setHovered] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<Conversation | null>(null);
  // Enter and the blur that may follow must save once.
  const editingRef = useRef<string | null>(null);

  const startRename = (c: Conversation) => {
    editingRef.current = c.id;
    setEditing(c.id);
    setDraft(c.title);
  };
  const saveRename = async () => {
    const id = editingRef.current;
    const title = draft.trim();
    if (!id) return;
    editingRef.current = null;
    const old = conversations.find((c) => c.id === id)?.title;
    if (!title || title === old) {
      setEditing(null);
      return;
    }
    if (await props.onRename(id, title.slice(0, 200))) setEditing(null);
    else editingRef.current = id;
  };
  const onRenameKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      void saveRename();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      editingRef.current = null;
      setEditing(null);
    }
  };

  return (
    <aside className={`sidebar${open ? ' open' : ''}`} data-testid="sidebar" aria-label="Conversations">
      <div className="sidebar-top">
        <div className="brand">
          <span className="brand-mark" aria-hidden="true">
            ✦
          </span>
          chatstack
        </div>
        <button type="button" className="new-chat" data-testid="new-chat" onClick={props.onNew}>
          <PlusIcon />
          <span>New chat</span>
        </button>
        <div className="search">
          <SearchIcon />
          <label htmlFor="conversation-search" className="sr-only">
            Search conversations
          </label>
          <input
            id="conversation-search"
            type="search"
            data-testid="conversation-search"
            placeholder="Search chats"
            value={search}
            onChange={(e) => props.onSearch(e.target.value)}
          />
        </div>
      </div>
      <nav className="conversation-nav" aria-label="Chats">
        {conversations.length === 0 ? (
          <p className="list-note">{search ? 'No chats match.' : 'No chats yet.'}</p>
        ) : null}
        <ul className="conversation-list">
          {conversations.map((c) => {
            const selected = c.id === currentId;
            const showActions = selected || hovered === c.id;
            return (
              <li
                key={c.id}
                className={`conversation-item${selected ? ' selected' : ''}`}
                data-testid="conversation-item"
                data-id={c.id}
                aria-current={selected ? 'page' : undefined}
                onMouseEnter={() => setHovered(c.id)}
                onMouseLeave={() => setHovered((h) => (h === c.id ? null : h))}
                onFocus={() => setHovered(c.id)}
              >
                {editing === c.id ? (
                  <input
                    className="title-input"
                    data-testid="conversation-title-input"
                    aria-label="Chat title"
                    value={draft}
                    maxLength={200}
                    autoFocus
                    onChange={(e) => setDraft(e.target.value)}
                    onKeyDown={onRenameKey}
                    onBlur={() => void saveRename()}
                  />
                ) : (
                  <button
                    type="button"
                    className={`conversation-open${c.match ? ' with-snippet' : ''}`}
                    onClick={() => props.onSelect(c.id, c.match?.message_id)}
                    title={c.title}
                  >
                    <span className="conversation-title">{c.title}</span>
                    {c.match ? <Snippet match={c.match} /> : null}
                  </button>
                )}
                {props.isGenerating(c.id) && editing !== c.id ? (
                  <span
                    className="conversation-generating"
                    data-testid="conversation-generating"
                    role="img"
                    aria-label="Answer in progress"
                    title="Answer in progress"
                  />
                ) : null}
                {showActions && editing !== c.id ? (
                  <span className="item-actions">
                    <button
                      type="button"
                      className="icon-btn small"
                      data-testid="conversation-rename"
                      aria-label={`Rename “${c.title}”`}
                      title="Rename"
                      onClick={() => startRename(c)}
                    >
                      <PencilIcon />
                    </button>
                    <button
                      type="button"
                      className="icon-btn small danger"
                      data-testid="conversation-delete"
                      aria-label={`Delete “${c.title}”`}
                      title="Delete"
                      onClick={() => setConfirming(c)}
                    >
                      <TrashIcon />
                    </button>
                  </span>
                ) : null}
              </li>
            );
          })}
        </ul>
      </nav>
      <div className="sidebar-bottom">
        {props.onImport ? (
          <label className="side-btn" data-testid="import-chats" title="Import a ChatGPT export (conversations.json) or a chatstack .json export">
            <DownloadIcon />
            <span>Import chats</span>
            <input
              type="file"
              className="sr-only"
              data-testid="import-file"
              accept=".json,application/json"
              onChange={(e) => {
                const file = e.target.files?.[0];
                e.target.value = '';
                if (file) props.onImport?.(file);
              }}
            />
          </label>
        ) : null}
        <button
          type="button"
          className={`side-btn${props.keysOpen ? ' active' : ''}`}
          data-testid="open-keys"
          onClick={props.onOpenKeys}
        >
          <KeyIcon />
          <span>API keys</span>
        </button>
        {user?.is_admin ? (
          <button
            type="button"
            className={`side-btn${props.statusOpen ? ' active' : ''}`}
            data-testid="nav-status"
            onClick={props.onOpenStatus}
          >
            <PulseIcon />
            <span>Status</span>
          </button>
        ) : null}
        {props.onShowShortcuts ? (
          <button type="button" className="side-btn" data-testid="open-shortcuts" onClick={props.onShowShortcuts}>
            <span className="key-glyph" aria-hidden="true">
              ?
            </span>
            <span>Keyboard shortcuts</span>
          </button>
        ) : null}
        <button
          type="button"
          className="side-btn"
          data-testid="theme-toggle"
          onClick={props.onToggleTheme}
          aria-label={theme === 'dark' ? 'Switch to light theme' : 'Switch to dark theme'}
        >
          {theme === 'dark' ? <SunIcon /> : <MoonIcon />}
          <span>{theme === 'dark' ? 'Light theme' : 'Dark theme'}</span>
        </button>
        <div className="account">
          <span className="account-avatar" aria-hidden="true">
            {user?.username.slice(0, 1).toUpperCase()}
          </span>
          <span className="account-name" title={user?.username}>
            {user?.username}
          </span>
          <button type="button" className="icon-btn" data-testid="logout" aria-label="Sign out" title="Sign out" onClick={props.onLogout}>
            <LogoutIcon />
          </button>
        </div>
      </div>
      {confirming ? (
        <ConfirmDialog
          title="Delete chat?"
          body={`“${confirming.title}” and all its messages will be deleted. This can't be undone.`}
          confirmLabel="Delete"
          onCancel={() => setConfirming(null)}
          onConfirm={async () => {
            const id = confirming.id;
            setConfirming(null);
            await props.onDelete(id);
          }}
        />
      ) : null}
    </aside>
  );
}
