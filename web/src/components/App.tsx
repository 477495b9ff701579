import { useCallback, useEffect, useState } from 'react';
import { ApiError } from '../api/rest';
import { useAuth } from '../state/auth';
import { ChatProvider, useChat } from '../state/ChatProvider';
import { useTheme, type Theme } from '../state/theme';
import { AuthScreen } from './AuthScreen';
import { ChatView } from './ChatView';
import { KeysPage } from './KeysPage';
import { Sidebar } from './Sidebar';
import { ConnectionStatus, Toasts } from './Toasts';

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
  const [sidebarOpen, setSidebarOpen] = useState(!narrow);
  const [page, setPage] = useState<'chat' | 'keys'>('chat');

  useEffect(() => setSidebarOpen(!narrow), [narrow]);

  const closeOnPhone = () => {
    if (narrow) setSidebarOpen(false);
  };
  const onError = useCallback(
    (e: unknown) => {
      if (e instanceof ApiError && e.status === 401) auth.sessionExpired();
      else chat.notify(e instanceof Error ? e.message : 'Something went wrong.');
    },
    [auth, chat],
  );

  useEffect(() => {
    if (!narrow || !sidebarOpen) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape' && !document.querySelector('.modal')) setSidebarOpen(false);
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [narrow, sidebarOpen]);

  return (
    <div className={`app${sidebarOpen ? ' sidebar-open' : ' sidebar-closed'}`}>
      <Sidebar
        open={sidebarOpen}
        conversations={chat.state.conversations}
        currentId={page === 'chat' ? chat.state.currentId : null}
        search={chat.search}
        user={auth.user}
        theme={theme}
        keysOpen={page === 'keys'}
        onSearch={chat.setSearch}
        onSelect={(id) => {
          setPage('chat');
          chat.select(id);
          closeOnPhone();
        }}
        onNew={() => {
          setPage('chat');
          void chat.newChat();
          closeOnPhone();
        }}
        onRename={chat.rename}
        onDelete={chat.remove}
        onOpenKeys={() => {
          setPage('keys');
          closeOnPhone();
        }}
        onToggleTheme={toggleTheme}
        onLogout={() => void auth.signOut()}
      />
      {narrow && sidebarOpen ? <div className="scrim" onClick={() => setSidebarOpen(false)} aria-hidden="true" /> : null}
      <main className="main">
        <ConnectionStatus status={chat.state.socketStatus} />
        {page === 'keys' ? (
          <KeysPage onBack={() => setPage('chat')} onToggleSidebar={() => setSidebarOpen((o) => !o)} onError={onError} />
        ) : (
          <ChatView onToggleSidebar={() => setSidebarOpen((o) => !o)} />
        )}
      </main>
      <Toasts toasts={chat.state.toasts} onDismiss={chat.dismissToast} />
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
