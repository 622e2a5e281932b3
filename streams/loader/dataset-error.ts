/**
 * The error of a dataset file whose content cannot be read: it names the file, the position
 * (a 1-based line of a CSV file, header = line 1; a 1-based row of a Parquet file) and the column.
 */
import { basename } from 'node:path';
import { RecError } from '../../common/errors.ts';

/** How positions in a file are counted: text lines (CSV) or data rows (Parquet). */
export type PositionUnit = 'line' | 'row';

export class DatasetError extends RecError {
  override readonly name: string = 'DatasetError';
  /** Path of the file, as found in the dataset folder. */
  readonly file: string;
  /**
   * CSV: 1-based line number in the file, the header being line 1 (multi-line quoted fields are
   * counted). Parquet: 1-based data row number. 0 when the problem is the file's schema.
   */
  readonly line: number;
  /** Column name as written in the file's header, when the problem is one column. */
  readonly column: string | undefined;

  constructor(opts: {
    file: string;
    line: number;
    column?: string | undefined;
    unit?: PositionUnit;
    problem: string;
    cause?: unknown;
  }) {
    const where = [
      basename(opts.file),
      ...(opts.line > 0 ? [`${opts.unit ?? 'line'} ${opts.line}`] : []),
    ].join(' ');
    const column = opts.column === undefined ? '' : `, column ${opts.column}`;
    super('REC_ERR_DATASET', `${where}${column}: ${opts.problem}`, { cause: opts.cause });
    this.file = opts.file;
    this.line = opts.line;
    this.column = opts.column;
  }
}
