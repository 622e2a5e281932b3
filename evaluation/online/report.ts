/**
 * The online read-out's report: `dir/report.md` opening with its plots, then the tables, and
 * `dir/summary.json` (the JSON line's object, indented). Plots are rendered as the backtest's
 * (evaluation/plots.ts): SVG, and PNG when resvg loads; the Markdown embeds the PNG if there is
 * one, else the SVG.
 *
 * 1. Hit rate@k, MAP@k and coverage per variant, bars with their intervals (one panel each).
 * 2. Each variant's difference to the baseline, per metric, with its interval and a zero line.
 * 3. MAP@j for j = 1..k per variant (line chart).
 * 4. Lists served per day and variant (stacked bars).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { pngRenderer, renderSvg } from '../plots.ts';
import { fmtDifference, fmtEstimate, type OnlineResult } from './online.ts';
import type { Estimate, GroupSummary } from './readout.ts';

const WIDTH = 560;
const HEIGHT = 300;
const CONFIG = {
  font: 'DejaVu Sans, Helvetica, Arial, sans-serif',
  background: 'white',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 14, anchor: 'start' as const },
};
const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

interface Plot {
  name: string;
  title: string;
  spec: TopLevelSpec;
}

const finite = (x: number) => Number.isFinite(x);

function variantColor(variants: string[]) {
  return {
    field: 'variant',
    type: 'nominal' as const,
    title: 'variant',
    scale: { domain: variants, scheme: 'tableau10' },
    sort: variants,
  };
}

/** Plot 1: the three metrics per variant, bars and interval rules, one panel per metric. */
function metricsPlot(r: OnlineResult): Plot | null {
  const k = r.readout.k;
  const variants = r.readout.variants.map((v) => v.variant);
  const metrics: [string, (v: GroupSummary) => Estimate | null][] = [
    [`hit rate@${k}`, (v) => v.hitRate],
    [`MAP@${k}`, (v) => v.map],
    ['coverage', (v) => v.coverage],
  ];
  const values = r.readout.variants.flatMap((v) =>
    metrics.flatMap(([metric, pick]) => {
      const e = pick(v);
      return e && finite(e.value) ? [{ variant: v.variant, metric, ...e }] : [];
    }),
  );
  if (values.length === 0) return null;
  const x = { field: 'variant', type: 'nominal' as const, title: null, sort: variants };
  return {
    name: 'metrics',
    title: `Hit rate@${k}, MAP@${k} and coverage per variant, ${Math.round(r.readout.confidence * 100)} % intervals (bootstrap over customers)`,
    spec: {
      $schema: SCHEMA,
      title: 'Per variant',
      config: CONFIG,
      data: { values },
      facet: {
        column: { field: 'metric', type: 'nominal', title: null, sort: metrics.map((m) => m[0]) },
      },
      spec: {
        width: 170,
        height: HEIGHT,
        layer: [
          {
            mark: { type: 'bar' },
            encoding: {
              x,
              y: { field: 'value', type: 'quantitative', title: null },
              color: variantColor(variants),
            },
          },
          {
            mark: { type: 'rule', strokeWidth: 2, color: 'black' },
            encoding: { x, y: { field: 'low', type: 'quantitative' }, y2: { field: 'high' } },
          },
        ],
      },
      resolve: { scale: { y: 'independent' } },
    },
  };
}

/** Plot 2: each variant − baseline per metric, point and interval, a rule at zero. */
function differencesPlot(r: OnlineResult): Plot | null {
  const k = r.readout.k;
  const values = r.readout.differences.flatMap((d) =>
    (
      [
        [`hit rate@${k}`, d.hitRate],
        [`MAP@${k}`, d.map],
        ['coverage', d.coverage],
      ] as const
    ).flatMap(([metric, e]) =>
      e && finite(e.value)
        ? [{ variant: d.variant, metric, value: e.value, low: e.low, high: e.high }]
        : [],
    ),
  );
  if (values.length === 0) return null;
  const y = {
    field: 'metric',
    type: 'nominal' as const,
    title: null,
    sort: [`hit rate@${k}`, `MAP@${k}`, 'coverage'],
  };
  return {
    name: 'differences',
    title: `Difference to ${r.readout.baseline ?? '–'} per metric, ${Math.round(r.readout.confidence * 100)} % intervals (unpaired bootstrap)`,
    spec: {
      $schema: SCHEMA,
      title: `Variant − ${r.readout.baseline ?? '–'}`,
      width: WIDTH,
      height: Math.max(120, values.length * 28),
      config: CONFIG,
      layer: [
        {
          data: { values },
          mark: { type: 'rule', strokeWidth: 2 },
          encoding: {
            y,
            yOffset: { field: 'variant', type: 'nominal' },
            x: { field: 'low', type: 'quantitative', title: 'difference' },
            x2: { field: 'high' },
            color: variantColor(r.readout.variants.map((v) => v.variant)),
          },
        },
        {
          data: { values },
          mark: { type: 'point', filled: true, size: 60 },
          encoding: {
            y,
            yOffset: { field: 'variant', type: 'nominal' },
            x: { field: 'value', type: 'quantitative' },
            color: variantColor(r.readout.variants.map((v) => v.variant)),
          },
        },
        {
          data: { values: [{ zero: 0 }] },
          mark: { type: 'rule', color: 'gray', strokeDash: [4, 4] },
          encoding: { x: { field: 'zero', type: 'quantitative' } },
        },
      ],
    },
  };
}

