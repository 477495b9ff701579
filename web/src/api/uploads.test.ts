import { describe, expect, it } from 'vitest';
import { uploadErrorMessage } from './uploads';

const body = (message: string) => ({ error: { message, type: 'invalid_request_error', param: 'file', code: 'x' } });

describe('uploadErrorMessage', () => {
  it('says a file is too large, with the limit the server names', () => {
    expect(uploadErrorMessage(413, body('The file is larger than the upload limit of 5 MiB (5242880 bytes).'))).toBe(
      'File is too large (max 5 MB)',
    );
  });

  it('falls back to the default limit when the 413 names none (nginx)', () => {
    expect(uploadErrorMessage(413, null)).toBe('File is too large (max 20 MB)');
  });

  it('says the type is not supported on 415', () => {
    expect(uploadErrorMessage(415, body('Unsupported file type .exe; accepted: …'))).toBe("This file type isn't supported");
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
