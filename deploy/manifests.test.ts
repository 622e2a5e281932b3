/**
 * The deployment manifests, validated offline: the Helm chart linted and rendered (default and
 * large values) and its objects checked against the strict Kubernetes JSON schemas of 1.33 and
 * 1.37 plus the references between them; the ECS, EventBridge, Application Auto Scaling and ELB
 * JSON against botocore's own service models; the compose file's scaled profile by structure
 * (no Docker here). Each validator is also shown a broken input and must refuse it. The first run
 * builds helm with `go install` (minutes) and caches it under `<STACK_DIR>/bin`; without Go the
 * chart's tests are skipped and say so.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../common/config.ts';
import {
  CHART_DIR,
  checkCompose,
  COMPOSE_FILE,
  DEPLOY_DIR,
  ECS_DIR,
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

const work = mkdtempSync(join(tmpdir(), 'rec-deploy-'));
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

const log = (line: string) => {
  console.log(`[deploy] ${line}`);
};

/** The value at a dotted path of a parsed document (numbers index arrays); undefined if absent. */
function at(o: unknown, path: string): unknown {
  let cur: unknown = o;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

/** The one object of `kind` whose name ends with `suffix`. */
function find(docs: unknown[], kind: string, suffix: string): unknown {
  const found = docs.filter(
    (d) => at(d, 'kind') === kind && String(at(d, 'metadata.name')).endsWith(suffix),
  );
  expect(found, `${kind} *${suffix}`).toHaveLength(1);
  return found[0];
}

const kinds = (docs: unknown[]): unknown[] => docs.map((d) => at(d, 'kind'));

describe('ECS on Fargate and the compose scaled profile', () => {
  let python: string;

  beforeAll(async () => {
    python = await ensureValidatorEnv(log);
  }, 600_000);

  it('task definitions, services, target group, autoscaling and the trainer schedule match botocore', () => {
    const v = validateAws(python);
    expect(v.errors).toEqual([]);
    expect(v.ok).toBe(true);
    expect(v.output).toMatch(/OK 10 AWS inputs/);
  });

  it('refuses ECS JSON with an unknown field, a wrong type, a bad enum, a non-Fargate size, a typo placeholder', () => {
    const dir = join(work, 'ecs-broken');
    cpSync(ECS_DIR, dir, { recursive: true });
    const td = JSON.parse(readFileSync(join(dir, 'api-task-definition.json'), 'utf8')) as {
      networkMode: string;
      cpu: string;
      containerDefinitions: {
        portMappings?: unknown;
        portMapings?: unknown;
        healthCheck: { retries: unknown };
      }[];
    };
    const api = td.containerDefinitions[0]!;
    api.portMapings = api.portMappings;
    delete api.portMappings;
    api.healthCheck.retries = '3';
    td.networkMode = 'awsvpcx';
    td.cpu = '3000';
    writeFileSync(join(dir, 'api-task-definition.json'), JSON.stringify(td));
    const rule = readFileSync(join(dir, 'trainer-schedule-rule.json'), 'utf8');
    writeFileSync(join(dir, 'trainer-schedule-rule.json'), rule.replace('"ENABLED"', '"ON"'));
    const svc = readFileSync(join(dir, 'processors-service.json'), 'utf8');
    writeFileSync(join(dir, 'processors-service.json'), svc.replace('<subnet-a>', '<subnet-x>'));
    writeFileSync(join(dir, 'notes.json'), '{}');

    const v = validateAws(python, dir);
    expect(v.ok).toBe(false);
    const all = v.errors.join('\n');
    expect(all).toMatch(/Unknown parameter in containerDefinitions\[0\]: "portMapings"/);
    expect(all).toMatch(/healthCheck\.retries, value: 3, type: <class 'str'>/);
    expect(all).toMatch(/networkMode: 'awsvpcx' is not one of/);
    expect(all).toMatch(/cpu 3000 with memory 4096 is not a Fargate task size/);
    expect(all).toMatch(/State: 'ON' is not one of/);
    expect(all).toMatch(/unknown placeholder <subnet-x>/);
    expect(all).toMatch(/notes\.json: unknown kind of file/);
    // The load balancer now names a port the (renamed) mapping no longer declares.
    expect(all).toMatch(/load balancer container api:8080 is not mapped/);
  });

  it('compose: two processors and two API instances behind one load balancer port, ports on 127.0.0.1', () => {
    const [compose] = readYaml(python, COMPOSE_FILE);
    const cfg = readFileSync(join(DEPLOY_DIR, 'compose', 'haproxy.cfg'), 'utf8');
    expect(checkCompose(compose, cfg)).toEqual([]);
    // The second instances are the first ones' definitions (YAML merge), in the profile only.
    expect(at(compose, 'services.processors-2.command')).toEqual(
      at(compose, 'services.processors.command'),
    );
    expect(at(compose, 'services.serving-2.command')).toEqual(
      at(compose, 'services.serving.command'),
    );
    expect(at(compose, 'services.serving-2.profiles')).toEqual(['scaled']);
    expect(at(compose, 'services.serving-2.ports')).toEqual([]);
    expect(at(compose, 'services.lb.ports')).toEqual([
      '${BIND_HOST:-127.0.0.1}:${LB_PORT:-8000}:8080',
    ]);
    expect(at(compose, 'services.processors.profiles')).toBeUndefined();
  });

  it('compose check flags a port on all interfaces, a third API instance and a stale load balancer', () => {
    const [compose] = readYaml(python, COMPOSE_FILE);
    const cfg = readFileSync(join(DEPLOY_DIR, 'compose', 'haproxy.cfg'), 'utf8');
    const broken = structuredClone(compose) as {
      services: Record<string, Record<string, unknown>>;
    };
    broken.services.redis!.ports = ['6379:6379'];
    broken.services['serving-3'] = { ...broken.services['serving-2'] };
    broken.services.lb!.depends_on = { servin: {} };
    const problems = checkCompose(broken, cfg.replace('serving-2:8080', 'serving-two:8080'));
    expect(problems).toEqual(
      expect.arrayContaining([
        'redis: port 6379:6379 is not published on ${BIND_HOST:-127.0.0.1}:…',
        'profile scaled: 3 API instances, want 2',
        'lb: depends_on servin, no such service',
        expect.stringMatching(/^haproxy\.cfg balances serving:8080, serving-two:8080/),
      ]),
    );
  });
});

const go = goVersion();
if (go === null) {
  console.warn(
    '[deploy] go is not installed: the Helm chart checks are skipped (helm is built with go install)',
  );
}

describe.skipIf(go === null)(
  go === null
    ? 'the Helm chart: SKIPPED, go is not installed (helm is built with go install)'
    : 'the Helm chart',
  () => {
    let helm: string;
    let python: string;

    /** Render with these values, validate, and return the objects. */
    function renderValid(
      name: string,
      opts: Parameters<typeof helmTemplate>[1],
      externalSecrets: readonly string[] = [],
    ): unknown[] {
      const file = join(work, `${name}.yaml`);
      writeFileSync(file, helmTemplate(helm, opts));
      const v = validateKubernetes(python, file, externalSecrets);
      expect(v.errors).toEqual([]);
      expect(v.ok).toBe(true);
      return readYaml(python, file);
    }

    beforeAll(async () => {
      helm = ensureHelm(loadConfig().stackDir, process.env, log);
      python = await ensureValidatorEnv(log);
    }, 1_200_000);

    it('helm lint --strict passes with the default and the large values', () => {
      for (const valuesFiles of [[], [LARGE_VALUES]]) {
        const r = helmLint(helm, { valuesFiles });
        expect(r.stderr + r.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
        expect(r.code).toBe(0);
      }
    });

    it('default values: schema-valid objects; processors sized by partitions; API with HPA, PDB and probes; trainer CronJob', () => {
      const docs = renderValid('default', {});
      expect(kinds(docs).sort()).toEqual([
        'ConfigMap',
        'CronJob',
        'Deployment',
        'Deployment',
        'HorizontalPodAutoscaler',
        'PodDisruptionBudget',
        'Secret',
        'Service',
        'ServiceAccount',
      ]);
      const processors = find(docs, 'Deployment', '-processors');
      expect(at(processors, 'spec.replicas')).toBe(3);
      expect(at(processors, 'spec.template.spec.initContainers.0.command')).toEqual([
        'node',
        '--import',
        'tsx',
        'streams/setup-cli.ts',
      ]);

      const api = find(docs, 'Deployment', '-api');
      expect(at(api, 'spec.replicas')).toBeUndefined(); // the HPA owns it
      const container = at(api, 'spec.template.spec.containers.0');
      expect(at(container, 'readinessProbe.httpGet')).toEqual({ path: '/readyz', port: 'http' });
      expect(at(container, 'livenessProbe.httpGet')).toEqual({ path: '/healthz', port: 'http' });
      expect(at(container, 'securityContext.readOnlyRootFilesystem')).toBe(true);
      expect(at(api, 'spec.template.spec.securityContext.runAsNonRoot')).toBe(true);
      const hpa = find(docs, 'HorizontalPodAutoscaler', '-api');
      expect(at(hpa, 'spec.scaleTargetRef.name')).toBe(at(api, 'metadata.name'));
      expect(at(hpa, 'spec.metrics.0.resource')).toEqual({
        name: 'cpu',
        target: { type: 'Utilization', averageUtilization: 70 },
      });
      expect(at(find(docs, 'PodDisruptionBudget', '-api'), 'spec.minAvailable')).toBe(1);

      const cron = find(docs, 'CronJob', '-trainer');
      expect(at(cron, 'spec.concurrencyPolicy')).toBe('Forbid');
      const trainer = at(cron, 'spec.jobTemplate.spec.template.spec.containers.0');
      expect(at(trainer, 'args')).toEqual(['--once', '--no-progress']);
      expect(at(trainer, 'image')).toBe('fashion-recsys:0.1.0-trainer');

      // Empty secrets are left out; the config names the external endpoints.
      expect(at(find(docs, 'Secret', '-secrets'), 'stringData')).toEqual({
        REDIS_URL: 'redis://redis.redis.svc:6379',
      });
      const config = find(docs, 'ConfigMap', '-config');
      expect(at(config, 'data.KAFKA_BROKERS')).toBe('fashion-kafka-kafka-bootstrap.kafka.svc:9092');
      expect(at(config, 'data.KAFKA_SASL_MECHANISM')).toBeUndefined();
    });

    it('large values: 12 processors for 12 partitions, TLS CAs mounted, secrets from an existing Secret', () => {
      const docs = renderValid('large', { valuesFiles: [LARGE_VALUES] }, LARGE_EXTERNAL_SECRETS);
      expect(kinds(docs)).not.toContain('Secret');
      expect(at(find(docs, 'Deployment', '-processors'), 'spec.replicas')).toBe(12);
      const api = at(find(docs, 'Deployment', '-api'), 'spec.template.spec.containers.0');
      expect(at(api, 'envFrom.1')).toEqual({ secretRef: { name: 'fashion-recsys-secrets' } });
      expect(at(api, 'image')).toBe(
        '123456789012.dkr.ecr.eu-west-1.amazonaws.com/fashion-recsys:0.1.0',
      );
      expect(at(api, 'env')).toContainEqual({ name: 'SCORER_WORKERS', value: '4' });
      expect(at(find(docs, 'ConfigMap', '-config'), 'data')).toMatchObject({
        KAFKA_SSL: 'true',
        KAFKA_SASL_MECHANISM: 'scram-sha-512',
        KAFKA_SSL_CA_FILE: '/etc/fashion-recsys/kafka-ca/ca.crt',
        NODE_EXTRA_CA_CERTS: '/etc/fashion-recsys/redis-ca/ca.crt',
        MODEL_ALLOW_UNSIGNED: 'false',
      });
      const cron = find(docs, 'CronJob', '-trainer');
      expect(at(cron, 'spec.timeZone')).toBe('Europe/Stockholm');
      expect(at(cron, 'spec.jobTemplate.spec.template.spec.containers.0.args')).toEqual([
        '--once',
        '--no-progress',
        '--trials',
        '40',
        '--max-rounds',
        '500',
      ]);
    });

    it('processors.replicas overrides the partition count; the API without autoscaling gets its replicas', () => {
      const docs = renderValid('overrides', {
        set: [
          'processors.replicas=5',
          'api.autoscaling.enabled=false',
          'api.replicas=3',
          'trainer.enabled=false',
        ],
      });
      expect(at(find(docs, 'Deployment', '-processors'), 'spec.replicas')).toBe(5);
      expect(at(find(docs, 'Deployment', '-api'), 'spec.replicas')).toBe(3);
      expect(kinds(docs)).not.toContain('HorizontalPodAutoscaler');
      expect(kinds(docs)).not.toContain('CronJob');
    });

    it('trainer.redisUrl goes into the Secret as TRAINING_REDIS_URL, beside REDIS_URL', () => {
      const docs = renderValid('training-redis', {
        set: ['trainer.redisUrl=redis://:pw@rows.redis.svc:6379'],
      });
      expect(at(find(docs, 'Secret', '-secrets'), 'stringData')).toEqual({
        REDIS_URL: 'redis://redis.redis.svc:6379',
        TRAINING_REDIS_URL: 'redis://:pw@rows.redis.svc:6379',
      });
      // The trainer reads every key of the Secret.
      const trainer = at(
        find(docs, 'CronJob', '-trainer'),
        'spec.jobTemplate.spec.template.spec.containers.0',
      );
      expect(at(trainer, 'envFrom')).toContainEqual({
        secretRef: { name: 'rel-fashion-recsys-secrets' },
      });
    });

    it('refuses a broken manifest (schema and references) and a broken chart', () => {
      const good = helmTemplate(helm, {});
      const bad = join(work, 'broken.yaml');
      writeFileSync(
        bad,
        good
          .replace('replicas: 3', 'replicas: three')
          .replace('averageUtilization: 70', 'averageUtilization: 70\n          averageValue: [1]')
          .replace('targetPort: http', 'targetPort: web'),
      );
      const v = validateKubernetes(python, bad);
      expect(v.ok).toBe(false);
      const all = v.errors.join('\n');
      expect(all).toMatch(
        /Deployment\/rel-fashion-recsys-processors \(Kubernetes 1\.33, strict\): spec\.replicas: 'three' is not of type/,
      );
      expect(all).toMatch(
        /HorizontalPodAutoscaler\/rel-fashion-recsys-api \(Kubernetes 1\.33, strict\)/,
      );
      expect(all).toMatch(/Service\/rel-fashion-recsys-api: targetPort web is no port/);

      // Schema-valid but against the chart's pod baseline: a writable root filesystem, root allowed.
      const lax = join(work, 'lax.yaml');
      writeFileSync(
        lax,
        good
          .replaceAll('readOnlyRootFilesystem: true', 'readOnlyRootFilesystem: false')
          .replaceAll('runAsNonRoot: true', 'runAsNonRoot: false'),
      );
      const laxErrors = validateKubernetes(python, lax).errors.join('\n');
      expect(laxErrors).toMatch(
        /Deployment\/rel-fashion-recsys-api container api: readOnlyRootFilesystem is not true/,
      );
      expect(laxErrors).toMatch(
        /CronJob\/rel-fashion-recsys-trainer container trainer: runAsNonRoot/,
      );
      expect(laxErrors).not.toMatch(/strict/);

      // The secret a large deployment names is not rendered: without declaring it external, refused.
      const large = join(work, 'large-undeclared.yaml');
      writeFileSync(large, helmTemplate(helm, { valuesFiles: [LARGE_VALUES] }));
      expect(validateKubernetes(python, large).errors.join('\n')).toMatch(
        /envFrom Secret fashion-recsys-secrets is neither rendered nor declared external/,
      );

      // Values the chart does not know (a typo), or outside their enum, fail values.schema.json.
      const typo = helmLint(helm, { set: ['processors.replica=5', 'config.embeddings=yes'] });
      expect(typo.code).not.toBe(0);
      expect(typo.stdout + typo.stderr).toMatch(/additional properties 'replica' not allowed/);
      expect(typo.stdout + typo.stderr).toMatch(/embeddings': value must be one of 'on', 'off'/);

      // A chart whose template does not parse fails helm lint.
      const chart = join(work, 'chart-broken');
      cpSync(CHART_DIR, chart, { recursive: true });
      const tpl = join(chart, 'templates', 'api-service.yaml');
      writeFileSync(
        tpl,
        readFileSync(tpl, 'utf8').replace(
          '{{ .Values.api.service.type }}',
          '{{ .Values.api.service.type ',
        ),
      );
      const lint = helmLint(helm, { chart });
      expect(lint.code).not.toBe(0);
      expect(lint.stdout + lint.stderr).toMatch(/api-service\.yaml/);
    });
  },
);
