/** The chat state and how every event changes it: a pure reducer, tested without a browser. */
import type { Attachment, Conversation, ConversationWithMessages, Message, ServerFrame } from '../api/types';
import type { SocketStatus } from '../api/socket';

export interface Toast {
  id: number;
  text: string;
  kind: 'error' | 'info';
}

/** The turn in flight on the socket: waiting for `start` (messageId null), then streaming. */
export interface Turn {
  conversationId: string;
  messageId: string | null;
  stopping: boolean;
}

export interface ChatState {
  conversations: Conversation[];
  currentId: string | null;
  /** The selected conversation's fields (kept even when a search hides it from the list). */
  current: Conversation | null;
  messages: Message[];
  loading: boolean;
  turn: Turn | null;
  socketStatus: SocketStatus;
  toasts: Toast[];
}

export const initialChatState: ChatState = {
  conversations: [],
  currentId: null,
  current: null,
  messages: [],
  loading: false,
  turn: null,
  socketStatus: 'connecting',
  toasts: [],
};

export const PENDING_ID = 'pending-user-message';

export type ChatAction =
  | { type: 'conversations/loaded'; conversations: Conversation[] }
  | { type: 'conversation/select'; id: string | null }
  | { type: 'conversation/loaded'; conversation: ConversationWithMessages }
  | { type: 'conversation/upsert'; conversation: Conversation }
  | { type: 'conversation/remove'; id: string }
  | { type: 'turn/send'; conversationId: string; content: string; attachments: Attachment[] }
  | { type: 'turn/regenerate'; conversationId: string }
  | { type: 'turn/stop' }
  | { type: 'frame'; frame: ServerFrame }
  | { type: 'socket/status'; status: SocketStatus }
  | { type: 'toast/add'; toast: Toast }
  | { type: 'toast/dismiss'; id: number };

function withoutMessages(conv: Conversation): Conversation {
  const stripped: Conversation = { ...conv };
  delete (stripped as Partial<ConversationWithMessages>).messages;
  return stripped;
}

function sortNewestFirst(list: Conversation[]): Conversation[] {
  return [...list].sort((a, b) => b.updated_at - a.updated_at);
}

function upsertConversation(list: Conversation[], conv: Conversation): Conversation[] {
  const rest = list.filter((c) => c.id !== conv.id);
  return sortNewestFirst([withoutMessages(conv), ...rest]);
}

