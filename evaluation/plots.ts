/**
 * Plots for the evaluation reports (the backtest's and the online read-out's): Vega-Lite specs
 * compiled to Vega and rendered offline, headless (a Vega View with renderer 'none' → `toSVG()`;
 * no browser, no canvas, no network: the data is inline), and SVG → PNG with the prebuilt
 * `@resvg/resvg-js` binary when it loads (2× zoom, system fonts).
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** Render a Vega-Lite spec to an SVG document, headless. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export type PngRenderer = (svg: string) => Buffer;

/** The PNG renderer, or null when the native resvg binary is not available on this machine. */
export async function pngRenderer(): Promise<PngRenderer | null> {
  try {
    const { Resvg } = await import('@resvg/resvg-js');
    return (svg) =>
      new Resvg(svg, {
        fitTo: { mode: 'zoom', value: 2 },
        font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
        background: 'white',
      })
        .render()
        .asPng();
  } catch {
    return null;
  }
}
