/**
 * Ranking model metadata (`model.json` beside `model.onnx`) and the checks a model must pass
 * before serving may use it: the metadata parses, every feature it needs is one serving can
 * produce, the ONNX file is the one the metadata describes (sha256 when given), ONNX Runtime loads
 * it, its named input takes exactly `features.length` float columns and its named output exists.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Tensor, type InferenceSession } from 'onnxruntime-node';
import { z } from 'zod';
import { RecError } from '../common/errors.ts';
import { createSession } from './onnx.ts';

/** Every failure to read, validate, load or swap in a model. */
export class ModelError extends RecError {
  override readonly name: string = 'ModelError';
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('REC_ERR_MODEL', message, opts);
  }
}

export const modelMetaSchema = z
  .looseObject({
    version: z.string().min(1),
    kind: z.enum(['fixture', 'lightgbm']),
    objective: z.string().min(1),
    features: z
      .array(z.string().min(1))
      .min(1)
      .refine((names) => new Set(names).size === names.length, 'lists a feature twice'),
    trees: z.number().int().positive(),
    created_at: z.iso.datetime({ offset: true }),
    onnx_input: z.string().min(1),
    onnx_output: z.string().min(1),
    /** Hex sha256 of model.onnx; when present the file must match it (tamper / truncation). */
    onnx_sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits')
      .optional(),
    /**
     * The MLflow run that logged the model's training (training/trainer/ with
     * MLFLOW_TRACKING_URI set); null when nothing was tracked or the tracking server failed.
     * Registry entries keep the whole metadata, so they link the run too.
     */
    tracking: z
      .looseObject({
        uri: z.string().min(1),
        experiment_id: z.string().min(1),
        run_id: z.string().min(1),
      })
      .nullable()
      .optional(),
  })
  .describe('model.json: metadata of a ranking model (training adds params, metrics, ...)');

export type ModelMeta = z.infer<typeof modelMetaSchema>;

/** A model that passed every check: its metadata and the ONNX bytes to ship to workers. */
export interface LoadedModel {
  readonly meta: ModelMeta;
  readonly bytes: Buffer;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Parse metadata already read from `source` (a file name, for messages). */
export function parseModelMeta(json: unknown, source: string): ModelMeta {
  const parsed = modelMetaSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues
    .map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
  throw new ModelError(`${source}: invalid model metadata: ${issues}`, { cause: parsed.error });
}

async function readMeta(metaPath: string): Promise<ModelMeta> {
  let text: string;
  try {
    text = await readFile(metaPath, 'utf8');
  } catch (err) {
    throw new ModelError(`cannot read model metadata ${metaPath}: ${message(err)}`, {
      cause: err,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`${metaPath} is not valid JSON: ${message(err)}`, { cause: err });
  }
  return parseModelMeta(json, metaPath);
}

/** Open the bytes in ONNX Runtime and check the input / output the metadata names. */
async function checkOnnx(meta: ModelMeta, bytes: Buffer, onnxPath: string): Promise<void> {
  const what = `model ${meta.version} (${onnxPath})`;
  let session: InferenceSession;
  try {
    session = await createSession(bytes);
  } catch (err) {
    throw new ModelError(`${what}: ONNX Runtime cannot load it: ${message(err)}`, { cause: err });
  }
  try {
    const width = meta.features.length;
    const input = session.inputMetadata.find((m) => m.name === meta.onnx_input);
    if (!input) {
      throw new ModelError(
        `${what}: no input named "${meta.onnx_input}" (inputs: ${session.inputNames.join(', ')})`,
      );
    }
    if (!session.outputNames.includes(meta.onnx_output)) {
      throw new ModelError(
        `${what}: no output named "${meta.onnx_output}" (outputs: ${session.outputNames.join(', ')})`,
      );
    }
    if (session.inputNames.length !== 1) {
      throw new ModelError(
        `${what}: expects inputs ${session.inputNames.join(', ')}; serving feeds only "${meta.onnx_input}"`,
      );
    }
    if (!input.isTensor || input.type !== 'float32') {
      throw new ModelError(`${what}: input "${meta.onnx_input}" is not a float32 tensor`);
    }
    const columns = input.shape[1];
    if (input.shape.length !== 2 || (typeof columns === 'number' && columns !== width)) {
      throw new ModelError(
        `${what}: input "${meta.onnx_input}" has shape [${input.shape.join(', ')}] but the ` +
          `metadata lists ${width} features (expected [N, ${width}])`,
      );
    }
    // One all-missing row: the model must run on [1, F] and give exactly one float score.
    let out: InferenceSession.ReturnType;
    try {
      const probe = new Tensor('float32', new Float32Array(width).fill(NaN), [1, width]);
      out = await session.run({ [meta.onnx_input]: probe }, [meta.onnx_output]);
    } catch (err) {
      throw new ModelError(`${what}: a trial run on [1, ${width}] failed: ${message(err)}`, {
        cause: err,
      });
    }
    const score = out[meta.onnx_output];
    if (score?.type !== 'float32' || score.size !== 1) {
      throw new ModelError(
        `${what}: output "${meta.onnx_output}" of one row is not one float32 score ` +
          `(got ${score?.type ?? 'nothing'} [${score?.dims.join(', ') ?? ''}])`,
      );
    }
  } finally {
    await session.release();
  }
}

/**
 * Read and check a model. `available` is what serving can compute (FEATURE_NAMES); a model
 * needing anything else is refused, naming the missing features. Note: ONNX Runtime parses the
 * file on this thread (tens of ms for 500 trees).
 */
export async function loadModel(
  onnxPath: string,
  metaPath: string,
  available: readonly string[],
): Promise<LoadedModel> {
  const meta = await readMeta(metaPath);
  let bytes: Buffer;
  try {
    bytes = await readFile(onnxPath);
  } catch (err) {
    throw new ModelError(`cannot read model ${meta.version} file ${onnxPath}: ${message(err)}`, {
      cause: err,
    });
  }
  return checkModel(meta, bytes, available, { onnx: onnxPath, meta: metaPath });
}

/**
 * The checks of `loadModel` on a model already in memory (e.g. read from the model registry):
 * features serving can produce, checksum when the metadata carries one, and an ONNX file that
 * loads with the declared input width and output.
 */
export async function checkModel(
  meta: ModelMeta,
  bytes: Buffer,
  available: readonly string[],
  source: { onnx: string; meta: string } = { onnx: 'model.onnx', meta: 'model.json' },
): Promise<LoadedModel> {
  const have = new Set(available);
  const missing = meta.features.filter((f) => !have.has(f));
  if (missing.length > 0) {
    throw new ModelError(
      `model ${meta.version} needs features serving cannot produce: ${missing.join(', ')}`,
    );
  }
  if (meta.onnx_sha256 !== undefined) {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== meta.onnx_sha256) {
      throw new ModelError(
        `model ${meta.version}: ${source.onnx} does not match the onnx_sha256 of ${source.meta} ` +
          `(${bytes.length} bytes, sha256 ${actual}): the file was changed or truncated`,
      );
    }
  }
  await checkOnnx(meta, bytes, source.onnx);
  return { meta, bytes };
}
