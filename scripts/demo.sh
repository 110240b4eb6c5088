#!/usr/bin/env bash
# `make demo`: a live two-site, three-center bank in the browser. `netobs demo` starts `netobs run`
# (collectors + in-process transport + pipeline + chdb) and the bank's exporters sending sFlow and
# IPFIX over UDP at real-time pace, then prints the flow explorer's address. Ctrl-C stops it.
# The process log goes to var/demo.log (the terminal keeps the address and the story).
#   DEMO_SECONDS=N  stop after N seconds (default: run until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."
NETOBS=".venv/bin/netobs"
CONFIG="compose/demo.yaml"
mkdir -p var
"$NETOBS" --config "$CONFIG" config --check "$CONFIG"
echo "netobs demo: starting (log: var/demo.log) ..."
exec "$NETOBS" --config "$CONFIG" demo --dir var/demo --seconds "${DEMO_SECONDS:-0}" 2> var/demo.log
