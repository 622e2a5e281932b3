/**
 * Builds the FIXTURE ranker (models/fixture_model.py, a LightGBM-shaped ONNX tree ensemble, not
 * a trained model) for tests and benchmarks only: its metadata says `kind: "fixture"`, and
 * serving refuses it unless started with SERVING_ALLOW_FIXTURE_MODEL=true / `allowFixtureModel`
 * (serving/live-model.ts). Runs the project's venv Python (`.venv/bin/python` at the repository
 * root; `REC_PYTHON` overrides).
 */
import { execFile } from 'node:child_process';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { featureNames } from '../features/definitions.ts';
import { ModelError, parseModelMeta, type ModelMeta } from './model-meta.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SCRIPT = join(ROOT, 'models', 'fixture_model.py');
const HINT = 'run: python3 -m venv .venv && .venv/bin/pip install -r training/requirements.txt';

export interface FixtureOptions {
  /** Input columns, in order (default: the features computed with embeddings off). */
  readonly features?: readonly string[];
  readonly trees?: number;
  readonly depth?: number;
  readonly seed?: number;
  /** Default `fixture-<seed>-<trees>`. */
  readonly version?: string;
  /** The Python to run (config `python`, `REC_PYTHON`; default the project's `.venv`). */
  readonly python?: string | undefined;
}

export interface FixtureModel {
  readonly onnxPath: string;
  readonly metaPath: string;
  readonly meta: ModelMeta;
}

const VENV_PYTHON = join(ROOT, '.venv', 'bin', 'python');

/** Run a command; on failure, reject with its stderr (or the spawn error) as the message. */
function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: ROOT, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => {
      if (!err) {
        resolve();
        return;
      }
      const detail = stderr.trim() !== '' ? stderr.trim() : err.message;
      reject(new Error(detail, { cause: err }));
    });
  });
}

/** Write `<outDir>/model.onnx` and `<outDir>/model.json` for a fixture ranker. */
export async function buildFixtureModel(
  outDir: string,
  opts: FixtureOptions = {},
): Promise<FixtureModel> {
  const py = opts.python ?? VENV_PYTHON;
  try {
    await access(py);
  } catch (err) {
    throw new ModelError(`no Python at ${py} to build the fixture model; ${HINT}`, { cause: err });
  }
  await mkdir(outDir, { recursive: true });
  const featuresJson = join(outDir, 'features.json');
  await writeFile(featuresJson, JSON.stringify(opts.features ?? featureNames(false)));
  const args = [SCRIPT, '--out', outDir, '--features-json', featuresJson];
  if (opts.trees !== undefined) args.push('--trees', String(opts.trees));
  if (opts.depth !== undefined) args.push('--depth', String(opts.depth));
  if (opts.seed !== undefined) args.push('--seed', String(opts.seed));
  if (opts.version !== undefined) args.push('--version', opts.version);
  try {
    await run(py, args);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    const hint = /No module named '?(onnx|numpy)/.test(detail) ? `; ${HINT}` : '';
    throw new ModelError(`building the fixture model failed: ${detail}${hint}`, { cause: err });
  }
  const onnxPath = join(outDir, 'model.onnx');
  const metaPath = join(outDir, 'model.json');
  const meta = parseModelMeta(JSON.parse(await readFile(metaPath, 'utf8')), metaPath);
  return { onnxPath, metaPath, meta };
}