/** Plot 3: MAP@j for j = 1..k per variant. */
function mapAtKPlot(r: OnlineResult): Plot | null {
  const k = r.readout.k;
  const values = r.readout.variants.flatMap((v) =>
    v.mapAtK.flatMap((map, j) => (finite(map) ? [{ variant: v.variant, k: j + 1, map }] : [])),
  );
  if (values.length === 0) return null;
  return {
    name: 'map-at-k',
    title: `MAP@j for j = 1..${k} per variant`,
    spec: {
      $schema: SCHEMA,
      title: `MAP@j, j = 1..${k}`,
      width: WIDTH,
      height: HEIGHT,
      config: CONFIG,
      data: { values },
      mark: { type: 'line', point: true, strokeWidth: 2 },
      encoding: {
        x: {
          field: 'k',
          type: 'quantitative',
          title: 'j',
          scale: { domain: [1, k] },
          axis: { tickMinStep: 1, format: 'd' },
        },
        y: { field: 'map', type: 'quantitative', title: 'MAP@j' },
        color: variantColor(r.readout.variants.map((v) => v.variant)),
      },
    },
  };
}

/** Plot 4: lists per day and variant. */
function listsPerDayPlot(r: OnlineResult): Plot | null {
  const values = r.readout.variants.flatMap((v) =>
    Object.entries(v.listsPerDay).map(([day, lists]) => ({ variant: v.variant, day, lists })),
  );
  if (values.length === 0) return null;
  return {
    name: 'lists-per-day',
    title: `Lists served per day (UTC, by ${r.options.time === 'served' ? 'served_at' : 'features_now'}) and variant`,
    spec: {
      $schema: SCHEMA,
      title: 'Lists per day',
      width: WIDTH,
      height: HEIGHT,
      config: CONFIG,
      data: { values },
      mark: { type: 'bar' },
      encoding: {
        x: { field: 'day', type: 'ordinal', title: 'day', axis: { labelAngle: -30 } },
        y: { field: 'lists', type: 'quantitative', title: 'lists', stack: 'zero' },
        color: variantColor(r.readout.variants.map((v) => v.variant)),
      },
    },
  };
}

function table(header: string[], rows: string[][]): string {
  const cell = (t: string) => t.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
  const sep = header.map((_, i) => (i === 0 ? ':---' : '---:'));
  return [header.map(cell), sep, ...rows.map((r) => r.map(cell))]
    .map((r) => `| ${r.join(' | ')} |`)
    .join('\n');
}

