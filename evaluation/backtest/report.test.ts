/**
 * The evaluation report from a hand-built EvalReport: report.md opens with the plots and
 * references every image; each SVG is a Vega rendering with one mark per method or bar; PNGs
 * carry the PNG signature; the tables show the input's numbers.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  TOP_FEATURES,
  fmtGain,
  fmtMetric,
  fmtRatio,
  fmtSeconds,
  writeReport,
  type EvalReport,
} from './report.ts';

const METHODS = ['ranker', 'popular', 'repurchase_popular', 'strong_heuristic'];
const CUTOFFS = ['2020-09-01', '2020-09-08', '2020-09-15'];
const K = 12;

/** MAP@k rising with k towards `at12`, distinct per method and cutoff. */
const curve = (at12: number) => Array.from({ length: K }, (_, i) => (at12 * (i + 1)) / K);
const MAP12: Record<string, number[]> = {
  ranker: [0.0312, 0.0287, 0.0301],
  popular: [0.0101, 0.0093, 0.0112],
  repurchase_popular: [0.0205, 0.0198, 0.0214],
  strong_heuristic: [0.0254, 0.0249, 0.0262],
};

const FEATURES = Array.from({ length: 30 }, (_, i) => ({
  feature: i === 3 ? 'price|ratio' : `feature_${String(i).padStart(2, '0')}`,
  gain: 1000 / (i + 1) + 0.25,
}));

const DATA: EvalReport = {
  dataset: 'hm-sample',
  generatedAt: '2026-01-02T03:04:05.000Z',
  k: K,
  methods: METHODS,
  cutoffs: CUTOFFS,
  perCutoff: CUTOFFS.map((cutoff, c) => ({
    cutoff,
    usersScored: 1000 + c,
    mapAtK: Object.fromEntries(METHODS.map((m) => [m, curve(MAP12[m]?.[c] ?? 0)])),
    recall: Object.fromEntries(METHODS.map((m, j) => [m, 0.05 + 0.01 * j + 0.001 * c])),
    ndcg: Object.fromEntries(METHODS.map((m, j) => [m, 0.03 + 0.01 * j + 0.002 * c])),
    candidateRecall: { overall: 0.41 + c / 100, repurchase: 0.12, popular: 0.2, copurchase: 0.15 },
  })),
  summary: {
    map: Object.fromEntries(
      METHODS.map((m) => {
        const v = MAP12[m] ?? [];
        const mean = v.reduce((s, x) => s + x, 0) / v.length;
        const sd = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
        return [m, { mean, spread: sd }];
      }),
    ),
    recall: { ranker: 0.0612, popular: 0.0311, repurchase_popular: 0.0455, strong_heuristic: 0.05 },
    ndcg: { ranker: 0.0456, popular: 0.0211, repurchase_popular: 0.0333, strong_heuristic: 0.04 },
    ratios: { popular: 2.9032, repurchase_popular: 1.4657, strong_heuristic: 1.1897 },
    candidateRecall: { overall: 0.42, repurchase: 0.12, popular: 0.2, copurchase: 0.15 },
    usersScored: 3003,
  },
  featureImportance: FEATURES,
  notes: ['Trained on 4 weeks before each cutoff.', 'Second note line.'],
  timings: { load: 12.34, train: 56.78 },
};

/**
 * The `<path>` elements in Vega's mark groups of the given type, summed over the groups (a line
 * chart with a colour has one group per series): one per line, bar or point.
 */
function marks(svg: string, type: 'line' | 'rect' | 'symbol'): number {
  let n = 0;
  const open = `class="mark-${type} role-mark`;
  for (let at = svg.indexOf(open); at >= 0; at = svg.indexOf(open, at + 1)) {
    // A mark group holds only paths: it ends at the first closing tag.
    n += (svg.slice(at, svg.indexOf('</g>', at)).match(/<path /g) ?? []).length;
  }
  return n;
}

