/** The one owner of chat state and of the socket: components read it and call its actions. */
import { createContext, useCallback, useContext, useEffect, useMemo, useReducer, useRef, useState, type ReactNode } from 'react';
import * as rest from '../api/rest';
import { ChatSocket, CLOSE_SESSION_ENDED, defaultSocketUrl, type SocketStatus } from '../api/socket';
import type {
  Attachment,
  Conversation,
  ConversationSettings,
  ConversationWithMessages,
  ServerFrame,
} from '../api/types';
import { parseRoute } from './route';
import { chatReducer, initialChatState, nextToastId, type ChatState, type Turn } from './chatReducer';

export interface ChatActions {
  /** Open a conversation; `focusId`: a message to bring into view (on its branch). */
  select: (id: string | null, focusId?: string) => void;
  newChat: () => Promise<void>;
  setSearch: (q: string) => void;
  send: (content: string, attachments: Attachment[]) => Promise<boolean>;
  /** Stop the open conversation's answer. */
  stop: () => void;
  regenerate: () => void;
  /** Ask an earlier question of the open conversation again, with new text: a new branch. */
  edit: (messageId: string, content: string, attachments: Attachment[]) => boolean;
  /** Show another branch of the open conversation (a sibling's id). */
  switchBranch: (messageId: string) => Promise<void>;
  /** Import a ChatGPT or chatstack export; opens the first conversation it made. */
  importFile: (file: File) => Promise<boolean>;
  /** Delete a message of the open conversation and everything below it. */
  deleteBranch: (messageId: string) => Promise<void>;
  /** Go on with the open conversation's last answer where it ended. */
  continueAnswer: () => void;
  rename: (id: string, title: string) => Promise<boolean>;
  remove: (id: string) => Promise<boolean>;
  saveSettings: (id: string, settings: Partial<ConversationSettings>) => Promise<boolean>;
  /** The model the next new chat is made with ('' the default), chosen before it exists. */
  setNewChatModel: (model: string) => void;
  notify: (text: string, kind?: 'error' | 'info') => void;
  dismissToast: (id: number) => void;
  /** Open the socket again after the server ended it (too many tabs). */
  reconnect: () => void;
}

