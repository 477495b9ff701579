import { useState, type FormEvent } from 'react';
import type { Conversation, ConversationSettings } from '../api/types';
import { useModels } from '../state/keys';
import { Modal } from './Modal';

interface Props {
  conversation: Conversation;
  onClose: () => void;
  onSave: (patch: Partial<ConversationSettings>) => void | Promise<void>;
}

const num = (v: number | null) => (v === null || v === undefined ? '' : String(v));

/** Turn the form's strings into the PATCH body; an empty field means "the default" (null). */
export function parseSettings(form: {
  model: string;
  system_prompt: string;
  temperature: string;
  top_p: string;
  max_tokens: string;
}): { settings: Partial<ConversationSettings>; error: string | null } {
  const parse = (raw: string, name: string, min: number, max: number, integer = false) => {
    const s = raw.trim();
    if (!s) return { value: null, error: null };
    const n = Number(s);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n)))
      return { value: null, error: `${name} must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}.` };
    return { value: n, error: null };
  };
  const t = parse(form.temperature, 'Temperature', 0, 2);
  const p = parse(form.top_p, 'Top P', 0, 1);
  const m = parse(form.max_tokens, 'Max tokens', 1, 131072, true);
  const error = t.error ?? p.error ?? m.error;
  return {
    settings: {
      model: form.model === 'default' ? '' : form.model,
      system_prompt: form.system_prompt,
      temperature: t.value,
      top_p: p.value,
      max_tokens: m.value,
    },
    error,
  };
}

/** Model, system prompt and sampling for one conversation (PATCH /api/conversations/<id>). */
export function SettingsDialog({ conversation, onClose, onSave }: Props) {
  const models = useModels();
  const [form, setForm] = useState({
    model: conversation.model || 'default',
    system_prompt: conversation.system_prompt,
    temperature: num(conversation.temperature),
    top_p: num(conversation.top_p),
    max_tokens: num(conversation.max_tokens),
  });
  const [error, setError] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const options = ['default', ...models.filter((m) => m !== 'default')];
  if (!options.includes(form.model)) options.push(form.model);

  const set = (k: keyof typeof form) => (e: { target: { value: string } }) => setForm({ ...form, [k]: e.target.value });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const { settings, error: problem } = parseSettings(form);
    setError(problem);
    if (problem) return;
    setSaving(true);
    try {
      await onSave(settings);
    } finally {
      setSaving(false);
    }
  };

  return (
    <Modal labelledBy="settings-title" onClose={onClose} testId="settings-dialog" className="settings">
      <form onSubmit={submit}>
        <h2 id="settings-title">Chat settings</h2>
        <p className="muted small">These apply to this chat only. Leave a number empty to use the default.</p>
        <label className="field">
          <span>Model</span>
          <select data-testid="settings-model" value={form.model} onChange={set('model')}>
            {options.map((m) => (
              <option key={m} value={m}>
                {m === 'default' ? 'default (server’s choice)' : m}
              </option>
            ))}
          </select>
        </label>
        <label className="field">
          <span>System prompt</span>
          <textarea
            data-testid="settings-system-prompt"
            rows={4}
            maxLength={20000}
            placeholder="e.g. You are a concise assistant."
            value={form.system_prompt}
            onChange={set('system_prompt')}
          />
        </label>
        <div className="field-row">
          <label className="field">
            <span>Temperature</span>
            <input
              data-testid="settings-temperature"
              type="number"
              inputMode="decimal"
              min={0}
              max={2}
              step={0.1}
              placeholder="1.0"
              value={form.temperature}
              onChange={set('temperature')}
            />
          </label>
          <label className="field">
            <span>Top P</span>
            <input
              data-testid="settings-top-p"
              type="number"
              inputMode="decimal"
              min={0}
              max={1}
              step={0.05}
              placeholder="1.0"
              value={form.top_p}
              onChange={set('top_p')}
            />
          </label>
          <label className="field">
            <span>Max tokens</span>
            <input
              data-testid="settings-max-tokens"
              type="number"
              inputMode="numeric"
              min={1}
              max={131072}
              step={1}
              placeholder="512"
              value={form.max_tokens}
              onChange={set('max_tokens')}
            />
          </label>
        </div>
        {error ? (
          <p className="form-error" role="alert">
            {error}
          </p>
        ) : null}
        <div className="modal-actions">
          <button type="button" className="btn" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="btn primary" data-testid="settings-save" disabled={saving}>
            {saving ? 'Saving…' : 'Save'}
          </button>
        </div>
      </form>
    </Modal>
  );
}
