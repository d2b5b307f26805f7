#!/usr/bin/env bash
# Rebuild dashboards/static/vendor/plotly-assay.min.js (and its .gz) from the npm packages
# pinned in package.json. Needs node >= 18 and npm. node_modules/ stays here, ignored by git.
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund --ignore-scripts --no-save
node build_plotly.mjs
gzip -9 -n -k -f ../static/vendor/plotly-assay.min.js
sha256sum ../static/vendor/plotly-assay.min.js ../static/vendor/plotly-assay.min.js.gz
