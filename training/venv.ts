/**
 * The project's Python environment: `.venv` at the repository root with the pinned
 * `training/requirements.txt`, created (or brought up to date) on demand, so `npm run demo` works
 * on a fresh clone. A stamp file holds the requirements' hash; pip runs only when it changed.
 *
 * The setup runs pip in a child process without blocking the event loop (it takes about a minute
 * on a fresh clone, and the demo's processors and the scheduled trainer keep working meanwhile),
 * and one setup at a time: a second caller in the process waits for the running one, another
 * process for the lock file beside the venv (`.venv.lock`), and both then find it done.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runToEnd } from '../common/child.ts';
import { errorMessage } from '../common/errors.ts';
import { acquireLock } from '../common/lock.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Where the environment lives and what it installs (the repository's, unless a test says). */
export interface PythonEnvPaths {
  readonly venv: string;
  readonly requirements: string;
}

const PROJECT_ENV: PythonEnvPaths = {
  venv: `${ROOT}.venv`,
  requirements: `${ROOT}training/requirements.txt`,
};

/** How long a setup waits for another process's (a slow pip takes minutes). */
const LOCK_WAIT_MS = 15 * 60_000;

/** Setups under way, by venv folder. */
const preparing = new Map<string, Promise<string>>();

/** Path of the venv's python, after making sure the pinned requirements are installed. */
export function ensurePythonEnv(
  log: (line: string) => void = () => undefined,
  paths: PythonEnvPaths = PROJECT_ENV,
): Promise<string> {
  const running = preparing.get(paths.venv);
  if (running !== undefined) return running;
  const setup = prepare(paths, log).finally(() => preparing.delete(paths.venv));
  preparing.set(paths.venv, setup);
  return setup;
}

async function prepare({ venv, requirements }: PythonEnvPaths, log: (line: string) => void) {
  const python = `${venv}/bin/python`;
  const stamp = `${venv}/.requirements.sha256`;
  const want = createHash('sha256').update(readFileSync(requirements)).digest('hex');
  const ready = () =>
    existsSync(python) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === want;
  if (ready()) return python;
  const release = await acquireLock(
    `${venv}.lock`,
    (holder) => {
      log(`waiting for another process (pid ${holder}) setting up the Python environment`);
    },
    LOCK_WAIT_MS,
  );
  try {
    // Another process may have set it up while this one waited.
    if (!ready()) {
      await install(python, venv, requirements, log);
      writeFileSync(stamp, `${want}\n`);
    }
  } finally {
    await release();
  }
  return python;
}

async function install(
  python: string,
  venv: string,
  requirements: string,
  log: (line: string) => void,
): Promise<void> {
  try {
    if (!existsSync(python)) {
      log('creating .venv (python3 -m venv)');
      await runToEnd('python3', ['-m', 'venv', venv]);
    }
    log(
      `installing ${requirements.startsWith(ROOT) ? requirements.slice(ROOT.length) : requirements} into .venv`,
    );
    await pipInstall(python, requirements);
  } catch (err) {
    throw new Error(
      `could not prepare the Python environment (${venv} from ${requirements}): ` +
        `${errorMessage(err)}. Python 3 with venv and pip is needed ` +
        `(Debian: apt-get install python3-venv).`,
      { cause: err },
    );
  }
}

/** `pip install -r <requirements>` into the venv whose python this is, without blocking. */
export function pipInstall(python: string, requirements: string): Promise<void> {
  return runToEnd(python, [
    '-m',
    'pip',
    'install',
    '-q',
    '--disable-pip-version-check',
    '-r',
    requirements,
  ]);
}
