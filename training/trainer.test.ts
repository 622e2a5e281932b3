/**
 * The Python trainer's own suite (training/trainer/test_*.py: MAP@12 cases, planted-signal
 * training, ONNX parity, tampered-model detection, error cases) run from vitest, so `npm test`
 * covers it.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ensurePythonEnv } from './venv.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

describe('python trainer', () => {
  it(
    'passes its pytest suite (training, parity check, refused tampered model)',
    { timeout: 300_000 },
    async () => {
      const python = await ensurePythonEnv();
      const run = spawnSync(python, ['-m', 'pytest', 'training', '-q', '-p', 'no:cacheprovider'], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      const summary = `${run.stdout}\n${run.stderr}`.trim().split('\n').slice(-30).join('\n');
      expect(run.status, summary).toBe(0);
      expect(run.stdout).toMatch(/\d+ passed/);
    },
  );
});
