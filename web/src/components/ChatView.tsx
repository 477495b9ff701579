import { useState, type DragEvent } from 'react';
import { exportUrl } from '../api/rest';
import { useChat } from '../state/ChatProvider';
import { useModels } from '../state/keys';
import { useUploads } from '../state/uploads';
import { Composer } from './Composer';
import { DownloadIcon, MenuIcon, SlidersIcon } from './icons';
import { MessageList } from './MessageList';
import { ModelPicker } from './ModelPicker';
import { SettingsDialog } from './SettingsDialog';

const SUGGESTIONS = [
  'Explain how HTTPS keeps a connection private, in three sentences.',
  'Write a Python function that checks whether a string is a palindrome.',
  'Give me five ideas for a weekend project.',
];

/** The selected conversation: header, messages, composer; files dropped anywhere here are attached. */
export function ChatView({ onToggleSidebar }: { onToggleSidebar: () => void }) {
  const chat = useChat();
  const { state, current, currentTurn } = chat;
  const uploads = useUploads();
  const [dragging, setDragging] = useState(false);
  const [settingsOpen, setSettingsOpen] = useState(false);
  const models = useModels();
  // ↑ in the empty composer: the last question opens in its editor.
  const [editRequest, setEditRequest] = useState<string | null>(null);
  const editLast = () => {
    if (generating) return false;
    const last = [...state.messages].reverse().find((m) => m.role === 'user' && m.id !== 'pending-user-message');
    if (!last) return false;
    setEditRequest(last.id);
    return true;
  };
  // Only this conversation's own answer blocks its composer; others may generate meanwhile.
  const generating = currentTurn !== null;

  const send = async (text: string) => {
    if (uploads.items.some((u) => u.state === 'error')) {
      chat.notify('Remove the files that failed to upload first.');
      return false;
    }
    const ok = await chat.send(text, uploads.attachments);
    if (ok) uploads.clear();
    return ok;
  };

  const hasFiles = (e: DragEvent) => Array.from(e.dataTransfer?.types ?? []).includes('Files');

  return (
    <section
      className={`chat${dragging ? ' dragging' : ''}`}
      data-testid="drop-zone"
      aria-label="Chat"
      onDragEnter={(e) => {
        if (hasFiles(e)) {
          e.preventDefault();
          setDragging(true);
        }
      }}
      onDragOver={(e) => {
        if (hasFiles(e)) {
          e.preventDefault();
          e.dataTransfer.dropEffect = 'copy';
        }
      }}
      onDragLeave={(e) => {
        if (!e.currentTarget.contains(e.relatedTarget as Node | null)) setDragging(false);
      }}
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        const files = Array.from(e.dataTransfer?.files ?? []);
        if (files.length) uploads.add(files);
      }}
    >
      <header className="chat-header">
        <button
          type="button"
          className="icon-btn sidebar-toggle"
          data-testid="sidebar-toggle"
          aria-label="Show or hide the chat list"
          onClick={onToggleSidebar}
        >
          <MenuIcon />
        </button>
        <h1 className="chat-title" title={current?.title}>
          {current?.title ?? 'New chat'}
        </h1>
        <ModelPicker
          models={models}
          value={current ? current.model : chat.newChatModel}
          onChange={(model) => {
            if (current) void chat.saveSettings(current.id, { model });
            else chat.setNewChatModel(model);
          }}
        />
        {current ? (
          <div className="header-actions">
            {current.model && models.length < 2 ? (
              <span className="model-pill" title="Model">
                {current.model}
              </span>
            ) : null}
            <button
              type="button"
              className="icon-btn"
              data-testid="open-settings"
              aria-label="Chat settings"
              title="Chat settings"
              onClick={() => setSettingsOpen(true)}
            >
              <SlidersIcon />
            </button>
            <a className="ghost-btn" data-testid="export-md" href={exportUrl(current.id, 'md')} download title="Export as Markdown">
              <DownloadIcon />
              <span>.md</span>
            </a>
            <a className="ghost-btn" data-testid="export-json" href={exportUrl(current.id, 'json')} download title="Export as JSON">
              <DownloadIcon />
              <span>.json</span>
            </a>
          </div>
        ) : null}
      </header>

      {state.messages.length === 0 && !state.loading ? (
        <div className="empty-state" data-testid="message-list">
          <div className="empty-mark" aria-hidden="true">
            ✦
          </div>
          <h2>How can I help?</h2>
          <p className="muted">Ask anything, or attach a document (PDF, Word, text, code) and ask about it.</p>
          <div className="suggestions">
            {SUGGESTIONS.map((s) => (
              <button key={s} type="button" className="suggestion" onClick={() => void send(s)} disabled={generating}>
                {s}
              </button>
            ))}
          </div>
        </div>
      ) : (
        <MessageList
          messages={state.messages}
          loading={state.loading}
          focusId={state.focusId}
          busy={generating}
          onRegenerate={chat.regenerate}
          onContinue={chat.continueAnswer}
          onSwitchBranch={(id) => void chat.switchBranch(id)}
          onDeleteBranch={(id) => void chat.deleteBranch(id)}
          onEdit={chat.edit}
          editRequest={editRequest}
          onEditOpened={() => setEditRequest(null)}
        />
      )}

      <div className="composer-wrap">
        <Composer
          generating={generating}
          stopping={currentTurn?.stopping}
          uploads={uploads.items}
          onSend={send}
          onStop={chat.stop}
          onAttach={uploads.add}
          onRemoveUpload={uploads.remove}
          autoFocusKey={state.currentId}
          onEditLast={editLast}
        />
        <p className="composer-hint" id="composer-hint">
          Enter to send · Shift+Enter for a new line · Answers can be wrong.
        </p>
      </div>

      {dragging ? (
        <div className="drop-overlay" aria-hidden="true">
          <div>Drop files to attach them</div>
        </div>
      ) : null}
      {settingsOpen && current ? (
        <SettingsDialog
          conversation={current}
          onClose={() => setSettingsOpen(false)}
          onSave={async (patch) => {
            if (await chat.saveSettings(current.id, patch)) setSettingsOpen(false);
          }}
        />
      ) : null}
    </section>
  );
}
