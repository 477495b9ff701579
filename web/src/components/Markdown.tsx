/** Model output as Markdown, with LaTeX math (KaTeX). Raw HTML stays text: no rehype-raw, no
 * dangerouslySetInnerHTML; KaTeX builds its markup as elements, with `trust` off (no `\href`,
 * `\url`, `\includegraphics`, no HTML extensions). */
import { memo, useRef, type ComponentPropsWithoutRef } from 'react';
import ReactMarkdown, { type Components } from 'react-markdown';
import rehypeHighlight from 'rehype-highlight';
import rehypeKatex from 'rehype-katex';
import remarkGfm from 'remark-gfm';
import remarkMath from 'remark-math';
import { closeOpenMath, latexDelimiters } from './mathText';
import { CopyButton } from './CopyButton';

function CodeBlock({ children, ...props }: ComponentPropsWithoutRef<'pre'>) {
  const ref = useRef<HTMLPreElement>(null);
  const code = (children as { props?: { className?: string } } | undefined)?.props?.className ?? '';
  const lang = /language-([\w+#.-]+)/.exec(code)?.[1];
  return (
    <div className="code-block">
      <div className="code-head">
        <span className="code-lang">{lang ?? 'code'}</span>
        <CopyButton testId="copy-code" label="Copy code" getText={() => ref.current?.textContent ?? ''} />
      </div>
      <pre ref={ref} {...props}>
        {children}
      </pre>
    </div>
  );
}

const components: Components = {
  pre: ({ node: _node, ...props }) => <CodeBlock {...props} />,
  a: ({ node: _node, href, children }) => (
    <a href={href} target="_blank" rel="noopener noreferrer nofollow">
      {children}
    </a>
  ),
  // Remote images would break the CSP (img-src 'self' data:) and leak the reader: link them instead.
  img: ({ node: _node, src, alt }) =>
    typeof src === 'string' && src ? (
      <a href={src} target="_blank" rel="noopener noreferrer nofollow">
        {`[image${alt ? `: ${alt}` : ''}]`}
      </a>
    ) : (
      <span>{alt}</span>
    ),
};

const remarkPlugins = [remarkGfm, remarkMath];
// A formula KaTeX cannot read shows as its source, in the error colour, instead of throwing.
const katexOptions = { throwOnError: false, strict: 'ignore' as const, trust: false, maxExpand: 500 };
const rehypePlugins: NonNullable<Parameters<typeof ReactMarkdown>[0]['rehypePlugins']> = [
  [rehypeKatex, katexOptions],
  rehypeHighlight,
];

export const Markdown = memo(function Markdown({ text, streaming = false }: { text: string; streaming?: boolean }) {
  const source = latexDelimiters(text);
  return (
    <div className="markdown">
      <ReactMarkdown remarkPlugins={remarkPlugins} rehypePlugins={rehypePlugins} components={components}>
        {streaming ? closeOpenMath(source) : source}
      </ReactMarkdown>
    </div>
  );
});
