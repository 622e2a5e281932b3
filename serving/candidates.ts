/**
 * Candidate generation lives in serving/candidates/ (import from candidates/index.ts). This file
 * only keeps serving/serve-cli.ts's import working until that line points there too.
 */
export { scaledCandidateConfig } from './candidates/index.ts';
