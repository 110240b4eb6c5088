"""Where the goflow2 binary is (built by scripts/install-services.sh from the Go module proxy).

goflow2 is the peer collector: the benchmarks compare netobs with it on the same replayed
captures, and the pipeline accepts its protobuf ``FlowMessage`` topic as an input.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

VERSION = "v2.2.6"


def goflow2_binary() -> str | None:
    """Path of a goflow2 binary: $NETOBS_GOFLOW2, the install script's cache, then PATH."""
    candidates = [
        os.environ.get("NETOBS_GOFLOW2", ""),
        str(
            Path(os.environ.get("NETOBS_CACHE", Path.home() / ".cache" / "netobs")) / "go" / "bin" / "goflow2"
        ),
        shutil.which("goflow2") or "",
        str(Path.home() / "go" / "bin" / "goflow2"),
    ]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


def flow_proto() -> Path | None:
    """goflow2's pb/flow.proto in the Go module cache (where `go install` left it), if present."""
    roots = [
        Path(os.environ.get("NETOBS_CACHE", Path.home() / ".cache" / "netobs")) / "go" / "mod",
        Path.home() / "go" / "pkg" / "mod",
    ]
    for root in roots:
        proto = root / "github.com" / "netsampler" / "goflow2" / "v2@v2.2.6" / "pb" / "flow.proto"
        if proto.is_file():
            return proto
    return None
