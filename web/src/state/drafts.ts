/** Unsent drafts, one per conversation (and one for "no conversation yet"), kept for the
 * tab's life in sessionStorage, so switching chats or reloading keeps each where it was. */
const PREFIX = 'chatstack-draft:';
// Where storage is refused (a private window's quota, a sandbox): this page's life only.
const memory = new Map<string, string>();

const keyOf = (conversationId: string | null) => PREFIX + (conversationId ?? 'new');

export function loadDraft(conversationId: string | null): string {
  const key = keyOf(conversationId);
  try {
    return sessionStorage.getItem(key) ?? '';
  } catch {
    return memory.get(key) ?? '';
  }
}

export function saveDraft(conversationId: string | null, text: string): void {
  const key = keyOf(conversationId);
  try {
    if (text) sessionStorage.setItem(key, text);
    else sessionStorage.removeItem(key);
  } catch {
    if (text) memory.set(key, text);
    else memory.delete(key);
  }
}
