/**
 * Which failures of a processor's batch are the records' own fault (the consumer runner then
 * isolates and dead-letters the records that cause them, `ConsumerRunnerOptions.isDeterministic`)
 * and which are the store's (retried until it answers again).
 */

/**
 * Redis replies that say the server is not in a state to run the command now (restarting,
 * failing over, full, busy with a script, resharding), and a recreated topic under an old
 * namespace (REC_OFFSET_REGRESSION: no record is at fault, every one would fail): not the record's
 * fault. Note OOM: a full store (noeviction) is an outage, not poison.
 */
const NOT_THE_RECORD =
  /^(REC_OFFSET_REGRESSION|LOADING|BUSY|OOM|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|MOVED|ASK|NOSCRIPT|NOREPLICAS|MISCONF)\b/;

/**
 * True when `err` (or an error it wraps, `cause`) is a Redis error reply to a command or script
 * the processor sent — e.g. a Lua runtime error on this batch's arguments — other than the
 * server-state replies above. Connection errors, timeouts and everything else are retried.
 */
export function isScriptFailure(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; depth++) {
    if (e.name === 'ReplyError') {
      const text = e.message.replace(/^ERR (Error running script[^:]*: )?/, '');
      return !NOT_THE_RECORD.test(e.message) && !NOT_THE_RECORD.test(text);
    }
    e = e.cause;
  }
  return false;
}
