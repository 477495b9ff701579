import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { Composer } from './Composer';

function setup(props: Partial<Parameters<typeof Composer>[0]> = {}) {
  const onSend = vi.fn(() => true);
  const onStop = vi.fn();
  render(
    <Composer
      generating={false}
      uploads={[]}
      onSend={onSend}
      onStop={onStop}
      onAttach={vi.fn()}
      onRemoveUpload={vi.fn()}
      {...props}
    />,
  );
  return { onSend, onStop, input: screen.getByTestId('composer-input') as HTMLTextAreaElement };
}

describe('Composer', () => {
  it('sends on Enter and clears the text', async () => {
    const { onSend, input } = setup();
    await userEvent.type(input, 'Hello{Enter}');
    expect(onSend).toHaveBeenCalledWith('Hello');
    expect(input.value).toBe('');
  });

  it('inserts a new line on Shift+Enter without sending', async () => {
    const { onSend, input } = setup();
    await userEvent.type(input, 'one{Shift>}{Enter}{/Shift}two');
    expect(onSend).not.toHaveBeenCalled();
    expect(input.value).toBe('one\ntwo');
    await userEvent.type(input, '{Enter}');
    expect(onSend).toHaveBeenCalledWith('one\ntwo');
  });

  it('does not send blank text', async () => {
    const { onSend, input } = setup();
    await userEvent.type(input, '   {Enter}');
    expect(onSend).not.toHaveBeenCalled();
    expect(screen.getByTestId('send')).toBeDisabled();
  });

  it('keeps the text when sending failed', async () => {
    const onSend = vi.fn(() => false);
    const { input } = setup({ onSend });
    await userEvent.type(input, 'Hi{Enter}');
    expect(input.value).toBe('Hi');
  });

  it('shows Stop instead of Send while generating', async () => {
    const { onSend, onStop, input } = setup({ generating: true });
    expect(screen.queryByTestId('send')).toBeNull();
    await userEvent.click(screen.getByTestId('stop'));
    expect(onStop).toHaveBeenCalled();
    await userEvent.type(input, 'next{Enter}');
    expect(onSend).not.toHaveBeenCalled();
  });

  it('shows upload chips with their state and error', () => {
    setup({
      uploads: [
        { key: 1, name: 'a.pdf', size: 1, state: 'uploading', progress: 0.4, error: null, fileId: null },
        { key: 2, name: 'b.exe', size: 1, state: 'error', progress: 0, error: "This file type isn't supported", fileId: null },
      ],
    });
    const chips = screen.getAllByTestId('upload-chip');
    expect(chips.map((c) => c.dataset.state)).toEqual(['uploading', 'error']);
    expect(chips[0].querySelector('progress')?.value).toBeCloseTo(0.4);
    expect(screen.getByTestId('upload-error')).toHaveTextContent("This file type isn't supported");
    expect(screen.getByTestId('send')).toBeDisabled();
  });

  it('says "Processing…" once every byte is sent and the server is still reading the file', () => {
    setup({
      uploads: [{ key: 1, name: 'book.pdf', size: 1, state: 'uploading', progress: 1, error: null, fileId: null }],
    });
    expect(screen.getByTestId('upload-processing')).toHaveTextContent('Processing…');
    expect(screen.getByTestId('upload-chip').querySelector('progress')).toBeNull();
    expect(screen.getByTestId('file-input')).toHaveAttribute('accept', expect.stringContaining('.pdf,'));
  });
});

describe('Composer drafts', () => {
  it('keeps one unsent draft per conversation', async () => {
    sessionStorage.clear();
    const props = { generating: false, uploads: [], onSend: vi.fn(() => true), onStop: vi.fn(), onAttach: vi.fn(), onRemoveUpload: vi.fn() };
    const { rerender } = render(<Composer {...props} autoFocusKey="conv_a" />);
    const input = () => screen.getByTestId('composer-input') as HTMLTextAreaElement;
    await userEvent.type(input(), 'half a thought');
    rerender(<Composer {...props} autoFocusKey="conv_b" />);
    expect(input().value).toBe('');
    await userEvent.type(input(), 'for B');
    rerender(<Composer {...props} autoFocusKey="conv_a" />);
    expect(input().value).toBe('half a thought');
    await userEvent.type(input(), '{Enter}');
    expect(props.onSend).toHaveBeenCalledWith('half a thought');
    rerender(<Composer {...props} autoFocusKey="conv_b" />);
    expect(input().value).toBe('for B');
    rerender(<Composer {...props} autoFocusKey="conv_a" />);
    expect(input().value).toBe(''); // sent: its draft is gone
  });
});
