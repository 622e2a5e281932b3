/**
 * The demo storefront page (`/demo`): static files from serving/demo-page/ (plain HTML, CSS and an
 * ES module, no build step, nothing fetched from elsewhere) that use the public API from the
 * browser. Every answer carries a strict Content-Security-Policy (scripts, styles and requests
 * from this origin only, no inline code, no framing).
 *
 * `GET /demo/config.json` tells the page whether it may buy: the ingest key it should send
 * (`config.demoPage.ingestKey`, DEMO_PAGE_KEY) only when one was given explicitly — the page is
 * read-only otherwise. Anyone who can load the page can read that key: set it for a local demo
 * only (docs/serving.md, "The demo page").
 */
import { readFileSync } from 'node:fs';
import { Hono } from 'hono';
import type { AppEnv, RouteContext } from './context.ts';

/** The page's files, by the path they are served at. */
const FILES = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
} as const;

export const DEMO_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'Content-Security-Policy': DEMO_PAGE_CSP,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
} as const;

export function demoPageRoutes(ctx: RouteContext): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const { enabled, ingestKey } = ctx.config.demoPage;
  if (!enabled) return app;
  const dir = new URL('../demo-page/', import.meta.url);
  const files = new Map(
    Object.entries(FILES).map(([name, type]) => [
      name,
      { body: readFileSync(new URL(name, dir), 'utf8'), type },
    ]),
  );
  const send = (name: keyof typeof FILES) => {
    const f = files.get(name);
    if (f === undefined) throw new Error(`demo page file ${name} missing`);
    return new Response(f.body, {
      headers: { ...SECURITY_HEADERS, 'Content-Type': f.type, 'Cache-Control': 'no-cache' },
    });
  };
  app.get('/demo', () => send('index.html'));
  app.get('/demo/', () => send('index.html'));
  app.get('/demo/app.js', () => send('app.js'));
  app.get('/demo/style.css', () => send('style.css'));
  app.get(
    '/demo/config.json',
    () =>
      new Response(
        JSON.stringify({
          ingest_key: ingestKey?.reveal() ?? null,
          purchases_path: '/v1/events/purchases',
        }),
        {
          headers: {
            ...SECURITY_HEADERS,
            'Content-Type': 'application/json',
            'Cache-Control': 'no-store',
          },
        },
      ),
  );
  return app;
}
