import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ACCEPT_ATTRIBUTE, refusedType, UploadError, uploadErrorMessage, uploadFile } from './uploads';

const body = (message: string, code = 'x') => ({ error: { message, type: 'invalid_request_error', param: 'file', code } });

describe('uploadErrorMessage', () => {
  it('says a file is too large, with the limit the server names', () => {
    expect(uploadErrorMessage(413, body('The file is larger than the upload limit of 5 MiB (5242880 bytes).'))).toBe(
      'File is too large (max 5 MB)',
    );
  });

  it('falls back to the default limit when the 413 names none (nginx)', () => {
    expect(uploadErrorMessage(413, null)).toBe('File is too large (max 20 MB)');
  });

  it("shows the server's words for a full storage quota, not a file-size limit", () => {
    const quota =
      'This file (12 MiB) does not fit in your storage: you are using 195 MiB of your 200 MiB. ' +
      'Delete files you no longer need to make room.';
    expect(uploadErrorMessage(413, body(quota, 'quota_exceeded'))).toBe(quota);
    expect(uploadErrorMessage(413, { error: { code: 'quota_exceeded' } })).toMatch(/storage is full.*Delete files/);
  });

  it('says to wait when too many uploads are in progress', () => {
    const refused = body('You already have 2 uploads in progress, the most at once.', 'too_many_uploads');
    expect(uploadErrorMessage(429, refused)).toMatch(/too many uploads in progress.*Wait for one to finish/);
    expect(uploadErrorMessage(429, null)).toMatch(/Too many uploads at once/);
  });

  it("says on 415 what the server says (the accepted types, or content that isn't what its name says)", () => {
    expect(uploadErrorMessage(415, body('The file has a .txt type but contains binary data.'))).toMatch(/binary data/);
    expect(uploadErrorMessage(415, null)).toMatch(/^This file type isn't supported\. Accepted: \.bash, .*\.txt/);
  });

  it('refuses a type the server does not take before sending it, listing those it does', () => {
    expect(refusedType('notes.TXT')).toBeNull();
    expect(refusedType('setup.exe')).toMatch(/^This file type \(\.exe\) isn't supported\. Accepted: .*\.pdf/);
    expect(refusedType('Makefile')).toMatch(/^A file without an extension/);
    expect(ACCEPT_ATTRIBUTE.split(',')).toContain('.docx');
  });

  it("shows the server's message on 422", () => {
    expect(uploadErrorMessage(422, body('This PDF is encrypted.'))).toBe('This PDF is encrypted.');
    expect(uploadErrorMessage(422, null)).toBe("This file couldn't be read");
  });

  it('explains a network failure and other statuses', () => {
    expect(uploadErrorMessage(0, null)).toMatch(/could not be reached/);
    expect(uploadErrorMessage(500, null)).toBe('The upload failed (HTTP 500).');
  });
});

/** A stand-in for XMLHttpRequest: each send is recorded, and the test answers it. */
class FakeXhr {
  static sent: FakeXhr[] = [];
  status = 0;
  responseText = '';
  withCredentials = false;
  upload: { onprogress: ((ev: ProgressEvent) => void) | null } = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  private headers: Record<string, string> = {};
  open() {}
  send() {
    FakeXhr.sent.push(this);
  }
  abort() {
    this.onabort?.();
  }
  getResponseHeader(name: string): string | null {
    return this.headers[name.toLowerCase()] ?? null;
  }
  answer(status: number, json: unknown, headers: Record<string, string> = {}) {
    this.status = status;
    this.responseText = JSON.stringify(json);
    this.headers = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    this.onload?.();
  }
}

const meta = { id: 'file_1', name: 'a.txt', kind: 'text', size: 1, created_at: 0, chunk_count: 1, chars: 1 };
const tooMany = body('You already have 2 uploads in progress, the most at once.', 'too_many_uploads');

describe('uploadFile', () => {
  beforeEach(() => {
    FakeXhr.sent = [];
    vi.stubGlobal('XMLHttpRequest', FakeXhr);
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  const file = () => new File(['hi'], 'a.txt', { type: 'text/plain' });

  it('sends the file again after Retry-After while too many uploads are in progress', async () => {
    const handle = uploadFile(file(), () => {});
    FakeXhr.sent[0].answer(429, tooMany, { 'Retry-After': '3' });
    await vi.advanceTimersByTimeAsync(2000);
    expect(FakeXhr.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeXhr.sent).toHaveLength(2);
    FakeXhr.sent[1].answer(201, meta);
    await expect(handle.promise).resolves.toEqual(meta);
  });

  it('does not send again after other refusals, and says why in words', async () => {
    const handle = uploadFile(file(), () => {});
    FakeXhr.sent[0].answer(413, body('This file (1 MiB) does not fit in your storage.', 'quota_exceeded'));
    const err = await handle.promise.catch((e: UploadError) => e);
    expect(err).toBeInstanceOf(UploadError);
    expect((err as UploadError).code).toBe('quota_exceeded');
    expect((err as UploadError).message).toBe('This file (1 MiB) does not fit in your storage.');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeXhr.sent).toHaveLength(1);
  });

  it('stops sending when aborted while it waits to send again', async () => {
    const handle = uploadFile(file(), () => {});
    FakeXhr.sent[0].answer(429, tooMany, { 'Retry-After': '5' });
    await vi.advanceTimersByTimeAsync(0);
    handle.abort();
    await expect(handle.promise).rejects.toMatchObject({ status: -1 });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeXhr.sent).toHaveLength(1);
  });

  it('gives up with the words for too many uploads after its retries', async () => {
    const handle = uploadFile(file(), () => {});
    const caught = handle.promise.catch((e: UploadError) => e);
    for (let i = 0; i < 100 && FakeXhr.sent.length > i; i += 1) {
      FakeXhr.sent[i].answer(429, tooMany, { 'Retry-After': '1' });
      await vi.advanceTimersByTimeAsync(1000);
    }
    const err = (await caught) as UploadError;
    expect(err.code).toBe('too_many_uploads');
    expect(err.message).toMatch(/Wait for one to finish/);
    expect(FakeXhr.sent.length).toBeLessThan(100);
  });
});
