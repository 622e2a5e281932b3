/**
 * One table of a dataset folder (`<name>.csv` or `<name>.parquet`): finding the file, matching
 * columns by header name (case-insensitive, extra columns ignored) and streaming its rows to a
 * consumer as arrays of cells, whatever the format.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readCsv } from './csv.ts';
import { DatasetError } from './dataset-error.ts';
import { readParquet } from './parquet.ts';
import type { Column, RowConsumer, TableFile, TableInfo } from './table-types.ts';

export type { Column, RowConsumer, TableFile, TableFormat, TableInfo } from './table-types.ts';

/**
 * Find `<name>.csv` or `<name>.parquet` in `dir`. Exactly one must exist: a missing file and an
 * ambiguous pair are both user errors, reported with the paths involved.
 */
export function locateTable(dir: string, name: string): TableFile {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new Error(`dataset folder ${dir} does not exist or is not a directory`);
  }
  const csv = join(dir, `${name}.csv`);
  const parquet = join(dir, `${name}.parquet`);
  const hasCsv = existsSync(csv);
  const hasParquet = existsSync(parquet);
  if (hasCsv && hasParquet) {
    throw new Error(
      `both ${name}.csv and ${name}.parquet exist in ${dir}: remove one of them so that it is clear which to load`,
    );
  }
  if (hasCsv) return { name, path: csv, format: 'csv' };
  if (hasParquet) return { name, path: parquet, format: 'parquet' };
  throw new Error(`no ${name}.csv or ${name}.parquet in ${dir}`);
}

/** Stream every data row of `file` to the consumer that `start` builds from the header. Returns the row count. */
export async function readTable(
  file: TableFile,
  start: (info: TableInfo) => RowConsumer,
): Promise<number> {
  return file.format === 'csv' ? readCsv(file.path, start) : readParquet(file.path, start);
}

/**
 * Look a column up by name, ignoring case and surrounding spaces. A missing required column, and
 * a name the header has twice (ambiguous), are errors naming the column.
 */
export function findColumn(info: TableInfo, name: string, required: boolean): Column {
  const key = name.toLowerCase();
  const matches = (h: string) => h.trim().toLowerCase() === key;
  const index = info.header.findIndex(matches);
  if (index >= 0 && info.header.findLastIndex(matches) !== index) {
    throw new DatasetError({
      file: info.path,
      line: info.unit === 'line' ? 1 : 0,
      column: name,
      unit: info.unit,
      problem: 'the header has this column twice (names are compared ignoring case)',
    });
  }
  if (index < 0 && required) {
    throw new DatasetError({
      file: info.path,
      line: info.unit === 'line' ? 1 : 0,
      column: name,
      unit: info.unit,
      problem: `required column is missing (the file has: ${info.header.join(', ')})`,
    });
  }
  return { name: index < 0 ? name : (info.header[index] ?? name), index };
}
