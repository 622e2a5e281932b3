/**
 * `npm run experiment -- start --name X --variant control=heuristic:50 --variant treatment=<version>:50 [--salt S]`
 * starts an A/B experiment (models/experiments.ts): every model version it names is verified as
 * activation verifies it (signature under MODEL_SIGNING_KEY, features, checksum, ONNX) and the
 * experiment is refused when one fails or another experiment runs;
 * `npm run experiment -- stop [--promote <variant>]` stops it (after activating that variant's
 * model, when given); serving instances go back to the active model;
 * `npm run experiment -- status [--metrics <url>]` prints the running (or last) experiment, its
 * variants, weights and models; with an instance's `/metrics` URL, its answers and items per variant.
 *
 * Exit status: 0 done, 1 refused (the reason printed), 2 a command line that cannot be run.
 */
import { parseArgs } from 'node:util';
import { createRedis } from '../common/redis.ts';
import { loadConfig } from '../common/config.ts';
import { UsageError } from '../common/errors.ts';
import { featureNames } from '../features/definitions.ts';
import { keySpace } from '../features/keys.ts';
import {
  HEURISTIC_MODEL,
  experimentHistory,
  parseVariantArg,
  readExperiment,
  startExperiment,
  stopExperiment,
  type Experiment,
} from '../models/experiments.ts';
import { listModels } from '../models/registry.ts';

const USAGE = [
  'usage: npm run experiment -- start --name <name> --variant <name>=<model version|heuristic>:<weight> --variant ... [--salt <salt>]',
  '       npm run experiment -- stop [--promote <variant>]',
  '       npm run experiment -- status [--metrics <url of an instance, e.g. http://127.0.0.1:8080>]',
].join('\n');

interface Args {
  readonly command: 'start' | 'stop' | 'status';
  readonly name: string | undefined;
  readonly salt: string | undefined;
  readonly variants: readonly string[];
  readonly promote: string | undefined;
  readonly metrics: string | undefined;
}

function parseCommandLine(argv: string[]): Args {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        name: { type: 'string' },
        salt: { type: 'string' },
        variant: { type: 'string', multiple: true },
        promote: { type: 'string' },
        metrics: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
  }
  const { positionals, values } = parsed;
  const [command, ...rest] = positionals;
  if (command !== 'start' && command !== 'stop' && command !== 'status') {
    throw new UsageError(
      `${command === undefined ? 'a command is required' : `unknown command "${command}"`}\n${USAGE}`,
    );
  }
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest.join(' ')}"\n${USAGE}`);
  const allowed: Record<Args['command'], string[]> = {
    start: ['name', 'salt', 'variant'],
    stop: ['promote'],
    status: ['metrics'],
  };
  for (const k of Object.keys(values)) {
    if (!allowed[command].includes(k)) {
      throw new UsageError(`--${k} does not go with ${command}\n${USAGE}`);
    }
  }
  if (command === 'start') {
    if (values.name === undefined) throw new UsageError(`start needs --name\n${USAGE}`);
    if ((values.variant?.length ?? 0) < 2) {
      throw new UsageError(`start needs at least two --variant\n${USAGE}`);
    }
  }
  return {
    command,
    name: values.name,
    salt: values.salt,
    variants: values.variant ?? [],
    promote: values.promote,
    metrics: values.metrics,
  };
}

/** The experiment's lines: name, status, times, one line per variant. */
function describe(e: Experiment, modelStatus: ReadonlyMap<string, string>): string[] {
  const total = e.variants.reduce((n, v) => n + v.weight, 0);
  const lines = [
    `experiment ${e.name}: ${e.status}, started ${new Date(e.startedAt).toISOString()}` +
      (e.stoppedAt === null ? '' : `, stopped ${new Date(e.stoppedAt).toISOString()}`) +
      (e.promoted === null ? '' : `, promoted ${e.promoted}`),
    `  salt: ${e.salt}`,
  ];
  for (const v of e.variants) {
    const share = ((100 * v.weight) / total).toFixed(1);
    const status =
      v.model === HEURISTIC_MODEL ? 'heuristic-v2' : (modelStatus.get(v.model) ?? 'not registered');
    lines.push(`  ${v.name}\t${v.model}\tweight ${v.weight} (${share} %)\t${status}`);
  }
  return lines;
}

