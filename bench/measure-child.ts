/**
 * A benchmark's measuring child: the same script run again with the child's arguments in a fresh
 * Node process (so its peak resident memory and CPU are its own), its progress on our stderr,
 * its figures the JSON line it prints last.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Run `script` (relative to the checkout) with `args`; its last stdout line, parsed. */
export function runMeasureChild(
  script: string,
  args: string[],
  what: string,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`${what} failed (exit ${String(code ?? signal)})`));
        return;
      }
      resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>);
    });
  });
}
