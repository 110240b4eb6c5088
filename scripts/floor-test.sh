#!/usr/bin/env bash
# The dependency floors of pyproject.toml, tested: a venv with the lowest version every direct
# dependency allows (uv's --resolution lowest-direct), then the fast test tier on it.
# Usage: scripts/floor-test.sh [venv dir]   (default: .venv-floor; uv comes from PyPI into .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOR="${1:-.venv-floor}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/uv ] || .venv/bin/pip install --quiet uv
rm -rf "$FLOOR"
.venv/bin/uv venv --quiet --python "$PY" "$FLOOR"
VIRTUAL_ENV="$(cd "$FLOOR" && pwd)" .venv/bin/uv pip install --quiet --resolution lowest-direct -e '.[dev]'
"$FLOOR/bin/python" - <<'PY'
import importlib.metadata as m
names = ["numpy", "pandas", "pyarrow", "pydantic", "pydantic-settings", "chdb", "kafka-python",
         "clickhouse-driver", "kubernetes", "protobuf", "fpdf2", "scapy", "pyshark", "grafana-client"]
print("floor-test: " + ", ".join(f"{n} {m.version(n)}" for n in names))
PY
"$FLOOR/bin/pytest" -m fast -q -p no:cacheprovider
