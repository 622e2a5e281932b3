/**
 * Lock files between processes on one machine, and whether a pid is still alive (the stack
 * launcher's pid files, the Python venv's setup).
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * True when a process with this pid exists and is not a zombie (signal 0 probes without
 * delivering anything; a child that died but was not reaped yet still answers it).
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else — still alive.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    // No /proc (not Linux): trust the signal probe. With /proc, a missing entry means gone.
    return !existsSync('/proc/self/stat');
  }
}

/**
 * Take an exclusive lock file (holding our pid), waiting while a live process holds it; a lock
 * left by a dead process is taken over. Resolves to the release function. The stack launcher takes
 * one so two concurrent `up`s do not start the same service twice; the Python venv's setup so two
 * processes do not run pip into the same venv.
 */
export async function acquireLock(
  lockFile: string,
  onWait: (holder: number) => void,
  timeoutMs = 5 * 60_000,
): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  for (;;) {
    try {
      await writeFile(lockFile, `${process.pid}\n`, { flag: 'wx' });
      return () => rm(lockFile, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number.parseInt(await readFile(lockFile, 'utf8').catch(() => ''), 10);
    if (!Number.isInteger(holder) || holder <= 0 || !isAlive(holder)) {
      await rm(lockFile, { force: true });
      continue;
    }
    if (Date.now() >= deadline) {
      throw new Error(`another process (pid ${holder}) still holds ${lockFile}`);
    }
    if (!announced) onWait(holder);
    announced = true;
    await sleep(500);
  }
}
