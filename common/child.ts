/**
 * A child process run to its end without blocking the event loop. Setting up the Python
 * environment or the embedding model runs pip for up to a minute, inside processes that also
 * consume Kafka (the demo's processors, whose group heartbeats must go on meanwhile) or answer
 * signals and metrics (the scheduled trainer); a synchronous call would stall all of that.
 */
import { spawn } from 'node:child_process';

/** How much of a failed child's stderr its error quotes: the end, where pip says what failed. */
const TAIL_LINES = 5;
const TAIL_BYTES = 16 * 1024;

/**
 * Run `command` with `args` (no shell) and resolve when it exits with 0. Its stdout and stderr
 * go on to our stderr as they come (an entry point's stdout keeps its one JSON line), and a
 * failure's error quotes the last lines of its stderr, so the reason a caller prints says what
 * went wrong ("ERROR: No matching distribution found for …"), not only the exit code. Rejects
 * naming the command and how it ended.
 */
export function runToEnd(command: string, args: readonly string[]): Promise<void> {
  const cmd = [command, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    child.stdout.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      tail = (tail + chunk.toString('utf8')).slice(-TAIL_BYTES);
    });
    child.once('error', (err) => {
      reject(new Error(`\`${cmd}\` could not run: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      if (code === 0) {
        resolve();
        return;
      }
      const how = signal === null ? `exited with code ${code}` : `was killed by ${signal}`;
      const said = lastLines(tail, TAIL_LINES);
      reject(new Error(`\`${cmd}\` ${how}${said === '' ? '' : `; its stderr ended: ${said}`}`));
    });
  });
}

/** The last `n` non-empty lines of `text`, trimmed and joined with " | ". */
export function lastLines(text: string, n: number): string {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-n)
    .join(' | ');
}
