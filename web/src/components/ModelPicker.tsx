/** The chat header's model choice, shown only when the upstreams serve more than one model.
 * The list is what the app service's health loop already knows (GET /api/health), so a
 * turn costs no extra round trip; the choice is the conversation's `model`, remembered
 * server-side (PATCH), or, before the first message, the model the new chat is made with. */
interface Props {
  models: string[];
  value: string;
  disabled?: boolean;
  onChange: (model: string) => void;
}

export function ModelPicker({ models, value, disabled, onChange }: Props) {
  if (models.length < 2) return null;
  // A conversation may name a model no upstream serves now (taken out, renamed): keep it
  // listed, so the select shows the truth rather than silently another model.
  const options = value && !models.includes(value) ? [...models, value] : models;
  return (
    <label className="model-picker">
      <span className="sr-only">Model</span>
      <select
        data-testid="model-picker"
        value={value}
        disabled={disabled}
        title="Model for this chat"
        onChange={(e) => onChange(e.target.value)}
      >
        <option value="">Default model</option>
        {options.map((m) => (
          <option key={m} value={m}>
            {models.includes(m) ? m : `${m} (unavailable)`}
          </option>
        ))}
      </select>
    </label>
  );
}