describe('writeReport', () => {
  let dir: string;
  let result: { markdown: string; images: string[] };
  let seconds = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'report-'));
    const started = performance.now();
    result = await writeReport(join(dir, 'nested', 'report'), DATA);
    seconds = (performance.now() - started) / 1000;
    console.log(`writeReport: ${seconds.toFixed(2)} s, ${result.images.length} images`);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const out = () => join(dir, 'nested', 'report');
  const svgs = () => result.images.filter((f) => f.endsWith('.svg'));
  const svgOf = async (name: string) => readFile(join(out(), `${name}.svg`), 'utf8');

  it('writes report.md that opens with the plots and references every image', async () => {
    const md = await readFile(join(out(), 'report.md'), 'utf8');
    expect(md).toBe(result.markdown);
    expect(svgs().map((f) => basename(f))).toEqual([
      'map-at-k.svg',
      'map-per-cutoff.svg',
      'candidate-recall.svg',
      'feature-importance.svg',
    ]);
    for (const image of result.images) {
      expect((await stat(image)).size).toBeGreaterThan(0);
      expect(md).toContain(`(${basename(image)})`);
    }
    // The plots come before any table.
    const firstImage = md.indexOf('![');
    const firstTable = md.indexOf('\n|');
    expect(firstImage).toBeGreaterThan(0);
    expect(firstImage).toBeLessThan(firstTable);
    const lastImage = md.lastIndexOf('![');
    expect(lastImage).toBeLessThan(md.indexOf('## Summary'));
    expect(md).toContain('Spread = standard deviation of MAP@12 over the cutoffs');
  });

  it('renders each plot as an SVG with one mark per method or bar', async () => {
    for (const f of svgs()) {
      const svg = await readFile(f, 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    }
    const mapK = await svgOf('map-at-k');
    expect(marks(mapK, 'line')).toBe(METHODS.length); // one line per method
    expect(marks(mapK, 'symbol')).toBe(METHODS.length * K); // a point per method and k
    for (const m of METHODS) expect(mapK).toContain(`>${m}</text>`); // legend

    const perCutoff = await svgOf('map-per-cutoff');
    expect(marks(perCutoff, 'rect')).toBe(METHODS.length * CUTOFFS.length);
    for (const c of CUTOFFS) expect(perCutoff).toContain(`>${c}</text>`);

    const sources = await svgOf('candidate-recall');
    expect(marks(sources, 'rect')).toBe(Object.keys(DATA.summary.candidateRecall).length);

    const features = await svgOf('feature-importance');
    expect(marks(features, 'rect')).toBe(TOP_FEATURES);
    expect(features).toContain('>feature_00</text>');
    expect(features).toContain('>feature_24</text>');
    expect(features).not.toContain('>feature_25</text>');
  });

  it('writes PNGs (when resvg loads) with the PNG signature', async () => {
    const pngs = result.images.filter((f) => f.endsWith('.png'));
    // resvg-js ships a prebuilt binary for this platform: the PNGs are expected here.
    expect(pngs).toHaveLength(4);
    for (const f of pngs) {
      const head = (await readFile(f)).subarray(0, 8);
      expect([...head]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    }
  });

  it('shows the input numbers in the tables', () => {
    const md = result.markdown;
    const s = DATA.summary;
    for (const m of METHODS) {
      // No standard error in this input: '–'.
      const row = `| ${m} | ${fmtMetric(s.map[m]?.mean)} | ${fmtMetric(s.map[m]?.spread)} | – | ${fmtMetric(s.recall[m])} | ${fmtMetric(s.ndcg[m])} |`;
      expect(md).toContain(row);
    }
    expect(md).toContain('| ranker | 0.0300 | 0.0010 | – | 0.0612 | 0.0456 |');
    expect(md).toContain(`| popular | ${fmtRatio(2.9032)} | – | – |`);
    expect(fmtRatio(2.9032)).toBe('2.90×');
    expect(md).toContain('Users scored (all cutoffs): 3003.');

    // Per cutoff: MAP@12 (the last entry of mapAtK), recall, NDCG.
    DATA.perCutoff.forEach((c, i) => {
      const at12 = METHODS.map((m) => fmtMetric(c.mapAtK[m]?.[K - 1])).join(' | ');
      expect(md).toContain(`| ${c.cutoff} | ${c.usersScored} | ${at12} |`);
      expect(at12.split(' | ')[0]).toBe(fmtMetric(MAP12.ranker?.[i]));
      const recall = METHODS.map((m) => fmtMetric(c.recall[m])).join(' | ');
      expect(md).toContain(`| ${c.cutoff} | ${c.usersScored} | ${recall} |`);
      const ndcg = METHODS.map((m) => fmtMetric(c.ndcg[m])).join(' | ');
      expect(md).toContain(`| ${c.cutoff} | ${c.usersScored} | ${ndcg} |`);
      expect(md).toContain(`| ${c.cutoff} | ${fmtMetric(c.candidateRecall.overall)} |`);
    });

    // MAP@k means over cutoffs: k = 6 is half of the mean MAP@12 here.
    const mean6 = (0.0312 + 0.0287 + 0.0301) / 3 / 2;
    expect(md).toMatch(new RegExp(`\\| ranker( \\| [0-9.]+){5} \\| ${fmtMetric(mean6)} \\|`));

    // Candidate recall overall, features (ranked by gain, top 25, `|` escaped), timings, notes.
    expect(md).toContain('| **all** | **0.4200** | **0.1200** | **0.2000** | **0.1500** |');
    expect(md).toContain(`| 1 | feature_00 | ${fmtGain(1000.25)} |`);
    expect(md).toContain(`| 4 | price\\|ratio | ${fmtGain(250.25)} |`);
    expect(md).toContain(`| 25 | feature_24 | ${fmtGain(40.25)} |`);
    expect(md).not.toContain('feature_25');
    expect(md).toContain(`| load | ${fmtSeconds(12.34)} |`);
    expect(md).toContain('- Trained on 4 weeks before each cutoff.');
    expect(md).toContain('# Offline evaluation: hm-sample');
    expect(seconds).toBeLessThan(30);
  });

  it('copes with missing parts: no features, no candidate recall, a missing method value', async () => {
    const sparse: EvalReport = {
      ...DATA,
      perCutoff: DATA.perCutoff.map((c) => ({
        ...c,
        mapAtK: { ...c.mapAtK, strong_heuristic: [] },
        candidateRecall: {},
      })),
      summary: { ...DATA.summary, candidateRecall: {} },
      featureImportance: [],
      notes: [],
    };
    delete sparse.timings;
    const r = await writeReport(join(dir, 'sparse'), sparse);
    expect(r.images.map((f) => basename(f)).filter((f) => f.endsWith('.svg'))).toEqual([
      'map-at-k.svg',
      'map-per-cutoff.svg',
    ]);
    expect(r.markdown).not.toContain('## Feature importance');
    expect(r.markdown).not.toContain('## Timings');
    expect(r.markdown).toContain('| 2020-09-01 | 1000 | 0.0312 | 0.0101 | 0.0205 | – |');
    const mapK = await readFile(join(dir, 'sparse', 'map-at-k.svg'), 'utf8');
    expect(marks(mapK, 'line')).toBe(METHODS.length - 1);
  });
});
