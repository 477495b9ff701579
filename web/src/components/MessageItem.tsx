import type { Message, Source } from '../api/types';
import { CopyButton } from './CopyButton';
import { ContinueIcon, FileIcon, RefreshIcon } from './icons';
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
}

/** An answer the server can go on with (docs/protocol.md, "Continue"): it has text and
 * ended by its length limit, was stopped, or failed. */
export function canContinue(message: Message): boolean {
  if (message.role !== 'assistant' || !message.content) return false;
  return message.finish_reason === 'length' || message.status === 'stopped' || message.status === 'failed';
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

export function MessageItem({ message, canRegenerate, onRegenerate, canContinue: showContinue, onContinue }: Props) {
  const { role, status } = message;
  const isUser = role === 'user';
  const streaming = status === 'streaming';
  const sources = groupSources(message.sources ?? []);
  return (
    <article
      className={`message message-${role}`}
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
          <div className="message-content" data-testid="message-content">
            {isUser ? (
              <p className="plain">{message.content}</p>
            ) : message.content ? (
              <Markdown text={streaming ? closeOpenMarkup(message.content) : message.content} />
            ) : streaming ? (
              <span className="typing" aria-label="Generating">
                <span />
                <span />
                <span />
              </span>
            ) : null}
            {streaming && message.content ? <span className="cursor" aria-hidden="true" /> : null}
          </div>
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
          {!isUser && !streaming ? (
            <div className="message-actions">
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
