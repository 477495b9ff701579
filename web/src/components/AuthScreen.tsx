import { useState, type FormEvent } from 'react';
import { ApiError } from '../api/rest';
import { signedInBefore } from '../state/auth';
import type { Theme } from '../state/theme';
import { MoonIcon, SunIcon } from './icons';

interface Props {
  notice: string | null;
  theme: Theme;
  onToggleTheme: () => void;
  onSubmit: (mode: 'login' | 'register', username: string, password: string) => Promise<void>;
}

const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;
const USERNAME_RULE = 'A username is 3–32 letters, digits, “_”, “.” or “-”.';
const PASSWORD_RULE = 'Use a password of at least 8 characters.';

/** What is wrong with the form, in words (the server would say the same, as a 400). */
export function credentialsProblem(mode: 'login' | 'register', username: string, password: string): string | null {
  if (mode === 'login') return username && password ? null : 'Enter your username and password.';
  if (!USERNAME.test(username)) return USERNAME_RULE;
  if (password.length < 8) return PASSWORD_RULE;
  return null;
}

/** A refusal in words a person reads: the server's validation text names fields and
 * pydantic rules ("String should have at least 1 character"). */
export function authErrorText(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 400 && err.param === 'username') return USERNAME_RULE;
    if (err.status === 400 && err.param === 'password') return PASSWORD_RULE;
    return err.message;
  }
  return err instanceof Error ? err.message : 'Something went wrong.';
}

/** The first screen: sign in, or create an account (you are then signed in). */
export function AuthScreen({ notice, theme, onToggleTheme, onSubmit }: Props) {
  const [mode, setMode] = useState<'login' | 'register'>('login');
  const [returning] = useState(signedInBefore);
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const registering = mode === 'register';

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const problem = credentialsProblem(mode, username.trim(), password);
    setError(problem);
    if (problem) return;
    setBusy(true);
    try {
      await onSubmit(mode, username.trim(), password);
    } catch (err) {
      setError(authErrorText(err));
      setBusy(false);
    }
  };

  return (
    <main className="auth-page">
      <button
        type="button"
        className="icon-btn auth-theme"
        data-testid="theme-toggle"
        aria-label={theme === 'dark' ? 'Switch to light theme' : 'Switch to dark theme'}
        onClick={onToggleTheme}
      >
        {theme === 'dark' ? <SunIcon /> : <MoonIcon />}
      </button>
      <div className="auth-card">
        <div className="brand big">
          <span className="brand-mark" aria-hidden="true">
            ✦
          </span>
          chatstack
        </div>
        <h1>{registering ? 'Create your account' : returning ? 'Welcome back' : 'Sign in to chatstack'}</h1>
        <p className="muted">
          {registering
            ? 'Pick a username and a password to start chatting. You will be signed in right away.'
            : 'Sign in to chat with your self-hosted assistant. New here? Create an account below.'}
        </p>
        {notice ? <p className="notice">{notice}</p> : null}
        <form data-testid="auth-form" onSubmit={submit} noValidate>
          <label className="field">
            <span>Username</span>
            <input
              data-testid="auth-username"
              name="username"
              autoComplete="username"
              autoCapitalize="none"
              spellCheck={false}
              required
              minLength={registering ? 3 : 1}
              maxLength={registering ? 32 : 64}
              value={username}
              onChange={(e) => setUsername(e.target.value)}
              autoFocus
            />
            {registering ? <small className="hint">3–32 letters, digits, “_”, “.” or “-”</small> : null}
          </label>
          <label className="field">
            <span>Password</span>
            <input
              data-testid="auth-password"
              name="password"
              type="password"
              autoComplete={registering ? 'new-password' : 'current-password'}
              required
              minLength={registering ? 8 : 1}
              value={password}
              onChange={(e) => setPassword(e.target.value)}
            />
            {registering ? <small className="hint">At least 8 characters</small> : null}
          </label>
          {error ? (
            <p className="form-error" data-testid="auth-error" role="alert">
              {error}
            </p>
          ) : null}
          <button type="submit" className="btn primary wide" data-testid="auth-submit" disabled={busy}>
            {busy ? 'Please wait…' : registering ? 'Create account' : 'Sign in'}
          </button>
        </form>
        <p className="auth-switch">
          {registering ? 'Already have an account?' : 'No account yet?'}{' '}
          <button
            type="button"
            className="link-btn"
            data-testid="auth-toggle"
            onClick={() => {
              setMode(registering ? 'login' : 'register');
              setError(null);
            }}
          >
            {registering ? 'Sign in' : 'Create account'}
          </button>
        </p>
      </div>
    </main>
  );
}
