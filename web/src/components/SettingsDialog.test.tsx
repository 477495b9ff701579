import { describe, expect, it } from 'vitest';
import { parseSettings } from './SettingsDialog';

describe('parseSettings', () => {
  it('maps empty numbers to null and "default" to an empty model', () => {
    expect(parseSettings({ model: 'default', system_prompt: 'Be brief.', temperature: '', top_p: ' ', max_tokens: '' })).toEqual({
      settings: { model: '', system_prompt: 'Be brief.', temperature: null, top_p: null, max_tokens: null },
      error: null,
    });
  });

  it('parses numbers and rejects values out of range', () => {
    expect(parseSettings({ model: 'm', system_prompt: '', temperature: '0.7', top_p: '0.9', max_tokens: '64' }).settings).toMatchObject({
      model: 'm',
      temperature: 0.7,
      top_p: 0.9,
      max_tokens: 64,
    });
    expect(parseSettings({ model: 'm', system_prompt: '', temperature: '3', top_p: '', max_tokens: '' }).error).toMatch(/Temperature/);
    expect(parseSettings({ model: 'm', system_prompt: '', temperature: '', top_p: '', max_tokens: '1.5' }).error).toMatch(/Max tokens/);
  });
});
