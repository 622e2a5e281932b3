/**
 * The offline evaluation report: `dir/report.md`, opening with four plots, then the tables.
 *
 * Plots are Vega-Lite specs rendered offline, headless (evaluation/plots.ts). Each plot
 * is written as SVG and, when the prebuilt `@resvg/resvg-js` binary loads, also as PNG (2× zoom,
 * system fonts); the Markdown embeds the PNG if there is one, else the SVG, and links both.
 *
 * 1. MAP@k for k = 1..K per method: the mean over cutoffs of each cutoff's MAP@k (line chart).
 * 2. MAP@K per cutoff and method (grouped bars).
 * 3. Candidate recall by source, over all cutoffs (`summary.candidateRecall`; bars).
 * 4. Feature importance (gain) of the last model, top 25 (horizontal bars).
 *
 * Numbers in the tables: metrics with 4 decimals, ratios with 2 (and ×), gains with 1, seconds
 * with 1. The spread is the standard deviation of MAP@K over the cutoffs, as computed by the
 * caller; the report says so.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { pngRenderer, renderSvg } from '../plots.ts';

export interface EvalReport {
  dataset: string; // folder or name
  generatedAt: string; // ISO
  k: number; // 12
  methods: string[]; // e.g. ['ranker','popular','repurchase_popular','strong_heuristic']
  cutoffs: string[]; // 'YYYY-MM-DD'
  perCutoff: {
    cutoff: string;
    usersScored: number;
    mapAtK: Record<string, number[]>;
    recall: Record<string, number>;
    ndcg: Record<string, number>;
    candidateRecall: Record<string, number>;
  }[]; // mapAtK[method][k-1] for k=1..K
  summary: {
    /** `se`: standard error over the pooled customer-weeks (when the caller computed it). */
    map: Record<string, { mean: number; spread: number; se?: number }>;
    recall: Record<string, number>;
    ndcg: Record<string, number>;
    ratios: Record<string, number>;
    /** Paired bootstrap interval of the ratio over pooled customer-weeks, and weeks won. */
    intervals?: Record<string, { ratio: number; low: number; high: number; weeksWon: number }>;
    candidateRecall: Record<string, number>;
    usersScored: number;
  };
  featureImportance: { feature: string; gain: number }[];
  notes?: string[]; // free text lines shown under the summary
  timings?: Record<string, number>; // seconds
}

/** Features shown in the importance plot and table. */
export const TOP_FEATURES = 25;

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

const finite = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x);
/** A metric value (MAP, recall, NDCG, candidate recall): 4 decimals; '–' when absent. */
export const fmtMetric = (x: number | undefined): string => (finite(x) ? x.toFixed(4) : '–');
/** A ratio: 2 decimals and ×. */
export const fmtRatio = (x: number | undefined): string => (finite(x) ? `${x.toFixed(2)}×` : '–');
/** A gain: 1 decimal. */
export const fmtGain = (x: number | undefined): string => (finite(x) ? x.toFixed(1) : '–');
/** Seconds: 1 decimal. */
export const fmtSeconds = (x: number | undefined): string => (finite(x) ? x.toFixed(1) : '–');

