/**
 * The project's Python environment: `.venv` at the repository root with the pinned
 * `training/requirements.txt`, created (or brought up to date) on demand, so `npm run demo` works
 * on a fresh clone. A stamp file holds the requirements' hash; pip runs only when it changed.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const VENV = `${ROOT}.venv`;
const REQUIREMENTS = `${ROOT}training/requirements.txt`;
const STAMP = `${VENV}/.requirements.sha256`;
/**
 * venv's and pip's output goes to stderr: the entry points that call this (the benchmarks, the
 * backtest) keep stdout for their one JSON line.
 */
const PROGRESS_ON_STDERR: ['ignore', number, number] = ['ignore', 2, 2];

/** Path of the venv's python, after making sure the pinned requirements are installed. */
export function ensurePythonEnv(log: (line: string) => void = () => undefined): string {
  const python = `${VENV}/bin/python`;
  const want = createHash('sha256').update(readFileSync(REQUIREMENTS)).digest('hex');
  if (existsSync(python) && existsSync(STAMP) && readFileSync(STAMP, 'utf8').trim() === want) {
    return python;
  }
  try {
    if (!existsSync(python)) {
      log('creating .venv (python3 -m venv)');
      execFileSync('python3', ['-m', 'venv', VENV], { stdio: PROGRESS_ON_STDERR });
    }
    log('installing training/requirements.txt into .venv');
    execFileSync(
      python,
      ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-r', REQUIREMENTS],
      { stdio: PROGRESS_ON_STDERR },
    );
  } catch (err) {
    throw new Error(
      `could not prepare the Python environment (.venv from training/requirements.txt): ` +
        `${err instanceof Error ? err.message : String(err)}. Python 3 with venv and pip is needed ` +
        `(Debian: apt-get install python3-venv).`,
      { cause: err },
    );
  }
  writeFileSync(STAMP, `${want}\n`);
  return python;
}
