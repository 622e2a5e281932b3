// ESLint flat config: typescript-eslint strictTypeChecked; the direction of imports between the
// folders (the layers below) and the absence of import loops (import-x/no-cycle), both checked
// mechanically; `process.env` read only by the configuration module and entry points.
import js from '@eslint/js';
import importX from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

// What each folder may import from the project (besides itself). Imports point down this list:
// common <- schemas <- features <- streams <- embeddings <- processors | models <- serving <-
// training <- evaluation/backtest <- demo | bench. `evaluation/` (its top-level files: ranking
// metrics, baselines, statistics, replay-to-file) sits below training, whose promotion
// gate uses them; `evaluation/backtest/` runs training cycles and sits above it.
const FOLDERS = [
  'common',
  'schemas',
  'features',
  'streams',
  'stack',
  'embeddings',
  'processors',
  'models',
  'serving',
  'training',
  'evaluation',
  'demo',
  'bench',
  'deploy',
];
const MAY_IMPORT = {
  common: [],
  schemas: ['common'],
  features: ['common', 'schemas'],
  streams: ['common', 'schemas'],
  stack: ['common'],
  processors: ['common', 'schemas', 'features', 'streams', 'embeddings'],
  embeddings: ['common', 'schemas', 'features', 'streams'],
  models: ['common', 'schemas', 'features'],
  serving: ['common', 'schemas', 'features', 'streams', 'embeddings', 'models'],
  training: [
    'common',
    'schemas',
    'features',
    'streams',
    'processors',
    'embeddings',
    'models',
    'serving',
    'evaluation',
  ],
  evaluation: ['common', 'schemas', 'features', 'streams'],
  // The manifests' validation: the venv of training/venv.ts; nothing imports deploy/.
  deploy: ['common', 'training'],
};

const forbid = (files, folder, forbidden, extra = []) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          ...forbidden.map((f) => ({
            group: [`**/${f}/**`],
            message: `${folder}/ must not import from ${f}/ (see the layers in eslint.config.js).`,
          })),
          ...extra,
        ],
      },
    ],
  },
});

const layers = Object.entries(MAY_IMPORT).map(([folder, allowed]) =>
  forbid(
    [`${folder}/**/*.ts`],
    folder,
    FOLDERS.filter((f) => f !== folder && !allowed.includes(f)),
    folder === 'training'
      ? [
          {
            group: ['**/evaluation/backtest/**'],
            message: 'training/ must not import the backtest (it runs training cycles).',
          },
        ]
      : folder === 'evaluation'
        ? [
            {
              group: ['./backtest/**', '**/training/**', '**/serving/**', '**/models/**'],
              message:
                'evaluation/ (outside backtest/) sits below training/: only the backtest may use training, serving and models.',
            },
          ]
        : [],
  ),
);

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      '.venv/**',
      '.stack/**',
      'dist/**',
      'coverage/**',
      'reports/**',
      '*.tmp.ts',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver': { node: { extensions: ['.ts', '.js'] } },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
    },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
  {
    // The environment is read by common/config.ts and the entry points only, and passed down.
    files: ['**/*.ts'],
    ignores: ['common/config.ts', '**/*-cli.ts', 'demo/**', 'bench/**', 'test/**', '**/*.test.ts'],
    rules: {
      'no-restricted-properties': [
        'error',
        {
          object: 'process',
          property: 'env',
          message:
            'read settings in common/config.ts (or an entry point, *-cli.ts) and pass them down as values.',
        },
      ],
    },
  },
  {
    // Tests assert on values they just built; non-null assertions keep them readable.
    files: ['test/**/*.ts', '**/*.test.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
  ...layers,
  // The backtest is evaluation's top: it may use training, serving and models, not demo or bench.
  forbid(['evaluation/backtest/**/*.ts'], 'evaluation/backtest', ['demo', 'bench']),
  // Tests of a layer may build what they check from any layer.
  { files: ['**/*.test.ts'], rules: { 'no-restricted-imports': 'off' } },
);
