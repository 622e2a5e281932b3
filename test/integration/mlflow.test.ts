/**
 * MLflow tracking end to end: a real `mlflow server` from the project venv (SQLite backend,
 * artifacts served by the server) on a free local port; the trainer (training/trainer/) trains on small planted
 * rows (written by the TypeScript row writer) with MLFLOW_TRACKING_URI pointing at it; the run is
 * then read back through MLflow's REST API: parameters, the trials as child runs with their
 * metrics, the model files as artifacts, and the link in model.json. The registry entry made
 * from that model.json links the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../common/config.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { parseModelMeta } from '../../models/model-meta.ts';
import { readModel, registerModel } from '../../models/registry.ts';
import { RowTable, writeRows } from '../../training/rows.ts';
import { rng } from '../../evaluation/stats.ts';
import { ensurePythonEnv } from '../../training/venv.ts';
import { freePort } from '../helpers.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FEATURES = ['f0', 'f1', 'f2', 'f3'];
const DAY = 86_400_000;
const EXPERIMENT = `mlflow-test-${randomUUID().slice(0, 8)}`;

interface RestRun {
  info: { run_id: string; experiment_id: string; status: string; run_name: string };
  data: {
    params?: { key: string; value: string }[];
    metrics?: { key: string; value: number; step: string }[];
    tags?: { key: string; value: string }[];
  };
}

/** The parts of the trainer's model.json this test compares with the run. */
interface TrainerMeta {
  data_hash: string;
  params: Record<string, unknown>;
  metrics: Record<string, number>;
}

/** Deterministic uniform numbers in [0, 1) (mulberry32). */
const random = rng;

/** Queries whose buyers pick what scores high on f0 + 0.7 f1 (f2, f3 noise; some NaN). */
function plantedRows(queries: number, perQuery: number, cutoff: number, seed: number): RowTable {
  const rnd = random(seed);
  const table = new RowTable(FEATURES, queries * perQuery);
  for (let q = 0; q < queries; q++) {
    const values = Array.from({ length: perQuery }, () =>
      FEATURES.map(() => (rnd() < 0.05 ? NaN : rnd() * 2 - 1)),
    );
    const utility = values.map(
      (v) => (Number.isNaN(v[0]) ? -2 : (v[0] ?? 0)) + 0.7 * (v[1] ?? 0) + 0.3 * rnd(),
    );
    const top = new Set(
      utility
        .map((u, i) => [u, i] as const)
        .sort((a, b) => b[0] - a[0])
        .slice(0, 1 + (q % 2))
        .map(([, i]) => i),
    );
    values.forEach((v, i) => {
      table.push({
        qid: seed * 10_000 + q,
        customerId: `c${q}`,
        articleId: `a${Math.floor(rnd() * 500)}`,
        cutoff,
        label: top.has(i) ? 1 : 0,
        sources: 'test',
        values: v,
      });
    });
  }
  return table;
}

/** Run a command; resolves with its exit code, stdout and stderr. */
function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, stdout, stderr });
    });
  });
}

