/**
 * Math in an answer, before Markdown parses it: remark-math reads `$…$` and `$$…$$`; models
 * also write LaTeX's own `\(…\)` and `\[…\]`, which become those. Code (fenced blocks and
 * inline spans) is left exactly as written: a `$` or `\[` in code is code.
 *
 * While an answer streams, a `$$` that has opened but not closed yet would turn everything
 * after it into one growing formula (or a KaTeX error); it is escaped, so it shows as text
 * until its closing `$$` arrives.
 */

const FENCE = /^ {0,3}(`{3,}|~{3,})[^\n]*\n[\s\S]*?(?:^ {0,3}\1[ \t]*$|(?![\s\S]))/gm;
const INLINE_CODE = /(`+)[\s\S]*?\1/g;

/** Apply `change` to the text outside code, leaving code as it was. */
function outsideCode(text: string, change: (prose: string) => string): string {
  const pieces: string[] = [];
  let at = 0;
  const code = [...text.matchAll(FENCE)].map((m) => [m.index, m.index + m[0].length] as const);
  for (const [start, end] of code) {
    pieces.push(outsideInlineCode(text.slice(at, start), change), text.slice(start, end));
    at = end;
  }
  pieces.push(outsideInlineCode(text.slice(at), change));
  return pieces.join('');
}

function outsideInlineCode(text: string, change: (prose: string) => string): string {
  const pieces: string[] = [];
  let at = 0;
  for (const m of text.matchAll(INLINE_CODE)) {
    pieces.push(change(text.slice(at, m.index)), m[0]);
    at = m.index + m[0].length;
  }
  pieces.push(change(text.slice(at)));
  return pieces.join('');
}

/** `\(x\)` → `$x$`, `\[x\]` → `$$x$$` (a display formula on lines of its own). */
export function latexDelimiters(text: string): string {
  return outsideCode(text, (prose) =>
    prose
      .replace(/\\\[([\s\S]+?)\\\]/g, (_m, body: string) => `\n$$\n${body.trim()}\n$$\n`)
      .replace(/\\\(([\s\S]+?)\\\)/g, (_m, body: string) => `$${body.trim()}$`),
  );
}

/** A streaming answer's last `$$`, when it has no partner yet, shown as text. */
export function closeOpenMath(text: string): string {
  let count = 0;
  outsideCode(text, (prose) => {
    count += prose.match(/(?<!\\)\$\$/g)?.length ?? 0;
    return prose;
  });
  if (count % 2 === 0) return text;
  let seen = 0;
  return outsideCode(text, (prose) =>
    prose.replace(/(?<!\\)\$\$/g, (m) => {
      seen += 1;
      return seen === count ? '\\$\\$' : m;
    }),
  );
}
