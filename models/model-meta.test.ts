import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { featureNames } from '../features/definitions.ts';
import { buildFixtureModel, type FixtureModel } from './fixture.ts';
import { loadModel, ModelError, modelMetaSchema } from './model-meta.ts';

/** The features this build computes with embeddings off (the default). */
const FEATURE_NAMES = featureNames(false);

let dir: string;
let fixture: FixtureModel;
let onnx: Buffer;
let metaJson: Record<string, unknown>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rec-model-'));
  const t0 = performance.now();
  fixture = await buildFixtureModel(join(dir, 'base'), { features: FEATURE_NAMES, seed: 11 });
  console.log(
    `fixture model (500 trees, depth 6, ${FEATURE_NAMES.length} features) built in ${Math.round(performance.now() - t0)} ms`,
  );
  onnx = await readFile(fixture.onnxPath);
  metaJson = JSON.parse(await readFile(fixture.metaPath, 'utf8')) as Record<string, unknown>;
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Write a variant of the fixture (its ONNX bytes and metadata changed as given). */
async function variant(
  name: string,
  change: { bytes?: Buffer; meta?: Record<string, unknown>; drop?: string[] },
): Promise<{ onnxPath: string; metaPath: string }> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  const meta: Record<string, unknown> = { ...metaJson, ...change.meta };
  for (const k of change.drop ?? []) Reflect.deleteProperty(meta, k);
  const onnxPath = join(d, 'model.onnx');
  const metaPath = join(d, 'model.json');
  await writeFile(onnxPath, change.bytes ?? onnx);
  await writeFile(metaPath, JSON.stringify(meta));
  return { onnxPath, metaPath };
}

async function refusal(p: Promise<unknown>): Promise<ModelError> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelError);
  expect((err as ModelError).code).toBe('REC_ERR_MODEL');
  return err as ModelError;
}

describe('fixture model', () => {
  it('writes LightGBM-shaped metadata the schema accepts', () => {
    const meta = modelMetaSchema.parse(metaJson);
    expect(meta).toMatchObject({
      version: 'fixture-11-500',
      kind: 'fixture',
      objective: 'lambdarank',
      features: FEATURE_NAMES,
      trees: 500,
      onnx_input: 'input',
      onnx_output: 'variable',
    });
    expect(fixture.meta.onnx_sha256).toMatch(/^[0-9a-f]{64}$/);
    // Extra fields (training's params, metrics, ...) pass through.
    expect(metaJson.params).toEqual({ depth: 6, seed: 11 });
    expect(fixture.meta.params).toEqual({ depth: 6, seed: 11 });
  });

  it('is byte-identical for the same arguments', async () => {
    const again = await buildFixtureModel(join(dir, 'again'), { seed: 11, trees: 500 });
    expect((await readFile(again.onnxPath)).equals(onnx)).toBe(true);
    const other = await buildFixtureModel(join(dir, 'other'), { seed: 12, trees: 20, depth: 3 });
    expect(other.meta.version).toBe('fixture-12-20');
    expect((await readFile(other.onnxPath)).equals(onnx)).toBe(false);
  });

  it('says how to create the venv when Python is missing', async () => {
    const python = join(dir, 'no-such-python');
    const err = await refusal(buildFixtureModel(join(dir, 'nopy'), { trees: 1, python }));
    expect(err.message).toContain('python3 -m venv .venv');
  });
});

