/**
 * `npm run serve` with SERVING_PROCESSES=2, as a child process (`serving/serve-cli.ts`): two API
 * processes on one port under a primary. Both serve and answer `/metrics` for both; an activation
 * reaches each (each has its own scorer pool and subscription); a killed process is replaced; a
 * SIGTERM to the primary stops them all; a process failing at start fails the start. Each process
 * logs its own answers to `recommendations.served` and flushes them when stopped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { get as httpGet, type ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../common/config.ts';
import { featureNames } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { loadModel } from '../../models/model-meta.ts';
import { activateModel, registerModel } from '../../models/registry.ts';
import { bootstrap } from '../../streams/bootstrap.ts';
import { readServed, stackContext, waitFor } from '../helpers.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ROUTE = '/v1/recommendations/:customerId';

interface Served {
  readonly proc: ChildProcess;
  /** stdout lines so far (the `serving on` line, pino's JSON lines). */
  readonly lines: string[];
  readonly stderr: string[];
  readonly exited: Promise<number | null>;
}

/** `serving/serve-cli.ts` with `env` on top of this process's environment. */
function serve(env: Record<string, string>): Served {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'serving/serve-cli.ts'], {
    cwd: ROOT,
    env: { ...process.env, SERVING_PORT: '0', SERVING_HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) => lines.push(l));
  createInterface({ input: proc.stderr }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
  return { proc, lines, stderr, exited };
}

interface LogLine {
  msg?: string;
  module?: string;
  pid?: number;
  route?: string;
  version?: string;
  request_id?: string;
}

/** The JSON log lines (pino, with the pid of the process that wrote each) matching `match`. */
function logged(s: Served, match: (l: LogLine) => boolean): LogLine[] {
  return s.lines.flatMap((l) => {
    if (!l.startsWith('{')) return [];
    const entry = JSON.parse(l) as LogLine;
    return match(entry) ? [entry] : [];
  });
}

/** Pids of the processes the primary said are ready, in order. */
const readyPids = (s: Served): number[] =>
  logged(s, (l) => l.module === 'serving-primary' && l.msg === 'process ready').map(
    (l) => l.pid ?? 0,
  );

/** Pids of the processes that logged activating `version`. */
const activatedIn = (s: Served, version: string): Set<number> =>
  new Set(
    logged(s, (l) => l.msg === 'model activated' && l.version === version).map((l) => l.pid ?? 0),
  );

/**
 * GET on a new connection each time (no keep-alive), so requests spread over the processes; fails
 * after 5 s.
 */
function getFresh(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet(url, { agent: false, timeout: 5_000, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
    })
      .on('timeout', function (this: ClientRequest) {
        this.destroy(new Error(`GET ${url}: no answer within 5 s`));
      })
      .on('error', reject);
  });
}

