import { useEffect, useState } from 'react';
import type { Attachment, Message, Source } from '../api/types';
import { ConfirmDialog } from './ConfirmDialog';
import { CopyButton } from './CopyButton';
import { ContinueIcon, FileIcon, PencilIcon, RefreshIcon, TrashIcon } from './icons';
import { Markdown } from './Markdown';
import { closeOpenMarkup } from './streamingMarkdown';

interface Props {
  message: Message;
  /** Show "Regenerate" under this answer (the last one, with nothing streaming). */
  canRegenerate: boolean;
  onRegenerate: () => void;
  /** Show "Continue" under this answer (the last one, with nothing streaming, and `canContinue`). */
  canContinue?: boolean;
  onContinue?: () => void;
  /** Branches may change (nothing generates in the conversation). */
  canBranch?: boolean;
  /** Show the sibling with this id (`‹ 2/3 ›`). */
  onSwitchBranch?: (messageId: string) => void;
  /** Delete this message and what follows it (asks first). */
  onDeleteBranch?: (messageId: string) => void;
  /** Open the editor now (↑ in the empty composer); `onEditOpened` says it did. */
  editNow?: boolean;
  onEditOpened?: () => void;
  /** The message a search opened the conversation at: marked. */
  focused?: boolean;
  /** Ask this question again with new text (a new branch); false when it was not sent. */
  onEdit?: (messageId: string, content: string, attachments: Attachment[]) => boolean;
}

/** `‹ 2/3 ›` between a message's versions, and a delete for the one shown. */
function BranchSwitcher({
  message,
  disabled,
  onSwitch,
  onDelete,
}: {
  message: Message;
  disabled: boolean;
  onSwitch: (id: string) => void;
  onDelete?: (id: string) => void;
}) {
  const [confirming, setConfirming] = useState(false);
  const ids = message.sibling_ids ?? [message.id];
  const at = ids.indexOf(message.id);
  if (ids.length < 2 || at < 0) return null;
  const what = message.role === 'user' ? 'This version of your message' : 'This answer';
  return (
    <span className="branch-switcher" data-testid="branch-switcher">
      <button
        type="button"
        className="ghost-btn small icon-only"
        data-testid="branch-prev"
        aria-label="Previous version"
        title="Previous version"
        disabled={disabled || at === 0}
        onClick={() => onSwitch(ids[at - 1])}
      >
        ‹
      </button>
      <span className="branch-position" data-testid="branch-position" aria-label={`Version ${at + 1} of ${ids.length}`}>
        {at + 1}/{ids.length}
      </span>
      <button
        type="button"
        className="ghost-btn small icon-only"
        data-testid="branch-next"
        aria-label="Next version"
        title="Next version"
        disabled={disabled || at === ids.length - 1}
        onClick={() => onSwitch(ids[at + 1])}
      >
        ›
      </button>
      {onDelete ? (
        <button
          type="button"
          className="ghost-btn small icon-only"
          data-testid="branch-delete"
          aria-label="Delete this version"
          title="Delete this version"
          disabled={disabled}
          onClick={() => setConfirming(true)}
        >
          <TrashIcon />
        </button>
      ) : null}
      {confirming && onDelete ? (
        <ConfirmDialog
          title="Delete this version?"
          body={`${what} and everything that follows it will be deleted. The other versions stay. This can't be undone.`}
          confirmLabel="Delete"
          onCancel={() => setConfirming(false)}
          onConfirm={() => {
            setConfirming(false);
            onDelete(message.id);
          }}
        />
      ) : null}
    </span>
  );
}

/** A question edited in place: Enter saves it as a new branch, Esc cancels. */
function EditBox({ initial, onSave, onCancel }: { initial: string; onSave: (text: string) => void; onCancel: () => void }) {
  const [text, setText] = useState(initial);
  const save = () => {
    if (text.trim()) onSave(text);
  };
  return (
    <div className="edit-box">
      <textarea
        className="edit-input"
        data-testid="edit-input"
        aria-label="Edit your message"
        value={text}
        autoFocus
        rows={Math.min(10, Math.max(2, text.split('\n').length))}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
            e.preventDefault();
            save();
          } else if (e.key === 'Escape') {
            e.preventDefault();
            onCancel();
          }
        }}
      />
      <div className="edit-actions">
        <button type="button" className="ghost-btn small" data-testid="edit-cancel" onClick={onCancel}>
          Cancel
        </button>
        <button type="button" className="btn primary small" data-testid="edit-save" disabled={!text.trim()} onClick={save}>
          Save &amp; submit
        </button>
      </div>
    </div>
  );
}

/** An answer the server can go on with (docs/protocol.md, "Continue"): it has text and
 * ended by its length limit, was stopped, or failed. */
export function canContinue(message: Message): boolean {
  if (message.role !== 'assistant' || !message.content) return false;
  return message.finish_reason === 'length' || message.status === 'stopped' || message.status === 'failed';
}

/** A message's details line: when, and for an answer which model, how many tokens and how fast. */
export function messageDetails(message: Message): string {
  const at = new Date(message.created_at * 1000);
  const parts = [at.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })];
  if (message.role === 'assistant' && message.model) parts.push(message.model);
  const tokens = message.usage?.completion_tokens;
  if (message.role === 'assistant' && tokens) {
    parts.push(`${tokens} token${tokens === 1 ? '' : 's'}`);
    const seconds = message.finished_at ? message.finished_at - message.created_at : 0;
    if (seconds > 0.05) parts.push(`${seconds.toFixed(1)} s`, `${(tokens / seconds).toFixed(1)} tokens/s`);
  }
  return parts.join(' · ');
}

