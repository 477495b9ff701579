import { describe, expect, it } from 'vitest';
import { closeOpenMarkup } from './streamingMarkdown';

describe('closeOpenMarkup', () => {
  it('closes open bold and inline code', () => {
    expect(closeOpenMarkup('Say **hel')).toBe('Say **hel**');
    expect(closeOpenMarkup('Run `ls -')).toBe('Run `ls -`');
  });
  it('leaves out an opener with nothing after it yet', () => {
    expect(closeOpenMarkup('Say **')).toBe('Say');
    expect(closeOpenMarkup('Run `')).toBe('Run');
  });
  it('leaves balanced text and open code fences alone', () => {
    expect(closeOpenMarkup('**a** and `b`')).toBe('**a** and `b`');
    expect(closeOpenMarkup('```python\nx = "**"')).toBe('```python\nx = "**"');
    expect(closeOpenMarkup('```\n`\n```\nok')).toBe('```\n`\n```\nok');
  });
});
