/** The API keys page's data: list, create (the secret is kept only until the page closes), revoke. */
import { useCallback, useEffect, useState } from 'react';
import * as rest from '../api/rest';
import type { ApiKey, NewApiKey } from '../api/types';

export function useApiKeys(onError: (e: unknown) => void) {
  const [keys, setKeys] = useState<ApiKey[] | null>(null);
  const [created, setCreated] = useState<NewApiKey | null>(null);
  const [busy, setBusy] = useState(false);

  const reload = useCallback(() => {
    rest.listKeys().then(setKeys, onError);
  }, [onError]);

  useEffect(reload, [reload]);

  const create = useCallback(
    async (name: string) => {
      setBusy(true);
      try {
        setCreated(await rest.createKey(name));
        reload();
        return true;
      } catch (e) {
        onError(e);
        return false;
      } finally {
        setBusy(false);
      }
    },
    [onError, reload],
  );

  const revoke = useCallback(
    async (id: string) => {
      try {
        await rest.revokeKey(id);
        setCreated((c) => (c?.id === id ? null : c));
        reload();
      } catch (e) {
        onError(e);
      }
    },
    [onError, reload],
  );

  return { keys, created, busy, create, revoke, dismissCreated: () => setCreated(null) };
}

/** Where nginx offers the local CA's certificate when it signed the site's (deploy/nginx.py). */
export const CA_URL = '/ca.pem';

/** Whether this site's certificate comes from chatstack's own local CA, which programs do not
 * trust: nginx then serves it at /ca.pem as a certificate (any other path is index.html). */
export function useLocalCa(): boolean {
  const [local, setLocal] = useState(false);
  useEffect(() => {
    let live = true;
    fetch(CA_URL, { method: 'HEAD', cache: 'no-store', credentials: 'omit' }).then(
      (r) => live && setLocal(r.ok && (r.headers.get('content-type') ?? '').includes('x509')),
      () => {},
    );
    return () => {
      live = false;
    };
  }, []);
  return local;
}

/** How often the model list is read again: an upstream that comes or goes shows up. */
const MODELS_REFRESH_MS = 60_000;

/** Model ids for the picker and the settings dialog: what the app service's health loop
 * already knows (GET /api/health answers from memory; /v1/models needs an API key). */
export function useModels() {
  const [models, setModels] = useState<string[]>([]);
  useEffect(() => {
    let live = true;
    const load = () =>
      rest.listModels().then(
        (m) => live && setModels((old) => (old.join('\n') === m.join('\n') ? old : m)),
        () => {},
      );
    void load();
    const timer = setInterval(() => void load(), MODELS_REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, []);
  return models;
}
