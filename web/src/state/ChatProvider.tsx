/** The one owner of chat state and of the socket: components read it and call its actions. */
import { createContext, useCallback, useContext, useEffect, useMemo, useReducer, useRef, useState, type ReactNode } from 'react';
import * as rest from '../api/rest';
import { ChatSocket, CLOSE_SESSION_ENDED, defaultSocketUrl, type SocketStatus } from '../api/socket';
import type { Attachment, Conversation, ConversationSettings, ServerFrame } from '../api/types';
import { chatReducer, initialChatState, nextToastId, type ChatState } from './chatReducer';

export interface ChatActions {
  select: (id: string | null) => void;
  newChat: () => Promise<void>;
  setSearch: (q: string) => void;
  send: (content: string, attachments: Attachment[]) => Promise<boolean>;
  stop: () => void;
  regenerate: () => void;
  rename: (id: string, title: string) => Promise<boolean>;
  remove: (id: string) => Promise<boolean>;
  saveSettings: (id: string, settings: Partial<ConversationSettings>) => Promise<boolean>;
  notify: (text: string, kind?: 'error' | 'info') => void;
  dismissToast: (id: number) => void;
  /** Open the socket again after the server ended it (too many tabs). */
  reconnect: () => void;
}

export interface ChatValue extends ChatActions {
  state: ChatState;
  current: Conversation | null;
  search: string;
  /** Why the server ended this tab's socket, while it stays ended. */
  endedReason: string | null;
}

const ChatContext = createContext<ChatValue | null>(null);

interface Props {
  children: ReactNode;
  onUnauthorized: () => void;
}

function makeSocket(handlers: {
  onFrame: (f: ServerFrame) => void;
  onStatus: (s: SocketStatus) => void;
  onEnded: (code: number, reason: string) => void;
}) {
  return new ChatSocket({ url: defaultSocketUrl(), ...handlers });
}