describe('MLflow tracking of a training run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rec-mlflow-'));
  let server: ChildProcess | undefined;
  let serverLog = '';
  let url = '';
  let startMs = 0;

  const api = async <T>(path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };

  beforeAll(async () => {
    const python = await ensurePythonEnv();
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const t0 = performance.now();
    // Own process group (detached): afterAll stops the server and its workers together.
    server = spawn(
      join(dirname(python), 'mlflow'),
      [
        'server',
        '--backend-store-uri',
        `sqlite:///${join(dir, 'mlflow.db')}`,
        '--artifacts-destination',
        join(dir, 'artifacts'),
        '--serve-artifacts',
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--workers',
        '1',
      ],
      { cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    server.stdout?.on('data', (d: Buffer) => (serverLog += d.toString()));
    server.stderr?.on('data', (d: Buffer) => (serverLog += d.toString()));
    const exited = new Promise<void>((resolve) =>
      server?.once('exit', () => {
        resolve();
      }),
    );
    const deadline = Date.now() + 150_000;
    for (;;) {
      const up = await fetch(`${url}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) break;
      const gone = await Promise.race([
        exited.then(() => true),
        new Promise<false>((r) =>
          setTimeout(() => {
            r(false);
          }, 250),
        ),
      ]);
      if (gone || Date.now() > deadline) {
        throw new Error(
          `mlflow server did not answer on ${url} (${gone ? 'it exited' : 'timeout'}): ${serverLog.slice(-2000)}`,
        );
      }
    }
    startMs = performance.now() - t0;
    console.info(`mlflow server answered after ${(startMs / 1000).toFixed(1)} s`);
  });

  afterAll(async () => {
    const child = server;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise<void>((resolve) =>
        child.once('exit', () => {
          resolve();
        }),
      );
      process.kill(-child.pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      }, 10_000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'logs params, one child run per trial, the metrics and the model files; model.json links the run',
    { timeout: 120_000 },
    async () => {
      const t0 = Date.UTC(2020, 6, 6);
      await writeRows(join(dir, 'train.arrow'), plantedRows(80, 10, t0, 1), { cutoffs: [t0] });
      await writeRows(join(dir, 'valid.arrow'), plantedRows(40, 10, t0 + 7 * DAY, 2), {
        cutoffs: [t0 + 7 * DAY],
      });
      const out = join(dir, 'model');
      const started = performance.now();
      const trainer = await run(
        await ensurePythonEnv(),
        [
          '-m',
          'training.trainer',
          '--rows',
          join(dir, 'train.arrow'),
          '--valid',
          join(dir, 'valid.arrow'),
          '--out',
          out,
          '--trials',
          '3',
          '--num-boost-round',
          '40',
          '--early-stopping',
          '10',
          '--version',
          'mlflow-it',
        ],
        { ...process.env, MLFLOW_TRACKING_URI: url, MLFLOW_EXPERIMENT_NAME: EXPERIMENT },
      );
      console.info(`trainer with tracking: ${((performance.now() - started) / 1000).toFixed(1)} s`);
      expect(trainer.code, trainer.stderr).toBe(0);
      expect(trainer.stderr).not.toContain('warning: MLflow');
      const lines = trainer.stdout.split('\n').filter((l) => l.trim() !== '');
      expect(lines).toHaveLength(1); // the summary line only
      const summary = JSON.parse(lines[0] ?? '{}') as { tracking: unknown };
      const modelJson = readFileSync(join(out, 'model.json'), 'utf8');
      const written = JSON.parse(modelJson) as TrainerMeta;
      const meta = parseModelMeta(written, 'model.json');
      const tracking = meta.tracking;
      if (tracking === null || tracking === undefined) throw new Error('model.json: no tracking');
      expect(summary.tracking).toEqual(tracking);
      expect(tracking.uri).toBe(url);

      // The run: tags, every LightGBM param and the settings, the final metrics.
      const { run: parent } = await api<{ run: RestRun }>(
        `/api/2.0/mlflow/runs/get?run_id=${tracking.run_id}`,
      );
      expect(parent.info).toMatchObject({
        experiment_id: tracking.experiment_id,
        status: 'FINISHED',
        run_name: 'mlflow-it',
      });
      const { experiment } = await api<{ experiment: { name: string } }>(
        `/api/2.0/mlflow/experiments/get?experiment_id=${tracking.experiment_id}`,
      );
      expect(experiment.name).toBe(EXPERIMENT);
      const tags = Object.fromEntries((parent.data.tags ?? []).map((t) => [t.key, t.value]));
      expect(tags).toMatchObject({ version: 'mlflow-it', data_hash: written.data_hash });
      const params = Object.fromEntries((parent.data.params ?? []).map((p) => [p.key, p.value]));
      for (const [k, v] of Object.entries(written.params)) {
        expect(params[k], k).toBe(typeof v === 'string' ? v : JSON.stringify(v));
      }
      expect(params).toMatchObject({ objective: 'lambdarank', trials: '3', seed: '42' });
      expect(JSON.parse(params.features ?? '[]')).toEqual(FEATURES);
      const metrics = (parent.data.metrics ?? []).filter((m) => Number(m.step) === 0);
      const metric = (k: string) => metrics.find((m) => m.key === k)?.value;
      expect(metric('valid_map12')).toBeCloseTo(written.metrics.valid_map12 ?? NaN, 6);
      expect(metric('best_iteration')).toBe(written.metrics.best_iteration);
      expect(metric('parity_max_abs_diff')).toBeLessThanOrEqual(1e-4);
      const history = await api<{ metrics: { step: string; value: number }[] }>(
        `/api/2.0/mlflow/metrics/get-history?run_id=${tracking.run_id}&metric_key=trial_map12`,
      );
      expect(history.metrics.map((m) => Number(m.step)).sort()).toEqual([0, 1, 2]);

      // One child run per Optuna trial, with its searched params and its metrics.
      const { runs: children = [] } = await api<{ runs?: RestRun[] }>(
        '/api/2.0/mlflow/runs/search',
        {
          experiment_ids: [tracking.experiment_id],
          filter: `tags.mlflow.parentRunId = '${tracking.run_id}'`,
        },
      );
      expect(children).toHaveLength(3);
      const trialTags = children.map((c) =>
        Object.fromEntries((c.data.tags ?? []).map((t) => [t.key, t.value])),
      );
      expect(trialTags.map((t) => t.trial).sort()).toEqual(['0', '1', '2']);
      expect(trialTags.filter((t) => t.shipped === 'true')).toHaveLength(1);
      for (const child of children) {
        expect(child.info.status).toBe('FINISHED');
        expect((child.data.metrics ?? []).map((m) => m.key).sort()).toEqual([
          'best_iteration',
          'map12',
          'seconds',
        ]);
        const keys = (child.data.params ?? []).map((p) => p.key);
        expect(keys).toEqual(expect.arrayContaining(['num_leaves', 'learning_rate', 'max_depth']));
      }

      // The model files, uploaded through the server; its model.json is the one written.
      const { files = [] } = await api<{ files?: { path: string; file_size?: string }[] }>(
        `/api/2.0/mlflow/artifacts/list?run_id=${tracking.run_id}`,
      );
      expect(files.map((f) => f.path).sort()).toEqual([
        'model.json',
        'model.lgb.txt',
        'model.onnx',
      ]);
      const logged = await fetch(
        `${url}/get-artifact?path=model.json&run_uuid=${tracking.run_id}`,
      ).then((r) => r.text());
      expect(logged).toBe(modelJson);

      // The registry entry made from this model.json links the same run.
      const redis = new Redis(loadConfig().redisUrl);
      const keys = keySpace(`m${randomUUID().slice(0, 8)}`);
      try {
        await registerModel(redis, keys, { meta, bytes: readFileSync(join(out, 'model.onnx')) });
        expect((await readModel(redis, keys, meta.version))?.meta.tracking).toEqual(tracking);
      } finally {
        await deleteNamespace(redis, keys);
        redis.disconnect();
      }
    },
  );
});
