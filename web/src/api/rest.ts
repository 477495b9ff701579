/** The REST API under /api: every fetch the app makes lives here. */
import type {
  AdminStatus,
  ApiKey,
  ConversationSettings,
  ConversationWithMessages,
  ListedConversation,
  Health,
  NewApiKey,
  User,
} from './types';

/** An error answer from the API, carrying its status, stable code and human message. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string | null;
  readonly param: string | null;

  constructor(status: number, message: string, code: string | null = null, param: string | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

/** Turn an OpenAI-shaped error body (or anything else) into an ApiError. */
export function errorFromBody(status: number, body: unknown): ApiError {
  const err = (body as { error?: { message?: unknown; code?: unknown; param?: unknown } } | null)?.error;
  if (err && typeof err.message === 'string') {
    return new ApiError(
      status,
      err.message,
      typeof err.code === 'string' ? err.code : null,
      typeof err.param === 'string' ? err.param : null,
    );
  }
  return new ApiError(status, `The server answered ${status}.`);
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    const form = body instanceof FormData;
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      // A FormData body sets its own multipart type (with its boundary).
      headers: body === undefined || form ? undefined : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : form ? body : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'Cannot reach the server. Check your connection and try again.', 'network_error');
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw errorFromBody(res.status, data);
  return data as T;
}

export interface Me {
  user: User;
  registration: 'open' | 'closed';
}

/** The logged-in user, or null when there is no live session (401). */
export async function getMe(): Promise<User | null> {
  try {
    return (await request<Me>('GET', '/api/auth/me')).user;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

export const register = (username: string, password: string) =>
  request<{ user: User }>('POST', '/api/auth/register', { username, password }).then((r) => r.user);

export const login = (username: string, password: string) =>
  request<{ user: User }>('POST', '/api/auth/login', { username, password }).then((r) => r.user);

export const logout = () => request<void>('POST', '/api/auth/logout');

export const listConversations = (q = '') =>
  request<{ conversations: ListedConversation[] }>(
    'GET',
    q ? `/api/conversations?q=${encodeURIComponent(q)}` : '/api/conversations',
  ).then((r) => r.conversations);

export const createConversation = (fields: Partial<ConversationSettings> = {}) =>
  request<ConversationWithMessages>('POST', '/api/conversations', fields);

export const getConversation = (id: string) =>
  request<ConversationWithMessages>('GET', `/api/conversations/${encodeURIComponent(id)}`);

export type ConversationPatch = Partial<ConversationSettings & { title: string }>;

export const patchConversation = (id: string, patch: ConversationPatch) =>
  request<ConversationWithMessages>('PATCH', `/api/conversations/${encodeURIComponent(id)}`, patch);

export const deleteConversation = (id: string) =>
  request<void>('DELETE', `/api/conversations/${encodeURIComponent(id)}`);

/** Show the branch through `messageId` (a sibling from `‹ 2/3 ›`); the server remembers it. */
export const selectBranch = (id: string, messageId: string) =>
  request<ConversationWithMessages>('PUT', `/api/conversations/${encodeURIComponent(id)}/branch`, {
    message_id: messageId,
  });

/** Delete a message and everything below it; the answer is the conversation as now shown. */
export const deleteBranch = (id: string, messageId: string) =>
  request<ConversationWithMessages>(
    'DELETE',
    `/api/conversations/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`,
  );

/** A ChatGPT export (`conversations.json`) or a chatstack JSON export: the conversations made. */
export function importConversations(file: File): Promise<ListedConversation[]> {
  const form = new FormData();
  form.append('file', file);
  return request<{ conversations: ListedConversation[] }>('POST', '/api/conversations/import', form).then(
    (r) => r.conversations,
  );
}

/** Where the browser downloads a transcript from (the server sends Content-Disposition). */
export const exportUrl = (id: string, format: 'md' | 'json') =>
  `/api/conversations/${encodeURIComponent(id)}/export?format=${format}`;

export const getHealth = () => request<Health>('GET', '/api/health');

/** Model ids offered for chats: the union of the healthy upstreams' lists (a down one
 * keeps the models it last listed, which nobody can use until it is back). */
export async function listModels(): Promise<string[]> {
  const health = await getHealth();
  const ids = new Set<string>();
  for (const up of health.model_api?.upstreams ?? []) if (up.healthy) for (const m of up.models ?? []) ids.add(m);
  return [...ids].sort();
}

export const listKeys = () => request<{ data: ApiKey[] }>('GET', '/api/keys').then((r) => r.data);

export const createKey = (name: string) => request<NewApiKey>('POST', '/api/keys', { name });

export const revokeKey = (id: string) => request<void>('DELETE', `/api/keys/${encodeURIComponent(id)}`);

/** The admin status page's data (403 for everyone else). */
export const getAdminStatus = () => request<AdminStatus>('GET', '/api/admin/status');
