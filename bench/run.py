"""Run every benchmark in bench/ (each ``bench_*.py`` is a script) and pass their figures through.

Each figure is one line ``bench: <name> <value> <unit>``; anything else a script prints goes
to stderr. Exits non-zero if a benchmark script fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for script in sorted(here.glob("bench_*.py")):
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=here.parent)
        for line in proc.stdout.splitlines():
            (sys.stdout if line.startswith("bench: ") else sys.stderr).write(line + "\n")
        if proc.returncode:
            failed.append(script.name)
            sys.stderr.write(proc.stderr[-2000:])
    if failed:
        print(f"bench: failed scripts: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
