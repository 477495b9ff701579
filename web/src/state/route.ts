/** Where the app is, in the address: `#/c/<id>` a conversation, `#/keys`, `#/status`, and
 * nothing (or `#/`) the empty chat. Every change of page or conversation is a history entry,
 * so Back and Forward move between them and a reload or a bookmark comes back. */
import { useEffect, useRef } from 'react';

export type Page = 'chat' | 'keys' | 'status';

export interface Route {
  page: Page;
  conversationId: string | null;
}

export function parseRoute(hash: string): Route {
  const conversation = /^#\/c\/(conv_[0-9a-f]+)$/.exec(hash)?.[1];
  if (conversation) return { page: 'chat', conversationId: conversation };
  if (hash === '#/keys') return { page: 'keys', conversationId: null };
  if (hash === '#/status') return { page: 'status', conversationId: null };
  return { page: 'chat', conversationId: null };
}

export function routeHash({ page, conversationId }: Route): string {
  if (page !== 'chat') return `#/${page}`;
  return conversationId ? `#/c/${conversationId}` : '';
}

/** Keep the address and `route` in step: a new route pushes an entry (the first one replaces
 * what was loaded), and Back/Forward (or an edited address) call `onNavigate`. */
export function useRouteSync(route: Route, onNavigate: (route: Route) => void): void {
  const navigate = useRef(onNavigate);
  navigate.current = onNavigate;
  const first = useRef(true);
  const hash = routeHash(route);
  useEffect(() => {
    const here = window.location.hash === '#/' ? '' : window.location.hash;
    if (here === hash) {
      first.current = false;
      return;
    }
    const url = `${window.location.pathname}${window.location.search}${hash}`;
    if (first.current) window.history.replaceState(null, '', url);
    else window.history.pushState(null, '', url);
    first.current = false;
  }, [hash]);
  useEffect(() => {
    const onPop = () => navigate.current(parseRoute(window.location.hash));
    window.addEventListener('popstate', onPop);
    window.addEventListener('hashchange', onPop);
    return () => {
      window.removeEventListener('popstate', onPop);
      window.removeEventListener('hashchange', onPop);
    };
  }, []);
}
