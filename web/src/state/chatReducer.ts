/** The chat state and how every event changes it: a pure reducer, tested without a browser. */
import type {
  Attachment,
  Conversation,
  ConversationWithMessages,
  ListedConversation,
  Message,
  ServerFrame,
} from '../api/types';
import type { SocketStatus } from '../api/socket';
import {
  announcedTurn,
  applyDelta,
  overlayTurn,
  requestedTurn,
  userMessageTurn,
  withoutTurn,
  withTurn,
  type Turns,
} from './turns';

export type { Turn, Turns } from './turns';

export interface Toast {
  id: number;
  text: string;
  kind: 'error' | 'info';
}

export interface ChatState {
  conversations: ListedConversation[];
  currentId: string | null;
  /** The selected conversation's fields (kept even when a search hides it from the list). */
  current: Conversation | null;
  messages: Message[];
  loading: boolean;
  /** The message to bring into view once the open conversation shows it (a search hit). */
  focusId: string | null;
  /** The account's answers in progress, by conversation id (any tab's). */
  turns: Turns;
  socketStatus: SocketStatus;
  toasts: Toast[];
  /** Conversations deleted while this tab ran (newest last, bounded): a frame of their answer
   * still on the wire, or a list fetched before the delete, must not bring them back. */
  deleted: string[];
}

const DELETED_KEPT = 100;
// Frames that (re)start an answer: for a deleted conversation they would leave a Stop behind.
const TURN_FRAMES = new Set(['user_message', 'start', 'resume', 'delta']);

export const initialChatState: ChatState = {
  conversations: [],
  currentId: null,
  current: null,
  messages: [],
  loading: false,
  focusId: null,
  turns: {},
  socketStatus: 'connecting',
  toasts: [],
  deleted: [],
};

export const PENDING_ID = 'pending-user-message';

export type ChatAction =
  | { type: 'conversations/loaded'; conversations: ListedConversation[] }
  | { type: 'conversation/select'; id: string | null; focusId?: string }
  | { type: 'conversation/loaded'; conversation: ConversationWithMessages }
  | { type: 'conversation/upsert'; conversation: Conversation }
  | { type: 'conversation/remove'; id: string }
  | { type: 'turn/send'; conversationId: string; content: string; attachments: Attachment[] }
  | { type: 'turn/edit'; conversationId: string; messageId: string; content: string; attachments: Attachment[] }
  | { type: 'turn/regenerate'; conversationId: string }
  | { type: 'turn/continue'; conversationId: string }
  | { type: 'turn/stop'; conversationId: string }
  | { type: 'frame'; frame: ServerFrame }
  | { type: 'socket/status'; status: SocketStatus }
  | { type: 'toast/add'; toast: Toast }
  | { type: 'toast/dismiss'; id: number };

function withoutMessages(conv: Conversation): Conversation {
  const stripped: Conversation = { ...conv };
  delete (stripped as Partial<ConversationWithMessages>).messages;
  return stripped;
}

function sortNewestFirst(list: ListedConversation[]): ListedConversation[] {
  return [...list].sort((a, b) => b.updated_at - a.updated_at);
}

function upsertConversation(list: ListedConversation[], conv: ListedConversation): ListedConversation[] {
  const before = list.find((c) => c.id === conv.id);
  const rest = list.filter((c) => c.id !== conv.id);
  // A search hit keeps its snippet when its title changes.
  const next = before?.match && conv.match === undefined ? { ...withoutMessages(conv), match: before.match } : withoutMessages(conv);
  return sortNewestFirst([next, ...rest]);
}

function touchConversation(list: ListedConversation[], id: string, at: number): ListedConversation[] {
  if (!list.some((c) => c.id === id)) return list;
  return sortNewestFirst(list.map((c) => (c.id === id ? { ...c, updated_at: Math.max(c.updated_at, at) } : c)));
}

