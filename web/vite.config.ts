/// <reference types="vitest/config" />
import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// https://vite.dev/config/
export default defineConfig({
  plugins: [react()],
  build: {
    // highlight.js's common languages and KaTeX make one ~900 kB chunk (275 kB gzipped); fine
    // for this app, and one request.
    chunkSizeWarningLimit: 1000,
    // Fonts (KaTeX's) stay files: the CSP's font-src 'self' refuses data: fonts.
    assetsInlineLimit: (file: string) => (/\.(woff2?|ttf|otf)$/.test(file) ? false : undefined),
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.ts'],
    include: ['src/**/*.test.{ts,tsx}'],
  },
})
