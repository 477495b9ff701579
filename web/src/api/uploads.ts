/** File uploads (POST /api/files) with progress, via XMLHttpRequest for upload progress events. */
import type { UploadedFile } from './types';

/** The server's limit when its message does not name one (MAX_UPLOAD_MB's default). */
export const DEFAULT_MAX_UPLOAD_MB = 20;

export class UploadError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'UploadError';
    this.status = status;
  }
}

function serverMessage(body: unknown): string | null {
  const msg = (body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof msg === 'string' && msg.trim() ? msg : null;
}

/** What to tell a person about a failed upload, by HTTP status (0: no answer at all). */
export function uploadErrorMessage(status: number, body: unknown): string {
  const msg = serverMessage(body);
  switch (status) {
    case 413: {
      const limit = msg?.match(/(\d+)\s*(?:MiB|MB)/i)?.[1] ?? String(DEFAULT_MAX_UPLOAD_MB);
      return `File is too large (max ${limit} MB)`;
    }
    case 415:
      return "This file type isn't supported";
    case 422:
      return msg ?? "This file couldn't be read";
    case 401:
      return 'Your session has ended. Sign in again to upload.';
    case 0:
      return 'The upload failed: the server could not be reached.';
    default:
      return msg ?? `The upload failed (HTTP ${status}).`;
  }
}

export interface UploadHandle {
  promise: Promise<UploadedFile>;
  abort: () => void;
}

/** Upload one file; onProgress gets a fraction 0..1 as the bytes go out. */
export function uploadFile(file: File, onProgress: (fraction: number) => void): UploadHandle {
  const xhr = new XMLHttpRequest();
  const promise = new Promise<UploadedFile>((resolve, reject) => {
    xhr.open('POST', '/api/files');
    xhr.withCredentials = true;
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable && ev.total > 0) onProgress(ev.loaded / ev.total);
    };
    xhr.onload = () => {
      let body: unknown = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body as UploadedFile);
      else reject(new UploadError(xhr.status, uploadErrorMessage(xhr.status, body)));
    };
    xhr.onerror = () => reject(new UploadError(0, uploadErrorMessage(0, null)));
    xhr.onabort = () => reject(new UploadError(-1, 'Upload cancelled'));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