/** A regenerate that ended before its new answer began: that answer's row is gone. */
function withoutDiscarded(messages: Message[], id: string | null | undefined): Message[] {
  return id ? messages.filter((m) => m.id !== id) : messages;
}

/** Put a message in place of the one with its id (or of `replaceId`), else append it. */
function putMessage(messages: Message[], msg: Message, replaceId?: string): Message[] {
  const i = messages.findIndex((m) => m.id === msg.id || (replaceId !== undefined && m.id === replaceId));
  if (i < 0) return [...messages, msg];
  const next = messages.slice();
  next[i] = msg;
  return next;
}

/** Put a message on the path shown: over the message with its id, else right below its
 * parent, in place of what followed it there (a regenerate's new answer, an edit's new
 * question and another tab's branch all open their branch), else at the end. */
export function placeOnPath(messages: Message[], msg: Message): Message[] {
  if (messages.some((m) => m.id === msg.id)) return putMessage(messages, msg);
  if (msg.parent_id === null) return [msg];
  const parent = messages.findIndex((m) => m.id === msg.parent_id);
  if (parent < 0) return [...messages, msg];
  return [...messages.slice(0, parent + 1), msg];
}

/** The shown path cut where `messageId` is: an edit's new question goes in its place. */
function pathBefore(messages: Message[], messageId: string): { kept: Message[]; parentId: string | null } {
  const i = messages.findIndex((m) => m.id === messageId);
  if (i < 0) return { kept: messages, parentId: messages[messages.length - 1]?.id ?? null };
  return { kept: messages.slice(0, i), parentId: messages[i].parent_id };
}

/** This tab's message shown while its `send` is on the way, taken back when it is refused. */
function withoutPending(messages: Message[]): Message[] {
  return messages.some((m) => m.id === PENDING_ID) ? messages.filter((m) => m.id !== PENDING_ID) : messages;
}

/** A failed answer shows its error in its badge; why a continue was refused does not. */
const TOAST_EVEN_WITH_FAILED_MESSAGE = new Set(['nothing_to_continue', 'continue_unsupported']);

function localUserMessage(
  conversationId: string,
  content: string,
  attachments: Attachment[],
  parentId: string | null,
): Message {
  return {
    id: PENDING_ID,
    conversation_id: conversationId,
    parent_id: parentId,
    sibling_ids: [PENDING_ID],
    role: 'user',
    content,
    status: 'complete',
    attachments,
    sources: [],
    usage: null,
    finish_reason: null,
    error: null,
    created_at: Date.now() / 1000,
    finished_at: null,
    model: null,
  };
}

