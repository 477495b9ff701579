/** The files attached to the message being written: each uploads at once, with progress. */
import { useCallback, useEffect, useRef, useState } from 'react';
import { refusedType, uploadFile } from '../api/uploads';
import type { Attachment } from '../api/types';

export interface PendingUpload {
  key: number;
  name: string;
  size: number;
  state: 'uploading' | 'ready' | 'error';
  progress: number;
  error: string | null;
  fileId: string | null;
}

export interface Uploads {
  items: PendingUpload[];
  add: (files: Iterable<File>) => void;
  remove: (key: number) => void;
  clear: () => void;
  /** The uploaded files, ready to go with the message. */
  attachments: Attachment[];
  busy: boolean;
}

let uploadKey = 0;

export function useUploads(): Uploads {
  const [items, setItems] = useState<PendingUpload[]>([]);
  const aborts = useRef(new Map<number, () => void>());

  const patch = useCallback((key: number, change: Partial<PendingUpload>) => {
    setItems((list) => list.map((u) => (u.key === key ? { ...u, ...change } : u)));
  }, []);

  const add = useCallback(
    (files: Iterable<File>) => {
      for (const file of files) {
        uploadKey += 1;
        const key = uploadKey;
        const refused = refusedType(file.name);
        if (refused) {
          setItems((list) => [
            ...list,
            { key, name: file.name, size: file.size, state: 'error', progress: 0, error: refused, fileId: null },
          ]);
          continue;
        }
        setItems((list) => [
          ...list,
          { key, name: file.name, size: file.size, state: 'uploading', progress: 0, error: null, fileId: null },
        ]);
        const handle = uploadFile(file, (progress) => patch(key, { progress }));
        aborts.current.set(key, handle.abort);
        handle.promise.then(
          (meta) => patch(key, { state: 'ready', progress: 1, fileId: meta.id, name: meta.name }),
          (err: Error & { status?: number }) => {
            if (err.status !== -1) patch(key, { state: 'error', error: err.message });
          },
        ).finally(() => aborts.current.delete(key));
      }
    },
    [patch],
  );

  const remove = useCallback((key: number) => {
    aborts.current.get(key)?.();
    setItems((list) => list.filter((u) => u.key !== key));
  }, []);

  const clear = useCallback(() => setItems([]), []);

  useEffect(() => {
    const pending = aborts.current;
    return () => pending.forEach((abort) => abort());
  }, []);

  const attachments = items
    .filter((u) => u.state === 'ready' && u.fileId)
    .map((u) => ({ id: u.fileId as string, name: u.name }));
  return { items, add, remove, clear, attachments, busy: items.some((u) => u.state === 'uploading') };
}
