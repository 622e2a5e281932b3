/**
 * Distributed training: a Dask LocalCluster of 2 worker processes (training/trainer/dask_local.py)
 * and `fitAndGate` (what a cycle runs) with `dask` set, on planted rows. The trainer trains with
 * lightgbm.dask on the cluster, and the shipped model passes the same ONNX parity check as the
 * in-process path's: inside the trainer (no model ships without it) and again with
 * `--check-parity` on the files written.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PurchaseLog, type PurchaseEvent } from '../evaluation/purchase-log.ts';
import { rng } from '../evaluation/stats.ts';
import { fitAndGate, type FitResult } from './fit.ts';
import { RECIPE, WEEK_MS, cycleWeeks, type Recipe } from './recipe.ts';
import { RowTable } from './rows.ts';
import { ensurePythonEnv } from './venv.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const FEATURES = ['f0', 'f1', 'f2', 'f3'];
const END = Date.UTC(2020, 8, 21);
const RECIPE_SMALL: Recipe = {
  ...RECIPE,
  trainWeeks: 2,
  gateWeeks: 1,
  trials: 2,
  minRounds: 0,
  maxRounds: 60,
  earlyStopping: 10,
  refit: true,
};

/** Per weekly cutoff, 60 customers x 15 candidates; buyers pick what scores high on f0 + f1. */
function planted(): { rows: RowTable; log: PurchaseLog } {
  const next = rng(11);
  const weeks = cycleWeeks(END, RECIPE_SMALL);
  const cutoffs = [...weeks.train, weeks.validation, ...weeks.gate];
  const rows = new RowTable(FEATURES);
  const events: PurchaseEvent[] = [];
  let qid = 0;
  for (const cutoff of cutoffs) {
    for (let c = 0; c < 60; c++) {
      const customer = `c${String(c)}`;
      const cands = Array.from({ length: 15 }, (_, a) => {
        const values = FEATURES.map(() => next() * 2 - 1);
        const utility = (values[0] ?? 0) + 0.7 * (values[1] ?? 0) + 0.3 * next();
        return { article: `a${String((c * 7 + a) % 200)}`, values, utility };
      });
      const best = [...cands].sort((x, y) => y.utility - x.utility)[0];
      for (const cand of cands) {
        const bought = cand === best;
        rows.push({
          qid,
          customerId: customer,
          articleId: cand.article,
          cutoff,
          label: bought ? 1 : 0,
          sources: 'trending',
          values: cand.values,
          heuristic: next(),
        });
        if (bought) events.push({ customer, article: cand.article, time: cutoff + 86_400_000 });
      }
      events.push({ customer, article: `a${String(c % 200)}`, time: cutoff - WEEK_MS + 3_600_000 });
      qid++;
    }
  }
  return { rows, log: new PurchaseLog(events) };
}

/** Start the local cluster; resolves with its scheduler address. */
function startCluster(python: string): Promise<{ proc: ChildProcess; address: string }> {
  const proc = spawn(
    python,
    ['-m', 'training.trainer.dask_local', '--workers', '2', '--threads', '1'],
    { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout });
    lines.once('line', (address) => {
      resolve({ proc, address: address.trim() });
    });
    proc.once('exit', (code) => {
      reject(new Error(`dask_local exited (${String(code)}): ${stderr}`));
    });
  });
}

describe('training on a Dask cluster (--dask)', () => {
  let python: string;
  let cluster: { proc: ChildProcess; address: string } | undefined;
  let work: string;

  beforeAll(async () => {
    python = await ensurePythonEnv();
    work = mkdtempSync(join(tmpdir(), 'rec-dask-'));
    cluster = await startCluster(python);
  }, 120_000);

  afterAll(async () => {
    if (cluster !== undefined) {
      const exited = new Promise((r) => cluster?.proc.once('exit', r));
      cluster.proc.stdin?.end(); // closing stdin shuts the cluster down
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (cluster.proc.exitCode === null) cluster.proc.kill('SIGKILL');
    }
    rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it(
    'trains with lightgbm.dask on 2 workers and ships a model that passes the ONNX parity check',
    {
      timeout: 120_000,
    },
    async () => {
      const { rows, log } = planted();
      const lines: string[] = [];
      const fit: FitResult = await fitAndGate({
        python,
        recipe: RECIPE_SMALL,
        weeks: cycleWeeks(END, RECIPE_SMALL),
        rows,
        log,
        workDir: work,
        active: null,
        say: (line) => lines.push(line),
        dask: cluster?.address ?? '',
      });
      expect(fit.trainer.dask).toEqual({ workers: 2, partitions: 2 });
      expect(lines.some((l) => l.includes('dask: tcp://127.0.0.1:'))).toBe(true);
      // The planted signal is learnt (random ranking of 15 candidates with one bought: ~0.22).
      expect(Number(fit.trainer.valid_map12)).toBeGreaterThan(0.6);
      expect(Number(fit.trainer.parity_max_abs_diff)).toBeLessThan(1e-4);
      expect(fit.shipped.meta.features).toEqual(FEATURES);
      expect(fit.gate.weeks).toHaveLength(1);

      // The same parity check the in-process path's models pass, on the files written.
      const out = join(work, 'model');
      const check = spawnSync(
        python,
        [
          ...['-m', 'training.trainer', '--check-parity', join(out, 'model.onnx')],
          ...['--valid', join(work, 'valid.arrow')],
        ],
        { cwd: ROOT, encoding: 'utf8' },
      );
      expect(check.status, check.stderr).toBe(0);
      const summary = JSON.parse(check.stdout.trim().split('\n').at(-1) ?? '{}') as {
        ok?: boolean;
        rows?: number;
      };
      expect(summary.ok).toBe(true);
      expect(summary.rows).toBeGreaterThan(900);
    },
  );
});