function applyFrame(state: ChatState, frame: ServerFrame): ChatState {
  const isCurrent = (id: string | null | undefined) => !!id && id === state.currentId;
  if (TURN_FRAMES.has(frame.type) && 'conversation_id' in frame && state.deleted.includes(frame.conversation_id ?? ''))
    return state;
  switch (frame.type) {
    case 'ready':
      // The server announces every answer still generating with a `resume` right after.
      return Object.keys(state.turns).length ? { ...state, turns: {} } : state;
    case 'user_message': {
      const cid = frame.conversation_id;
      const conversations = upsertConversation(state.conversations, frame.conversation);
      const turns = withTurn(state.turns, cid, userMessageTurn(state.turns[cid], frame.request_id));
      if (!isCurrent(cid)) return { ...state, conversations, turns };
      // This tab's own message replaces the one shown while sending; another tab's goes below
      // its parent (an edit from there opens its branch here too).
      const messages = placeOnPath(withoutPending(state.messages), frame.message);
      return { ...state, conversations, turns, messages, current: withoutMessages(frame.conversation) };
    }
    case 'start':
    case 'resume': {
      const cid = frame.conversation_id;
      const seq = frame.type === 'resume' ? frame.seq : 0;
      const turns = withTurn(state.turns, cid, announcedTurn(state.turns[cid], frame.message, seq, frame.request_id));
      const messages =
        frame.message && isCurrent(cid) ? placeOnPath(state.messages, frame.message) : state.messages;
      return { ...state, turns, messages };
    }
    case 'delta': {
      const cid = frame.conversation_id;
      const outcome = applyDelta(state.turns[cid], frame.message_id, frame.seq, frame.content);
      if (outcome.kind === 'duplicate') return state;
      if (outcome.kind === 'gap') return { ...state, turns: withTurn(state.turns, cid, outcome.turn) };
      const turn = outcome.turn;
      // A conversation still loading gets the live text laid over it once it arrives.
      if (!isCurrent(cid) || state.loading) return { ...state, turns: withTurn(state.turns, cid, turn) };
      // The open conversation lacks the message (loaded before it began): have it resumed.
      if (!state.messages.some((m) => m.id === frame.message_id)) {
        return { ...state, turns: withTurn(state.turns, cid, { ...state.turns[cid], gap: true }) };
      }
      const messages = state.messages.map((m) => (m.id === frame.message_id ? { ...m, content: turn.content } : m));
      return { ...state, turns: withTurn(state.turns, cid, turn), messages };
    }
    case 'idle':
      return { ...state, turns: withoutTurn(state.turns, frame.conversation_id) };
    case 'conversation':
      // Created, renamed or titled (by the model, or in another tab): shown at once.
      return chatReducer(state, { type: 'conversation/upsert', conversation: frame.conversation });
    case 'conversation_deleted':
      return state.conversations.some((c) => c.id === frame.conversation_id) || state.currentId === frame.conversation_id
        ? chatReducer(state, { type: 'conversation/remove', id: frame.conversation_id })
        : state;
    case 'done': {
      const cid = frame.conversation_id;
      const message: Message = { ...frame.message, sources: frame.sources ?? frame.message.sources ?? [] };
      const kept = withoutDiscarded(state.messages, frame.discarded_message_id);
      const messages = isCurrent(cid) ? placeOnPath(kept, message) : kept;
      const conversations = touchConversation(state.conversations, cid, Date.now() / 1000);
      return { ...state, messages, turns: withoutTurn(state.turns, cid), conversations };
    }
    case 'error': {
      const cid = frame.conversation_id;
      const turn = cid ? state.turns[cid] : undefined;
      // Toast what this tab asked for, or what concerns the conversation it shows; another
      // tab shows its own.
      const concernsThisTab = !frame.request_id || isCurrent(cid) || !!turn?.local;
      const showsInBadge =
        frame.message?.status === 'failed' && !TOAST_EVEN_WITH_FAILED_MESSAGE.has(frame.code ?? '');
      const toasts =
        concernsThisTab && !showsInBadge
          ? [...state.toasts, { id: nextToastId(), text: frame.error || 'Something went wrong.', kind: 'error' as const }]
          : state.toasts;
      const pendingHere = !cid || isCurrent(cid);
      if (frame.code === 'busy') {
        // Another answer generates there (from any tab): it goes on; only this send is refused.
        return { ...state, toasts, messages: pendingHere ? withoutPending(state.messages) : state.messages };
      }
      let messages = withoutDiscarded(state.messages, frame.discarded_message_id);
      if (frame.message && isCurrent(frame.message.conversation_id)) messages = placeOnPath(messages, frame.message);
      // The user message never got stored: take back the one shown while waiting.
      if (pendingHere) messages = withoutPending(messages);
      return { ...state, messages, toasts, turns: cid ? withoutTurn(state.turns, cid) : withoutRequested(state.turns) };
    }
    default:
      return state;
  }
}

/** An error that names no conversation answers a frame of this tab: the turns it asked for
 * and the server never announced end with it. */
function withoutRequested(turns: Turns): Turns {
  const entries = Object.entries(turns).filter(([, t]) => !(t.local && !t.requestId));
  return entries.length === Object.keys(turns).length ? turns : Object.fromEntries(entries);
}