/** Escape text for a Markdown table cell. */
function cell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function table(header: string[], rows: string[][], align?: ('l' | 'r')[]): string {
  const a = align ?? header.map((_, i) => (i === 0 ? 'l' : 'r'));
  const sep = a.map((x) => (x === 'r' ? '---:' : ':---'));
  return [header, sep, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

// ---------------------------------------------------------------------------------------------
// Plots
// ---------------------------------------------------------------------------------------------

const WIDTH = 560;
const HEIGHT = 300;
const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
const CONFIG = {
  font: FONT,
  background: 'white',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 14, anchor: 'start' as const },
};

interface Plot {
  /** File name without extension. */
  name: string;
  /** Alt text and caption. */
  title: string;
  spec: TopLevelSpec;
}

/** Mean of each method's MAP@k over the cutoffs that have it, for k = 1..K. */
export function meanMapAtK(data: EvalReport): { method: string; k: number; map: number }[] {
  const out: { method: string; k: number; map: number }[] = [];
  for (const method of data.methods) {
    for (let k = 1; k <= data.k; k++) {
      const values = data.perCutoff
        .map((c) => c.mapAtK[method]?.[k - 1])
        .filter((v): v is number => finite(v));
      if (values.length > 0) {
        out.push({ method, k, map: values.reduce((s, v) => s + v, 0) / values.length });
      }
    }
  }
  return out;
}

function methodColor(data: EvalReport) {
  return {
    field: 'method',
    type: 'nominal' as const,
    title: 'method',
    scale: { domain: data.methods, scheme: 'tableau10' },
    sort: data.methods,
  };
}

/** The report's plots, in the order they open it; a plot without data is left out. */
function plots(data: EvalReport): Plot[] {
  return [
    mapAtKPlot(data),
    mapPerCutoffPlot(data),
    candidateRecallPlot(data),
    featureImportancePlot(data),
  ].filter((p): p is Plot => p !== null);
}

/** Plot 1: MAP@k for k = 1..K per method, the mean over cutoffs (line chart). */
function mapAtKPlot(data: EvalReport): Plot | null {
  const K = data.k;
  const mapK = meanMapAtK(data);
  if (mapK.length === 0) return null;
  return {
    name: 'map-at-k',
    title: `MAP@k for k = 1..${K} per method (mean over ${data.perCutoff.length} cutoffs)`,
    spec: {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `MAP@k, k = 1..${K} (mean over cutoffs)`,
      width: WIDTH,
      height: HEIGHT,
      config: CONFIG,
      data: { values: mapK },
      mark: { type: 'line', point: true, strokeWidth: 2 },
      encoding: {
        x: {
          field: 'k',
          type: 'quantitative',
          title: 'k',
          scale: { domain: [1, K] },
          axis: { tickMinStep: 1, format: 'd' },
        },
        y: { field: 'map', type: 'quantitative', title: 'MAP@k' },
        color: methodColor(data),
      },
    },
  };
}

/** Plot 2: MAP@K per cutoff and method (grouped bars). */
function mapPerCutoffPlot(data: EvalReport): Plot | null {
  const K = data.k;
  const perCutoff = data.perCutoff.flatMap((c) =>
    data.methods.flatMap((method) => {
      const v = c.mapAtK[method]?.[K - 1];
      return finite(v) ? [{ cutoff: c.cutoff, method, map: v }] : [];
    }),
  );
  if (perCutoff.length === 0) return null;
  return {
    name: 'map-per-cutoff',
    title: `MAP@${K} per cutoff and method`,
    spec: {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `MAP@${K} per cutoff`,
      width: WIDTH,
      height: HEIGHT,
      config: CONFIG,
      data: { values: perCutoff },
      mark: { type: 'bar' },
      encoding: {
        x: {
          field: 'cutoff',
          type: 'ordinal',
          title: 'cutoff (scored week starts)',
          sort: data.cutoffs,
          axis: { labelAngle: -30 },
        },
        xOffset: { field: 'method', type: 'nominal', sort: data.methods },
        y: { field: 'map', type: 'quantitative', title: `MAP@${K}` },
        color: methodColor(data),
      },
    },
  };
}

/** Plot 3: candidate recall by source over all cutoffs, overall first (bars). */
function candidateRecallPlot(data: EvalReport): Plot | null {
  const sources = Object.entries(data.summary.candidateRecall)
    .filter(([, v]) => finite(v))
    .map(([source, recall]) => ({ source, recall, overall: source === 'overall' }))
    .sort((a, b) => Number(b.overall) - Number(a.overall) || b.recall - a.recall);
  if (sources.length === 0) return null;
  return {
    name: 'candidate-recall',
    title: 'Candidate recall by source (share of the scored week’s purchases among the candidates)',
    spec: {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: 'Candidate recall by source',
      width: WIDTH,
      height: HEIGHT,
      config: CONFIG,
      data: { values: sources },
      mark: { type: 'bar' },
      encoding: {
        x: {
          field: 'source',
          type: 'nominal',
          title: 'source',
          sort: sources.map((s) => s.source),
          axis: { labelAngle: -30 },
        },
        y: {
          field: 'recall',
          type: 'quantitative',
          title: 'recall',
        },
        color: {
          field: 'overall',
          type: 'nominal',
          scale: { domain: [true, false], range: ['#e15759', '#4e79a7'] },
          legend: null,
        },
      },
    },
  };
}

/** Plot 4: feature importance (gain) of the last model, top TOP_FEATURES (horizontal bars). */
function featureImportancePlot(data: EvalReport): Plot | null {
  const features = [...data.featureImportance]
    .filter((f) => finite(f.gain))
    .sort((a, b) => b.gain - a.gain)
    .slice(0, TOP_FEATURES);
  if (features.length === 0) return null;
  return {
    name: 'feature-importance',
    title: `Feature importance (gain) of the last model, top ${features.length}`,
    spec: {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `Feature importance (gain), top ${features.length}`,
      width: WIDTH,
      height: Math.max(120, features.length * 16),
      config: CONFIG,
      data: { values: features },
      mark: { type: 'bar', color: '#4e79a7' },
      encoding: {
        y: {
          field: 'feature',
          type: 'nominal',
          title: null,
          sort: features.map((f) => f.feature),
          axis: { labelLimit: 320 },
        },
        x: { field: 'gain', type: 'quantitative', title: 'gain' },
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

/**
 * The report's tables, one Markdown section after the other: the summary and the per-cutoff tables
 * always, the others when they have data.
 */
function tables(data: EvalReport): string[] {
  return [
    ...summarySection(data),
    ...perCutoffSection(data),
    ...mapAtKSection(data),
    ...candidateRecallSection(data),
    ...featureImportanceSection(data),
    ...timingsSection(data),
  ];
}

/** The summary per method, the ranker's ratios to the others with their intervals, the notes. */
function summarySection(data: EvalReport): string[] {
  const K = data.k;
  const out: string[] = [];
  const s = data.summary;
  const n = data.perCutoff.length;

  out.push(
    `## Summary (mean over ${n} cutoff${n === 1 ? '' : 's'})`,
    '',
    `Spread = standard deviation of MAP@${K} over the cutoffs. Users scored (all cutoffs): ${s.usersScored}.`,
    '',
    table(
      ['method', `MAP@${K}`, 'spread (sd)', 's.e.', `recall@${K}`, `NDCG@${K}`],
      data.methods.map((m) => [
        cell(m),
        fmtMetric(s.map[m]?.mean),
        fmtMetric(s.map[m]?.spread),
        fmtMetric(s.map[m]?.se),
        fmtMetric(s.recall[m]),
        fmtMetric(s.ndcg[m]),
      ]),
    ),
  );
  const ratios = Object.entries(s.ratios);
  if (ratios.length > 0) {
    out.push(
      '',
      `Ratios (ranker's mean MAP@${K} to each; interval: paired bootstrap over the pooled customer-weeks; weeks the ranker wins):`,
      '',
      table(
        ['versus', 'ratio', 'pooled ratio [interval]', 'weeks won'],
        ratios.map(([name, r]) => {
          const i = s.intervals?.[name];
          return [
            cell(name),
            fmtRatio(r),
            i ? `${fmtRatio(i.ratio)} [${i.low.toFixed(2)}, ${i.high.toFixed(2)}]` : '–',
            i ? `${i.weeksWon}/${n}` : '–',
          ];
        }),
      ),
    );
  }
  if (data.notes && data.notes.length > 0) {
    out.push('', ...data.notes.map((line) => `- ${line}`));
  }
  return out;
}

/** MAP@K, recall@K and NDCG@K per cutoff and method, one table each. */
function perCutoffSection(data: EvalReport): string[] {
  const K = data.k;
  const perCutoffTable = (
    title: string,
    pick: (c: EvalReport['perCutoff'][number], m: string) => number | undefined,
  ) => [
    '',
    `### ${title}`,
    '',
    table(
      ['cutoff', 'users scored', ...data.methods.map(cell)],
      data.perCutoff.map((c) => [
        c.cutoff,
        String(c.usersScored),
        ...data.methods.map((m) => fmtMetric(pick(c, m))),
      ]),
    ),
  ];
  return [
    '',
    '## Per cutoff',
    '',
    'Each cutoff trains on the weeks before it and scores the week after it.',
    ...perCutoffTable(`MAP@${K}`, (c, m) => c.mapAtK[m]?.[K - 1]),
    ...perCutoffTable(`Recall@${K}`, (c, m) => c.recall[m]),
    ...perCutoffTable(`NDCG@${K}`, (c, m) => c.ndcg[m]),
  ];
}

/** MAP@k for k = 1..K per method, the mean over cutoffs. */
function mapAtKSection(data: EvalReport): string[] {
  const K = data.k;
  const mapK = meanMapAtK(data);
  if (mapK.length === 0) return [];
  const ks = Array.from({ length: K }, (_, i) => i + 1);
  return [
    '',
    `## MAP@k, k = 1..${K} (mean over cutoffs)`,
    '',
    table(
      ['method', ...ks.map((k) => `@${k}`)],
      data.methods.map((m) => [
        cell(m),
        ...ks.map((k) => fmtMetric(mapK.find((x) => x.method === m && x.k === k)?.map)),
      ]),
    ),
  ];
}

/** Candidate recall per cutoff and source, and over all cutoffs. */
function candidateRecallSection(data: EvalReport): string[] {
  const s = data.summary;
  const sources = [
    ...new Set([
      ...Object.keys(s.candidateRecall),
      ...data.perCutoff.flatMap((c) => Object.keys(c.candidateRecall)),
    ]),
  ];
  if (sources.length === 0) return [];
  return [
    '',
    '## Candidate recall by source',
    '',
    'Share of the scored week’s purchases found among the candidates of each source.',
    '',
    table(
      ['cutoff', ...sources.map(cell)],
      [
        ...data.perCutoff.map((c) => [
          c.cutoff,
          ...sources.map((src) => fmtMetric(c.candidateRecall[src])),
        ]),
        ['**all**', ...sources.map((src) => `**${fmtMetric(s.candidateRecall[src])}**`)],
      ],
    ),
  ];
}

/** Feature importance (gain and share) of the last model, top TOP_FEATURES. */
function featureImportanceSection(data: EvalReport): string[] {
  const features = [...data.featureImportance].sort((a, b) => b.gain - a.gain);
  if (features.length === 0) return [];
  const total = features.reduce((t, f) => t + (finite(f.gain) ? f.gain : 0), 0);
  return [
    '',
    `## Feature importance (gain) of the last model, top ${Math.min(TOP_FEATURES, features.length)} of ${features.length}`,
    '',
    table(
      ['#', 'feature', 'gain', 'share'],
      features
        .slice(0, TOP_FEATURES)
        .map((f, i) => [
          String(i + 1),
          cell(f.feature),
          fmtGain(f.gain),
          total > 0 ? `${((100 * f.gain) / total).toFixed(1)} %` : '–',
        ]),
      ['r', 'l', 'r', 'r'],
    ),
  ];
}

/** The run's timings, in seconds. */
function timingsSection(data: EvalReport): string[] {
  const timings = Object.entries(data.timings ?? {});
  if (timings.length === 0) return [];
  return [
    '',
    '## Timings',
    '',
    table(
      ['step', 'seconds'],
      timings.map(([step, sec]) => [cell(step), fmtSeconds(sec)]),
    ),
  ];
}

/**
 * Write `dir/report.md` and its plots (SVG, and PNG when resvg is available) into `dir` (created
 * if needed). Returns the Markdown and the paths of the images written.
 */
export async function writeReport(
  dir: string,
  data: EvalReport,
): Promise<{ markdown: string; images: string[] }> {
  await mkdir(dir, { recursive: true });
  const toPng = await pngRenderer();
  const images: string[] = [];
  const embeds: string[] = [];
  for (const plot of plots(data)) {
    const svg = await renderSvg(plot.spec);
    const svgName = `${plot.name}.svg`;
    await writeFile(join(dir, svgName), svg);
    images.push(join(dir, svgName));
    let shown = svgName;
    if (toPng) {
      const pngName = `${plot.name}.png`;
      await writeFile(join(dir, pngName), toPng(svg));
      images.push(join(dir, pngName));
      shown = pngName;
    }
    const links = toPng ? ` ([SVG](${svgName}), [PNG](${shown}))` : '';
    embeds.push(`![${plot.title}](${shown})`, '', `*${plot.title}*${links}`, '');
  }

  const cutoffs = data.cutoffs.length > 0 ? data.cutoffs.join(', ') : '–';
  const markdown = [
    `# Offline evaluation: ${data.dataset}`,
    '',
    `Generated ${data.generatedAt} · k = ${data.k} · methods: ${data.methods.join(', ')} · cutoffs: ${cutoffs}`,
    '',
    ...embeds,
    ...tables(data),
    '',
  ].join('\n');
  await writeFile(join(dir, 'report.md'), markdown);
  return { markdown, images };
}
