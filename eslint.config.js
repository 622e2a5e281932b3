// ESLint flat config: typescript-eslint strictTypeChecked, plus the import direction of the
// layers (schemas <- streams <- processors | serving | training) checked mechanically.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layer = (folder, forbidden) => ({
  files: [`${folder}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: forbidden.map((f) => ({
          group: [`**/${f}/**`, `../${f}/*`, `../../${f}/*`],
          message: `${folder}/ must not import from ${f}/ (imports point schemas <- streams <- processors | serving | training).`,
        })),
      },
    ],
  },
});

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
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
  {
    // Tests assert on values they just built; non-null assertions keep them readable.
    files: ['test/**/*.ts', '**/*.test.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
  layer('schemas', ['streams', 'processors', 'serving', 'training']),
  layer('streams', ['processors', 'serving', 'training']),
  layer('processors', ['serving', 'training']),
  layer('serving', ['processors', 'training']),
);
