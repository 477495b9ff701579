import { describe, expect, it } from 'vitest';
import { closeOpenMath, latexDelimiters } from './mathText';

describe('latexDelimiters', () => {
  it('turns \\( \\) and \\[ \\] into dollars outside code only', () => {
    expect(latexDelimiters('a \\(x\\) b')).toBe('a $x$ b');
    expect(latexDelimiters('\\[ y \\]')).toBe('\n$$\ny\n$$\n');
    expect(latexDelimiters('`\\(x\\)` \\(z\\)')).toBe('`\\(x\\)` $z$');
    expect(latexDelimiters('```\n\\[y\\]\n```\n\\(w\\)')).toBe('```\n\\[y\\]\n```\n$w$');
  });
});

describe('closeOpenMath', () => {
  it('escapes the last $$ only while it has no partner', () => {
    expect(closeOpenMath('a $$x$$ b $$y')).toBe('a $$x$$ b \\$\\$y');
    expect(closeOpenMath('a $$x$$')).toBe('a $$x$$');
    expect(closeOpenMath('```\n$$\n```')).toBe('```\n$$\n```');
  });
});
