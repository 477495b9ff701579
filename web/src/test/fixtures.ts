/** Shared test data for the web app's unit tests: one place, not a copy per test file. */
import type { Conversation, Message } from '../api/types';

export const conv = (id: string, updated_at = 1, title = id): Conversation => ({
  id,
  title,
  model: '',
  system_prompt: '',
  temperature: null,
  top_p: null,
  max_tokens: null,
  created_at: 1,
  updated_at,
});

/** A stored message; alone among its siblings unless `sibling_ids` says otherwise. An answer
 * follows the tests' usual question, `msg_u`, unless `parent_id` says otherwise. */
export const msg = (over: Partial<Message>): Message => {
  const id = over.id ?? 'msg_1';
  return {
    id,
    conversation_id: 'conv_a',
    parent_id: (over.role ?? 'assistant') === 'assistant' ? 'msg_u' : null,
    sibling_ids: [id],
    role: 'assistant',
    content: '',
    status: 'complete',
    attachments: [],
    sources: [],
    usage: null,
    finish_reason: null,
    error: null,
    created_at: 1,
    finished_at: null,
    model: null,
    ...over,
  };
};
