#!/usr/bin/env bash
# Unpack the Grafana ClickHouse data source plugin from a local zip into compose/grafana/plugins,
# for an air-gapped Grafana (nothing is downloaded at start).
#
#   scripts/grafana-plugin.sh PLUGIN.zip [SHA256]
#
# The zip comes from the bank's artifact mirror. With SHA256 (the digest the mirror recorded) a
# different file is refused. The plugin's own plugin.json must name grafana-clickhouse-datasource,
# and Grafana checks the plugin's signature (MANIFEST.txt) itself when it loads it. The digest
# unpacked is written to compose/grafana/plugins/plugin.lock: commit it.
set -euo pipefail
zip="${1:?usage: $0 PLUGIN.zip [SHA256]}"
want="${2:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$here/compose/grafana/plugins"
id=grafana-clickhouse-datasource
got="$(sha256sum "$zip" | cut -d' ' -f1)"
if [ -n "$want" ] && [ "$got" != "$want" ]; then
    echo "grafana-plugin: $zip has sha256 $got, expected $want: refused" >&2
    exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m zipfile -e "$zip" "$tmp"
manifest="$(find "$tmp" -maxdepth 2 -name plugin.json | head -n 1)"
if [ -z "$manifest" ] || ! python3 -c "import json,sys; sys.exit(json.load(open(sys.argv[1]))['id'] != sys.argv[2])" "$manifest" "$id"; then
    echo "grafana-plugin: $zip is not the $id plugin (no plugin.json with that id)" >&2
    exit 1
fi
rm -rf "${dest:?}/$id"
mv "$(dirname "$manifest")" "$dest/$id"
printf '%s  %s\n' "$got" "$(basename "$zip")" >"$dest/plugin.lock"
echo "grafana-plugin: $id unpacked into $dest/$id (sha256 $got, recorded in plugin.lock)"
