/**
 * The Python environment's setup (venv.ts) on a real python3: it creates a venv and installs the
 * requirements without blocking the event loop (the demo's processors keep heartbeating to their
 * consumer groups meanwhile), runs once for callers that ask together, in this process or in
 * another, does nothing once the stamp matches, and names what failed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ensurePythonEnv } from './venv.ts';

const dir = mkdtempSync(join(tmpdir(), 'rec-venv-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The longest time the event loop went without running a 10 ms timer while `job` ran. */
async function loopGap<T>(job: () => Promise<T>): Promise<{ value: T; gapMs: number; ms: number }> {
  const t0 = performance.now();
  let last = t0;
  let gapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    gapMs = Math.max(gapMs, now - last);
    last = now;
  }, 10);
  try {
    const value = await job();
    const end = performance.now();
    gapMs = Math.max(gapMs, end - last);
    return { value, gapMs, ms: end - t0 };
  } finally {
    clearInterval(timer);
  }
}

describe('the Python environment', () => {
  it('is set up without blocking the event loop, once for callers that ask together', async () => {
    const paths = { venv: join(dir, 'env'), requirements: join(dir, 'requirements.txt') };
    writeFileSync(paths.requirements, '# nothing to install\n');
    const lines: string[] = [];
    const log = (l: string) => {
      lines.push(l);
    };
    const { value, gapMs, ms } = await loopGap(() =>
      Promise.all([ensurePythonEnv(log, paths), ensurePythonEnv(log, paths)]),
    );
    expect(value[0]).toBe(join(paths.venv, 'bin', 'python'));
    expect(value[1]).toBe(value[0]);
    // `python3 -m venv` alone takes seconds; a synchronous setup stalls the loop for all of it.
    expect(ms).toBeGreaterThan(500);
    expect(gapMs, `longest stall ${gapMs.toFixed(0)} ms of ${ms.toFixed(0)} ms`).toBeLessThan(
      Math.min(300, ms / 3),
    );
    expect(lines.filter((l) => l.startsWith('creating'))).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith('installing'))).toHaveLength(1);
    expect(readFileSync(join(paths.venv, '.requirements.sha256'), 'utf8')).toMatch(
      /^[0-9a-f]{64}\n$/,
    );

    // Set up: the stamp matches and nothing runs.
    const again: string[] = [];
    expect(
      await ensurePythonEnv((l) => {
        again.push(l);
      }, paths),
    ).toBe(value[0]);
    expect(again).toEqual([]);
  }, 120_000);

  it('runs once when two processes ask together: the second waits for the first and finds it done', async () => {
    const paths = { venv: join(dir, 'shared'), requirements: join(dir, 'shared.txt') };
    writeFileSync(paths.requirements, '# nothing to install\n');
    const venvModule = fileURLToPath(new URL('./venv.ts', import.meta.url));
    const other = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const { ensurePythonEnv } = await import(${JSON.stringify(venvModule)});
         await ensurePythonEnv((l) => console.log(l), ${JSON.stringify(paths)});`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let otherOut = '';
    other.stdout.on('data', (d: Buffer) => (otherOut += d.toString()));
    const exited = new Promise<number | null>((resolve) => other.once('close', resolve));
    const lines: string[] = [];
    // Let the other process take the lock first, most of the time; either order must give one setup.
    await new Promise((resolve) => setTimeout(resolve, 400));
    const python = await ensurePythonEnv((l) => {
      lines.push(l);
    }, paths);
    expect(await exited).toBe(0);
    const all = [...lines, ...otherOut.split('\n').filter((l) => l !== '')];
    expect(
      all.filter((l) => l.startsWith('creating')),
      all.join('\n'),
    ).toHaveLength(1);
    expect(
      all.filter((l) => l.startsWith('installing')),
      all.join('\n'),
    ).toHaveLength(1);
    // The two did overlap: one of them waited for the other's lock (else this proved nothing).
    expect(
      all.filter((l) => l.startsWith('waiting for another process')),
      all.join('\n'),
    ).toHaveLength(1);
    expect(python).toBe(join(paths.venv, 'bin', 'python'));
  }, 120_000);

  it('names the requirements it could not install, and tries again on the next call', async () => {
    const paths = { venv: join(dir, 'env'), requirements: join(dir, 'broken.txt') };
    writeFileSync(paths.requirements, 'this is not a requirement ((\n');
    const attempt = () => ensurePythonEnv(() => undefined, paths);
    await expect(attempt()).rejects.toThrow(
      /could not prepare the Python environment .*broken\.txt.*pip install .* exited with code [1-9]; its stderr ended: .*ERROR: Invalid requirement: 'this is not a requirement \(\('/,
    );
    writeFileSync(paths.requirements, '# fixed\n');
    await expect(attempt()).resolves.toBe(join(paths.venv, 'bin', 'python'));
  }, 120_000);
});
