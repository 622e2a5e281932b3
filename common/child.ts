/**
 * A child process run to its end without blocking the event loop. Setting up the Python
 * environment or the embedding model runs pip for up to a minute, inside processes that also
 * consume Kafka (the demo's processors, whose group heartbeats must go on meanwhile) or answer
 * signals and metrics (the scheduled trainer); a synchronous call would stall all of that.
 */
import { spawn, type StdioOptions } from 'node:child_process';

/**
 * Run `command` with `args` (no shell) and resolve when it exits with 0. Its output goes where
 * `stdio` says (default: stdout and stderr to our stderr, so an entry point's stdout keeps its
 * one JSON line). Rejects naming the command and how it ended.
 */
export function runToEnd(
  command: string,
  args: readonly string[],
  stdio: StdioOptions = ['ignore', 2, 2],
): Promise<void> {
  const cmd = [command, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { stdio });
    child.once('error', (err) => {
      reject(new Error(`\`${cmd}\` could not run: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `\`${cmd}\` ${signal === null ? `exited with code ${code}` : `was killed by ${signal}`}`,
          ),
        );
    });
  });
}
