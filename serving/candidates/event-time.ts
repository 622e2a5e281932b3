/**
 * The event-time "now" of a request, from what it read from the store.
 */

/**
 * The "now" of a request when the caller gives none: the latest event time the store shows among
 * what the request read (the customer's last purchase, the candidates' last sales) — the store's
 * event-time clock, since the processors keep no global "last event time" — or the wall clock
 * when nothing was read. Serving ranks at event time so that replayed (historical) data and live
 * data are treated alike, and features match training rows built at a cutoff.
 */
export function eventTimeNow(
  times: Iterable<number | null | undefined>,
  wallClock: number,
): number {
  let best: number | null = null;
  for (const t of times) {
    if (t !== null && t !== undefined && Number.isFinite(t) && (best === null || t > best))
      best = t;
  }
  return best ?? wallClock;
}
