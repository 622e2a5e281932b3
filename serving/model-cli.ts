/**
 * `npm run model -- fixture [--trees N] [--seed N] [--no-activate]` builds the LightGBM-shaped
 * fixture ranker (untrained, for benchmarks and tests), registers it and activates it;
 * `npm run model -- list` lists the registry; `npm run model -- activate <version>`.
 *
 * Registration signs the model when MODEL_SIGNING_KEY is set and prunes old versions (keeping the
 * active one, the last MODEL_KEEP_VERSIONS and rejected versions' reasons). Activation verifies
 * the model first (signature, features, checksum, ONNX) and refuses it, marking it rejected and
 * leaving the active version in place, when a check fails.
 *
 * Activating a fixture prints that serving instances refuse it unless they were started with
 * SERVING_ALLOW_FIXTURE_MODEL=true (serving/live-model.ts): the activation itself succeeds, so a
 * benchmark's opted-in instance can serve it, but users are never ranked by random trees.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRedis } from '../common/redis.ts';
import { loadConfig } from '../common/config.ts';
import { featureNames } from '../features/definitions.ts';
import { keySpace } from '../features/keys.ts';
import { buildFixtureModel } from '../models/fixture.ts';
import { HEURISTIC_VERSION } from './ranking.ts';
import { fixtureRefusal } from './live-model.ts';
import { loadModel, type ModelMeta } from '../models/model-meta.ts';
import { activateModel, listModels, readModel, registerModel } from '../models/registry.ts';

/** After activating `meta`: say when serving instances without the opt-in will refuse it. */
function warnIfRefused(meta: ModelMeta): void {
  const refusal = fixtureRefusal(meta, false);
  if (refusal !== null) {
    console.log(
      `note: ${refusal}; they keep their current model or rank with the heuristic ${HEURISTIC_VERSION}`,
    );
  }
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      trees: { type: 'string', default: '500' },
      seed: { type: 'string', default: '1' },
      'no-activate': { type: 'boolean', default: false },
    },
  });
  const config = loadConfig();
  const keys = keySpace(config.redisNamespace);
  const redis = createRedis(config);
  // Activation verifies the model as serving will: this deployment's features and signatures.
  const activation = {
    available: featureNames(config.embeddings.enabled),
    trust: config.models.trust,
  };
  try {
    const [command, arg] = positionals;
    if (command === 'fixture') {
      const dir = mkdtempSync(join(tmpdir(), 'rec-fixture-'));
      try {
        const built = await buildFixtureModel(dir, {
          features: featureNames(config.embeddings.enabled),
          trees: Number(values.trees),
          seed: Number(values.seed),
          python: config.python,
        });
        const model = await loadModel(
          built.onnxPath,
          built.metaPath,
          featureNames(config.embeddings.enabled),
        );
        await registerModel(redis, keys, model, {
          trust: config.models.trust,
          keep: config.models.keepVersions,
        });
        const signed = config.models.trust.key === undefined ? 'unsigned' : 'signed';
        console.log(
          `registered ${model.meta.version} (${model.meta.trees} trees, ${model.bytes.length} bytes, ${signed})`,
        );
        if (!values['no-activate']) {
          await activateModel(redis, keys, model.meta.version, activation);
          console.log(`activated ${model.meta.version}`);
          warnIfRefused(model.meta);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } else if (command === 'activate' && arg !== undefined) {
      await activateModel(redis, keys, arg, activation);
      console.log(`activated ${arg}`);
      const entry = await readModel(redis, keys, arg);
      if (entry !== null) warnIfRefused(entry.meta);
    } else if (command === 'list') {
      for (const m of await listModels(redis, keys)) {
        console.log(
          `${m.version}\t${m.status}\t${new Date(m.registeredAt).toISOString()}\t${m.reason ?? ''}`,
        );
      }
    } else {
      throw new Error(
        'usage: npm run model -- fixture [--trees N] [--seed N] [--no-activate] | list | activate <version>',
      );
    }
  } finally {
    redis.disconnect();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
