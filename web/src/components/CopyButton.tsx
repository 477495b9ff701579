import { useEffect, useState } from 'react';
import { copyText } from './clipboard';
import { CopyIcon } from './icons';

interface Props {
  getText: () => string;
  label?: string;
  testId?: string;
  className?: string;
}

/** A button that copies text and says "Copied" for a moment. */
export function CopyButton({ getText, label = 'Copy', testId, className = 'copy-btn' }: Props) {
  const [copied, setCopied] = useState(false);
  useEffect(() => {
    if (!copied) return;
    const t = setTimeout(() => setCopied(false), 1500);
    return () => clearTimeout(t);
  }, [copied]);
  return (
    <button
      type="button"
      className={className}
      data-testid={testId}
      onClick={() => void copyText(getText()).then(setCopied)}
      aria-label={copied ? 'Copied' : label}
    >
      <CopyIcon />
      <span>{copied ? 'Copied' : label}</span>
    </button>
  );
}
