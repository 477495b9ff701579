/** The answers generating for this account, one per conversation, as the socket's frames
 * describe them (docs/protocol.md, "Turns belong to the server"): pure functions. */
import type { Message } from '../api/types';

/** One conversation's answer in progress. */
export interface Turn {
  /** The assistant message being written; null until the answer begins (`start`). */
  messageId: string | null;
  requestId?: string;
  /** The last delta applied (0 for none). */
  seq: number;
  /** The live text so far. */
  content: string;
  stopping: boolean;
  /** A delta was missed: nothing more is applied until a `resume` brings the whole text. */
  gap?: boolean;
  /** This tab asked for it (send, regenerate, continue), so its errors are this tab's to show. */
  local?: boolean;
}

export type Turns = Record<string, Turn>;

export function withTurn(turns: Turns, conversationId: string, turn: Turn): Turns {
  return { ...turns, [conversationId]: turn };
}

export function withoutTurn(turns: Turns, conversationId: string | null | undefined): Turns {
  if (!conversationId || !(conversationId in turns)) return turns;
  const next = { ...turns };
  delete next[conversationId];
  return next;
}

/** A turn this tab has asked for and the server has not announced yet. */
export function requestedTurn(previous: Turn | undefined): Turn {
  return { messageId: null, seq: 0, content: '', stopping: previous?.stopping ?? false, local: true };
}

/** The turn once its user message is stored: its answer has not begun. */
export function userMessageTurn(previous: Turn | undefined, requestId: string): Turn {
  return {
    messageId: null,
    requestId,
    seq: 0,
    content: '',
    stopping: previous?.stopping ?? false,
    ...(previous?.local ? { local: true } : {}),
  };
}

/** The turn as a `start` or `resume` announces it: the text so far, up to delta `seq`. */
export function announcedTurn(
  previous: Turn | undefined,
  message: Message | null,
  seq: number,
  requestId: string,
): Turn {
  return {
    messageId: message?.id ?? null,
    requestId,
    seq,
    content: message?.content ?? '',
    stopping: previous?.stopping ?? false,
    ...(previous?.local ? { local: true } : {}),
  };
}

export type DeltaOutcome =
  | { kind: 'duplicate' }
  | { kind: 'gap'; turn: Turn }
  | { kind: 'applied'; turn: Turn };

/** What a delta does to its turn: a repeat is ignored, a missed one opens a gap (the
 * provider then asks for a `resume`), the next one is appended. */
export function applyDelta(turn: Turn | undefined, messageId: string, seq: number, content: string): DeltaOutcome {
  if (!turn) return { kind: 'gap', turn: { messageId, seq: 0, content: '', stopping: false, gap: true } };
  if (turn.gap) return { kind: 'duplicate' };
  if (turn.messageId !== null && turn.messageId === messageId && seq <= turn.seq) return { kind: 'duplicate' };
  if (turn.messageId !== messageId || seq > turn.seq + 1) return { kind: 'gap', turn: { ...turn, gap: true } };
  return { kind: 'applied', turn: { ...turn, seq, content: turn.content + content } };
}

/** The stored copy of a conversation (saved about once a second) with the live text of its
 * answer in progress laid over it. (A regenerate's previous answer is a sibling, on a branch
 * the stored path does not show.) */
export function overlayTurn(messages: Message[], turn: Turn | undefined): Message[] {
  if (!turn?.messageId) return messages;
  const i = messages.findIndex((m) => m.id === turn.messageId);
  if (i < 0) return messages;
  const live = messages[i];
  if (turn.gap || live.content.length > turn.content.length) return messages;
  const next = messages.slice();
  next[i] = { ...live, content: turn.content, status: 'streaming' };
  return next;
}
