"""The OCI image, built here with deploy/image/build.py (debootstrap roots cached under $NETOBS_CACHE),
unpacked by umoci (a reader no one here wrote) and run by runc as its user 10001 on a read-only root:
`netobs --version`, `config --check`, the exporter configurator's ovs-vsctl, and the embedded demo
(collect → pipeline → chdb on the bundled OVS capture) inside the container."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netobs import __version__
from tests.services import _require

# The build takes minutes (longer on a loaded machine) the first time a test uses it.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]
ROOT = Path(__file__).parents[2]
CACHE = Path(os.environ.get("NETOBS_CACHE", Path.home() / ".cache" / "netobs")) / "image"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    missing = [t for t in ("debootstrap", "umoci", "runc", "unshare") if not shutil.which(t)]
    if missing or os.geteuid() != 0:
        _require.unavailable(
            f"image build needs root and {missing or 'root'} (run scripts/install-services.sh)"
        )
    out = tmp_path_factory.mktemp("oci") / "netobs-oci"
    r = subprocess.run(
        [sys.executable, str(ROOT / "deploy/image/build.py"), "--out", str(out), "--cache", str(CACHE)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.strip().startswith("sha256:")
    return out


def _blob(layout: Path, digest: str) -> dict:
    return json.loads((layout / "blobs/sha256" / digest.split(":")[1]).read_text())


def test_layout_labels_user_and_sbom(image) -> None:
    index = json.loads((image / "index.json").read_text())
    (img,) = [
        m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name")
    ]
    (sbom_ref,) = [m for m in index["manifests"] if m.get("artifactType") == "application/spdx+json"]
    manifest = _blob(image, img["digest"])
    config = _blob(image, manifest["config"]["digest"])
    assert config["config"]["User"] == "10001:10001"
    assert config["config"]["Entrypoint"] == ["/opt/netobs/bin/netobs"]
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert labels["org.opencontainers.image.base.digest"] == manifest["layers"][0]["digest"]
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 2
    sbom_manifest = _blob(image, sbom_ref["digest"])
    assert sbom_manifest["subject"]["digest"] == img["digest"]
    sbom = _blob(image, sbom_manifest["layers"][0]["digest"])
    names = {p["name"] for p in sbom["packages"]}
    assert {"netobs", "chdb", "pyarrow", "python3.11", "openvswitch-switch", "libc6"} <= names
    assert not {"gcc", "gcc-12", "python3.11-dev"} & names  # the compiler stayed in the build stage


@pytest.fixture(scope="module")
def bundle(image, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "netobs"
    r = subprocess.run(
        ["umoci", "unpack", "--image", f"{image}:{__version__}", str(path)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return path


def run_in(bundle: Path, args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``args`` in the container with runc: the image's user and env, read-only root, tmpfs
    for /var/lib/netobs and /tmp, the repository's compose/ and test captures mounted read-only."""
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args
    spec["process"]["env"] += [f"{k}={v}" for k, v in (env or {}).items()]
    spec["root"]["readonly"] = True
    # No cgroup mount or limits: this host's cgroups are v1/v2 hybrid, which a nested runtime here
    # cannot delegate; Kubernetes applies the chart's limits.
    spec["linux"].pop("resources", None)
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in ("/tmp", "/sys/fs/cgroup")] + [
        {"destination": "/var/lib/netobs", "type": "tmpfs", "source": "tmpfs", "options": ["uid=10001", "gid=10001", "mode=0750"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]},
        {"destination": "/demo/compose", "type": "bind", "source": str(ROOT / "compose"), "options": ["rbind", "ro"]},
        {"destination": "/demo/testdata", "type": "bind", "source": str(ROOT / "tests/testdata"), "options": ["rbind", "ro"]},
    ]  # fmt: skip
    (bundle / "config.json").write_text(json.dumps(spec))
    name = f"netobs-test-{os.getpid()}"
    cmd = ["runc", "run", "--bundle", str(bundle), name]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        subprocess.run(["runc", "delete", "--force", name], capture_output=True)


def test_version_and_config_check(bundle) -> None:
    r = run_in(bundle, ["/opt/netobs/bin/netobs", "--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"netobs {__version__}", r.stderr
    r = run_in(bundle, ["id", "-u"])
    assert r.stdout.strip() == "10001"
    r = run_in(bundle, ["/opt/netobs/bin/netobs", "config", "--check", "/demo/compose/netobs.compose.yaml"])
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = run_in(bundle, ["/opt/netobs/bin/netobs", "config", "--check", "/demo/testdata/ovs-sflow.pcap"])
    assert r.returncode == 2 and "configuration error" in r.stderr  # a wrong file, refused clearly
    r = run_in(bundle, ["ovs-vsctl", "--version"])
    assert r.returncode == 0 and "Open vSwitch" in r.stdout
    r = run_in(bundle, ["sh", "-c", "touch /opt/netobs/x"])
    assert r.returncode != 0  # the root filesystem is read-only


DEMO = r"""
set -eu
cfg=/demo/compose/demo.yaml
netobs --config $cfg run 2>/var/lib/netobs/run.log &
pid=$!
up() { python -c "import urllib.request,json,sys; h=json.load(urllib.request.urlopen('http://127.0.0.1:19464/health', timeout=1)); print(h['published_flows'], h['rows_inserted'])"; }
for i in $(seq 1 600); do up >/dev/null 2>&1 && break; sleep 0.2; done
up || { cat /var/lib/netobs/run.log; exit 1; }
netobs replay /demo/testdata/ovs-sflow.pcap --to 127.0.0.1:16343
for i in $(seq 1 120); do set -- $(up); [ "$1" -gt 0 ] && [ "$1" = "$2" ] && break; sleep 0.5; done
netobs --config $cfg query "SELECT count() AS n FROM netobs.flows" --format tsv
kill -TERM $pid; wait $pid
"""


def test_embedded_demo_inside_the_container(bundle) -> None:
    expected = subprocess.run(
        [sys.executable, "-m", "netobs", "decode", str(ROOT / "tests/testdata/ovs-sflow.pcap")],
        capture_output=True, text=True, check=True,
    ).stdout.count('"kind":"flow"')  # fmt: skip
    env = {
        "NETOBS__STORE__CHDB__PATH": "/var/lib/netobs/chdb",
        "NETOBS__ENRICH__INVENTORY": "/demo/compose/demo-inventory.yaml",
    }
    r = run_in(bundle, ["sh", "-c", DEMO], env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert expected > 0 and r.stdout.split()[-1] == str(expected), r.stdout
