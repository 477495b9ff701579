import { fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { ModelPicker } from './ModelPicker';

describe('ModelPicker', () => {
  it('is not shown while the upstreams serve one model', () => {
    const { container } = render(<ModelPicker models={['only']} value="" onChange={() => {}} />);
    expect(container).toBeEmptyDOMElement();
  });

  it('lists the models and reports the choice', () => {
    const onChange = vi.fn();
    render(<ModelPicker models={['a', 'b']} value="a" onChange={onChange} />);
    const select = screen.getByTestId('model-picker') as HTMLSelectElement;
    expect([...select.options].map((o) => o.value)).toEqual(['', 'a', 'b']);
    expect(select.value).toBe('a');
    fireEvent.change(select, { target: { value: 'b' } });
    expect(onChange).toHaveBeenCalledWith('b');
  });

  it('keeps a model no upstream serves now, marked unavailable', () => {
    render(<ModelPicker models={['a', 'b']} value="gone" onChange={() => {}} />);
    const select = screen.getByTestId('model-picker') as HTMLSelectElement;
    expect(select.value).toBe('gone');
    expect(select.selectedOptions[0].textContent).toBe('gone (unavailable)');
  });
});
