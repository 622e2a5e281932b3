/**
 * Schema Registry for the local stack: Apicurio Registry (Quarkus legacy-jar zip from Maven
 * Central) with H2 *file* storage under STACK_DIR, written at every commit, so schema ids survive
 * restarts and crashes — Kafka records carry them. Clients use its Confluent-compatible API at
 * `/apis/ccompat/v7`.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { basicAuthHeader, type Config } from '../common/config.ts';
import {
  elapsed,
  findExecutable,
  javaExecutable,
  mavenExecutable,
  runCommand,
  spawnDetached,
  type StackPaths,
} from './process.ts';
import { logFileOf, pidFileOf, type ManagedService } from './service.ts';

/** 3.0.x is the newest line that still publishes the `all` zip on Maven Central. */
const APICURIO_VERSION = '3.0.9';
const ARTIFACT = `apicurio-registry-app-${APICURIO_VERSION}`;

function registryPaths(paths: StackPaths) {
  const home = join(paths.root, 'apicurio');
  const app = join(home, ARTIFACT);
  return {
    home,
    app,
    /** Written after a complete unzip. */
    marker: join(app, '.complete'),
    zip: join(home, `${ARTIFACT}-all.zip`),
    runnerJar: join(app, `${ARTIFACT}-runner.jar`),
    dataDir: join(paths.data, 'registry'),
  };
}

/** Download (Maven) and unpack the registry unless an unpacked copy is already there. */
async function ensureApp(
  r: ReturnType<typeof registryPaths>,
  log: (line: string) => void,
): Promise<void> {
  if (existsSync(r.marker)) return;
  const started = Date.now();
  log(`registry: fetching Apicurio Registry ${APICURIO_VERSION} with Maven (~110 MB, cached)…`);
  await mkdir(r.home, { recursive: true });
  await runCommand(
    mavenExecutable(),
    [
      '-q',
      '-B',
      'dependency:copy',
      `-Dartifact=io.apicurio:apicurio-registry-app:${APICURIO_VERSION}:zip:all`,
      `-DoutputDirectory=${r.home}`,
    ],
    // A folder without a pom.xml: `dependency:copy` needs no project.
    { cwd: r.home },
  );
  const staging = `${r.app}.partial`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  const unzip = findExecutable('unzip');
  if (unzip !== undefined) await runCommand(unzip, ['-q', '-o', r.zip, '-d', staging]);
  else await runCommand(findExecutable('jar') ?? 'jar', ['xf', r.zip], { cwd: staging });
  if (!existsSync(join(staging, `${ARTIFACT}-runner.jar`))) {
    throw new Error(`registry: ${r.zip} did not contain ${ARTIFACT}-runner.jar`);
  }
  await writeFile(join(staging, '.complete'), `${APICURIO_VERSION}\n`);
  await rm(r.app, { recursive: true, force: true });
  await rename(staging, r.app);
  // The unpacked copy is what runs; the zip stays in ~/.m2 if it is needed again.
  await rm(r.zip, { force: true });
  log(`registry: Apicurio ready in ${elapsed(started)}`);
}

export const registryService: ManagedService = {
  name: 'registry',
  externalEnv: 'SCHEMA_REGISTRY_URL',
  processMarker: 'apicurio-registry-app',
  startTimeoutMs: 90_000,

  endpoint: (config) => config.schemaRegistryUrl,
  isExternal: (config) => config.external.registry,
  ports: (config) => [
    { port: config.ports.registry, envHint: 'SCHEMA_REGISTRY_PORT or SCHEMA_REGISTRY_URL' },
  ],

  async answers(config: Config) {
    try {
      const auth = config.schemaRegistryAuth;
      const res = await fetch(`${config.schemaRegistryUrl}/subjects`, {
        signal: AbortSignal.timeout(2_000),
        ...(auth === undefined ? {} : { headers: { authorization: basicAuthHeader(auth) } }),
      });
      if (res.status !== 200) {
        await res.body?.cancel();
        return false;
      }
      // A registry lists subjects as a JSON array; any other 200 is some other web server.
      return Array.isArray(await res.json());
    } catch {
      return false;
    }
  },

  async prepare(_config, paths, log, maven) {
    const r = registryPaths(paths);
    await maven(() => ensureApp(r, log));
    await mkdir(r.dataDir, { recursive: true });
  },

  start(config, paths) {
    const r = registryPaths(paths);
    return spawnDetached({
      command: javaExecutable(),
      args: [
        '-Xmx512m',
        `-Dquarkus.http.port=${config.ports.registry}`,
        '-Dquarkus.http.host=127.0.0.1',
        '-Dapicurio.storage.sql.kind=h2',
        // WRITE_DELAY=0: each commit is written to the file before the registry answers. H2's
        // default writes commits up to a second later, so a registry killed (kill -9, OOM) just
        // after handing out a schema id forgot it, and handed the same id to the next schema.
        `-Dapicurio.datasource.url=jdbc:h2:file:${join(r.dataDir, 'registry')};WRITE_DELAY=0`,
        '-jar',
        r.runnerJar,
      ],
      cwd: r.app,
      logFile: logFileOf(paths, 'registry'),
      pidFile: pidFileOf(paths, 'registry'),
    });
  },
};
