/**
 * Steps 1 to 3 of the serving benchmark: load the dataset, process it with the real processors
 * and build the co-buyer lists; build, register and activate the fixture model; pick the customers
 * to request; start the API and wait until it ranks with the model.
 */
import { randomBytes } from 'node:crypto';
import { scanKeys } from '../../common/redis.ts';
import { featureNames } from '../../features/definitions.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { buildCoBuyers } from '../../processors/co-buyers.ts';
import { loadModel, type LoadedModel } from '../../models/model-meta.ts';
import { activateModel, registerModel } from '../../models/registry.ts';
import { consumerLag } from '../../streams/admin.ts';
import { runLoad } from '../../streams/loader/load.ts';
import { ensurePythonEnv } from '../../training/venv.ts';
import { spawnTs, stopChild, type Child } from './children.ts';
import { CANDIDATES, K, WORKERS, type BenchOptions } from './options.ts';
import type { BenchRun } from './setup.ts';
import { round, say, sleep } from './stats.ts';

/**
 * 1. Load the dataset into the run's topics and process it (`processors/processors-cli.ts` as a
 * child process) until every consumer group's lag is 0; the seconds processing took.
 */
export async function loadAndProcess(run: BenchRun, data: string): Promise<number> {
  say(`loading ${data} into topics ${run.prefix}*`);
  const load = await runLoad({
    config: { ...run.config, ...run.endpoints, topicPrefix: run.prefix },
    logger: run.logger,
    dataDir: data,
    progress: false,
  });
  say(
    `published ${load.published.articles} articles, ${load.published.customers} customers, ${load.published.purchases} purchases in ${round(load.publishMs / 1000, 1)} s`,
  );
  const tProc = performance.now();
  const proc = startProcessors(run);
  await untilCaughtUp(run, proc, tProc);
  const processingS = (performance.now() - tProc) / 1000;
  say(`processed (every consumer group at lag 0) in ${round(processingS, 1)} s`);
  await stopChild(proc);
  // The co-buyer lists a training cycle builds, so that requests read and score them.
  const cb = await buildCoBuyers(run.redis, run.keys, {});
  say(`co-buyer lists: ${cb.written} articles in ${round(cb.ms / 1000, 1)} s`);
  return processingS;
}

/**
 * The processors (`processors/processors-cli.ts`) as a child process on the run's topics, consumer
 * groups and namespace; `run.children.processors`.
 */
export function startProcessors(run: BenchRun): Child {
  const proc = spawnTs('processors', 'processors/processors-cli.ts', {
    ...run.childEnv,
    TOPIC_PREFIX: run.prefix,
    PROCESSOR_GROUP: run.groupPrefix,
    PROCESSOR_METRICS_PORT: '0',
  });
  run.children.processors = proc;
  void (async () => {
    for await (const line of proc.lines) process.stderr.write(`  [processors] ${line}\n`);
  })();
  return proc;
}

async function untilCaughtUp(run: BenchRun, proc: Child, tProc: number): Promise<void> {
  const { groups } = run;
  let lastSay = 0;
  for (;;) {
    if (!proc.alive) throw new Error('the processors exited before catching up');
    const lags = await Promise.all(
      groups.map(async (g) =>
        (await consumerLag(run.admin, g.group, g.topic)).reduce(
          (s, p) => s + Math.max(0, p.lag),
          0,
        ),
      ),
    );
    if (lags.every((l) => l === 0)) break;
    if (performance.now() - lastSay > 5_000) {
      lastSay = performance.now();
      say(`processing: lag ${groups.map((g, i) => `${g.topic} ${lags[i] ?? '?'}`).join(', ')}`);
    }
    if (performance.now() - tProc > 15 * 60_000) {
      throw new Error('the processors did not catch up within 15 min');
    }
    await sleep(250);
  }
}

/**
 * 2. Build the fixture ranker (`trees` trees, depth 6), register it and activate it. The fixture
 * is built by the project's Python (`REC_PYTHON`, else `.venv`, created or brought up to date the
 * way the demo does on a fresh clone).
 */
