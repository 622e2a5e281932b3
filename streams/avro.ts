/**
 * Avro in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary),
 * with schemas registered through `@confluentinc/schemaregistry` under TopicNameStrategy subjects
 * with BACKWARD compatibility. Records are decoded with the writer's schema (fetched by id and
 * cached) resolved to this build's reader schema, so producers may move ahead of consumers within
 * what BACKWARD compatibility allows.
 */
import avro from 'avsc';
import { RestError } from '@confluentinc/schemaregistry/dist/rest-error.js';
import { Compatibility } from '@confluentinc/schemaregistry/dist/schemaregistry-client.js';
import type { SchemaRegistryClient } from './kafka.ts';
import { RecError, errorMessage } from '../common/errors.ts';
import type { TopicDescriptor } from './topics.ts';
import type { AvroRecordSchema } from '../schemas/events.ts';

const MAGIC = 0;
const HEADER_BYTES = 5;

/**
 * Register `schema` under `subject` and pin the subject's compatibility (default BACKWARD).
 * A change that breaks compatibility is refused by the registry; this turns the refusal into a
 * `REC_ERR_SCHEMA_INCOMPATIBLE` error that says what to do.
 */
export async function registerSchema(
  client: SchemaRegistryClient,
  subject: string,
  schema: AvroRecordSchema,
  compatibility: Compatibility = Compatibility.BACKWARD,
): Promise<number> {
  const info = { schemaType: 'AVRO', schema: JSON.stringify(schema) };
  let id: number;
  try {
    id = await client.register(subject, info);
  } catch (err) {
    if (err instanceof RestError && err.status === 409) {
      throw new RecError(
        'REC_ERR_SCHEMA_INCOMPATIBLE',
        `schema ${schema.name} is not ${compatibility}-compatible with the latest version registered ` +
          `under subject "${subject}" (registry said: ${err.message}). Keep the change compatible ` +
          `(add fields only with defaults, remove only fields that have defaults, never change a ` +
          `field's type), or publish to a new topic with its own subject.`,
        { cause: err },
      );
    }
    throw new RecError(
      'REC_ERR_SCHEMA_REGISTRY',
      `could not register subject "${subject}" at the schema registry: ${errorMessage(err)} ` +
        `(check SCHEMA_REGISTRY_URL and that the registry is up: npm run stack:status)`,
      { retriable: true, cause: err },
    );
  }
  try {
    await client.updateConfig(subject, { compatibility });
  } catch (err) {
    throw new RecError(
      'REC_ERR_SCHEMA_REGISTRY',
      `could not set the compatibility of subject "${subject}" at the schema registry: ${errorMessage(err)} ` +
        `(check SCHEMA_REGISTRY_URL and that the registry is up: npm run stack:status)`,
      { retriable: true, cause: err },
    );
  }
  return id;
}

/** Encoder and decoder for one topic's values. */
export class AvroCodec<T> {
  private readonly readerType: avro.Type;
  private readonly resolvers = new Map<number, avro.Resolver | null>();

  private constructor(
    private readonly client: SchemaRegistryClient,
    private readonly topic: TopicDescriptor<T>,
    /** Schema id this codec writes with. */
    readonly schemaId: number,
  ) {
    this.readerType = avro.Type.forSchema(topic.contract.avro as avro.Schema);
    this.resolvers.set(schemaId, null); // same schema: no resolution needed
  }

  /** Registers the topic's schema (idempotent) and returns a codec writing with its id. */
  static async forTopic<T>(
    client: SchemaRegistryClient,
    topic: TopicDescriptor<T>,
  ): Promise<AvroCodec<T>> {
    const id = await registerSchema(client, topic.subject, topic.contract.avro);
    return new AvroCodec(client, topic, id);
  }

  /** Avro-encode `value` (which must match the schema) in the Confluent wire format. */
  encode(value: T): Buffer {
    const body = this.readerType.toBuffer(value);
    const out = Buffer.allocUnsafe(HEADER_BYTES + body.length);
    out.writeUInt8(MAGIC, 0);
    out.writeInt32BE(this.schemaId, 1);
    body.copy(out, HEADER_BYTES);
    return out;
  }

  /**
   * Decode a wire-format buffer. Throws a non-retriable `REC_ERR_DECODE` for bytes that are not a
   * record of this topic, and a retriable `REC_ERR_SCHEMA_REGISTRY` when the registry is down.
   */
  async decode(buf: Buffer | null): Promise<unknown> {
    if (buf === null) throw new RecError('REC_ERR_DECODE', 'record has no value (tombstone)');
    if (buf.length < HEADER_BYTES || buf.readUInt8(0) !== MAGIC) {
      throw new RecError(
        'REC_ERR_DECODE',
        `value is not in the Confluent Avro wire format (expected magic byte 0 and a 4-byte schema id, got ${buf.length} bytes starting 0x${buf.subarray(0, 5).toString('hex')})`,
      );
    }
    const id = buf.readInt32BE(1);
    const resolver = this.resolvers.has(id) ? this.resolvers.get(id) : await this.loadWriter(id);
    try {
      const body = buf.subarray(HEADER_BYTES);
      return resolver
        ? this.readerType.fromBuffer(body, resolver, false)
        : this.readerType.fromBuffer(body);
    } catch (err) {
      throw new RecError(
        'REC_ERR_DECODE',
        `value does not decode as ${this.topic.contract.avro.name} (schema id ${id}): ${errorMessage(err)}`,
        { cause: err },
      );
    }
  }

  /** Decode, then validate with the contract's zod mirror (`REC_ERR_VALIDATION` names the field). */
  async decodeValid(buf: Buffer | null): Promise<T> {
    return validateEvent(this.topic, await this.decode(buf));
  }

  private async loadWriter(id: number): Promise<avro.Resolver> {
    let schema: string;
    try {
      schema = (await this.client.getBySubjectAndId(this.topic.subject, id)).schema;
    } catch (err) {
      if (err instanceof RestError && err.status === 404) {
        throw new RecError(
          'REC_ERR_UNKNOWN_SCHEMA',
          `schema id ${id} is not known to the registry for subject "${this.topic.subject}"`,
          { cause: err },
        );
      }
      throw new RecError(
        'REC_ERR_SCHEMA_REGISTRY',
        `could not fetch schema id ${id}: ${errorMessage(err)}`,
        { retriable: true, cause: err },
      );
    }
    let resolver: avro.Resolver;
    try {
      const writer = avro.Type.forSchema(JSON.parse(schema) as avro.Schema);
      resolver = this.readerType.createResolver(writer);
    } catch (err) {
      throw new RecError(
        'REC_ERR_DECODE',
        `writer schema id ${id} cannot be read as ${this.topic.contract.avro.name}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
    this.resolvers.set(id, resolver);
    return resolver;
  }
}

/** Validate a value against a topic's zod contract; the error names every failing field. */
export function validateEvent<T>(topic: TopicDescriptor<T>, value: unknown): T {
  const parsed = topic.contract.zod.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new RecError(
    'REC_ERR_VALIDATION',
    `invalid ${topic.contract.name} event: ${issues.join('; ')}`,
  );
}