let toastCounter = 0;
export function nextToastId(): number {
  toastCounter += 1;
  return toastCounter;
}

export function chatReducer(state: ChatState, action: ChatAction): ChatState {
  switch (action.type) {
    case 'conversations/loaded': {
      const alive = action.conversations.filter((c) => !state.deleted.includes(c.id));
      return { ...state, conversations: sortNewestFirst(alive) };
    }
    case 'conversation/select':
      if (action.id === state.currentId) return action.focusId ? { ...state, focusId: action.focusId } : state;
      return {
        ...state,
        focusId: action.focusId ?? null,
        currentId: action.id,
        current: state.conversations.find((c) => c.id === action.id) ?? null,
        messages: [],
        loading: action.id !== null,
      };
    case 'conversation/loaded': {
      const { conversation } = action;
      if (conversation.id !== state.currentId) return state;
      return {
        ...state,
        current: withoutMessages(conversation),
        messages: overlayTurn(conversation.messages, state.turns[conversation.id]),
        loading: false,
      };
    }
    case 'conversation/upsert': {
      if (state.deleted.includes(action.conversation.id)) return state;
      const conversations = upsertConversation(state.conversations, action.conversation);
      const current = action.conversation.id === state.currentId ? withoutMessages(action.conversation) : state.current;
      return { ...state, conversations, current };
    }
    case 'conversation/remove': {
      const conversations = state.conversations.filter((c) => c.id !== action.id);
      // Deleting a conversation stops its answer.
      const turns = withoutTurn(state.turns, action.id);
      const deleted = state.deleted.includes(action.id) ? state.deleted : [...state.deleted, action.id].slice(-DELETED_KEPT);
      if (state.currentId !== action.id) return { ...state, conversations, turns, deleted };
      return { ...state, conversations, turns, deleted, currentId: null, current: null, messages: [], loading: false };
    }
    case 'turn/send': {
      const cid = action.conversationId;
      const parentId = state.messages[state.messages.length - 1]?.id ?? null;
      const messages = isSame(state.currentId, cid)
        ? [...state.messages, localUserMessage(cid, action.content, action.attachments, parentId)]
        : state.messages;
      return { ...state, messages, turns: withTurn(state.turns, cid, requestedTurn(state.turns[cid])) };
    }
    case 'turn/edit': {
      // The edited question shows in place of the old one (and what followed it) until the
      // server stores it; a refusal takes it back and the conversation is fetched again.
      const cid = action.conversationId;
      let messages = state.messages;
      if (isSame(state.currentId, cid)) {
        const { kept, parentId } = pathBefore(state.messages, action.messageId);
        messages = [...kept, localUserMessage(cid, action.content, action.attachments, parentId)];
      }
      return { ...state, messages, turns: withTurn(state.turns, cid, requestedTurn(state.turns[cid])) };
    }
    // The answer shown stays until the new one starts (a `busy` or a refusal keeps it).
    case 'turn/regenerate':
    case 'turn/continue': {
      const cid = action.conversationId;
      return { ...state, turns: withTurn(state.turns, cid, requestedTurn(state.turns[cid])) };
    }
    case 'turn/stop': {
      const turn = state.turns[action.conversationId];
      return turn ? { ...state, turns: withTurn(state.turns, action.conversationId, { ...turn, stopping: true }) } : state;
    }
    case 'frame':
      return applyFrame(state, action.frame);
    case 'socket/status':
      // A dropped socket stops nothing (the server keeps generating): the turns stay until
      // the next `ready`, which has them announced again.
      return action.status === state.socketStatus ? state : { ...state, socketStatus: action.status };
    case 'toast/add':
      return { ...state, toasts: [...state.toasts, action.toast].slice(-4) };
    case 'toast/dismiss':
      return { ...state, toasts: state.toasts.filter((t) => t.id !== action.id) };
    default:
      return state;
  }
}

function isSame(a: string | null, b: string): boolean {
  return a !== null && a === b;
}
