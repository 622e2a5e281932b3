/**
 * The contract each managed service (Kafka, Schema Registry, Redis) fulfils for the launcher in
 * `stack.ts`: how to probe it, which ports and settings it uses, and how to prepare and start it.
 */
import { join } from 'node:path';
import type { Config } from '../common/config.ts';
import type { StackPaths } from './process.ts';

/** Receives one human-readable progress line at a time. */
export type StackLog = (line: string) => void;

/** `kafka`, `registry`, `redis`; the cluster profile's nodes are `kafka-<n>` and `redis-<n>`. */
export type ServiceName = 'kafka' | 'registry' | 'redis' | `kafka-${number}` | `redis-${number}`;

/** A port the service binds, with the settings that move it or replace the service. */
export interface ServicePort {
  readonly port: number;
  /** e.g. "KAFKA_PORT or KAFKA_BROKERS". */
  readonly envHint: string;
}

export interface ManagedService {
  readonly name: ServiceName;
  /** What clients connect to (from the config: external or ours). */
  endpoint(config: Config): string;
  /** Given by the environment: only checked, never started or stopped. */
  isExternal(config: Config): boolean;
  /** The setting that names an external instance, for error messages. */
  readonly externalEnv: string;
  /** Ports a started instance binds; all must be free before starting. */
  ports(config: Config): readonly ServicePort[];
  /** A substring of our process's command line, so a reused pid is never mistaken for ours. */
  readonly processMarker: string;
  /** True when the endpoint answers as this kind of service. Never throws. */
  answers(config: Config): Promise<boolean>;
  /**
   * Download and configure whatever `start` needs (cached under STACK_DIR). `maven` serialises
   * Maven runs across services.
   */
  prepare(
    config: Config,
    paths: StackPaths,
    log: StackLog,
    maven: <T>(job: () => Promise<T>) => Promise<T>,
  ): Promise<void>;
  /** Spawn the service detached, write its pid file, and return the pid. */
  start(config: Config, paths: StackPaths): Promise<number>;
  /** How long to wait for a fresh start to answer. */
  readonly startTimeoutMs: number;
}

/** Where the launcher records the pid of a service it started. */
export function pidFileOf(paths: StackPaths, name: ServiceName): string {
  return join(paths.run, `${name}.pid`);
}

/** Where a started service's stdout and stderr go. */
export function logFileOf(paths: StackPaths, name: ServiceName): string {
  return join(paths.logs, `${name}.log`);
}