describe('loadModel', () => {
  it('loads the fixture and returns its metadata and bytes', async () => {
    const m = await loadModel(fixture.onnxPath, fixture.metaPath, FEATURE_NAMES);
    expect(m.meta.version).toBe('fixture-11-500');
    expect(m.bytes.equals(onnx)).toBe(true);
  });

  it('refuses a model needing features serving cannot produce, naming them', async () => {
    const p = await variant('unknown-features', {
      meta: { features: [...FEATURE_NAMES.slice(0, -2), 'x_future_a', 'x_future_b'] },
    });
    const err = await refusal(loadModel(p.onnxPath, p.metaPath, FEATURE_NAMES));
    expect(err.message).toBe(
      'model fixture-11-500 needs features serving cannot produce: x_future_a, x_future_b',
    );
  });

  it('keeps the MLflow run link of a tracked training, and accepts none', async () => {
    const tracking = { uri: 'http://127.0.0.1:5000', experiment_id: '1', run_id: 'abc123' };
    const p = await variant('tracked', { meta: { tracking } });
    expect((await loadModel(p.onnxPath, p.metaPath, FEATURE_NAMES)).meta.tracking).toEqual(
      tracking,
    );
    const q = await variant('untracked', { meta: { tracking: null } });
    expect((await loadModel(q.onnxPath, q.metaPath, FEATURE_NAMES)).meta.tracking).toBeNull();
    const r = await variant('bad-tracking', { meta: { tracking: { uri: 'x', run_id: 7 } } });
    const err = await refusal(loadModel(r.onnxPath, r.metaPath, FEATURE_NAMES));
    expect(err.message).toContain('tracking.experiment_id:');
    expect(err.message).toContain('tracking.run_id:');
  });

  it('refuses metadata with a bad field, naming the file and the field', async () => {
    const p = await variant('bad-meta', { meta: { kind: 'xgboost' }, drop: ['onnx_output'] });
    const err = await refusal(loadModel(p.onnxPath, p.metaPath, FEATURE_NAMES));
    expect(err.message).toContain(p.metaPath);
    expect(err.message).toContain('kind:');
    expect(err.message).toContain('onnx_output:');
    const q = await variant('not-json', {});
    await writeFile(q.metaPath, '{"version": ');
    expect((await refusal(loadModel(q.onnxPath, q.metaPath, FEATURE_NAMES))).message).toContain(
      'is not valid JSON',
    );
    expect(
      (await refusal(loadModel(q.onnxPath, join(dir, 'missing.json'), FEATURE_NAMES))).message,
    ).toContain('cannot read model metadata');
  });

  it('refuses a truncated ONNX file (checksum, and ONNX Runtime without one)', async () => {
    const half = onnx.subarray(0, onnx.length >> 1);
    const p = await variant('truncated', { bytes: half });
    const err = await refusal(loadModel(p.onnxPath, p.metaPath, FEATURE_NAMES));
    expect(err.message).toContain('does not match the onnx_sha256');
    const q = await variant('truncated-nosum', { bytes: half, drop: ['onnx_sha256'] });
    const err2 = await refusal(loadModel(q.onnxPath, q.metaPath, FEATURE_NAMES));
    expect(err2.message).toContain('ONNX Runtime cannot load it');
  });

  it('refuses an ONNX file with flipped bytes', async () => {
    const flipped = Buffer.from(onnx);
    // Inside the tree attributes: a threshold changes, the protobuf may still parse.
    for (let i = 0; i < 8; i++) {
      const at = (flipped.length >> 1) + i * 4099;
      flipped.writeUInt8(flipped.readUInt8(at) ^ 0x5a, at);
    }
    const p = await variant('flipped', { bytes: flipped });
    expect((await refusal(loadModel(p.onnxPath, p.metaPath, FEATURE_NAMES))).message).toContain(
      'does not match the onnx_sha256',
    );
    // Bytes flipped in the protobuf framing are refused by ONNX Runtime itself.
    const framing = Buffer.from(onnx);
    for (let i = 0; i < 64; i++) framing.writeUInt8(framing.readUInt8(i) ^ 0xff, i);
    const q = await variant('flipped-nosum', { bytes: framing, drop: ['onnx_sha256'] });
    expect((await refusal(loadModel(q.onnxPath, q.metaPath, FEATURE_NAMES))).message).toContain(
      'ONNX Runtime cannot load it',
    );
  });

  it('refuses a model whose ONNX input width differs from its metadata features', async () => {
    const p = await variant('narrow-meta', { meta: { features: FEATURE_NAMES.slice(0, -1) } });
    const err = await refusal(loadModel(p.onnxPath, p.metaPath, FEATURE_NAMES));
    expect(err.message).toContain(
      `input "input" has shape [, ${FEATURE_NAMES.length}] but the metadata lists ${FEATURE_NAMES.length - 1} features`,
    );
  });

  it('refuses metadata naming an input or output the model does not have', async () => {
    const p = await variant('wrong-input', { meta: { onnx_input: 'features' } });
    expect((await refusal(loadModel(p.onnxPath, p.metaPath, FEATURE_NAMES))).message).toContain(
      'no input named "features" (inputs: input)',
    );
    const q = await variant('wrong-output', { meta: { onnx_output: 'score' } });
    expect((await refusal(loadModel(q.onnxPath, q.metaPath, FEATURE_NAMES))).message).toContain(
      'no output named "score" (outputs: variable)',
    );
  });
});
