/**
 * Parquet reader (hyparquet, all codecs of hyparquet-compressors): the top-level columns are the
 * header, rows are decoded one row group at a time (only the columns the consumer reads) and
 * handed over as arrays of cells with their 1-based row number. Cells keep hyparquet's types:
 * string, number, bigint (INT64), boolean, Date (DATE, TIMESTAMP), null.
 */
import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
} from 'hyparquet';
import type { AsyncBuffer, FileMetaData, ParquetRow } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { DatasetError } from './dataset-error.ts';
import type { RowConsumer, TableInfo } from './table-types.ts';

/** Run a hyparquet call, reporting its failures (corrupt file, unsupported encoding) as DatasetErrors. */
async function decode<T>(path: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new DatasetError({
      file: path,
      line: 0,
      problem: `cannot read ${what}: ${err instanceof Error ? err.message : String(err)}`,
      cause: err,
    });
  }
}

export async function readParquet(
  path: string,
  start: (info: TableInfo) => RowConsumer,
): Promise<number> {
  const file: AsyncBuffer = await asyncBufferFromFile(path);
  const metadata: FileMetaData = await decode(path, 'the Parquet footer', () =>
    parquetMetadataAsync(file),
  );
  const header = parquetSchema(metadata).children.map((c) => c.element.name);
  const consumer = start({
    path,
    format: 'parquet',
    unit: 'row',
    header,
    fieldLine: (_cells, row) => row,
  });
  const wanted = [...new Set(consumer.columns)].flatMap((i) => {
    const name = header[i];
    return name === undefined ? [] : [{ index: i, name }];
  });

  let rowStart = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(group.num_rows);
    const objects: ParquetRow[] = await decode(path, `row group ${g}`, () =>
      parquetReadObjects({
        file,
        metadata,
        columns: wanted.map((w) => w.name),
        rowStart,
        rowEnd,
        compressors,
        rowFormat: 'object',
      }),
    );
    for (const [i, obj] of objects.entries()) {
      const cells: unknown[] = new Array<unknown>(header.length);
      for (const w of wanted) cells[w.index] = obj[w.name];
      const pending = consumer.visit(cells, rowStart + i + 1);
      if (pending !== undefined) await pending;
    }
    rowStart = rowEnd;
  }
  return rowStart;
}
