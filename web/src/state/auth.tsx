/** Who is signed in: asks /api/auth/me on load, signs in, up and out. */
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import * as rest from '../api/rest';
import type { User } from '../api/types';

export type AuthStatus = 'loading' | 'signedOut' | 'signedIn' | 'unreachable';

interface AuthValue {
  status: AuthStatus;
  user: User | null;
  /** Set when the session ended by itself (expired, or ended elsewhere). */
  notice: string | null;
  signIn: (mode: 'login' | 'register', username: string, password: string) => Promise<void>;
  signOut: () => Promise<void>;
  sessionExpired: () => void;
  retry: () => void;
}

const AuthContext = createContext<AuthValue | null>(null);

/** Remembers that this browser signed in, so a first visit shows the form without a 401 round trip. */
const HINT = 'chatstack-signed-in';
function readHint(): boolean {
  try {
    return localStorage.getItem(HINT) === '1';
  } catch {
    return true;
  }
}
function writeHint(on: boolean): void {
  try {
    if (on) localStorage.setItem(HINT, '1');
    else localStorage.removeItem(HINT);
  } catch {
    // Without storage every load asks the server.
  }
}

// Set once this browser has been signed in: only then does the sign-in form say "Welcome back".
const SIGNED_IN_BEFORE = 'chatstack-signed-in-before';

function rememberSignedIn(): void {
  try {
    localStorage.setItem(SIGNED_IN_BEFORE, '1');
  } catch {
    // storage refused (private mode): the greeting just stays neutral
  }
}

export function signedInBefore(): boolean {
  try {
    return localStorage.getItem(SIGNED_IN_BEFORE) === '1';
  } catch {
    return false;
  }
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [status, setStatus] = useState<AuthStatus>('loading');
  const [user, setUser] = useState<User | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const check = useCallback(() => {
    if (!readHint()) {
      setStatus('signedOut');
      return;
    }
    setStatus('loading');
    rest.getMe().then(
      (me) => {
        writeHint(!!me);
        if (me) rememberSignedIn();
        setUser(me);
        setStatus(me ? 'signedIn' : 'signedOut');
      },
      () => setStatus('unreachable'),
    );
  }, []);

  useEffect(check, [check]);

  const signIn = useCallback(async (mode: 'login' | 'register', username: string, password: string) => {
    const u = mode === 'login' ? await rest.login(username, password) : await rest.register(username, password);
    writeHint(true);
    rememberSignedIn();
    setNotice(null);
    setUser(u);
    setStatus('signedIn');
  }, []);

  const signOut = useCallback(async () => {
    try {
      await rest.logout();
    } finally {
      writeHint(false);
      setUser(null);
      setNotice(null);
      setStatus('signedOut');
    }
  }, []);

  const sessionExpired = useCallback(() => {
    writeHint(false);
    setUser(null);
    setNotice('Your session has ended. Please sign in again.');
    setStatus('signedOut');
  }, []);

  const value = useMemo(
    () => ({ status, user, notice, signIn, signOut, sessionExpired, retry: check }),
    [status, user, notice, signIn, signOut, sessionExpired, check],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthValue {
  const v = useContext(AuthContext);
  if (!v) throw new Error('useAuth needs <AuthProvider>');
  return v;
}
