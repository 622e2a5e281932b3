/**
 * Process plumbing for the stack launcher: the `.stack` folder layout, pid files (and proving a
 * pid is still the process we started), detached spawning with output to a log file, stopping,
 * port probes, polling with a deadline, and running helper commands (mvn, apt-get, java tools).
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stripVTControlCharacters } from 'node:util';
import { hostEnv } from '../common/config.ts';
import { RecError } from '../common/errors.ts';
import { isAlive } from '../common/lock.ts';

/** Repository root: two levels above this file, independent of the working directory. */
export const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');

/** Absolute paths of everything the launcher keeps under `STACK_DIR`. */
export interface StackPaths {
  readonly root: string;
  /** Pid files and the `up` lock. */
  readonly run: string;
  readonly logs: string;
  /** Service data (Kafka log dirs, registry H2 database, Redis AOF). */
  readonly data: string;
}

/** Resolve `STACK_DIR` (relative paths are taken from the repository root, not the cwd). */
export function stackPaths(stackDir: string): StackPaths {
  const root = isAbsolute(stackDir) ? stackDir : resolve(repoRoot, stackDir);
  return {
    root,
    run: join(root, 'run'),
    logs: join(root, 'logs'),
    data: join(root, 'data'),
  };
}

/** Create the `STACK_DIR` skeleton. */
export async function makeStackDirs(paths: StackPaths): Promise<void> {
  await Promise.all([paths.run, paths.logs, paths.data].map((d) => mkdir(d, { recursive: true })));
}

/**
 * Whether `pid` is alive and its command line contains `marker`. The check guards against pid
 * reuse after a reboot or crash: a stale pid file must never make us signal a stranger. Where
 * `/proc` is missing (not Linux) liveness alone decides.
 */
async function isOurProcess(pid: number, marker: string): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.split('\0').join(' ').includes(marker);
  } catch {
    return !existsSync('/proc/self');
  }
}

/**
 * Read a pid file and return the pid if that process is still ours (see `marker`); a stale or
 * unreadable pid file is removed and `undefined` returned.
 */
export async function readLivePid(pidFile: string, marker: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(pidFile, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(text.trim(), 10);
  if (Number.isInteger(pid) && pid > 0 && (await isOurProcess(pid, marker))) return pid;
  await rm(pidFile, { force: true });
  return undefined;
}

export interface DetachedSpec {
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  readonly logFile: string;
  readonly pidFile: string;
}

/** First line written to a service's log on each start, so failures show only this run. */
const START_BANNER = '==== stack launcher start';

/** Log files above this size are rotated to `<name>.1` when the service starts again. */
const LOG_ROTATE_BYTES = 20 * 1024 * 1024;

/**
 * Start a long-running process in its own process group, detached from ours, with stdout and
 * stderr appended to `logFile`; write its pid to `pidFile` and return the pid.
 */
export async function spawnDetached(spec: DetachedSpec): Promise<number> {
  if (existsSync(spec.logFile) && statSync(spec.logFile).size > LOG_ROTATE_BYTES) {
    renameSync(spec.logFile, `${spec.logFile}.1`);
  }
  const fd = openSync(spec.logFile, 'a');
  try {
    writeSync(
      fd,
      `${START_BANNER} ${new Date().toISOString()}: ${spec.command} ${spec.args.join(' ')}\n`,
    );
    const child = spawn(spec.command, [...spec.args], {
      cwd: spec.cwd,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    const pid = await new Promise<number>((ok, fail) => {
      child.once('error', fail);
      child.once('spawn', () => {
        if (child.pid === undefined) fail(new Error(`${spec.command}: no pid after spawn`));
        else ok(child.pid);
      });
    });
    child.unref();
    await writeFile(spec.pidFile, `${pid}\n`);
    return pid;
  } finally {
    closeSync(fd);
  }
}

/** Send `signal` to the process group led by `pid` (our children are group leaders). */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/** How a stop request ended. */
export type StopOutcome = 'stopped' | 'killed' | 'not running';

/**
 * Stop the process named by `pidFile` if it is still ours: SIGTERM, wait up to `graceMs`, then
 * SIGKILL. The pid file is removed in every case.
 */
export async function stopByPidFile(
  pidFile: string,
  marker: string,
  graceMs = 20_000,
): Promise<StopOutcome> {
  const pid = await readLivePid(pidFile, marker);
  if (pid === undefined) return 'not running';
  signalGroup(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) {
      await rm(pidFile, { force: true });
      return 'stopped';
    }
    await sleep(200);
  }
  signalGroup(pid, 'SIGKILL');
  while (isAlive(pid)) await sleep(100);
  await rm(pidFile, { force: true });
  return 'killed';
}

/** True when something accepts TCP connections on `host:port`. */
export function portInUse(port: number, host = '127.0.0.1', timeoutMs = 1_000): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ port, host });
    const finish = (used: boolean) => {
      socket.destroy();
      done(used);
    };
    socket.setTimeout(timeoutMs, () => {
      finish(true);
    });
    socket.once('connect', () => {
      finish(true);
    });
    socket.once('error', () => {
      finish(false);
    });
  });
}

