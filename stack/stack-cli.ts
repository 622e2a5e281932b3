/**
 * `npm run stack:up | stack:down | stack:status [-- --profile single|cluster]`: a thin CLI over
 * `stack.ts` printing one human-readable line per step. Exit codes: 0 ok, 1 failure, 2 usage,
 * 3 `status` found a service not answering.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../common/config.ts';
import { elapsed } from './process.ts';
import {
  describeStatus,
  endpointLines,
  ensureStack,
  STACK_PROFILES,
  stackStatus,
  stopStack,
  type StackProfile,
} from './stack.ts';

const USAGE = 'usage: tsx stack/stack-cli.ts up|down|status [--profile single|cluster]';

async function up(profile: StackProfile): Promise<number> {
  const started = Date.now();
  const endpoints = await ensureStack(
    loadConfig(),
    (line) => {
      console.log(line);
    },
    profile,
  );
  console.log(
    `stack${profile === 'single' ? '' : ` (${profile} profile)`} ready in ${elapsed(started)}:`,
  );
  for (const line of endpointLines(endpoints)) console.log(`  ${line}`);
  return 0;
}

async function down(profile: StackProfile): Promise<number> {
  for (const { service, outcome } of await stopStack(loadConfig(), profile)) {
    const text = {
      stopped: 'stopped',
      killed: 'killed (did not stop within 20 s of SIGTERM)',
      'not running': 'not running (nothing started by this launcher)',
      external: 'external (left alone)',
    }[outcome];
    console.log(`${service.padEnd(8)} ${text}`);
  }
  return 0;
}

async function status(profile: StackProfile): Promise<number> {
  const statuses = await stackStatus(loadConfig(), profile);
  for (const s of statuses) console.log(describeStatus(s));
  return statuses.every((s) => s.answering) ? 0 : 3;
}

async function main(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: { profile: { type: 'string', default: 'single' } },
    });
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  const profile = parsed.values.profile as StackProfile;
  if (!STACK_PROFILES.includes(profile) || parsed.positionals.length !== 1) {
    console.error(USAGE);
    return 2;
  }
  switch (parsed.positionals[0]) {
    case 'up':
      return up(profile);
    case 'down':
      return down(profile);
    case 'status':
      return status(profile);
    default:
      console.error(USAGE);
      return 2;
  }
}

const command = process.argv[2];
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    const prefix = err instanceof ConfigError ? '' : `stack ${command ?? ''} failed:\n`;
    console.error(`${prefix}${message}`);
    process.exit(1);
  },
);
