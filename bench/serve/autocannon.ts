/**
 * autocannon (CommonJS, no bundled types): the part of its API the load runs use.
 */
import { createRequire } from 'node:module';

interface AcHistogram {
  readonly average: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}
export interface AcResult {
  readonly latency: AcHistogram;
  readonly requests: AcHistogram;
  /** Seconds. */
  readonly duration: number;
  /** Connection errors, timeouts included. */
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
}
interface AcRequestSpec {
  path?: string;
}
export interface AcRequest {
  readonly method: 'GET';
  readonly setupRequest: (req: AcRequestSpec) => AcRequestSpec;
  readonly onResponse: (status: number, body: string) => void;
}
interface AcOptions {
  readonly url: string;
  readonly connections: number;
  readonly duration: number;
  readonly requests: AcRequest[];
  readonly timeout: number;
  readonly overallRate?: number;
  /** Only with a rate (autocannon refuses it otherwise). */
  readonly ignoreCoordinatedOmission?: boolean;
}
interface AcInstance extends PromiseLike<AcResult> {
  on(
    event: 'response',
    fn: (client: unknown, status: number, bytes: number, ms: number) => void,
  ): AcInstance;
  stop(): void;
}
type Autocannon = (opts: AcOptions) => AcInstance;
export const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