function touchConversation(list: Conversation[], id: string, at: number): Conversation[] {
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

function localUserMessage(conversationId: string, content: string, attachments: Attachment[]): Message {
  return {
    id: PENDING_ID,
    conversation_id: conversationId,
    role: 'user',
    content,
    status: 'complete',
    attachments,
    sources: [],
    usage: null,
    finish_reason: null,
    error: null,
    created_at: Date.now() / 1000,
  };
}

function applyFrame(state: ChatState, frame: ServerFrame): ChatState {
  const isCurrent = (id: string | null | undefined) => !!id && id === state.currentId;
  switch (frame.type) {
    case 'user_message': {
      const conversations = frame.conversation
        ? upsertConversation(state.conversations, frame.conversation)
        : state.conversations;
      if (!isCurrent(frame.conversation_id)) return { ...state, conversations };
      const messages = putMessage(state.messages, frame.message, PENDING_ID);
      const current = frame.conversation ? withoutMessages(frame.conversation) : state.current;
      return { ...state, conversations, messages, current };
    }
    case 'start': {
      const turn: Turn = {
        conversationId: frame.conversation_id,
        messageId: frame.message.id,
        stopping: state.turn?.stopping ?? false,
      };
      const messages = isCurrent(frame.conversation_id) ? putMessage(state.messages, frame.message) : state.messages;
      return { ...state, turn, messages };
    }
    case 'delta': {
      if (!isCurrent(frame.conversation_id)) return state;
      const messages = state.messages.map((m) =>
        m.id === frame.message_id ? { ...m, content: m.content + frame.content } : m,
      );
      return { ...state, messages };
    }
    case 'done': {
      const message: Message = { ...frame.message, sources: frame.sources ?? frame.message.sources ?? [] };
      const kept = withoutDiscarded(state.messages, frame.discarded_message_id);
      const messages = isCurrent(frame.conversation_id) ? putMessage(kept, message) : kept;
      const turn = state.turn?.conversationId === frame.conversation_id ? null : state.turn;
      const conversations = touchConversation(state.conversations, frame.conversation_id, Date.now() / 1000);
      return { ...state, messages, turn, conversations };
    }
    case 'error': {
      // `busy` means another turn is still streaming: that turn goes on.
      const endsTurn = frame.code !== 'busy';
      let messages = withoutDiscarded(state.messages, frame.discarded_message_id);
      if (frame.message && isCurrent(frame.message.conversation_id)) messages = putMessage(messages, frame.message);
      // The user message never got stored: take back the one shown while waiting.
      if (endsTurn) messages = messages.filter((m) => m.id !== PENDING_ID);
      // A failed answer shows its error in its badge; anything else becomes a toast (an
      // answer sent back unchanged, after a regenerate that failed, included).
      const toasts =
        frame.message?.status === 'failed'
          ? state.toasts
        : [...state.toasts, { id: nextToastId(), text: frame.error || 'Something went wrong.', kind: 'error' as const }];
      return { ...state, messages, toasts, turn: endsTurn ? null : state.turn };
    }
    default:
      return state;
  }
}

let toastCounter = 0;
export function nextToastId(): number {
  toastCounter += 1;
  return toastCounter;
}

export function chatReducer(state: ChatState, action: ChatAction): ChatState {
  switch (action.type) {
    case 'conversations/loaded':
      return { ...state, conversations: sortNewestFirst(action.conversations) };
    case 'conversation/select':
      if (action.id === state.currentId) return state;
      return {
        ...state,
        currentId: action.id,
        current: state.conversations.find((c) => c.id === action.id) ?? null,
        messages: [],
        loading: action.id !== null,
      };
    case 'conversation/loaded': {
      if (action.conversation.id !== state.currentId) return state;
      return {
        ...state,
        current: withoutMessages(action.conversation),
        messages: action.conversation.messages,
        loading: false,
      };
    }
    case 'conversation/upsert': {
      const conversations = upsertConversation(state.conversations, action.conversation);
      const current = action.conversation.id === state.currentId ? withoutMessages(action.conversation) : state.current;
      return { ...state, conversations, current };
    }
    case 'conversation/remove': {
      const conversations = state.conversations.filter((c) => c.id !== action.id);
      if (state.currentId !== action.id) return { ...state, conversations };
      return { ...state, conversations, currentId: null, current: null, messages: [], loading: false };
    }
    case 'turn/send': {
      const messages = isSame(state.currentId, action.conversationId)
        ? [...state.messages, localUserMessage(action.conversationId, action.content, action.attachments)]
        : state.messages;
      return { ...state, messages, turn: { conversationId: action.conversationId, messageId: null, stopping: false } };
    }
    case 'turn/regenerate': {
      let messages = state.messages;
      const last = messages[messages.length - 1];
      if (isSame(state.currentId, action.conversationId) && last?.role === 'assistant') {
        messages = messages.slice(0, -1);
      }
      return { ...state, messages, turn: { conversationId: action.conversationId, messageId: null, stopping: false } };
    }
    case 'turn/stop':
      return state.turn ? { ...state, turn: { ...state.turn, stopping: true } } : state;
    case 'frame':
      return applyFrame(state, action.frame);
    case 'socket/status': {
      if (action.status === state.socketStatus) return state;
      // A dropped socket ends the turn: the server stores the answer as stopped.
      if (action.status !== 'open' && state.turn) {
        const { messageId } = state.turn;
        const messages = state.messages
          .filter((m) => m.id !== PENDING_ID)
          .map((m) => (m.id === messageId && m.status === 'streaming' ? { ...m, status: 'stopped' as const } : m));
        return { ...state, socketStatus: action.status, turn: null, messages };
      }
      return { ...state, socketStatus: action.status };
    }
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
