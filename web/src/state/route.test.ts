import { describe, expect, it } from 'vitest';
import { parseRoute, routeHash } from './route';

describe('route', () => {
  it('reads each page and conversation from the address', () => {
    expect(parseRoute('#/c/conv_0a1b')).toEqual({ page: 'chat', conversationId: 'conv_0a1b' });
    expect(parseRoute('#/keys')).toEqual({ page: 'keys', conversationId: null });
    expect(parseRoute('#/status')).toEqual({ page: 'status', conversationId: null });
    expect(parseRoute('')).toEqual({ page: 'chat', conversationId: null });
  });

  it('treats anything else as the empty chat, never as an id', () => {
    for (const hash of ['#/c/', '#/c/conv_XYZ', '#/c/conv_1/extra', '#/admin', '#<script>']) {
      expect(parseRoute(hash)).toEqual({ page: 'chat', conversationId: null });
    }
  });

  it('round-trips through routeHash', () => {
    for (const hash of ['#/c/conv_beef', '#/keys', '#/status', '']) {
      expect(routeHash(parseRoute(hash))).toBe(hash);
    }
  });
});
