/** Keyboard shortcuts, one place: the keys, what they do, and the `?` dialog listing them. */
import { useEffect, useRef } from 'react';
import { Modal } from './Modal';

const mac = typeof navigator !== 'undefined' && /Mac|iPhone|iPad/.test(navigator.platform);
const MOD = mac ? '⌘' : 'Ctrl';

export const SHORTCUTS: { keys: string; does: string }[] = [
  { keys: `${MOD}+Shift+O`, does: 'New chat' },
  { keys: 'Shift+Esc', does: 'Focus the message box' },
  { keys: 'Esc', does: 'Stop the answer being written' },
  { keys: '↑ (in an empty message box)', does: 'Edit your last message' },
  { keys: 'Enter / Shift+Enter', does: 'Send / new line' },
  { keys: `? or ${MOD}+/`, does: 'Show these shortcuts' },
];

export interface ShortcutActions {
  newChat: () => void;
  focusComposer: () => void;
  /** Stop the open conversation's answer; false when nothing was generating. */
  stop: () => boolean;
  showHelp: () => void;
}

/** A key typed into a field (or with a dialog open) belongs to it, except the few chords. */
function typing(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  return !!el && (el.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName));
}

export function useShortcuts(actions: ShortcutActions): void {
  const ref = useRef(actions);
  ref.current = actions;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented || e.isComposing) return;
      const a = ref.current;
      const mod = mac ? e.metaKey : e.ctrlKey;
      const dialogOpen = !!document.querySelector('.modal');
      if (mod && e.shiftKey && e.key.toLowerCase() === 'o') {
        e.preventDefault();
        a.newChat();
      } else if (e.shiftKey && e.key === 'Escape' && !dialogOpen) {
        e.preventDefault();
        a.focusComposer();
      } else if (e.key === 'Escape' && !dialogOpen && !(e.target as HTMLElement | null)?.closest?.('.edit-box')) {
        if (a.stop()) e.preventDefault();
      } else if ((mod && e.key === '/') || (e.key === '?' && !typing(e.target) && !dialogOpen)) {
        e.preventDefault();
        a.showHelp();
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);
}

export function ShortcutsDialog({ onClose }: { onClose: () => void }) {
  return (
    <Modal labelledBy="shortcuts-title" onClose={onClose} testId="shortcuts-dialog">
      <h2 id="shortcuts-title">Keyboard shortcuts</h2>
      <table className="shortcuts">
        <tbody>
          {SHORTCUTS.map((s) => (
            <tr key={s.keys}>
              <td>
                <kbd>{s.keys}</kbd>
              </td>
              <td>{s.does}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="modal-actions">
        <button type="button" className="btn" onClick={onClose} data-autofocus>
          Close
        </button>
      </div>
    </Modal>
  );
}
