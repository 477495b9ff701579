import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { ACCEPT_ATTRIBUTE } from '../api/uploads';
import { loadDraft, saveDraft } from '../state/drafts';
import type { PendingUpload } from '../state/uploads';
import { CloseIcon, FileIcon, PaperclipIcon, SendIcon, StopIcon } from './icons';

interface Props {
  /** A turn is in flight: show Stop instead of Send. */
  generating: boolean;
  stopping?: boolean;
  uploads: PendingUpload[];
  /** Resolves true when the message went out (the text is then cleared). */
  onSend: (text: string) => boolean | Promise<boolean>;
  onStop: () => void;
  onAttach: (files: File[]) => void;
  onRemoveUpload: (key: number) => void;
  /** The open conversation: the composer holds its own draft for each (null: none yet). */
  autoFocusKey?: string | null;
  /** ↑ in the empty box: edit the last message sent; false when there is none to edit. */
  onEditLast?: () => boolean;
}

/** The message form: Enter sends, Shift+Enter is a new line. */
export function Composer({
  generating,
  stopping,
  uploads,
  onSend,
  onStop,
  onAttach,
  onRemoveUpload,
  autoFocusKey,
  onEditLast,
}: Props) {
  const draftKey = autoFocusKey ?? null;
  const [text, setTextState] = useState(() => loadDraft(draftKey));
  const [shownKey, setShownKey] = useState(draftKey);
  const latestKey = useRef(draftKey);
  latestKey.current = draftKey;
  const area = useRef<HTMLTextAreaElement>(null);
  const setText = (value: string) => {
    setTextState(value);
    saveDraft(draftKey, value);
  };
  // Another conversation: its own draft (the one left was saved as it was typed).
  if (shownKey !== draftKey) {
    setShownKey(draftKey);
    setTextState(loadDraft(draftKey));
  }
  const fileInput = useRef<HTMLInputElement>(null);
  const uploading = uploads.some((u) => u.state === 'uploading');
  const canSend = text.trim().length > 0 && !generating && !uploading;

  useEffect(() => {
    area.current?.focus();
  }, [autoFocusKey]);

  // Grow with the text up to a limit.
  useEffect(() => {
    const el = area.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 240)}px`;
  }, [text]);

  const submit = async () => {
    if (!canSend) return;
    const sentFrom = draftKey;
    const ok = await onSend(text.trim());
    if (ok) {
      saveDraft(sentFrom, '');
      // A first message creates its conversation: the composer now shows that one's.
      saveDraft(latestKey.current, '');
      setTextState('');
    }
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void submit();
    } else if (e.key === 'ArrowUp' && !text && !e.shiftKey && !e.altKey && !e.metaKey && !e.ctrlKey) {
      if (onEditLast?.()) e.preventDefault();
    }
  };

  return (
    <form
      className="composer"
      data-testid="composer"
      onSubmit={(e: FormEvent) => {
        e.preventDefault();
        void submit();
      }}
    >
      {uploads.length ? (
        <ul className="upload-list" aria-label="Files to send">
          {uploads.map((u) => (
            <li key={u.key} className={`upload-chip upload-${u.state}`} data-testid="upload-chip" data-state={u.state}>
              <FileIcon />
              <span className="chip-name" title={u.name}>
                {u.name}
              </span>
              {u.state === 'uploading' && u.progress < 1 ? (
                <progress
                  className="upload-progress"
                  max={1}
                  value={u.progress}
                  aria-label={`Uploading ${u.name}`}
                />
              ) : null}
              {u.state === 'uploading' && u.progress >= 1 ? (
                // Every byte is sent; the server is reading the text out (a long PDF takes a while).
                <span className="upload-processing muted small" data-testid="upload-processing" role="status">
                  Processing…
                </span>
              ) : null}
              {u.state === 'error' ? (
                <span className="upload-error" data-testid="upload-error" role="alert">
                  {u.error}
                </span>
              ) : null}
              <button
                type="button"
                className="chip-remove"
                aria-label={`Remove ${u.name}`}
                onClick={() => onRemoveUpload(u.key)}
              >
                <CloseIcon />
              </button>
            </li>
          ))}
        </ul>
      ) : null}
      <div className="composer-row">
        <button
          type="button"
          className="icon-btn"
          data-testid="attach"
          aria-label="Attach files"
          title="Attach files"
          onClick={() => fileInput.current?.click()}
        >
          <PaperclipIcon />
        </button>
        <input
          ref={fileInput}
          type="file"
          multiple
          hidden
          accept={ACCEPT_ATTRIBUTE}
          data-testid="file-input"
          aria-label="Choose files to attach"
          onChange={(e) => {
            const files = Array.from(e.currentTarget.files ?? []);
            if (files.length) onAttach(files);
            e.currentTarget.value = '';
          }}
        />
        <label htmlFor="composer-input" className="sr-only">
          Message
        </label>
        <textarea
          id="composer-input"
          ref={area}
          data-testid="composer-input"
          rows={1}
          placeholder="Message chatstack…"
          aria-describedby="composer-hint"
          value={text}
          onChange={(e) => setText(e.target.value)}
          onKeyDown={onKeyDown}
        />
        {generating ? (
          <button
            type="button"
            className="send-btn stop"
            data-testid="stop"
            aria-label="Stop generating"
            title="Stop generating"
            onClick={onStop}
            disabled={stopping}
          >
            <StopIcon />
          </button>
        ) : (
          <button
            type="submit"
            className="send-btn"
            data-testid="send"
            aria-label="Send message"
            title={uploading ? 'Wait for the upload to finish' : 'Send message'}
            disabled={!canSend}
          >
            <SendIcon />
          </button>
        )}
      </div>
    </form>
  );
}