function metricValue(text: string, name: string, route: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{route="${route}"}`));
  return line === undefined ? NaN : Number(line.split(' ').pop());
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('SERVING_PROCESSES=2: two API processes on one port', () => {
  const config = loadConfig();
  const ns = `tproc${randomUUID().slice(0, 8)}`;
  const keys = keySpace(ns);
  const dir = mkdtempSync(join(tmpdir(), 'rec-processes-'));
  const redis = new Redis(config.redisUrl);
  const started: Served[] = [];
  let version: string;

  beforeAll(async () => {
    const b = await buildFixtureModel(join(dir, 'model'), {
      trees: 10,
      seed: 5,
      version: `fixture-processes-${ns}`,
    });
    const model = await loadModel(b.onnxPath, b.metaPath, featureNames(false));
    await registerModel(redis, keys, model);
    version = model.meta.version;
  });

  afterAll(async () => {
    for (const s of started) if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
    await deleteNamespace(redis, keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'serve on one port, report both in /metrics, each hot-swap, one killed is replaced, SIGTERM stops all',
    { timeout: 120_000 },
    async () => {
      const s = serve({
        SERVING_PROCESSES: '2',
        REDIS_NAMESPACE: ns,
        SCORER_WORKERS: '1',
        SERVING_MAX_IN_FLIGHT: '5',
        SERVING_ALLOW_FIXTURE_MODEL: 'true',
        EMBEDDINGS: 'off',
        // Every request's log line names the process (pid) that answered it.
        LOG_LEVEL: 'debug',
      });
      started.push(s);
      const url = await waitFor(
        'the serving on line',
        () => {
          const line = s.lines.find((l) => l.startsWith('serving on '));
          return line === undefined ? undefined : /serving on (http:\/\/\S+)/.exec(line)?.[1];
        },
        60_000,
      );
      expect(s.lines.find((l) => l.startsWith('serving on '))).toMatch(/\[2 processes\]$/);
      // pino writes asynchronously and the `serving on` line synchronously: the second
      // `process ready` line may reach the pipe just after it.
      const pids = await waitFor('both processes ready', () => {
        const ready = readyPids(s);
        return ready.length >= 2 ? ready : undefined;
      });
      expect(pids).toHaveLength(2);
      expect(new Set([...pids, s.proc.pid]).size).toBe(3);

      // Both answer (new connections go round robin); /metrics sums both (limit 2 × 5).
      for (let i = 0; i < 6; i++) {
        const r = await getFresh(`${url}/v1/recommendations/nobody-${i}?k=3`);
        expect(r.status).toBe(200);
      }
      const servedBy = await waitFor('the requests logged by both', () => {
        const by = logged(s, (l) => l.msg === 'request' && l.route === ROUTE).map((l) => l.pid);
        return new Set(by).size >= 2 ? by : undefined;
      });
      expect(new Set(servedBy)).toEqual(new Set(pids));
      const metrics = (await getFresh(`${url}/metrics`)).body;
      expect(metricValue(metrics, 'rec_serving_in_flight_limit', ROUTE)).toBe(10);
      expect(
        metrics
          .split('\n')
          .find((l) =>
            l.startsWith(
              `rec_serving_request_duration_seconds_count{route="${ROUTE}",status="200"}`,
            ),
          ),
      ).toMatch(/ 6$/);

      // An activation reaches both: each swaps its own scorer pool, and every answer, whichever
      // process gives it, reports the new model.
      const versions = async () =>
        Promise.all(
          Array.from({ length: 8 }, async () => {
            const r = await getFresh(`${url}/readyz`);
            return (JSON.parse(r.body) as { checks: { ranker: { version: string } } }).checks.ranker
              .version;
          }),
        );
      expect(new Set(await versions())).toEqual(new Set(['heuristic-v2']));
      await activateModel(redis, keys, version, { available: featureNames(false) });
      await waitFor('both processes on the new model', () => activatedIn(s, version).size === 2);
      expect(activatedIn(s, version)).toEqual(new Set(pids));
      expect(new Set(await versions())).toEqual(new Set([version]));

      // A process killed outright is replaced; once the primary has seen it go (a connection
      // handed to it just before is lost with it), the other answers meanwhile.
      const [victim, survivor] = pids as [number, number];
      process.kill(victim, 'SIGKILL');
      await waitFor('the primary to see the exit', () =>
        s.lines.some((l) => l.includes('"msg":"API process exited; starting another"')),
      );
      expect((await getFresh(`${url}/healthz`)).status).toBe(200);
      const replacement = await waitFor(
        'a replacement process',
        () => readyPids(s).find((p) => !pids.includes(p)),
        60_000,
      );
      expect(alive(victim)).toBe(false);
      // It loaded the active model at start.
      expect(activatedIn(s, version).has(replacement)).toBe(true);
      const after = (await getFresh(`${url}/metrics`)).body;
      expect(metricValue(after, 'rec_serving_in_flight_limit', ROUTE)).toBe(10);
      expect(new Set(await versions())).toEqual(new Set([version]));

      // SIGTERM to the primary stops every process, and the primary exits 0.
      s.proc.kill('SIGTERM');
      expect(await s.exited).toBe(0);
      expect([survivor, replacement].filter(alive)).toEqual([]);
      expect(s.stderr.join('\n')).not.toMatch(/serving failed/);
    },
  );

  it(
    'fails the start, stopping every process, when one cannot start',
    { timeout: 60_000 },
    async () => {
      const s = serve({
        SERVING_PROCESSES: '2',
        REDIS_NAMESPACE: ns,
        // Nothing listens there: each process fails to connect to the store.
        REDIS_URL: 'redis://127.0.0.1:1',
        LOG_LEVEL: 'warn',
      });
      started.push(s);
      expect(await s.exited).toBe(1);
      expect(s.lines.some((l) => l.startsWith('serving on '))).toBe(false);
      expect(s.stderr.join('\n')).toMatch(/serving failed: .*exited \(code 1\) before serving/);
    },
  );
});

describe('SERVING_PROCESSES=2: served-list logging', () => {
  const ctx = stackContext('processes-log');
  const ns = `tplog${randomUUID().slice(0, 8)}`;
  const redis = new Redis(ctx.config.redisUrl);
  const started: Served[] = [];

  beforeAll(async () => {
    await bootstrap(ctx);
  });
  afterAll(async () => {
    for (const s of started) if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
    await deleteNamespace(redis, keySpace(ns));
    redis.disconnect();
    await ctx.cleanup();
  });

  it(
    'each process logs the answers it gave, flushed when it is stopped',
    { timeout: 120_000 },
    async () => {
      const s = serve({
        SERVING_PROCESSES: '2',
        REDIS_NAMESPACE: ns,
        TOPIC_PREFIX: ctx.prefix,
        SCORER_WORKERS: '1',
        EMBEDDINGS: 'off',
        // Nothing is sent before the stop: what reaches the topic was flushed by the shutdown.
        SERVED_LOG_FLUSH_MS: '60000',
        LOG_LEVEL: 'debug',
      });
      started.push(s);
      const url = await waitFor(
        'the serving on line',
        () => {
          const line = s.lines.find((l) => l.startsWith('serving on '));
          return line === undefined ? undefined : /serving on (http:\/\/\S+)/.exec(line)?.[1];
        },
        60_000,
      );
      const ids = Array.from({ length: 6 }, (_, i) => `${ns}-${i}`);
      for (const [i, id] of ids.entries()) {
        const r = await getFresh(`${url}/v1/recommendations/nobody-${i}?k=3`, {
          'x-request-id': id,
        });
        expect(r.status).toBe(200);
      }
      const servedBy = new Set(
        logged(s, (l) => l.msg === 'request' && ids.includes(l.request_id ?? '')).map((l) => l.pid),
      );
      expect(servedBy.size).toBe(2);
      const before = (await getFresh(`${url}/metrics`)).body;
      expect(before).toMatch(/^rec_served_log_buffered 6$/m);
      expect(before).toMatch(/^rec_served_log_sent_total 0$/m);

      s.proc.kill('SIGTERM');
      expect(await s.exited).toBe(0);
      const records = await readServed(ctx);
      expect(records.map((r) => r.request_id).sort()).toEqual([...ids].sort());
      expect(records.every((r) => r.cold_start && r.variant === 'default')).toBe(true);
    },
  );
});