/** The files an answer used, one entry per file name with how much of it was used. */
export function groupSources(sources: Source[]): { name: string; whole: boolean; parts: number }[] {
  const byName = new Map<string, { name: string; whole: boolean; parts: number }>();
  for (const s of sources) {
    const g = byName.get(s.file_name) ?? { name: s.file_name, whole: false, parts: 0 };
    if (s.ordinal === null) g.whole = true;
    else g.parts += 1;
    byName.set(s.file_name, g);
  }
  return [...byName.values()];
}

export function MessageItem({
  message,
  canRegenerate,
  onRegenerate,
  canContinue: showContinue,
  onContinue,
  canBranch = false,
  onSwitchBranch,
  onDeleteBranch,
  onEdit,
  focused = false,
  editNow = false,
  onEditOpened,
}: Props) {
  const [editing, setEditing] = useState(false);
  useEffect(() => {
    if (!editNow) return;
    if (onEdit && canBranch) setEditing(true);
    onEditOpened?.();
  }, [editNow, onEdit, canBranch, onEditOpened]);
  const { role, status } = message;
  const isUser = role === 'user';
  const streaming = status === 'streaming';
  const sources = groupSources(message.sources ?? []);
  return (
    <article
      className={`message message-${role}${focused ? ' focused' : ''}`}
      data-focused={focused || undefined}
      data-testid="message"
      data-role={role}
      data-status={status}
      data-id={message.id}
      data-chars={message.content.length}
      aria-busy={streaming || undefined}
    >
      <div className="message-inner">
        {isUser ? null : (
          <div className="avatar" aria-hidden="true">
            ✦
          </div>
        )}
        <div className="message-body">
          {isUser && message.attachments?.length ? (
            <ul className="chips" data-testid="message-attachments" aria-label="Attached files">
              {message.attachments.map((a) => (
                <li key={a.id} className="chip">
                  <FileIcon />
                  <span className="chip-name">{a.name}</span>
                </li>
              ))}
            </ul>
          ) : null}
          {editing && onEdit ? (
            <EditBox
              initial={message.content}
              onCancel={() => setEditing(false)}
              onSave={(text) => {
                if (onEdit(message.id, text, message.attachments ?? [])) setEditing(false);
              }}
            />
          ) : null}
          <div className="message-content" data-testid="message-content" hidden={editing}>
            {isUser ? (
              <p className="plain">{message.content}</p>
            ) : message.content ? (
              <Markdown text={streaming ? closeOpenMarkup(message.content) : message.content} streaming={streaming} />
            ) : streaming ? (
              <span className="typing" aria-label="Generating">
                <span />
                <span />
                <span />
              </span>
            ) : null}
            {streaming && message.content ? <span className="cursor" aria-hidden="true" /> : null}
          </div>
          {!isUser && status === 'complete' && message.finish_reason === 'length' ? (
            <div className="badge badge-stopped" data-testid="message-length" role="status">
              Stopped at the length limit
            </div>
          ) : null}
          {status === 'stopped' || status === 'failed' ? (
            <div className={`badge badge-${status}`} data-testid="message-status" role="status">
              {status === 'stopped' ? 'Stopped' : `Failed: ${message.error || 'the answer could not be generated'}`}
            </div>
          ) : null}
          {!isUser && sources.length ? (
            <div className="sources" data-testid="message-sources">
              <span className="sources-label">Sources</span>
              <ul className="chips">
                {sources.map((s) => (
                  <li key={s.name} className="chip chip-source" title={s.name}>
                    <FileIcon />
                    <span className="chip-name">{s.name}</span>
                    <span className="chip-meta">
                      {s.whole ? 'whole file' : `${s.parts} passage${s.parts === 1 ? '' : 's'}`}
                    </span>
                  </li>
                ))}
              </ul>
            </div>
          ) : null}
          {isUser && !editing && message.id !== 'pending-user-message' ? (
            <div className="message-actions">
              <CopyButton className="ghost-btn small" label="Copy" getText={() => message.content} />
              {onEdit ? (
                <button
                  type="button"
                  className="ghost-btn small"
                  data-testid="edit-message"
                  disabled={!canBranch}
                  onClick={() => setEditing(true)}
                >
                  <PencilIcon />
                  <span>Edit</span>
                </button>
              ) : null}
              {onSwitchBranch ? (
                <BranchSwitcher message={message} disabled={!canBranch} onSwitch={onSwitchBranch} onDelete={onDeleteBranch} />
              ) : null}
            </div>
          ) : null}
          {!streaming && message.id !== 'pending-user-message' ? (
            <div className="message-details" data-testid="message-details">
              {messageDetails(message)}
            </div>
          ) : null}
          {!isUser && !streaming ? (
            <div className="message-actions">
              {onSwitchBranch ? (
                <BranchSwitcher message={message} disabled={!canBranch} onSwitch={onSwitchBranch} onDelete={onDeleteBranch} />
              ) : null}
              {message.content ? (
                <CopyButton className="ghost-btn small" label="Copy" getText={() => message.content} />
              ) : null}
              {canRegenerate ? (
                <button type="button" className="ghost-btn small" data-testid="regenerate" onClick={onRegenerate}>
                  <RefreshIcon />
                  <span>Regenerate</span>
                </button>
              ) : null}
              {showContinue && onContinue ? (
                <button
                  type="button"
                  className="ghost-btn small"
                  data-testid="continue"
                  aria-label="Continue"
                  title="Continue this answer where it ended"
                  onClick={onContinue}
                >
                  <ContinueIcon />
                  <span>Continue</span>
                </button>
              ) : null}
            </div>
          ) : null}
        </div>
      </div>
    </article>
  );
}
