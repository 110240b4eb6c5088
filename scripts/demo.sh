#!/usr/bin/env bash
# `make demo`: the embedded default end to end. Starts `netobs run` (collectors + in-process
# transport + pipeline + chdb), replays the sFlow and IPFIX exports that the project's own
# Open vSwitch test captured, and prints what landed in the store.
set -euo pipefail
cd "$(dirname "$0")/.."
NETOBS=".venv/bin/netobs"
CONFIG="compose/demo.yaml"
CONTROL="127.0.0.1:19464"

rm -rf var/demo && mkdir -p var/demo
"$NETOBS" --config "$CONFIG" config --check "$CONFIG"
"$NETOBS" --config "$CONFIG" run 2> var/demo/run.log &
RUN_PID=$!
trap 'kill -TERM $RUN_PID 2>/dev/null || true; wait $RUN_PID 2>/dev/null || true' EXIT

health() { curl -fsS "http://$CONTROL/health" 2>/dev/null || python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://$CONTROL/health', timeout=1).read().decode())" 2>/dev/null; }
for _ in $(seq 1 100); do
    health >/dev/null && break
    kill -0 $RUN_PID 2>/dev/null || { echo "netobs run exited:"; cat var/demo/run.log; exit 1; }
    sleep 0.2
done
echo "== netobs run is up: $(health)"

"$NETOBS" replay tests/testdata/ovs-sflow.pcap --to 127.0.0.1:16343
"$NETOBS" replay tests/testdata/ovs-ipfix.pcap --to 127.0.0.1:14739

# Wait until the pipeline has inserted everything the collectors published (and that stays so).
settled() { python3 -c "import json,sys; h=json.loads(sys.argv[1]); sys.exit(0 if h['rows_inserted'] and h['rows_inserted'] == h['published_flows'] else 1)" "$1"; }
previous=""
for _ in $(seq 1 60); do
    state=$(health)
    counts=$(python3 -c "import json,sys; h=json.loads(sys.argv[1]); print(h['published_flows'], h['rows_inserted'])" "$state")
    if settled "$state" && [ "$counts" = "$previous" ]; then break; fi
    previous=$counts
    sleep 0.5
done
echo "== after replay: $(health)"

echo "== flows by exporter protocol"
"$NETOBS" --config "$CONFIG" query "SELECT type, count() AS records, sum(packets) AS pkts, sum(bytes) AS octets FROM netobs.flows GROUP BY type ORDER BY type"
echo
echo "== who talked to whom (enriched on the way in from compose/demo-inventory.yaml)"
"$NETOBS" --config "$CONFIG" query "
SELECT src_pod, src_workload, dst_pod, dst_workload, dst_port, src_tenant AS tenant, src_center AS center, path,
       sum(packets) AS pkts, sum(bytes) AS octets
FROM netobs.flows WHERE src_pod != '' AND dst_pod != '' AND counted = 1
GROUP BY src_pod, src_workload, dst_pod, dst_workload, dst_port, tenant, center, path
ORDER BY octets DESC LIMIT 10"
echo
echo "== what the counting model did with every record (each packet counted once; netobs/counting.py)"
"$NETOBS" --config "$CONFIG" query "
SELECT type, observer, count_reason, counted, count() AS records
FROM netobs.flows GROUP BY type, observer, count_reason, counted ORDER BY type, counted DESC, records DESC"
echo
echo "== top conversations, client -> server (counted records, scaled by their sampling rate)"
"$NETOBS" --config "$CONFIG" query "
SELECT if(initiator = 'dst', dst_addr, src_addr) AS client, if(initiator = 'dst', src_addr, dst_addr) AS server,
       proto, if(initiator = 'dst', src_port, dst_port) AS server_port, any(role_method) AS role_by,
       sum(packets * greatest(sampling_rate, 1)) AS pkts, sum(bytes * greatest(sampling_rate, 1)) AS octets
FROM netobs.flows WHERE counted = 1
GROUP BY client, server, proto, server_port
ORDER BY octets DESC LIMIT 15"