export interface ChatValue extends ChatActions {
  state: ChatState;
  current: Conversation | null;
  /** The open conversation's answer in progress (it blocks the composer), if any. */
  currentTurn: Turn | null;
  search: string;
  newChatModel: string;
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
  // A page loaded on `#/c/<id>` opens that conversation from the first render.
  const [state, dispatch] = useReducer(chatReducer, initialChatState, (s) => {
    const id = parseRoute(window.location.hash).conversationId;
    return id ? { ...s, currentId: id, loading: true } : s;
  });
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
    async (id: string, switchFirst?: (c: ConversationWithMessages) => boolean) => {
      try {
        let conversation = await rest.getConversation(id);
        const focusId = stateRef.current.focusId;
        if (focusId && switchFirst?.(conversation)) conversation = await rest.selectBranch(id, focusId);
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

  // Conversations asked with `resume` because their last message was still `streaming`
  // when loaded: an `idle` answer means it ended meanwhile, so fetch it once more.
  const refetchOnIdle = useRef(new Set<string>());
  // Conversations with an edit on the way: an `error` before its answer starts means fetch.
  const refetchOnError = useRef(new Set<string>());

  // The socket lives as long as the signed-in app.
  useEffect(() => {
    let wasDropped = false;
    const socket = makeSocket({
      onFrame: (frame) => {
        dispatch({ type: 'frame', frame });
        if (frame.type === 'ready' && wasDropped) {
          // Back after a drop: what ended meanwhile is only in the stored copies.
          wasDropped = false;
          void loadList();
          const id = stateRef.current.currentId;
          if (id) void loadConversation(id);
        }
        // A refused edit took its branch out of view: show the conversation as stored.
        if (frame.type === 'error' && frame.conversation_id && refetchOnError.current.delete(frame.conversation_id)) {
          if (frame.conversation_id === stateRef.current.currentId && !frame.message) {
            void loadConversation(frame.conversation_id);
          }
        }
        if (frame.type === 'start' || frame.type === 'done') refetchOnError.current.delete(frame.conversation_id);
        if (frame.type === 'idle' && refetchOnIdle.current.delete(frame.conversation_id)) {
          if (frame.conversation_id === stateRef.current.currentId) void loadConversation(frame.conversation_id);
        }
      },
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

  // The address (state/route.ts) opened a conversation: load it.
  const openedAt = useRef(state.currentId);
  useEffect(() => {
    if (openedAt.current) void loadConversation(openedAt.current);
  }, [loadConversation]);

  // A missed delta: the `resume` answer carries the whole text so far.
  const gapResumed = useRef(new Set<string>());
  useEffect(() => {
    const asked = gapResumed.current;
    if (state.socketStatus !== 'open') {
      asked.clear();
      return;
    }
    for (const id of [...asked]) if (!state.turns[id]?.gap) asked.delete(id);
    for (const [id, turn] of Object.entries(state.turns)) {
      if (turn.gap && !asked.has(id) && socketRef.current?.send({ type: 'resume', conversation_id: id })) asked.add(id);
    }
  }, [state.turns, state.socketStatus]);

  // The open conversation's answer is stored as `streaming` but no turn is known for it (it
  // was loaded before the socket said so, or it ended unseen): ask once per message. The
  // short wait lets the `resume` frames that follow `ready` arrive first.
  const staleResumed = useRef(new Set<string>());
  useEffect(() => {
    const unresumed = (s: ChatState) => {
      const last = s.messages[s.messages.length - 1];
      if (!s.currentId || s.loading || s.socketStatus !== 'open' || s.turns[s.currentId]) return null;
      if (last?.role !== 'assistant' || last.status !== 'streaming' || staleResumed.current.has(last.id)) return null;
      return { conversationId: s.currentId, messageId: last.id };
    };
    const candidate = unresumed(stateRef.current);
    if (!candidate) return;
    const timer = setTimeout(() => {
      const now = unresumed(stateRef.current);
      if (!now || now.messageId !== candidate.messageId) return;
      staleResumed.current.add(now.messageId);
      if (socketRef.current?.send({ type: 'resume', conversation_id: now.conversationId })) {
        refetchOnIdle.current.add(now.conversationId);
      }
    }, 300);
    return () => clearTimeout(timer);
  }, [state.currentId, state.loading, state.messages, state.turns, state.socketStatus]);

  const select = useCallback(
    (id: string | null, focusId?: string) => {
      dispatch({ type: 'conversation/select', id, focusId });
      if (!id) return;
      // A search hit on another branch: that branch is shown (and remembered) to show it.
      const onOtherBranch = (c: ConversationWithMessages) =>
        !!focusId && !c.messages.some((m) => m.id === focusId) && !stateRef.current.turns[id];
      void loadConversation(id, onOtherBranch);
    },
    [loadConversation],
  );

  // One creation at a time: a message sent while "New chat" is still being created must
  // land in that conversation, not in a second one.
  const creating = useRef<Promise<string | null> | null>(null);
  const [newChatModel, setNewChatModel] = useState('');
  const newChatModelRef = useRef(newChatModel);
  newChatModelRef.current = newChatModel;

  const createConversation = useCallback((): Promise<string | null> => {
    if (creating.current) return creating.current;
    const pending = (async () => {
      try {
        const model = newChatModelRef.current;
        const conversation = await rest.createConversation(model ? { model } : {});
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
      const busyHere = (id: string | null) => !!id && !!stateRef.current.turns[id];
      if (busyHere(stateRef.current.currentId)) {
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
      if (busyHere(id)) {
        notify('Wait for the current answer to finish, or stop it.');
        return false;
      }
      const ok = socket.send({
        type: 'send',
        conversation_id: id,
        content,
        ...(attachments.length ? { file_ids: attachments.map((a) => a.id) } : {}),
      });
      if (!ok) {
        notify('The connection dropped before the message was sent. Try again.');
        return false;
      }
      dispatch({ type: 'turn/send', conversationId: id, content, attachments });
      return true;
    },
    [createConversation, notify],
  );

  const stop = useCallback(() => {
    const id = stateRef.current.currentId;
    if (!id || !stateRef.current.turns[id]) return;
    if (!socketRef.current?.send({ type: 'stop', conversation_id: id })) {
      notify('Not connected to the server. Try again in a moment.');
      return;
    }
    dispatch({ type: 'turn/stop', conversationId: id });
  }, [notify]);

  /** A regenerate or continue of the open conversation, unless it is generating already. */
  const startTurn = useCallback(
    (type: 'regenerate' | 'continue') => {
      const id = stateRef.current.currentId;
      if (!id || stateRef.current.turns[id]) return;
      if (!socketRef.current?.send({ type, conversation_id: id })) {
        notify('Not connected to the server. Try again in a moment.');
        return;
      }
      dispatch({ type: type === 'regenerate' ? 'turn/regenerate' : 'turn/continue', conversationId: id });
    },
    [notify],
  );
  const regenerate = useCallback(() => startTurn('regenerate'), [startTurn]);

  const edit = useCallback(
    (messageId: string, content: string, attachments: Attachment[]) => {
      const id = stateRef.current.currentId;
      if (!id) return false;
      if (stateRef.current.turns[id]) {
        notify('Wait for the current answer to finish, or stop it.');
        return false;
      }
      const frame = {
        type: 'edit' as const,
        conversation_id: id,
        message_id: messageId,
        content,
        ...(attachments.length ? { file_ids: attachments.map((a) => a.id) } : {}),
      };
      if (!socketRef.current?.send(frame)) {
        notify('Not connected to the server. Try again in a moment.');
        return false;
      }
      refetchOnError.current.add(id);
      dispatch({ type: 'turn/edit', conversationId: id, messageId, content, attachments });
      return true;
    },
    [notify],
  );

  /** A branch change through REST: the server answers with the path it now shows. */
  const changeBranch = useCallback(
    async (call: (id: string) => Promise<ConversationWithMessages>) => {
      const id = stateRef.current.currentId;
      if (!id) return;
      if (stateRef.current.turns[id]) {
        notify('Wait for the current answer to finish, or stop it.');
        return;
      }
      try {
        dispatch({ type: 'conversation/loaded', conversation: await call(id) });
      } catch (e) {
        fail(e);
      }
    },
    [fail, notify],
  );
  const switchBranch = useCallback(
    (messageId: string) => changeBranch((id) => rest.selectBranch(id, messageId)),
    [changeBranch],
  );
  const deleteBranch = useCallback(
    (messageId: string) => changeBranch((id) => rest.deleteBranch(id, messageId)),
    [changeBranch],
  );

  const importFile = useCallback(
    async (file: File) => {
      try {
        const made = await rest.importConversations(file);
        for (const conversation of made) dispatch({ type: 'conversation/upsert', conversation });
        const n = made.length;
        notify(`Imported ${n} conversation${n === 1 ? '' : 's'} from ${file.name}.`, 'info');
        if (made[0]) select(made[0].id);
        return true;
      } catch (e) {
        fail(e);
        return false;
      }
    },
    [fail, notify, select],
  );
  const continueAnswer = useCallback(() => startTurn('continue'), [startTurn]);

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
  const currentTurn = (state.currentId && state.turns[state.currentId]) || null;

  const value = useMemo<ChatValue>(
    () => ({
      state,
      current,
      currentTurn,
      search,
      newChatModel,
      select,
      newChat,
      setSearch,
      send,
      stop,
      regenerate,
      edit,
      switchBranch,
      deleteBranch,
      importFile,
      continueAnswer,
      rename,
      remove,
      saveSettings,
      setNewChatModel,
      notify,
      dismissToast,
      reconnect,
      endedReason,
    }),
    [
      state,
      current,
      currentTurn,
      search,
      newChatModel,
      select,
      newChat,
      setSearch,
      send,
      stop,
      regenerate,
      edit,
      switchBranch,
      deleteBranch,
      importFile,
      continueAnswer,
      rename,
      remove,
      saveSettings,
      setNewChatModel,
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