export function ChatProvider({ children, onUnauthorized }: Props) {
  const [state, dispatch] = useReducer(chatReducer, initialChatState);
  const socketRef = useRef<ChatSocket | null>(null);
  const stateRef = useRef(state);
  stateRef.current = state;
  const searchRef = useRef('');
  const searchTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const [search, setSearchValue] = useReducer((_: string, q: string) => q, '');
  const [endedReason, setEndedReason] = useState<string | null>(null);
  const unauthorizedRef = useRef(onUnauthorized);
  unauthorizedRef.current = onUnauthorized;

  const notify = useCallback((text: string, kind: 'error' | 'info' = 'error') => {
    dispatch({ type: 'toast/add', toast: { id: nextToastId(), text, kind } });
  }, []);

  /** Report a failed REST call: a lost session signs out, anything else is a toast. */
  const fail = useCallback(
    (e: unknown) => {
      if (e instanceof rest.ApiError && e.status === 401) unauthorizedRef.current();
      else notify(e instanceof Error ? e.message : 'Something went wrong.');
    },
    [notify],
  );

  const loadList = useCallback(async () => {
    try {
      const conversations = await rest.listConversations(searchRef.current);
      dispatch({ type: 'conversations/loaded', conversations });
    } catch (e) {
      fail(e);
    }
  }, [fail]);

  const loadConversation = useCallback(
    async (id: string) => {
      try {
        const conversation = await rest.getConversation(id);
        dispatch({ type: 'conversation/loaded', conversation });
      } catch (e) {
        if (e instanceof rest.ApiError && e.status === 404) {
          dispatch({ type: 'conversation/remove', id });
          notify('That conversation no longer exists.');
        } else fail(e);
      }
    },
    [fail, notify],
  );

  // The socket lives as long as the signed-in app.
  useEffect(() => {
    let wasDropped = false;
    const socket = makeSocket({
      onFrame: (frame) => dispatch({ type: 'frame', frame }),
      onStatus: (status) => {
        dispatch({ type: 'socket/status', status });
        if (status === 'reconnecting') {
          wasDropped = true;
          // A refused handshake looks like a drop: find out whether the session ended.
          rest.getMe().then(
            (me) => {
              if (!me) unauthorizedRef.current();
            },
            () => {},
          );
        }
        if (status === 'open') setEndedReason(null);
        if (status === 'open' && wasDropped) {
          wasDropped = false;
          void loadList();
          const id = stateRef.current.currentId;
          if (id) void loadConversation(id);
        }
      },
      onEnded: (code, reason) => {
        wasDropped = true;
        if (code === CLOSE_SESSION_ENDED) {
          unauthorizedRef.current(); // signed out here or elsewhere: back to the sign-in page
          return;
        }
        setEndedReason(reason || 'The server closed this tab\'s connection.');
      },
    });
    socketRef.current = socket;
    socket.connect();
    const online = () => socket.reconnectNow();
    window.addEventListener('online', online);
    return () => {
      window.removeEventListener('online', online);
      socket.close();
      socketRef.current = null;
    };
  }, [loadList, loadConversation]);

  useEffect(() => {
    void loadList();
  }, [loadList]);

  // The address remembers the open conversation, so a reload (or a bookmark) comes back to it.
  useEffect(() => {
    const id = /^#\/c\/(conv_[0-9a-f]+)$/.exec(window.location.hash)?.[1];
    if (id) {
      dispatch({ type: 'conversation/select', id });
      void loadConversation(id);
    }
  }, [loadConversation]);
  useEffect(() => {
    const hash = state.currentId ? `#/c/${state.currentId}` : '';
    if (window.location.hash !== hash) {
      window.history.replaceState(null, '', `${window.location.pathname}${window.location.search}${hash}`);
    }
  }, [state.currentId]);

  const select = useCallback(
    (id: string | null) => {
      dispatch({ type: 'conversation/select', id });
      if (id) void loadConversation(id);
    },
    [loadConversation],
  );

  // One creation at a time: a message sent while "New chat" is still being created must
  // land in that conversation, not in a second one.
  const creating = useRef<Promise<string | null> | null>(null);

  const createConversation = useCallback((): Promise<string | null> => {
    if (creating.current) return creating.current;
    const pending = (async () => {
      try {
        const conversation = await rest.createConversation();
        dispatch({ type: 'conversation/upsert', conversation });
        dispatch({ type: 'conversation/select', id: conversation.id });
        dispatch({ type: 'conversation/loaded', conversation });
        return conversation.id;
      } catch (e) {
        fail(e);
        return null;
      } finally {
        creating.current = null;
      }
    })();
    creating.current = pending;
    return pending;
  }, [fail]);

  const newChat = useCallback(async () => {
    const s = stateRef.current;
    // An empty conversation is already a new chat: don't pile up empty ones.
    if (!creating.current && s.currentId && !s.loading && s.messages.length === 0) return;
    await createConversation();
  }, [createConversation]);

  const setSearch = useCallback(
    (q: string) => {
      setSearchValue(q);
      searchRef.current = q.trim();
      if (searchTimer.current) clearTimeout(searchTimer.current);
      searchTimer.current = setTimeout(() => void loadList(), 200);
    },
    [loadList],
  );

  const send = useCallback(
    async (content: string, attachments: Attachment[]) => {
      const socket = socketRef.current;
      if (stateRef.current.turn) {
        notify('Wait for the current answer to finish, or stop it.');
        return false;
      }
      if (!socket || socket.status !== 'open') {
        notify('Not connected to the server yet. Try again in a moment.');
        return false;
      }
      const id = creating.current
        ? await creating.current
        : (stateRef.current.currentId ?? (await createConversation()));
      if (!id) return false;
      dispatch({ type: 'turn/send', conversationId: id, content, attachments });
      const ok = socket.send({
        type: 'send',
        conversation_id: id,
        content,
        ...(attachments.length ? { file_ids: attachments.map((a) => a.id) } : {}),
      });
      if (!ok) {
        dispatch({ type: 'socket/status', status: 'reconnecting' });
        notify('The connection dropped before the message was sent. Try again.');
      }
      return ok;
    },
    [createConversation, notify],
  );

  const stop = useCallback(() => {
    if (!stateRef.current.turn) return;
    socketRef.current?.send({ type: 'stop' });
    dispatch({ type: 'turn/stop' });
  }, []);

  const regenerate = useCallback(() => {
    const s = stateRef.current;
    if (!s.currentId || s.turn) return;
    if (!socketRef.current?.send({ type: 'regenerate', conversation_id: s.currentId })) {
      notify('Not connected to the server. Try again in a moment.');
      return;
    }
    dispatch({ type: 'turn/regenerate', conversationId: s.currentId });
  }, [notify]);

  const remove = useCallback(
    async (id: string) => {
      try {
        await rest.deleteConversation(id);
        dispatch({ type: 'conversation/remove', id });
        return true;
      } catch (e) {
        fail(e);
        return false;
      }
    },
    [fail],
  );

  // Title and settings go through one PATCH; the server answers with the conversation.
  const patch = useCallback(
    async (id: string, fields: rest.ConversationPatch) => {
      try {
        const conversation = await rest.patchConversation(id, fields);
        dispatch({ type: 'conversation/upsert', conversation });
        return true;
      } catch (e) {
        fail(e);
        return false;
      }
    },
    [fail],
  );
  const rename = useCallback((id: string, title: string) => patch(id, { title }), [patch]);
  const saveSettings = useCallback(
    (id: string, settings: Partial<ConversationSettings>) => patch(id, settings),
    [patch],
  );

  const dismissToast = useCallback((id: number) => dispatch({ type: 'toast/dismiss', id }), []);
  const reconnect = useCallback(() => socketRef.current?.connect(), []);

  const current = state.current;

  const value = useMemo<ChatValue>(
    () => ({
      state,
      current,
      search,
      select,
      newChat,
      setSearch,
      send,
      stop,
      regenerate,
      rename,
      remove,
      saveSettings,
      notify,
      dismissToast,
      reconnect,
      endedReason,
    }),
    [
      state,
      current,
      search,
      select,
      newChat,
      setSearch,
      send,
      stop,
      regenerate,
      rename,
      remove,
      saveSettings,
      notify,
      dismissToast,
      reconnect,
      endedReason,
    ],
  );
  return <ChatContext.Provider value={value}>{children}</ChatContext.Provider>;
}

export function useChat(): ChatValue {
  const v = useContext(ChatContext);
  if (!v) throw new Error('useChat needs <ChatProvider>');
  return v;
}
