import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../api/rest';
import { AuthScreen, authErrorText, credentialsProblem } from './AuthScreen';

const renderAuth = (onSubmit = vi.fn()) =>
  render(<AuthScreen notice={null} theme="light" onToggleTheme={() => {}} onSubmit={onSubmit} />);

afterEach(() => localStorage.clear());

describe('AuthScreen', () => {
  it('says in words what a new account needs, before asking the server', () => {
    expect(credentialsProblem('register', 'a', 'longenough')).toMatch(/3–32 letters/);
    expect(credentialsProblem('register', 'ada lovelace', 'longenough')).toMatch(/3–32 letters/);
    expect(credentialsProblem('register', 'ada', 'short')).toMatch(/at least 8/);
    expect(credentialsProblem('register', 'ada', 'longenough')).toBeNull();
    expect(credentialsProblem('login', '', '')).toBe('Enter your username and password.');
  });

  it('never shows the validation text of the server', () => {
    const raw = "Invalid value for 'password': String should have at least 1 character";
    expect(authErrorText(new ApiError(400, raw, 'invalid_value', 'password'))).toMatch(/at least 8/);
    expect(authErrorText(new ApiError(401, 'Wrong username or password.'))).toBe('Wrong username or password.');
  });

  it('checks the form itself and sends nothing invalid', async () => {
    const onSubmit = vi.fn();
    renderAuth(onSubmit);
    await userEvent.click(screen.getByTestId('auth-submit'));
    expect(screen.getByTestId('auth-error')).toHaveTextContent('Enter your username and password.');
    expect(onSubmit).not.toHaveBeenCalled();
  });

  it('says "Welcome back" only to a browser that has signed in before', () => {
    const first = renderAuth();
    expect(screen.getByRole('heading', { level: 1 })).toHaveTextContent('Sign in to chatstack');
    first.unmount();
    localStorage.setItem('chatstack-signed-in-before', '1');
    renderAuth();
    expect(screen.getByRole('heading', { level: 1 })).toHaveTextContent('Welcome back');
  });
});
