// Partial Plotly.js bundle for the Assay dashboard: plotly.js/lib/core (which always holds the
// scatter trace and the components: axes, legend, error bars, shapes, colorbars, modebar...)
// plus the only other trace types the dashboard draws, `bar`, `contour` and `parcoords` (see
// dashboards/charts.py and dashboards/static/app.js). Built with esbuild the way plotly.js
// builds its own dist bundles (iife, global `Plotly`, `global` -> `window`). Run through
// build_plotly.sh, which installs the pinned packages first.
import { build } from "esbuild";
import { createRequire } from "node:module";
import { copyFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const vendor = join(here, "..", "static", "vendor");
const pkg = JSON.parse(readFileSync(require.resolve("plotly.js/package.json"), "utf8"));
export const TRACES = ["bar", "contour", "parcoords"];

const entry = [
  "var Plotly = require('plotly.js/lib/core');",
  `Plotly.register([${TRACES.map((t) => `require('plotly.js/lib/${t}')`).join(", ")}]);`,
  "module.exports = Plotly;",
].join("\n");

const out = join(vendor, "plotly-assay.min.js");
await build({
  stdin: { contents: entry, resolveDir: here, sourcefile: "plotly-assay.js" },
  outfile: out,
  bundle: true,
  minify: true,
  format: "iife",
  globalName: "Plotly",
  target: "es2016",
  define: { global: "window", "define.amd": "false", "process.env.NODE_DEBUG": "false" },
  // map traces' stylesheet, required by the registry only for map traces (not bundled here)
  loader: { ".css": "empty" },
  legalComments: "eof",
  banner: {
    js: `/**\n* plotly.js v${pkg.version} partial bundle (core + ${TRACES.join(", ")}) for Assay\n` +
      "* Copyright 2012-2026, Plotly, Inc.\n* All rights reserved.\n* Licensed under the MIT license\n*/",
  },
  logLevel: "warning",
});
copyFileSync(require.resolve("plotly.js/LICENSE"), join(vendor, "plotly.LICENSE"));
writeFileSync(join(vendor, "plotly-assay.version"), `${pkg.version}\n`);
console.log(`${out}: ${(statSync(out).size / 1024).toFixed(0)} KiB (plotly.js ${pkg.version})`);
