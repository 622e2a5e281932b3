/**
 * `npm run stack:up | stack:down | stack:status`: a thin CLI over `stack.ts` printing one
 * human-readable line per step. Exit codes: 0 ok, 1 failure, 2 usage, 3 `status` found a
 * service not answering.
 */
import { ConfigError, loadConfig } from '../common/config.ts';
import { elapsed } from './process.ts';
import { describeStatus, endpointLines, ensureStack, stackStatus, stopStack } from './stack.ts';

const USAGE = 'usage: tsx stack/stack-cli.ts up|down|status';

async function up(): Promise<number> {
  const started = Date.now();
  const endpoints = await ensureStack(loadConfig(), (line) => {
    console.log(line);
  });
  console.log(`stack ready in ${elapsed(started)}:`);
  for (const line of endpointLines(endpoints)) console.log(`  ${line}`);
  return 0;
}

async function down(): Promise<number> {
  for (const { service, outcome } of await stopStack(loadConfig())) {
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

async function status(): Promise<number> {
  const statuses = await stackStatus(loadConfig());
  for (const s of statuses) console.log(describeStatus(s));
  return statuses.every((s) => s.answering) ? 0 : 3;
}

async function main(command: string | undefined): Promise<number> {
  switch (command) {
    case 'up':
      return up();
    case 'down':
      return down();
    case 'status':
      return status();
    default:
      console.error(USAGE);
      return 2;
  }
}

const command = process.argv[2];
main(command).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    const prefix = err instanceof ConfigError ? '' : `stack ${command ?? ''} failed:\n`;
    console.error(`${prefix}${message}`);
    process.exit(1);
  },
);
