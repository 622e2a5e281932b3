/**
 * CPU accounting of a load run on Linux: the whole machine (/proc/stat), every process
 * (/proc/<pid>/stat, to name the busiest other ones), the API's main thread (/proc/<pid>/task)
 * and Redis (INFO cpu).
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { RedisClient } from '../../common/redis.ts';
import { round } from './stats.ts';

/** Busy and total jiffies of the whole machine (Linux /proc/stat), or null elsewhere. */
export function hostCpu(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] =
      line.trim().split(/\s+/).slice(1).map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, total: busy + idle + iowait };
  } catch {
    return null;
  }
}

/** CPU ticks (utime + stime, USER_HZ = 100) and name of every process (Linux /proc). */
export function processTicks(): Map<number, { comm: string; ticks: number }> {
  const out = new Map<number, { comm: string; ticks: number }>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const fields = stat.slice(close + 2).split(' ');
      // After "(comm) ": state is field 3, utime 14 and stime 15 (1-based in proc(5)).
      out.set(Number(pid), { comm, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** utime + stime ticks of a /proc stat line, and the parent pid. */
function statTicks(stat: string): { ppid: number; ticks: number } {
  // After "(comm) ": state is field 3, ppid 4, utime 14 and stime 15 (1-based in proc(5)).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
}

/**
 * CPU ticks (USER_HZ = 100) of the main thread (the task whose id is the pid) of `root` and of
 * each of its descendant processes (an API serving from several processes): the thread that
 * runs the event loop, without the scorer worker threads; NaN where /proc is missing.
 */
export function mainThreadTicks(root: number): number {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return NaN;
  }
  const children = new Map<number, number[]>();
  for (const pid of pids) {
    try {
      const { ppid } = statTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      children.set(ppid, [...(children.get(ppid) ?? []), Number(pid)]);
    } catch {
      // exited meanwhile
    }
  }
  let ticks = 0;
  for (const queue = [root]; queue.length > 0;) {
    const pid = queue.pop() ?? root;
    try {
      ticks += statTicks(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8')).ticks;
    } catch {
      if (pid === root) return NaN;
    }
    queue.push(...(children.get(pid) ?? []));
  }
  return ticks;
}

/** The busiest processes between two snapshots, except `exclude`, in cores. */
export function busiest(
  before: Map<number, { comm: string; ticks: number }>,
  after: Map<number, { comm: string; ticks: number }>,
  seconds: number,
  exclude: ReadonlySet<number>,
): { pid: number; name: string; cores: number }[] {
  return [...after]
    .filter(([pid]) => !exclude.has(pid))
    .map(([pid, a]) => ({
      pid,
      name: a.comm,
      cores: round((a.ticks - (before.get(pid)?.ticks ?? 0)) / 100 / seconds),
    }))
    .filter((p) => p.cores >= 0.05)
    .sort((x, y) => y.cores - x.cores)
    .slice(0, 4);
}

export async function redisCpuSeconds(redis: RedisClient): Promise<number> {
  const info = await redis.info('cpu');
  const f = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return f('used_cpu_sys') + f('used_cpu_user');
}