/** Answers and items per variant of `experiment`, summed from an instance's `/metrics` text. */
function variantCounts(
  text: string,
  experiment: string,
): Map<string, { answers: number; items: number }> {
  const counts = new Map<string, { answers: number; items: number }>();
  const line = /^rec_serving_experiment_(answers|items)_total\{([^}]*)\}\s+(\S+)/;
  for (const l of text.split('\n')) {
    const m = line.exec(l);
    if (!m) continue;
    const labels = new Map<string, string>();
    for (const x of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels.set(x[1] ?? '', x[2] ?? '');
    }
    const variant = labels.get('variant');
    if (labels.get('experiment') !== experiment || variant === undefined) continue;
    const c = counts.get(variant) ?? { answers: 0, items: 0 };
    c[m[1] === 'answers' ? 'answers' : 'items'] += Number(m[3]);
    counts.set(variant, c);
  }
  return counts;
}

async function main(): Promise<void> {
  const args = parseCommandLine(process.argv.slice(2));
  const config = loadConfig();
  const keys = keySpace(config.redisNamespace);
  const redis = createRedis(config);
  // Models are verified as activation (and serving) verifies them: this deployment's features and signatures.
  const checks = { available: featureNames(config.embeddings.enabled), trust: config.models.trust };
  const statuses = async () =>
    new Map((await listModels(redis, keys)).map((m) => [m.version, m.status]));
  try {
    if (args.command === 'start') {
      const variants = args.variants.map((v) => {
        try {
          return parseVariantArg(v);
        } catch (err) {
          throw new UsageError(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
        }
      });
      const e = await startExperiment(
        redis,
        keys,
        {
          name: args.name ?? '',
          variants,
          ...(args.salt === undefined ? {} : { salt: args.salt }),
        },
        checks,
      );
      console.log(`started experiment ${e.name}`);
      for (const l of describe(e, await statuses()).slice(1)) console.log(l);
    } else if (args.command === 'stop') {
      const e = await stopExperiment(redis, keys, {
        ...checks,
        ...(args.promote === undefined ? {} : { promote: args.promote }),
      });
      console.log(
        `stopped experiment ${e.name}` +
          (e.promoted === null
            ? '; serving instances rank with the active model again'
            : `; promoted ${e.promoted}: model ${e.variants.find((v) => v.name === e.promoted)?.model ?? '?'} is active`),
      );
    } else {
      const e = await readExperiment(redis, keys);
      if (e === null || e.status !== 'running') console.log('no experiment is running');
      if (e !== null) {
        for (const l of describe(e, await statuses())) console.log(l);
        if (e.status === 'running' && args.metrics !== undefined) {
          await printCounts(args.metrics, e);
        }
      }
      const past = await experimentHistory(redis, keys);
      if (past.length > (e?.status === 'stopped' ? 1 : 0)) {
        console.log(`${past.length} stopped experiment(s) in the history`);
      }
    }
  } finally {
    redis.disconnect();
  }
}

/** Answers and items per variant from one instance's `/metrics` (since that instance started). */
async function printCounts(url: string, e: Experiment): Promise<void> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new UsageError(`--metrics "${url}" is not a URL (e.g. http://127.0.0.1:8080)`);
  }
  if (target.pathname === '/' || target.pathname === '') target.pathname = '/metrics';
  const res = await fetch(target, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`GET ${target.origin}${target.pathname}: ${res.status}`);
  const counts = variantCounts(await res.text(), e.name);
  console.log(`counts of ${target.host} since it started (answers, items):`);
  for (const v of e.variants) {
    const c = counts.get(v.name) ?? { answers: 0, items: 0 };
    console.log(`  ${v.name}\t${c.answers} answers\t${c.items} items`);
  }
}

main().catch((err: unknown) => {
  const usage = err instanceof UsageError;
  console.error(`experiment: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(usage ? 2 : 1);
});
