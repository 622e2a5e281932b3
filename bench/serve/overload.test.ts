import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { overloadRun } from './overload.ts';

describe('overloadRun', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    // /ok answers 200, /busy 503, /broken 500, /slow never within the timeout; /metrics empty.
    server = createServer((req, res) => {
      const status = { '/ok': 200, '/busy': 503, '/broken': 500 }[req.url ?? ''];
      if (req.url === '/slow') return;
      res.writeHead(req.url === '/metrics' ? 200 : (status ?? 404)).end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('offers the rate open loop and classes every answer', async () => {
    const r = await overloadRun(
      { base, paths: ['/ok', '/busy', '/broken', '/ok', '/slow'], apiPid: process.pid },
      100,
      1,
      500,
    );
    expect(r.sent).toBe(100);
    expect(r.status_2xx).toBe(40);
    expect(r.status_503).toBe(20);
    expect(r.status_5xx_other).toBe(20);
    // /slow: a timeout each, however long the server keeps them
    expect(r.timeouts).toBe(20);
    expect(r.connection_errors).toBe(0);
    expect(r.accepted.p99_ms).toBeLessThan(1000);
  });
});
