import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './components/App';
import { AuthProvider } from './state/auth';
import { applyTheme, initialTheme } from './state/theme';
// KaTeX's stylesheet and fonts: bundled into web/dist/assets, served by nginx (font-src 'self').
import 'katex/dist/katex.min.css';
import './styles/app.css';

applyTheme(initialTheme());

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <AuthProvider>
      <App />
    </AuthProvider>
  </StrictMode>,
);
