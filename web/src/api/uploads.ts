/** File uploads (POST /api/files) with progress, via XMLHttpRequest for upload progress events. */
import type { UploadedFile } from './types';

/** The extensions the app service accepts (app_service/extraction.py KINDS; a unit test keeps
 * the two lists equal): the file picker offers only these, and a refusal lists them. */
export const ACCEPTED_EXTENSIONS = [
  'bash', 'c', 'cc', 'cfg', 'cjs', 'cpp', 'css', 'csv', 'cxx', 'docx', 'go', 'h', 'hpp', 'htm', 'html',
  'ini', 'java', 'js', 'json', 'jsx', 'kt', 'log', 'markdown', 'md', 'mjs', 'pdf', 'php', 'py', 'rb', 'rs',
  'scss', 'sh', 'sql', 'toml', 'ts', 'tsv', 'tsx', 'txt', 'xml', 'yaml', 'yml',
];

const DOTTED = ACCEPTED_EXTENSIONS.map((e) => `.${e}`);

/** The file input's `accept`: ".txt,.md,…". */
export const ACCEPT_ATTRIBUTE = DOTTED.join(',');

const acceptedList = () => DOTTED.join(', ');

/** Why a file cannot be attached, said before sending a byte (the server says the same), or null. */
export function refusedType(name: string): string | null {
  const dot = name.lastIndexOf('.');
  const ext = dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
  if (ACCEPTED_EXTENSIONS.includes(ext)) return null;
  return `${ext ? `This file type (.${ext})` : 'A file without an extension'} isn't supported. Accepted: ${acceptedList()}.`;
}

/** The server's limit when its message does not name one (MAX_UPLOAD_MB's default). */
export const DEFAULT_MAX_UPLOAD_MB = 20;
/** How often an upload refused for too many at once (429 too_many_uploads) is sent again. */
export const UPLOAD_RETRIES = 20;
/** Seconds to wait before sending it again when the answer names no Retry-After. */
export const DEFAULT_RETRY_SECONDS = 5;

export class UploadError extends Error {
  readonly status: number;
  /** The server's error code (`quota_exceeded`, `too_many_uploads`, …), when it sent one. */
  readonly code: string | null;
  /** Seconds the server asked us to wait (Retry-After), when it did. */
  readonly retryAfter: number | null;
  constructor(status: number, message: string, code: string | null = null, retryAfter: number | null = null) {
    super(message);
    this.name = 'UploadError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function serverMessage(body: unknown): string | null {
  const msg = (body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof msg === 'string' && msg.trim() ? msg : null;
}

function serverCode(body: unknown): string | null {
  const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
  return typeof code === 'string' && code ? code : null;
}

/** What to tell a person about a failed upload, by error code, else HTTP status (0: no answer). */
export function uploadErrorMessage(status: number, body: unknown): string {
  const msg = serverMessage(body);
  switch (serverCode(body)) {
    case 'quota_exceeded':
      // The server's message says how much is used and the limit.
      return msg ?? 'Your file storage is full. Delete files you no longer need, then upload again.';
    case 'too_many_uploads':
      return 'You have too many uploads in progress. Wait for one to finish, then upload again.';
  }
  switch (status) {
    case 413: {
      const limit = msg?.match(/(\d+)\s*(?:MiB|MB)/i)?.[1] ?? String(DEFAULT_MAX_UPLOAD_MB);
      return `File is too large (max ${limit} MB)`;
    }
    case 415:
      // The server says which: an extension it does not take (listing those it does), or
      // content that is not what the extension says ("a .txt type but binary data").
      return msg ?? `This file type isn't supported. Accepted: ${acceptedList()}.`;
    case 422:
      return msg ?? "This file couldn't be read";
    case 429:
      return 'Too many uploads at once. Wait a moment, then upload again.';
    case 401:
      return 'Your session has ended. Sign in again to upload.';
    case 0:
      return 'The upload failed: the server could not be reached.';
    default:
      return msg ?? `The upload failed (HTTP ${status}).`;
  }
}

function retryAfterSeconds(header: string | null): number | null {
  const seconds = header === null ? NaN : Number(header);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

export interface UploadHandle {
  promise: Promise<UploadedFile>;
  abort: () => void;
}

/** Send the file once. */
function sendOnce(file: File, onProgress: (fraction: number) => void): UploadHandle {
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
      else
        reject(
          new UploadError(
            xhr.status,
            uploadErrorMessage(xhr.status, body),
            serverCode(body),
            retryAfterSeconds(xhr.getResponseHeader('Retry-After')),
          ),
        );
    };
    xhr.onerror = () => reject(new UploadError(0, uploadErrorMessage(0, null)));
    xhr.onabort = () => reject(new UploadError(-1, 'Upload cancelled'));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}

/**
 * Upload one file; onProgress gets a fraction 0..1 as the bytes go out. While the server
 * refuses it because this user has too many uploads in progress, it is sent again after
 * the Retry-After the server names (at most UPLOAD_RETRIES times).
 */
export function uploadFile(file: File, onProgress: (fraction: number) => void): UploadHandle {
  let current: UploadHandle | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let cancelled = false;
  let cancel: () => void = () => {};
  const promise = new Promise<UploadedFile>((resolve, reject) => {
    cancel = () => reject(new UploadError(-1, 'Upload cancelled'));
    const attempt = (retriesLeft: number) => {
      current = sendOnce(file, onProgress);
      current.promise.then(resolve, (err: UploadError) => {
        if (err.code !== 'too_many_uploads' || retriesLeft <= 0 || cancelled) {
          reject(err);
          return;
        }
        onProgress(0);
        const seconds = Math.min(Math.max(err.retryAfter ?? DEFAULT_RETRY_SECONDS, 1), 60);
        timer = setTimeout(() => attempt(retriesLeft - 1), seconds * 1000);
      });
    };
    attempt(UPLOAD_RETRIES);
  });
  return {
    promise,
    abort: () => {
      cancelled = true;
      if (timer !== null) clearTimeout(timer);
      current?.abort();
      cancel();
    },
  };
}
