import { defineConfig } from 'vitest/config';
export default defineConfig({
  test: {
    root: '/work/main',
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', '.stack/**'],
    testTimeout: 120000,
    hookTimeout: 180000,
    fileParallelism: false,
  },
});
