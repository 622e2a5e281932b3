/**
 * Offline validation of the deployment manifests (deploy/README.md, "Validation"): helm, built
 * once from the Go module proxy and cached under `<STACK_DIR>/bin`; the chart linted and rendered;
 * the rendered objects and the AWS JSON checked by `deploy/validate_manifests.py` (Kubernetes JSON
 * schemas from kubernetes-validate, botocore's service models) in the project's venv; the compose
 * file's scaled profile checked here. Used by `deploy/manifests.test.ts` and `npm run
 * deploy:validate`; nothing talks to a cluster, AWS or Docker.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RecError, errorMessage } from '../common/errors.ts';
import { ensurePythonEnv, pipInstall } from '../training/venv.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const DEPLOY_DIR = join(ROOT, 'deploy');
export const CHART_DIR = join(DEPLOY_DIR, 'helm', 'fashion-recsys');
export const LARGE_VALUES = join(DEPLOY_DIR, 'helm', 'values-large.yaml');
export const ECS_DIR = join(DEPLOY_DIR, 'ecs');
export const COMPOSE_FILE = join(ROOT, 'docker-compose.yml');
const VALIDATOR = join(DEPLOY_DIR, 'validate_manifests.py');
const REQUIREMENTS = join(DEPLOY_DIR, 'requirements.txt');

/** The helm release built (`go install helm.sh/helm/v3/cmd/helm@<version>`). */
export const HELM_VERSION = 'v3.22.0';
/**
 * Kubernetes versions the chart is rendered for and validated against: the oldest minor the
 * managed services (EKS, GKE, AKS) still support in standard support, and the newest schemas
 * kubernetes-validate 1.37 ships.
 */
export const KUBE_VERSIONS = ['1.33.0', '1.37.0'] as const;
/** Secrets the large values file names but does not render (the operator's, Strimzi's). */
export const LARGE_EXTERNAL_SECRETS = [
  'fashion-recsys-secrets',
  'fashion-kafka-cluster-ca-cert',
  'redis-tls-ca',
];

/** A tool that could not be built or installed, a command that could not run. */
export class DeployError extends RecError {
  override readonly name: string = 'DeployError';
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('REC_ERR_DEPLOY', message, opts);
  }
}

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Run a command to its end (no shell), in this process's environment unless `env` is given; a
 * command that cannot start is a DeployError.
 */
export function run(cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): Run {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: 'utf8',
    ...(env === undefined ? {} : { env }),
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error)
    throw new DeployError(`could not run ${cmd}: ${r.error.message}`, { cause: r.error });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** Go's version line, or null when `go` is not on PATH (the helm checks then skip). */
