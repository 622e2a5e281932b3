/**
 * The benchmark's child processes (the processors and the API, each a TypeScript entry point run
 * with tsx): started with their stderr echoed, stopped with SIGTERM then SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { say } from './stats.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  /** Lines of stdout, for the caller to watch (also echoed to stderr). */
  readonly lines: AsyncIterable<string>;
  alive: boolean;
}

/** Start `script` under tsx; `nodeArgs` go to node before it (e.g. `--cpu-prof`). */
export function spawnTs(
  name: string,
  script: string,
  env: NodeJS.ProcessEnv,
  nodeArgs: readonly string[] = [],
): Child {
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', script], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { stdout, stderr } = proc;
  stderr.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() !== '') process.stderr.write(`  [${name}] ${line}\n`);
    }
  });
  const lines = createInterface({ input: stdout });
  const child: Child = {
    name,
    proc,
    lines,
    alive: true,
    exited: new Promise((resolve) => {
      proc.on('exit', (code) => {
        child.alive = false;
        resolve(code);
      });
    }),
  };
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: Child | null, graceMs = 15_000): Promise<void> {
  if (child === null || !child.alive) return;
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.alive) {
      say(`${child.name} did not stop within ${graceMs} ms; SIGKILL`);
      child.proc.kill('SIGKILL');
    }
  }, graceMs);
  await child.exited;
  clearTimeout(timer);
}
