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

/** Model ids for the settings dialog (from /api/health; /v1/models needs an API key). */
export function useModels() {
  const [models, setModels] = useState<string[]>([]);
  useEffect(() => {
    let live = true;
    rest.listModels().then(
      (m) => live && setModels(m),
      () => {},
    );
    return () => {
      live = false;
    };
  }, []);
  return models;
}