export function goVersion(): string | null {
  const r = spawnSync('go', ['version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? null : r.stdout.trim();
}

/**
 * Path of helm HELM_VERSION under `<stackDir>/bin`, built with `go install` the first time (one
 * to a few minutes; Go's module and build caches make a rebuild fast) in the environment `env`
 * the entry point hands down (PATH, GOPROXY, GOPATH...). The binary is built into a temporary
 * folder and renamed into place, so an interrupted build leaves nothing half-written.
 */
export function ensureHelm(
  stackDir: string,
  env: NodeJS.ProcessEnv,
  log: (line: string) => void = () => undefined,
): string {
  const binDir = resolve(ROOT, stackDir, 'bin');
  const helm = join(binDir, `helm-${HELM_VERSION}`);
  if (existsSync(helm)) return helm;
  mkdirSync(binDir, { recursive: true });
  const gobin = mkdtempSync(join(binDir, '.helm-build-'));
  try {
    log(`building helm ${HELM_VERSION} with go install (once; cached as ${helm})`);
    const started = Date.now();
    const r = run(
      'go',
      [
        'install',
        '-trimpath',
        // Stripped, and stamped with its version (`helm version` says v3.22.0, not v3.22).
        `-ldflags=-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}`,
        `helm.sh/helm/v3/cmd/helm@${HELM_VERSION}`,
      ],
      { ...env, GOBIN: gobin },
    );
    if (r.code !== 0) {
      throw new DeployError(
        `go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION} failed (is the Go module proxy, GOPROXY, reachable?): ${r.stderr.trim().slice(-2000)}`,
      );
    }
    renameSync(join(gobin, 'helm'), helm);
    log(`helm built in ${Math.round((Date.now() - started) / 1000)} s`);
    return helm;
  } finally {
    rmSync(gobin, { recursive: true, force: true });
  }
}

/**
 * The venv's python with deploy/requirements.txt installed (kubernetes-validate, botocore,
 * PyYAML): the project's venv (training/venv.ts) plus these, re-installed only when the file
 * changes (stamp `.venv/.deploy-requirements.sha256`).
 */
export async function ensureValidatorEnv(
  log: (line: string) => void = () => undefined,
): Promise<string> {
  const python = await ensurePythonEnv(log);
  const stamp = join(dirname(dirname(python)), '.deploy-requirements.sha256');
  const want = createHash('sha256').update(readFileSync(REQUIREMENTS)).digest('hex');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === want) return python;
  log('installing deploy/requirements.txt into .venv');
  try {
    await pipInstall(python, REQUIREMENTS);
  } catch (err) {
    throw new DeployError(`pip install -r deploy/requirements.txt failed: ${errorMessage(err)}`);
  }
  writeFileSync(stamp, `${want}\n`);
  return python;
}

export interface RenderOptions {
  readonly chart?: string;
  readonly valuesFiles?: readonly string[];
  readonly set?: readonly string[];
  readonly kubeVersion?: string;
}

function valueArgs(o: RenderOptions): string[] {
  return [
    ...(o.valuesFiles ?? []).flatMap((f) => ['-f', f]),
    ...(o.set ?? []).flatMap((s) => ['--set', s]),
  ];
}

/** `helm lint --strict` of the chart with these values. */
export function helmLint(helm: string, o: RenderOptions = {}): Run {
  return run(helm, [
    'lint',
    o.chart ?? CHART_DIR,
    '--strict',
    '--kube-version',
    o.kubeVersion ?? KUBE_VERSIONS[0],
    ...valueArgs(o),
  ]);
}

/**
 * `helm template` of the chart (release `rel`): the objects as one YAML stream. A go-installed
 * helm assumes Kubernetes 1.20 unless told, so the version is always given.
 */
export function helmTemplate(helm: string, o: RenderOptions = {}): string {
  const r = run(helm, [
    'template',
    'rel',
    o.chart ?? CHART_DIR,
    '--kube-version',
    o.kubeVersion ?? KUBE_VERSIONS[0],
    ...valueArgs(o),
  ]);
  if (r.code !== 0) throw new DeployError(`helm template failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The validator's verdict: `ok`, and its `ERROR ...` lines. */
export interface Verdict {
  readonly ok: boolean;
  readonly errors: string[];
  readonly output: string;
}

function verdict(r: Run): Verdict {
  if (r.code !== 0 && r.code !== 1) {
    throw new DeployError(`deploy/validate_manifests.py crashed: ${r.stderr.trim()}`);
  }
  const errors = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('ERROR '))
    .map((l) => l.slice('ERROR '.length));
  return { ok: r.code === 0, errors, output: r.stdout };
}

/** Rendered objects (a file) against the Kubernetes schemas and the chart's reference checks. */
export function validateKubernetes(
  python: string,
  file: string,
  externalSecrets: readonly string[] = [],
): Verdict {
  return verdict(
    run(python, [
      VALIDATOR,
      'k8s',
      file,
      ...KUBE_VERSIONS.flatMap((v) => ['--kube-version', v]),
      ...externalSecrets.flatMap((s) => ['--external-secret', s]),
    ]),
  );
}

/** A folder of AWS JSON (deploy/ecs/ by default) against botocore's service models. */
export function validateAws(python: string, dir: string = ECS_DIR): Verdict {
  return verdict(run(python, [VALIDATOR, 'aws', dir]));
}

/** The YAML documents of a file (parsed by PyYAML: merge keys, anchors), as JSON values. */
export function readYaml(python: string, file: string): unknown[] {
  const r = run(python, [VALIDATOR, 'yaml', file]);
  if (r.code !== 0) throw new DeployError(`could not parse ${file}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as unknown[];
}

// ---------------------------------------------------------------- docker compose

interface ComposeService {
  readonly profiles?: string[];
  readonly command?: string[] | string;
  readonly ports?: string[];
  readonly environment?: Record<string, unknown>;
  readonly volumes?: string[];
  readonly depends_on?: Record<string, unknown> | string[];
}

/** The profile that runs two processors and two API instances behind one port. */
export const SCALED_PROFILE = 'scaled';
const PUBLISH_PREFIX = '${BIND_HOST:-127.0.0.1}:';

function commandOf(s: ComposeService): string {
  return Array.isArray(s.command) ? s.command.join(' ') : (s.command ?? '');
}

/** Services that run with `--profile <profile>` (those without profiles always run). */
function activeServices(
  services: Record<string, ComposeService>,
  profile: string,
): [string, ComposeService][] {
  return Object.entries(services).filter(
    ([, s]) => s.profiles === undefined || s.profiles.includes(profile),
  );
}

/**
 * Problems of docker-compose.yml (parsed) and the load balancer's haproxy.cfg: every published
 * port bound to `${BIND_HOST:-127.0.0.1}`; with the scaled profile, two processors and two API
 * instances, one load balancer publishing one port whose configuration names exactly those API
 * instances on their SERVING_PORT; every depends_on naming a service; mounted files present.
 */
export function checkCompose(doc: unknown, haproxyCfg: string, composeDir = ROOT): string[] {
  const problems: string[] = [];
  const services = (doc as { services?: Record<string, ComposeService> } | null)?.services;
  if (services === undefined) return ['no services'];
  for (const [name, s] of Object.entries(services)) {
    for (const p of s.ports ?? []) {
      if (!p.startsWith(PUBLISH_PREFIX)) {
        problems.push(`${name}: port ${p} is not published on ${PUBLISH_PREFIX}…`);
      }
    }
    const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
    for (const d of deps) {
      if (!(d in services)) problems.push(`${name}: depends_on ${d}, no such service`);
    }
    for (const v of s.volumes ?? []) {
      const source = v.split(':')[0] ?? '';
      if (source.startsWith('./') && !existsSync(join(composeDir, source))) {
        problems.push(`${name}: mounts ${source}, which does not exist`);
      }
    }
  }
  const scaled = activeServices(services, SCALED_PROFILE);
  if (!Object.values(services).some((s) => s.profiles?.includes(SCALED_PROFILE))) {
    problems.push(`no service has the profile ${SCALED_PROFILE}`);
  }
  const processors = scaled.filter(([, s]) =>
    commandOf(s).includes('processors/processors-cli.ts'),
  );
  const apis = scaled.filter(([, s]) => commandOf(s).includes('serving/serve-cli.ts'));
  if (processors.length !== 2) {
    problems.push(`profile ${SCALED_PROFILE}: ${processors.length} processors instances, want 2`);
  }
  if (apis.length !== 2) {
    problems.push(`profile ${SCALED_PROFILE}: ${apis.length} API instances, want 2`);
  }
  const lbs = scaled.filter(
    ([, s]) => s.profiles?.includes(SCALED_PROFILE) && (s.ports ?? []).length > 0,
  );
  if (lbs.length !== 1 || (lbs[0]?.[1].ports ?? []).length !== 1) {
    problems.push(`profile ${SCALED_PROFILE}: want one load balancer publishing one port`);
  }
  // haproxy's `server <name> <host>:<port>` lines against the API instances.
  const servers = [...haproxyCfg.matchAll(/^\s*server\s+\S+\s+([^\s:]+):(\d+)/gm)].map(
    (m) => `${m[1]}:${m[2]}`,
  );
  const wanted = apis.map(([name, s]) => {
    const port = s.environment?.SERVING_PORT;
    return `${name}:${typeof port === 'number' || typeof port === 'string' ? port : 8080}`;
  });
  if (servers.slice().sort().join(',') !== wanted.slice().sort().join(',')) {
    problems.push(
      `haproxy.cfg balances ${servers.join(', ') || 'nothing'}, the API instances are ${wanted.join(', ')}`,
    );
  }
  return problems;
}
