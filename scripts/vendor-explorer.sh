#!/usr/bin/env bash
# Rebuild the flow explorer's vendored chart library from the npm registry and check it is the one
# committed (dashboards/explorer_static/vendor/). Apache ECharts is Apache-2.0; its LICENSE and NOTICE,
# and zrender's (BSD-3-Clause, bundled inside echarts.min.js), are kept beside it.
#   scripts/vendor-explorer.sh          check the committed copy against the registry's
#   scripts/vendor-explorer.sh --write  replace the committed copy
set -euo pipefail
ECHARTS_VERSION="5.6.0"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$HERE/dashboards/explorer_static/vendor"
WORK="${NETOBS_CACHE:-$HOME/.cache/netobs}/npm-echarts"
mkdir -p "$WORK"
[ -f "$WORK/package.json" ] || echo '{"name": "netobs-explorer-vendor", "private": true}' >"$WORK/package.json"
(cd "$WORK" && npm install --no-audit --no-fund --silent "echarts@$ECHARTS_VERSION")
SRC="$WORK/node_modules"
if [ "${1:-}" = "--write" ]; then
    cp "$SRC/echarts/dist/echarts.min.js" "$OUT/echarts.min.js"
    cp "$SRC/echarts/LICENSE" "$OUT/LICENSE-echarts.txt"
    cp "$SRC/echarts/NOTICE" "$OUT/NOTICE-echarts.txt"
    cp "$SRC/zrender/LICENSE" "$OUT/LICENSE-zrender.txt"
    echo "vendored echarts $ECHARTS_VERSION into $OUT"
else
    cmp "$SRC/echarts/dist/echarts.min.js" "$OUT/echarts.min.js"
    echo "vendored echarts.min.js is npm's echarts@$ECHARTS_VERSION"
fi