export async function buildModel(run: BenchRun, trees: number): Promise<LoadedModel> {
  const features = featureNames(run.config.embeddings.enabled);
  const python = run.config.python ?? (await ensurePythonEnv(say));
  const built = await buildFixtureModel(run.modelDir, {
    features,
    trees,
    depth: 6,
    seed: 1,
    python,
  });
  const model: LoadedModel = await loadModel(built.onnxPath, built.metaPath, features);
  const { trust, keepVersions } = run.config.models;
  await registerModel(run.redis, run.keys, model, { trust, keep: keepVersions });
  await activateModel(run.redis, run.keys, model.meta.version, { available: features, trust });
  say(
    `model ${model.meta.version}: ${model.meta.trees} trees, depth 6, ${model.meta.features.length} features, ${model.bytes.length} bytes`,
  );
  return model;
}

export interface Customers {
  /** Every customer in the store. */
  readonly knownAll: readonly string[];
  readonly known: readonly string[];
  readonly cold: readonly string[];
  /** Known and cold, shuffled: the order requests go in. */
  readonly customers: readonly string[];
  readonly coldSet: ReadonlySet<string>;
  /** The request path of each customer (`customers` order). */
  readonly paths: readonly string[];
}

/** Customers: known ones from the store, cold ones never seen (`coldShare` of all). */
export async function pickCustomers(run: BenchRun, opts: BenchOptions): Promise<Customers> {
  const knownAll: string[] = [];
  for await (const batch of scanKeys(run.redis, run.keys.customerStates, 2000)) {
    for (const k of batch) {
      const id = run.keys.customerOf(k);
      if (id !== null) knownAll.push(id);
    }
  }
  if (knownAll.length === 0) {
    throw new Error(
      `no customer state in namespace ${run.ns} after processing: nothing to request`,
    );
  }
  knownAll.sort();
  const known = shuffle([...knownAll]).slice(0, opts.known);
  const coldCount = Math.round(
    (known.length * opts.coldShare) / Math.max(1e-9, 1 - opts.coldShare),
  );
  const cold = Array.from({ length: coldCount }, () => randomBytes(32).toString('hex'));
  const customers = shuffle([...known, ...cold]);
  const paths = customers.map((c) => `/v1/recommendations/${c}?k=${K}`);
  say(
    `${knownAll.length} customers in the store; requesting ${known.length} known + ${cold.length} cold (${round(cold.length / customers.length, 3)} cold)`,
  );
  return { knownAll, known, cold, customers, coldSet: new Set(cold), paths };
}

function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
}

/**
 * 3. Start the API (`serving/serve-cli.ts`) and wait until it is ready and ranks with `model`;
 * its base URL.
 */
export async function startApi(
  run: BenchRun,
  model: LoadedModel,
  probeCustomer: string,
  processes: number,
  cpuProfDir: string | null = null,
): Promise<{ api: Child; base: string }> {
  const api = spawnTs(
    'api',
    'serving/serve-cli.ts',
    {
      ...run.childEnv,
      SERVING_PORT: '0',
      SERVING_HOST: '127.0.0.1',
      SCORER_WORKERS: String(WORKERS),
      SERVING_MAX_CANDIDATES: String(CANDIDATES),
      SERVING_ALLOW_FIXTURE_MODEL: 'true',
      SERVING_PROCESSES: String(processes),
    },
    cpuProfDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`],
  );
  run.children.api = api;
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error('the API did not start within 60 s'));
    }, 60_000);
    void api.exited.then((code) => {
      reject(new Error(`the API exited (code ${code ?? 'signal'}) before serving`));
    });
    void (async () => {
      for await (const line of api.lines) {
        const m = /serving on (http:\/\/\S+)/.exec(line);
        if (m?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(m[1]);
        } else process.stderr.write(`  [api] ${line}\n`);
      }
    })();
  });
  const probe = `${base}/v1/recommendations/${probeCustomer}?k=${K}`;
  for (let i = 0; ; i++) {
    if (i > 600) throw new Error('the API never became ready with the fixture model');
    const ready = await fetch(`${base}/readyz`).catch(() => null);
    if (ready?.status === 200) {
      const body = (await (await fetch(probe)).json()) as { model_version?: string };
      if (body.model_version === model.meta.version) break;
    }
    await sleep(100);
  }
  say(`API at ${base} ready, ranking with ${model.meta.version}`);
  return { api, base };
}
