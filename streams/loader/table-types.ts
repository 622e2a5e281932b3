/** The types a table reader (csv.ts, parquet.ts) and the table front (table.ts) share. */
import type { PositionUnit } from './dataset-error.ts';

export type TableFormat = 'csv' | 'parquet';

export interface TableFile {
  /** Table name without extension, e.g. `transactions_train`. */
  readonly name: string;
  readonly path: string;
  readonly format: TableFormat;
}

/** What a reader knows once the header (CSV) or schema (Parquet) has been read. */
export interface TableInfo {
  readonly path: string;
  readonly format: TableFormat;
  readonly unit: PositionUnit;
  /** Column names as written in the file. */
  readonly header: readonly string[];
  /**
   * The position (line or row) of the cell in column `col` of a row that starts at `line`: for
   * CSV, the start line plus the line breaks inside the quoted fields before that column.
   */
  fieldLine(cells: readonly unknown[], line: number, col: number): number;
}

/** Receives the rows of a table; `columns` are the header indices it reads (others may be skipped). */
export interface RowConsumer {
  readonly columns: readonly number[];
  /**
   * One data row: cells indexed like the header (unread columns are undefined); `line` of its
   * start. A returned promise is awaited before the next row is read (backpressure: a consumer
   * that publishes a batch every few thousand rows keeps the reader from running ahead).
   */
  visit(cells: readonly unknown[], line: number): Promise<void> | undefined;
}

/** A column looked up by name: its index in the header, -1 when the file does not have it. */
export interface Column {
  readonly name: string;
  readonly index: number;
}
