/**
 * `npm run deploy:validate`: the deployment manifests checked offline, as the test suite does
 * (deploy/validate.ts): helm lint and helm template of the chart with the default and the large
 * values, the rendered objects against the Kubernetes JSON schemas, the ECS JSON against
 * botocore's models, the compose file's scaled profile. One line per check, the problems under a
 * failed one; exits 1 when any failed. Builds helm on first use (Go needed; cached under
 * STACK_DIR/bin) and installs deploy/requirements.txt into .venv.
 *
 * `--prepare`: only build helm (when Go is there) and install the validators, then exit; CI runs
 * it before the tests so the one-time build does not count against the test phase's time cap.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../common/config.ts';
import { errorMessage } from '../common/errors.ts';
import {
  checkCompose,
  COMPOSE_FILE,
  DEPLOY_DIR,
  ensureHelm,
  ensureValidatorEnv,
  goVersion,
  helmLint,
  helmTemplate,
  LARGE_EXTERNAL_SECRETS,
  LARGE_VALUES,
  readYaml,
  validateAws,
  validateKubernetes,
} from './validate.ts';

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { prepare: { type: 'boolean', default: false } } });
  const say = (line: string) => {
    console.error(`[deploy] ${line}`);
  };
  const python = await ensureValidatorEnv(say);
  if (values.prepare) {
    if (goVersion() === null) say('go is not installed: helm not built, its checks will skip');
    else say(`helm: ${ensureHelm(loadConfig().stackDir, process.env, say)}`);
    return 0;
  }
  let failed = 0;
  const report = (what: string, problems: readonly string[]) => {
    console.log(`${problems.length === 0 ? 'ok  ' : 'FAIL'} ${what}`);
    for (const p of problems) console.log(`     ${p}`);
    if (problems.length > 0) failed += 1;
  };

  if (goVersion() === null) {
    report('helm chart (go is not installed: helm cannot be built)', ['install Go, or skip']);
  } else {
    const helm = ensureHelm(loadConfig().stackDir, process.env, say);
    const work = mkdtempSync(join(tmpdir(), 'rec-deploy-'));
    try {
      for (const [name, valuesFiles, external] of [
        ['default values', [], []],
        ['values-large.yaml', [LARGE_VALUES], LARGE_EXTERNAL_SECRETS],
      ] as const) {
        const lint = helmLint(helm, { valuesFiles });
        report(
          `helm lint --strict (${name})`,
          lint.code === 0 ? [] : (lint.stdout + lint.stderr).trim().split('\n'),
        );
        const file = join(work, 'rendered.yaml');
        writeFileSync(file, helmTemplate(helm, { valuesFiles }));
        report(
          `helm template (${name}) against the Kubernetes schemas`,
          validateKubernetes(python, file, external).errors,
        );
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  report('deploy/ecs against botocore', validateAws(python).errors);
  const [compose] = readYaml(python, COMPOSE_FILE);
  const haproxy = readFileSync(join(DEPLOY_DIR, 'compose', 'haproxy.cfg'), 'utf8');
  report('docker-compose.yml, profile scaled', checkCompose(compose, haproxy));
  return failed === 0 ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (err) {
  console.error(`deploy:validate: ${errorMessage(err)}`);
  process.exitCode = 1;
}
