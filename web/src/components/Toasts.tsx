import { useEffect } from 'react';
import type { Toast } from '../state/chatReducer';
import { CloseIcon } from './icons';

function ToastItem({ toast, onDismiss }: { toast: Toast; onDismiss: (id: number) => void }) {
  useEffect(() => {
    const t = setTimeout(() => onDismiss(toast.id), toast.kind === 'error' ? 8000 : 4000);
    return () => clearTimeout(t);
  }, [toast, onDismiss]);
  return (
    <div className={`toast toast-${toast.kind}`} data-testid="toast" role={toast.kind === 'error' ? 'alert' : 'status'}>
      <span>{toast.text}</span>
      <button type="button" className="icon-btn small" aria-label="Dismiss" onClick={() => onDismiss(toast.id)}>
        <CloseIcon />
      </button>
    </div>
  );
}

export function Toasts({ toasts, onDismiss }: { toasts: Toast[]; onDismiss: (id: number) => void }) {
  return (
    <div className="toasts" aria-live="polite">
      {toasts.map((t) => (
        <ToastItem key={t.id} toast={t} onDismiss={onDismiss} />
      ))}
    </div>
  );
}

export function ConnectionStatus({
  status,
  endedReason,
  onReconnect,
}: {
  status: string;
  endedReason?: string | null;
  onReconnect?: () => void;
}) {
  if (status === 'ended') {
    return (
      <div className="connection-status" data-testid="connection-status" role="status">
        {endedReason || 'Disconnected by the server.'}
        <button type="button" className="btn small" data-testid="reconnect" onClick={onReconnect}>
          Reconnect
        </button>
      </div>
    );
  }
  if (status !== 'reconnecting') return null;
  return (
    <div className="connection-status" data-testid="connection-status" role="status">
      <span className="spinner" aria-hidden="true" />
      Reconnecting…
    </div>
  );
}
