import { useEffect, useRef } from 'react';
import type { Attachment, Message } from '../api/types';
import { canContinue, MessageItem } from './MessageItem';
import { RefreshIcon } from './icons';

interface Props {
  messages: Message[];
  loading: boolean;
  /** A message to bring into view and mark for a moment (a search hit). */
  focusId?: string | null;
  busy: boolean;
  onRegenerate: () => void;
  onContinue: () => void;
  onSwitchBranch?: (messageId: string) => void;
  onDeleteBranch?: (messageId: string) => void;
  onEdit?: (messageId: string, content: string, attachments: Attachment[]) => boolean;
  /** A message whose editor should open now (↑ in the empty composer). */
  editRequest?: string | null;
  onEditOpened?: () => void;
}

/** The selected conversation's messages; keeps the newest in view while the reader is at the bottom. */
export function MessageList({
  messages,
  loading,
  focusId = null,
  busy,
  onRegenerate,
  onContinue,
  onSwitchBranch,
  onDeleteBranch,
  onEdit,
  editRequest = null,
  onEditOpened,
}: Props) {
  const ref = useRef<HTMLDivElement>(null);
  const stick = useRef(true);

  const focused = focusId && messages.some((m) => m.id === focusId) ? focusId : null;
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const target = focused ? el.querySelector<HTMLElement>(`[data-id="${CSS.escape(focused)}"]`) : null;
    if (target) {
      stick.current = false;
      target.scrollIntoView?.({ block: 'center' });
    } else if (stick.current) el.scrollTop = el.scrollHeight;
  }, [messages, focused]);

  const last = messages[messages.length - 1];
  const unanswered = !busy && last?.role === 'user' && last.id !== 'pending-user-message';
  return (
    <div
      className="message-list"
      data-testid="message-list"
      ref={ref}
      role="log"
      aria-live="polite"
      aria-busy={busy}
      onScroll={(e) => {
        const el = e.currentTarget;
        stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
      }}
    >
      {loading ? <div className="list-note">Loading…</div> : null}
      {messages.map((m, i) => {
        const lastAnswer = !busy && i === messages.length - 1 && m.role === 'assistant';
        return (
          <MessageItem
            key={m.id}
            message={m}
            focused={m.id === focused}
            canRegenerate={lastAnswer}
            onRegenerate={onRegenerate}
            canContinue={lastAnswer && canContinue(m)}
            onContinue={onContinue}
            canBranch={!busy}
            onSwitchBranch={onSwitchBranch}
            onDeleteBranch={onDeleteBranch}
            onEdit={onEdit}
            editNow={editRequest === m.id}
            onEditOpened={onEditOpened}
          />
        );
      })}
      {unanswered ? (
        <div className="message-inner retry-row">
          <span>This message has no answer yet.</span>
          <button type="button" className="ghost-btn small" data-testid="regenerate" onClick={onRegenerate}>
            <RefreshIcon />
            <span>Answer it</span>
          </button>
        </div>
      ) : null}
    </div>
  );
}
