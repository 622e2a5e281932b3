/**
 * What the purchases groups refuse before applying a batch (to the DLQ with the reason, by the
 * consumer runner; the taste group, which does not own the DLQ, skips the same records):
 *  - a record whose Kafka key is not its `customer_id`: the per-customer guards assume every event
 *    of a customer is in one partition, in order (REC_ERR_KEY_MISMATCH);
 *  - an event dated later than the processing time plus `maxEventSkewMs`: it would top trending
 *    and move every "now" derived from event times (REC_ERR_FUTURE_EVENT).
 */
import { RecError } from '../common/errors.ts';
import type { Purchase } from '../schemas/events.ts';
import type { DecodedRecord, Rejection } from '../streams/consumer.ts';

/** Default tolerance for event times ahead of the processing clock (PROCESSOR_MAX_EVENT_SKEW_HOURS). */
export const DEFAULT_MAX_EVENT_SKEW_MS = 24 * 3_600_000;

/** The batch's records split into those to apply and those refused, with the reason. */
export function admitPurchases(
  records: readonly DecodedRecord<Purchase>[],
  now: number,
  maxEventSkewMs: number,
): { accepted: DecodedRecord<Purchase>[]; rejected: Rejection<Purchase>[] } {
  const accepted: DecodedRecord<Purchase>[] = [];
  const rejected: Rejection<Purchase>[] = [];
  for (const record of records) {
    const e = record.value;
    if (record.key !== e.customer_id) {
      rejected.push({
        record,
        reason: new RecError(
          'REC_ERR_KEY_MISMATCH',
          `record key ${JSON.stringify(record.key)} is not its customer_id "${e.customer_id}": purchases must be keyed by customer`,
        ),
      });
    } else if (e.event_time > now + maxEventSkewMs) {
      rejected.push({
        record,
        reason: new RecError(
          'REC_ERR_FUTURE_EVENT',
          `event_time ${new Date(e.event_time).toISOString()} is more than ${maxEventSkewMs / 3_600_000} h after the processing time ${new Date(now).toISOString()}`,
        ),
      });
    } else accepted.push(record);
  }
  return { accepted, rejected };
}