/** The tables: per variant (with its slices), differences, ranked_by counts, notes. */
function tables(r: OnlineResult): string[] {
  const o = r.readout;
  const k = o.k;
  const pct = `${Math.round(o.confidence * 100)} %`;
  const row = (name: string, g: GroupSummary) => [
    name,
    String(g.lists),
    String(g.customers),
    String(g.listsWithPurchase),
    fmtEstimate(g.hitRate),
    fmtEstimate(g.map),
    fmtEstimate(g.mapBuyers),
    fmtEstimate(g.coverage),
    g.coverageMatched === null ? '–' : g.coverageMatched.toFixed(4),
  ];
  const out = [
    `## Per variant`,
    '',
    `Every list counts (a list followed by no purchase scores 0). Intervals: ${pct}, percentile bootstrap resampling customers (${o.iterations} resamples). ` +
      `"of which as ranked" / "of which fallback": the variant's lists split by whether they were degraded or answered from the trending cache.`,
    '',
    table(
      [
        'variant',
        'lists',
        'customers',
        'bought',
        `hit rate@${k}`,
        `MAP@${k}`,
        `MAP@${k} (lists with a purchase)`,
        'coverage',
        `coverage rarefied to ${o.matchedCustomers} customers`,
      ],
      o.variants.flatMap((v) => [
        row(`**${v.variant}**`, v),
        ...(v.asRanked && v.fallback ? [row('of which as ranked', v.asRanked)] : []),
        ...(v.fallback ? [row('of which fallback', v.fallback)] : []),
      ]),
    ),
  ];
  if (o.differences.length > 0) {
    out.push(
      '',
      `## Difference to ${o.baseline ?? '–'}`,
      '',
      `Variant − baseline; ${pct} interval of the unpaired bootstrap (the two variants' customers resampled independently); "above 0": share of resamples where the variant is ahead. ` +
        `Coverage grows with traffic, so it is also compared rarefied: the mean coverage of ${o.matchedCustomers} customers (the smallest variant's count) drawn without replacement; no interval.`,
      '',
      table(
        [
          'variant',
          `hit rate@${k}`,
          'above 0',
          `MAP@${k}`,
          'above 0',
          'coverage',
          `coverage rarefied to ${o.matchedCustomers} customers`,
        ],
        o.differences.map((d) => [
          d.variant,
          fmtDifference(d.hitRate),
          d.hitRate.above.toFixed(3),
          fmtDifference(d.map),
          d.map.above.toFixed(3),
          fmtDifference(d.coverage),
          d.coverageMatched === null
            ? '–'
            : `${d.coverageMatched >= 0 ? '+' : ''}${d.coverageMatched.toFixed(4)}`,
        ]),
      ),
    );
  }
  const kinds = [...new Set(o.variants.flatMap((v) => Object.keys(v.rankedBy)))].sort();
  if (kinds.length > 0) {
    out.push(
      '',
      '## How the lists were ranked',
      '',
      table(
        [
          'variant',
          ...kinds.map((x) => `ranked_by ${x}`),
          'degraded',
          'cold start',
          'articles served',
        ],
        o.variants.map((v) => [
          v.variant,
          ...kinds.map((x) => String(v.rankedBy[x] ?? 0)),
          String(v.degraded),
          String(v.coldStart),
          String(v.articlesServed),
        ]),
      ),
    );
  }
  if (r.notes.length > 0) out.push('', '## Notes', '', ...r.notes.map((n) => `- ${n}`));
  return out;
}

/**
 * Write `dir/report.md`, `dir/summary.json` and the plots (SVG, and PNG when resvg is available)
 * into `dir` (created if needed). Returns the Markdown and the paths of the images written.
 */
export async function writeOnlineReport(
  dir: string,
  r: OnlineResult,
  summary: Record<string, unknown>,
): Promise<{ markdown: string; images: string[] }> {
  await mkdir(dir, { recursive: true });
  const toPng = await pngRenderer();
  const images: string[] = [];
  const embeds: string[] = [];
  const plots = [metricsPlot(r), differencesPlot(r), mapAtKPlot(r), listsPerDayPlot(r)].filter(
    (p): p is Plot => p !== null,
  );
  for (const plot of plots) {
    const svg = await renderSvg(plot.spec);
    const svgName = `${plot.name}.svg`;
    await writeFile(join(dir, svgName), svg);
    images.push(join(dir, svgName));
    let shown = svgName;
    if (toPng) {
      shown = `${plot.name}.png`;
      await writeFile(join(dir, shown), toPng(svg));
      images.push(join(dir, shown));
    }
    const links = toPng ? ` ([SVG](${svgName}), [PNG](${shown}))` : '';
    embeds.push(`![${plot.title}](${shown})`, '', `*${plot.title}*${links}`, '');
  }
  const o = r.options;
  const markdown = [
    `# Online read-out: ${new Date(o.from).toISOString()} – ${new Date(o.to).toISOString()}`,
    '',
    `Generated ${new Date().toISOString()} · lists by ${o.time === 'served' ? 'served_at' : 'features_now'} in [from, to)` +
      `${o.experiment === undefined ? '' : ` · experiment ${o.experiment}`} · purchases in (t, t + ${o.windowDays} d] · k = ${r.readout.k} · ` +
      `${r.readout.lists} lists, ${r.readout.customers} customers, catalogue ${r.readout.catalogueSize} articles · baseline ${r.readout.baseline ?? '–'}`,
    '',
    ...embeds,
    ...tables(r),
    '',
  ].join('\n');
  await writeFile(join(dir, 'report.md'), markdown);
  await writeFile(join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  return { markdown, images };
}
