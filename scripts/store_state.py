"""Dump the embedded store's schema as a past commit creates it: a state for the migration tests.

    .venv/bin/python scripts/store_state.py COMMIT tests/testdata/store-states/NAME.sql

Checks COMMIT's ``netobs`` package out into a temporary directory, opens a fresh embedded
store with it (which converges an empty database to that commit's schema), and writes one
``SHOW CREATE`` statement per table and view, in creation order, separated by ``;\\n\\n``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

_DUMP = """
import sys
from pathlib import Path
import netobs.ddl  # noqa: F401  (first: some past commits import it through a circle otherwise)
from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.store import make_store
store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=Path(sys.argv[1]))))
store.start()
names = store.query_arrow(
    "SELECT name FROM system.tables WHERE database = 'netobs' ORDER BY engine LIKE '%View', metadata_modification_time, name"
).column("name").to_pylist()
out = []
for name in names:
    (stmt,) = store.query_arrow(f"SHOW CREATE TABLE netobs.`{name}`").column(0).to_pylist()
    out.append(stmt.replace("\\\\n", "\\n"))
store.stop()
sys.stdout.write(";\\n\\n".join(out) + "\\n")
"""


def main(commit: str, out: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", commit, "netobs"], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        dump = subprocess.run(
            [sys.executable, "-c", _DUMP, str(Path(tmp) / "chdb")],
            cwd=tree,
            env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
    if dump.returncode:
        raise SystemExit(f"{commit}: {dump.stderr.strip().splitlines()[-1]}")
    out.write_text(
        f"-- netobs store schema as commit {commit} creates it (scripts/store_state.py)\n" + dump.stdout
    )


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
