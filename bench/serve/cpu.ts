/**
 * CPU accounting of a load run on Linux: the whole machine (/proc/stat), every process
 * (/proc/<pid>/stat, to name the busiest other ones) and Redis (INFO cpu).
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
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

export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const f = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return f('used_cpu_sys') + f('used_cpu_user');
}
