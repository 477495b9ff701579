import { useState, type FormEvent } from 'react';
import { CA_URL, useApiKeys, useLocalCa, useModels } from '../state/keys';
import type { ApiKey } from '../api/types';
import { ConfirmDialog } from './ConfirmDialog';
import { CopyButton } from './CopyButton';
import { PageHeader } from './PageHeader';

interface Props {
  onBack: () => void;
  onToggleSidebar: () => void;
  onError: (e: unknown) => void;
}

const when = (t: number | null) => (t ? new Date(t * 1000).toLocaleString() : 'never');

export function clientExamples(origin: string, model: string): { python: string; node: string } {
  const base = `${origin}/v1`;
  return {
    python: `# pip install openai
from openai import OpenAI

client = OpenAI(base_url="${base}", api_key="cs-...")
reply = client.chat.completions.create(
    model="${model}",
    messages=[{"role": "user", "content": "Say hello."}],
    max_tokens=50,
)
print(reply.choices[0].message.content)`,
    node: `// npm install openai
import OpenAI from "openai";

const client = new OpenAI({ baseURL: "${base}", apiKey: "cs-..." });
const reply = await client.chat.completions.create({
  model: "${model}",
  messages: [{ role: "user", content: "Say hello." }],
  max_tokens: 50,
});
console.log(reply.choices[0].message.content);`,
  };
}

/** This site's certificate is signed by chatstack's own CA: a browser was clicked through,
 * but a program refuses it (openai-python: APIConnectionError; Node: "self-signed
 * certificate in certificate chain") until told to trust the CA. */
export function TrustLocalCa() {
  return (
    <div className="trust-ca" data-testid="trust-ca">
      <h3>This server uses its own certificate authority</h3>
      <p className="muted small">
        Programs don’t trust it until you tell them to; without that the examples above fail with a connection
        error. Download the CA certificate, then point each program at the file:
      </p>
      <p>
        <a className="btn" data-testid="ca-download" href={CA_URL} download="chatstack-ca.pem">
          Download chatstack-ca.pem
        </a>
      </p>
      <ul className="small">
        <li>
          Python (openai, httpx, requests): <code>SSL_CERT_FILE=chatstack-ca.pem python hello.py</code> — this
          replaces the usual list for that process; for requests alone, <code>REQUESTS_CA_BUNDLE</code>.
        </li>
        <li>
          Node.js: <code>NODE_EXTRA_CA_CERTS=chatstack-ca.pem node hello.mjs</code> — added to the usual list.
        </li>
        <li>
          curl: <code>curl --cacert chatstack-ca.pem …</code>
        </li>
      </ul>
      <p className="muted small">Or ask your administrator for a certificate from a public authority.</p>
    </div>
  );
}

/** Personal API keys for /v1: create (shown once), list, revoke; examples for the openai clients. */
export function KeysPage({ onBack, onToggleSidebar, onError }: Props) {
  const { keys, created, busy, create, revoke, dismissCreated } = useApiKeys(onError);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const [name, setName] = useState('');
  const models = useModels();
  const localCa = useLocalCa();
  const examples = clientExamples(window.location.origin, models[0] ?? 'SmolLM2-135M-Instruct');

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!name.trim()) return;
    if (await create(name.trim())) setName('');
  };

  return (
    <section className="keys-page" data-testid="keys-page" aria-labelledby="keys-title">
      <PageHeader onBack={onBack} onToggleSidebar={onToggleSidebar} />
      <div className="keys-body">
        <h1 id="keys-title">API keys</h1>
        <p className="muted">
          Programs that speak the OpenAI API can use this server at <code>{window.location.origin}/v1</code> with a
          personal key. Treat a key like a password.
        </p>

        <form className="key-form" onSubmit={submit}>
          <label htmlFor="key-name" className="sr-only">
            Key name
          </label>
          <input
            id="key-name"
            data-testid="key-name"
            placeholder="Name, e.g. laptop"
            maxLength={100}
            value={name}
            onChange={(e) => setName(e.target.value)}
          />
          <button type="submit" className="btn primary" data-testid="key-create" disabled={busy || !name.trim()}>
            Create key
          </button>
        </form>

        {created ? (
          <div className="key-created" role="status">
            <p>
              <strong>Your new key “{created.name}”.</strong> Copy it now: it won’t be shown again.
            </p>
            <div className="secret-row">
              <code data-testid="key-secret">{created.key}</code>
              <CopyButton className="btn" label="Copy" getText={() => created.key} />
            </div>
            <button type="button" className="link-btn" onClick={dismissCreated}>
              I’ve saved it
            </button>
          </div>
        ) : null}

        <h2>Your keys</h2>
        {keys === null ? <p className="muted">Loading…</p> : null}
        {keys && keys.length === 0 ? <p className="muted">No keys yet.</p> : null}
        <ul className="key-list">
          {keys?.map((k) => (
            <li key={k.id} className={`key-item${k.revoked ? ' revoked' : ''}`} data-testid="key-item" data-id={k.id}>
              <div className="key-info">
                <span className="key-name">{k.name}</span>
                <span className="muted small">
                  <code>{k.prefix}…</code> · created {when(k.created_at)} · last used {when(k.last_used_at)}
                </span>
              </div>
              {k.revoked ? (
                <span className="badge badge-stopped">Revoked</span>
              ) : (
                <button type="button" className="btn danger small" data-testid="key-revoke" onClick={() => setRevoking(k)}>
                  Revoke
                </button>
              )}
            </li>
          ))}
        </ul>

        {revoking ? (
          <ConfirmDialog
            title="Revoke this key?"
            body={`Programs using “${revoking.name}” (${revoking.prefix}…) stop working at once. This can't be undone.`}
            confirmLabel="Revoke"
            onCancel={() => setRevoking(null)}
            onConfirm={() => {
              const id = revoking.id;
              setRevoking(null);
              void revoke(id);
            }}
          />
        ) : null}

        <h2>Use it from code</h2>
        <div className="examples" data-testid="key-example">
          {(
            [
              ['Python', 'python', examples.python],
              ['Node.js', 'javascript', examples.node],
            ] as const
          ).map(([title, lang, code]) => (
            <div className="code-block" key={lang}>
              <div className="code-head">
                <span className="code-lang">{title}</span>
                <CopyButton label="Copy" getText={() => code} />
              </div>
              <pre>
                <code>{code}</code>
              </pre>
            </div>
          ))}
        </div>
        <p className="muted small">Replace <code>cs-...</code> with your key. List the models with <code>client.models.list()</code>.</p>
        {localCa ? <TrustLocalCa /> : null}
      </div>
    </section>
  );
}
