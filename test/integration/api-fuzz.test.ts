/**
 * Property-based fuzz of the HTTP API from its own `/openapi.json`: Schemathesis (from the pinned
 * venv) generates a few thousand requests — schema examples, boundary values, random valid and
 * invalid inputs, undeclared methods — against a real instance on the real Redis, and runs every
 * check it has: no 5xx, every response matching its declared schema and status, valid requests
 * accepted, invalid ones refused with a 4xx, undeclared methods answered 405. The seed is fixed,
 * so a failure replays.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../common/config.ts';
import { createLogger } from '../../common/logger.ts';
import { keySpace } from '../../features/keys.ts';
import { startServing, type ServingHandle } from '../../serving/server.ts';
import { ensurePythonEnv } from '../../training/venv.ts';

describe('the API under Schemathesis', () => {
  let serving: ServingHandle;
  const work = mkdtempSync(join(tmpdir(), 'rec-fuzz-'));

  beforeAll(async () => {
    serving = await startServing({
      redisUrl: loadConfig().redisUrl,
      keys: keySpace(`fuzz${randomUUID().slice(0, 8)}`),
      logger: createLogger('silent', 'fuzz'),
      port: 0,
      host: '127.0.0.1',
    });
  });
  afterAll(async () => {
    await serving.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('answers every generated request without a 5xx and as its schema says', async () => {
    const st = join(dirname(ensurePythonEnv()), 'st');
    // Asynchronous: the API answering Schemathesis runs in this process's event loop.
    const child = spawn(
      st,
      [
        'run',
        `${serving.url}/openapi.json`,
        '--url',
        serving.url,
        '--checks',
        'all',
        '--max-examples',
        '150',
        '--seed',
        '20261130',
        '--no-color',
      ],
      // In a folder of its own: Schemathesis keeps a cache (`.schemathesis/`) where it runs.
      { cwd: work, env: { ...process.env, SCHEMATHESIS_TELEMETRY: 'false' } },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const status = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(status, out.slice(-4_000)).toBe(0);
    const generated = Number(/(\d+) generated/.exec(out)?.[1] ?? 0);
    expect(generated, out.slice(-2_000)).toBeGreaterThanOrEqual(1_500);
    expect(out).toMatch(new RegExp(`${generated} generated, ${generated} passed`));
  }, 300_000);
});
