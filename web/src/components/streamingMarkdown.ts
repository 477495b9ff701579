/**
 * Text of an answer still streaming, made safe to render as Markdown: an emphasis or inline
 * code that has opened but not yet closed is closed (or, right at the end, left out), so the
 * rendered text only ever grows instead of flashing `**` and then shrinking when it closes.
 */
export function closeOpenMarkup(text: string): string {
  // Inside an open fenced code block everything is literal.
  const fences = text.match(/^\s{0,3}(```|~~~)/gm)?.length ?? 0;
  if (fences % 2 === 1) return text;
  let out = text;
  for (const mark of ['**', '`']) {
    const body = out.replace(/^\s{0,3}(```|~~~)[\s\S]*?^\s{0,3}\1/gm, '');
    const count = mark === '`' ? (body.match(/(?<!`)`(?!`)/g)?.length ?? 0) : body.split(mark).length - 1;
    if (count % 2 === 0) continue;
    const trimmed = out.replace(/\s+$/, '');
    out = trimmed.endsWith(mark) ? trimmed.slice(0, -mark.length).replace(/\s+$/, '') : out + mark;
  }
  return out;
}
