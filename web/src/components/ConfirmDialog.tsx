import { Modal } from './Modal';

interface Props {
  title: string;
  body: string;
  confirmLabel: string;
  onConfirm: () => void;
  onCancel: () => void;
}

export function ConfirmDialog({ title, body, confirmLabel, onConfirm, onCancel }: Props) {
  return (
    <Modal labelledBy="confirm-title" onClose={onCancel} role="alertdialog" testId="confirm-dialog">
      <h2 id="confirm-title">{title}</h2>
      <p className="muted">{body}</p>
      <div className="modal-actions">
        <button type="button" className="btn" onClick={onCancel} data-autofocus>
          Cancel
        </button>
        <button type="button" className="btn danger" data-testid="confirm-delete" onClick={onConfirm}>
          {confirmLabel}
        </button>
      </div>
    </Modal>
  );
}