/** Seconds since `since` (a `Date.now()` value), e.g. "4.2 s". */
export function elapsed(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/**
 * Poll `check` every `intervalMs` until it returns true. Returns 'ok', 'timeout', or 'exited'
 * when `pid` (the process being waited for) dies first.
 */
export async function waitUntil(
  check: () => Promise<boolean>,
  options: { timeoutMs: number; intervalMs?: number; pid?: number },
): Promise<'ok' | 'timeout' | 'exited'> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await check()) return 'ok';
    if (options.pid !== undefined && !isAlive(options.pid)) return 'exited';
    if (Date.now() >= deadline) return 'timeout';
    await sleep(options.intervalMs ?? 500);
  }
}

/**
 * The last `n` lines a service wrote to its log since its latest start ('' when there is no log).
 */
export async function tailLog(file: string, n = 20): Promise<string> {
  try {
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
    const start = lines.findLastIndex((l) => l.startsWith(START_BANNER));
    return lines.slice(Math.max(start + 1, lines.length - n)).join('\n');
  } catch {
    return '';
  }
}

/** Thrown when a helper command exits non-zero; carries its combined output. */
export class CommandError extends RecError {
  override readonly name: string = 'CommandError';
  constructor(
    message: string,
    readonly output: string,
  ) {
    super('REC_ERR_STACK', message);
  }
}

/** Run a command to completion (no shell), returning stdout; output is kept for the error. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((ok, fail) => {
    execFile(
      command,
      [...args],
      {
        cwd: options.cwd ?? repoRoot,
        env: options.env ?? hostEnv.forChild(),
        timeout: options.timeoutMs ?? 15 * 60_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err) {
          const output = stripVTControlCharacters(`${stdout}${stderr}`).trim();
          const tail = output.split('\n').slice(-30).join('\n');
          const reason =
            typeof err.code === 'number'
              ? `exit code ${err.code}`
              : err.signal
                ? `${err.killed ? 'timed out, ' : ''}killed by ${err.signal}`
                : err.message;
          const cmd = [command, ...args].join(' ');
          fail(
            new CommandError(`\`${cmd}\` failed (${reason})${tail ? `:\n${tail}` : ''}`, output),
          );
        } else ok(stdout);
      },
    );
  });
}

/** Find an executable by name on PATH, then in `fallbacks`; undefined when absent. */
export function findExecutable(
  name: string,
  fallbacks: readonly string[] = [],
): string | undefined {
  const dirs = hostEnv.searchPath();
  const candidates = [...dirs.map((d) => join(d, name)), ...fallbacks];
  return candidates.find((c) => {
    try {
      const s = statSync(c);
      return s.isFile() && (s.mode & 0o111) !== 0;
    } catch {
      return false;
    }
  });
}

/** `java` from JAVA_HOME, else PATH; throws with a hint when missing. */
export function javaExecutable(): string {
  const home = hostEnv.javaHome();
  const fromHome = home ? findExecutable('java', [join(home, 'bin', 'java')]) : undefined;
  const java = fromHome ?? findExecutable('java');
  if (java === undefined) {
    throw new Error(
      'java not found: install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless)',
    );
  }
  return java;
}

/** `mvn` from PATH; throws with a hint when missing. */
export function mavenExecutable(): string {
  const mvn = findExecutable('mvn');
  if (mvn === undefined)
    throw new Error('mvn not found: install Maven (e.g. apt-get install maven)');
  return mvn;
}

/**
 * Serialise async jobs: Maven runs one at a time, because two concurrent `mvn` processes may
 * write the same files in ~/.m2 at once.
 */
export function createMutex(): <T>(job: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(job: () => Promise<T>) => {
    const result = tail.then(job);
    tail = result.catch(() => undefined);
    return result;
  };
}
