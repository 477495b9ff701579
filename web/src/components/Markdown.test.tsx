import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { Markdown } from './Markdown';

describe('Markdown', () => {
  it('renders formatting and highlighted code blocks with a copy button', () => {
    const { container } = render(<Markdown text={'**bold** and `x`\n\n```python\nprint("hi")\n```'} />);
    expect(container.querySelector('strong')?.textContent).toBe('bold');
    expect(container.querySelector('pre code.hljs')).not.toBeNull();
    expect(container.querySelector('.hljs-built_in, .hljs-string')).not.toBeNull();
    expect(screen.getByTestId('copy-code')).toBeInTheDocument();
  });

  it('shows raw HTML as text and never creates the elements', () => {
    const evil = 'Hi <script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2"> <b onclick="x()">b</b>';
    const { container } = render(<Markdown text={evil} />);
    expect(container.querySelector('script')).toBeNull();
    expect(container.querySelector('img')).toBeNull();
    expect(container.querySelector('b')).toBeNull();
    expect(container.querySelector('[onerror], [onclick]')).toBeNull();
    expect(container.textContent).toContain('<script>window.pwned = 1</script>');
    expect(container.textContent).toContain('<img src=x onerror="window.pwned = 2">');
    expect((window as unknown as { pwned?: number }).pwned).toBeUndefined();
  });

  it('renders HTML blocks as text too', () => {
    const { container } = render(<Markdown text={'<div>\n<iframe src="https://evil.test"></iframe>\n</div>'} />);
    expect(container.querySelector('.markdown iframe, .markdown div')).toBeNull();
    expect(container.textContent).toContain('<iframe src="https://evil.test"></iframe>');
  });

  it('drops javascript: links and turns remote images into links', () => {
    const { container } = render(<Markdown text={'[click](javascript:alert(1)) ![cat](https://img.test/cat.png)'} />);
    for (const a of container.querySelectorAll('a')) expect(a.getAttribute('href') ?? '').not.toMatch(/^javascript:/i);
    expect(container.querySelector('img')).toBeNull();
    const link = screen.getByText('[image: cat]');
    expect(link.closest('a')?.getAttribute('rel')).toContain('noopener');
  });
});

describe('Markdown math', () => {
  it('renders $…$, $$…$$, \\(…\\) and \\[…\\] with KaTeX', () => {
    const text = 'Inline $a^2$ and \\(b_1\\).\n\n$$\n\\frac{1}{2}\n$$\n\n\\[ x = y \\]';
    const { container } = render(<Markdown text={text} />);
    expect(container.querySelectorAll('.katex').length).toBe(4);
    expect(container.querySelectorAll('.katex-display').length).toBe(2);
    expect(container.querySelector('.katex-mathml math')).not.toBeNull();
    expect(container.textContent).not.toContain('$$');
    expect(container.textContent).not.toContain('\\(');
  });

  it('leaves dollars and backslash brackets in code alone', () => {
    const { container } = render(<Markdown text={'`$x$` and\n\n```\n\\[ y \\]\n$$z$$\n```'} />);
    expect(container.querySelector('.katex')).toBeNull();
    expect(container.textContent).toContain('$x$');
    expect(container.textContent).toContain('\\[ y \\]');
  });

  it('shows an unclosed $$ as text while streaming, and the formula once it closes', () => {
    const open = render(<Markdown text={'Here: $$\\frac{1}{2'} streaming />);
    expect(open.container.querySelector('.katex')).toBeNull();
    expect(open.container.textContent).toContain('$$\\frac{1}{2');
    open.unmount();
    const closed = render(<Markdown text={'Here: $$\\frac{1}{2}$$'} streaming />);
    expect(closed.container.querySelector('.katex')).not.toBeNull();
  });

  it('never lets a formula run links or HTML', () => {
    const { container } = render(
      <Markdown text={'$\\href{javascript:alert(1)}{x}$ $\\htmlClass{evil}{y}$ $\\url{javascript:1}$'} />,
    );
    for (const a of container.querySelectorAll('a')) expect(a.getAttribute('href') ?? '').not.toMatch(/^javascript:/i);
    expect(container.querySelector('.evil')).toBeNull();
  });
});
