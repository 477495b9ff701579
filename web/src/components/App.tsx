import { useCallback, useEffect, useState } from 'react';
import { ApiError } from '../api/rest';
import { useAuth } from '../state/auth';
import { ChatProvider, useChat } from '../state/ChatProvider';
import { parseRoute, useRouteSync, type Page } from '../state/route';
import { useTheme, type Theme } from '../state/theme';
import { AuthScreen } from './AuthScreen';
import { ChatView } from './ChatView';
import { KeysPage } from './KeysPage';
import { Sidebar } from './Sidebar';
import { StatusPage } from './StatusPage';
import { ShortcutsDialog, useShortcuts } from './Shortcuts';
import { ConnectionStatus, Toasts } from './Toasts';

const focusComposer = () => document.getElementById('composer-input')?.focus();

const NARROW = '(max-width: 767px)';

function useNarrow(): boolean {
  const [narrow, setNarrow] = useState(() => window.matchMedia?.(NARROW).matches ?? false);
  useEffect(() => {
    const mq = window.matchMedia?.(NARROW);
    if (!mq) return;
    const on = () => setNarrow(mq.matches);
    mq.addEventListener('change', on);
    return () => mq.removeEventListener('change', on);
  }, []);
  return narrow;
}

function Workspace({ theme, toggleTheme }: { theme: Theme; toggleTheme: () => void }) {
  const auth = useAuth();
  const chat = useChat();
  const narrow = useNarrow();
  // Two states, so that a passing change of width (rotation, a screenshot) never reopens the list.
  const [desktopOpen, setDesktopOpen] = useState(true);
  const [phoneOpen, setPhoneOpen] = useState(false);
  const [page, setPage] = useState<Page>(() => parseRoute(window.location.hash).page);
  // Back and Forward (state/route.ts): every page and conversation has its own address.
  useRouteSync({ page, conversationId: page === 'chat' ? chat.state.currentId : null }, (route) => {
    setPage(route.page);
    if (route.page === 'chat' && route.conversationId !== chat.state.currentId) chat.select(route.conversationId);
  });
  const sidebarOpen = narrow ? phoneOpen : desktopOpen;

  const isNarrowNow = () => window.matchMedia?.(NARROW).matches ?? narrow;
  const toggleSidebar = () => (isNarrowNow() ? setPhoneOpen((o) => !o) : setDesktopOpen((o) => !o));
  // Choosing something in the list closes it on a phone (and leaves the desktop layout alone).
  const closeOnPhone = () => setPhoneOpen(false);
  const onError = useCallback(
    (e: unknown) => {
      if (e instanceof ApiError && e.status === 401) auth.sessionExpired();
      else chat.notify(e instanceof Error ? e.message : 'Something went wrong.');
    },
    [auth, chat],
  );

  const [helpOpen, setHelpOpen] = useState(false);
  useShortcuts({
    newChat: () => {
      setPage('chat');
      void chat.newChat();
    },
    focusComposer: () => {
      setPage('chat');
      setTimeout(focusComposer, 0);
    },
    stop: () => {
      if (page !== 'chat' || !chat.currentTurn) return false;
      chat.stop();
      return true;
    },
    showHelp: () => setHelpOpen(true),
  });

  // The browser tab says where you are: the open chat's title, or the page.
  const chatTitle = chat.current?.title;
  useEffect(() => {
    const where = page === 'keys' ? 'API keys' : page === 'status' ? 'Status' : chatTitle;
    document.title = where ? `${where} · chatstack` : 'chatstack';
  }, [page, chatTitle]);

  useEffect(() => {
    if (!narrow || !sidebarOpen) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape' && !document.querySelector('.modal')) setPhoneOpen(false);
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [narrow, sidebarOpen]);

  return (
    <div className={`app${sidebarOpen ? ' sidebar-open' : ' sidebar-closed'}`}>
      {/* The first Tab stop: past the chat list, straight to the message box. */}
      <a
        className="skip-link"
        data-testid="skip-to-composer"
        href="#composer-input"
        onClick={(e) => {
          e.preventDefault();
          setPage('chat');
          setTimeout(focusComposer, 0);
        }}
      >
        Skip to the message box
      </a>
      <Sidebar
        open={sidebarOpen}
        conversations={chat.state.conversations}
        currentId={page === 'chat' ? chat.state.currentId : null}
        isGenerating={(id) => id in chat.state.turns}
        search={chat.search}
        user={auth.user}
        theme={theme}
        keysOpen={page === 'keys'}
        statusOpen={page === 'status'}
        onSearch={chat.setSearch}
        onSelect={(id, focusId) => {
          setPage('chat');
          chat.select(id, focusId);
          closeOnPhone();
        }}
        onNew={() => {
          setPage('chat');
          void chat.newChat();
          closeOnPhone();
        }}
        onImport={(file) => {
          setPage('chat');
          void chat.importFile(file);
          closeOnPhone();
        }}
        onRename={chat.rename}
        onDelete={chat.remove}
        onOpenKeys={() => {
          setPage('keys');
          closeOnPhone();
        }}
        onOpenStatus={() => {
          setPage('status');
          closeOnPhone();
        }}
        onToggleTheme={toggleTheme}
        onShowShortcuts={() => setHelpOpen(true)}
        onLogout={() => void auth.signOut()}
      />
      {narrow && sidebarOpen ? <div className="scrim" onClick={closeOnPhone} aria-hidden="true" /> : null}
      <main className="main">
        <ConnectionStatus
          status={chat.state.socketStatus}
          endedReason={chat.endedReason}
          onReconnect={chat.reconnect}
        />
        {page === 'keys' ? (
          <KeysPage onBack={() => setPage('chat')} onToggleSidebar={toggleSidebar} onError={onError} />
        ) : page === 'status' && auth.user?.is_admin ? (
          <StatusPage onBack={() => setPage('chat')} onToggleSidebar={toggleSidebar} onError={onError} />
        ) : (
          <ChatView onToggleSidebar={toggleSidebar} />
        )}
      </main>
      <Toasts toasts={chat.state.toasts} onDismiss={chat.dismissToast} />
      {helpOpen ? <ShortcutsDialog onClose={() => setHelpOpen(false)} /> : null}
    </div>
  );
}

/** Signed out: the auth form. Signed in: the chat, with its socket. */
export function App() {
  const auth = useAuth();
  const [theme, toggleTheme] = useTheme();

  if (auth.status === 'loading') {
    return (
      <div className="splash" role="status">
        <span className="spinner" aria-hidden="true" /> Loading…
      </div>
    );
  }
  if (auth.status === 'unreachable') {
    return (
      <div className="splash" role="alert">
        <p>Cannot reach the server.</p>
        <button type="button" className="btn" onClick={auth.retry}>
          Try again
        </button>
      </div>
    );
  }
  if (auth.status === 'signedOut') {
    return <AuthScreen notice={auth.notice} theme={theme} onToggleTheme={toggleTheme} onSubmit={auth.signIn} />;
  }
  return (
    <ChatProvider key={auth.user?.id} onUnauthorized={auth.sessionExpired}>
      <Workspace theme={theme} toggleTheme={toggleTheme} />
    </ChatProvider>
  );
}
