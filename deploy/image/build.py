"""Build the netobs OCI image offline: no registry, no container engine.

Two stages, as a multi-stage Dockerfile would have them, each a Debian 12 root made by
``debootstrap`` and cached under ``$NETOBS_CACHE/image``:

* build: minbase + python3-dev, gcc. ``/opt/netobs`` is a venv where netobs is installed from
  this tree (its C extensions compiled here) with its dependencies from wheels fetched on the host.
* runtime: minbase + python3, ca-certificates, openvswitch-switch (``ovs-vsctl`` for ``netobs
  exporters``). Layer 1 is this root, unchanged; layer 2 is ``/opt/netobs`` copied from the build
  stage, the ``netobs`` user (uid 10001) and the SBOM. No compiler reaches the runtime image.

The result is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256``): the image
manifest (tagged), its config (non-root user, entrypoint, OCI labels), and the SPDX SBOM as an
artifact whose ``subject`` is the image. Layers are reproducible tars (sorted, mtimes clamped to
SOURCE_DATE_EPOCH or the commit time). ``umoci``, ``skopeo``, ``podman load`` read it.

    python3 deploy/image/build.py [--out dist/netobs-oci] [--tag VERSION]

Needs root (debootstrap, chroot, mount namespaces).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SUITE, MIRROR = "bookworm", os.environ.get("NETOBS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
STAGES = {
    "runtime": "python3,ca-certificates,openvswitch-switch",
    "build": "python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates",
}
UID = 10001
SKIP = ("dev/", "proc/", "sys/", "tmp/", "run/", "var/cache/apt/", "var/lib/apt/lists/", "var/log/")


def log(msg: str) -> None:
    print(f"image: {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kw)


# ---- stage roots -----------------------------------------------------------------------------------
def stage_root(cache: Path, stage: str) -> Path:
    """The cached debootstrap root of ``stage`` (made once; CI reruns reuse it)."""
    key = hashlib.sha256(f"{SUITE} {MIRROR} {STAGES[stage]}".encode()).hexdigest()[:12]
    root = cache / f"rootfs-{stage}-{key}"
    if (root / ".complete").exists():
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"debootstrap {SUITE} ({stage}: {STAGES[stage]}) into {root}")
    (cache / "debs").mkdir(parents=True, exist_ok=True)
    run(
        "debootstrap", "--variant=minbase", f"--cache-dir={cache / 'debs'}", f"--include={STAGES[stage]}",
        SUITE, str(tmp), MIRROR, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    (tmp / ".complete").touch()
    tmp.rename(root)
    return root


def packages(root: Path) -> list[tuple[str, str, str]]:
    """(name, version, architecture) of every Debian package installed in ``root``."""
    out, pkg = [], {}
    for line in (root / "var/lib/dpkg/status").read_text().splitlines() + [""]:
        if not line:
            if pkg.get("Status", "").endswith(" installed"):
                out.append((pkg["Package"], pkg["Version"], pkg.get("Architecture", "")))
            pkg = {}
        elif not line.startswith(" ") and ":" in line:
            k, v = line.split(":", 1)
            pkg[k] = v.strip()
    return sorted(out)


# ---- build stage -----------------------------------------------------------------------------------
def wheels(cache: Path) -> Path:
    """netobs' dependencies as wheels (CPython 3.11, manylinux), fetched on the host and cached."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    out = cache / "wheels"
    stamp = out / ".requirements"
    want = "\n".join(sorted(deps + build + ["wheel"]))
    if stamp.exists() and stamp.read_text() == want:
        return out
    log(f"pip download {len(deps)} dependencies into {out}")
    out.mkdir(parents=True, exist_ok=True)
    run(
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(out), "--only-binary=:all:",
        "--python-version", "3.11", "--platform", "manylinux2014_x86_64", "--platform",
        "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--implementation", "cp",
        *deps, *build, "wheel",
    )  # fmt: skip
    stamp.write_text(want)
    return out


def build_stage(build_root: Path, wheel_dir: Path, work: Path) -> Path:
    """/opt/netobs built in the build root (a mount namespace: the cached root is left as it was)."""
    src = work / "src"
    files = run("git", "-C", str(ROOT), "ls-files", "-z", capture_output=True).stdout.split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    opt = work / "opt-netobs"
    opt.mkdir()
    script = f"""
set -eu
mount --bind {src} {build_root}/mnt
mkdir -p {build_root}/opt/netobs {build_root}/srv/wheels
mount --bind {opt} {build_root}/opt/netobs
mount --bind {wheel_dir} {build_root}/srv/wheels
mount -t tmpfs tmpfs {build_root}/tmp
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot {build_root} /bin/sh -c '
  set -eu
  export HOME=/tmp PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
  python3 -m venv /opt/netobs
  /opt/netobs/bin/pip install --quiet --no-index --find-links /srv/wheels --upgrade "setuptools>=77" wheel
  cp -r /mnt /tmp/src
  /opt/netobs/bin/pip install --quiet --no-index --find-links /srv/wheels --no-build-isolation /tmp/src
  /opt/netobs/bin/pip uninstall --quiet --yes pip setuptools wheel
  /opt/netobs/bin/python -c "import collectors._native_sflow, collectors._native_ipfix, netobs._native_counting, pipeline._native_enrich"
'
"""
    log("build stage: venv, netobs with its C extensions, dependencies from wheels")
    run("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
    # Compile the bytecode once, at build time, into the layer (the root filesystem is read-only).
    run(
        str(opt / "bin" / "python"),
        "-m",
        "compileall",
        "-q",
        "-j0",
        str(opt / "lib"),
        stdout=subprocess.DEVNULL,
    )
    return opt


# ---- layers ------------------------------------------------------------------------------------------
class Layer:
    """A reproducible tar layer, gzip-compressed; digest (compressed) and diff_id (tar)."""

    def __init__(self, epoch: int):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.epoch = epoch

    def add_tree(self, root: Path, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in (
                [""] + sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            ):
                path = os.path.join(dirpath, name) if name else dirpath
                rel = os.path.normpath(os.path.join(prefix, rel_dir, name))
                if rel in (".", "") or any((rel + "/").startswith(s) for s in skip) and rel + "/" not in skip:
                    continue
                self.add(path, rel)

    def add(self, path: str, arcname: str) -> None:
        info = self.tar.gettarinfo(path, arcname)
        info.mtime = min(int(info.mtime), self.epoch)
        info.uname = info.gname = ""
        if info.isreg():
            with open(path, "rb") as f:
                self.tar.addfile(info, f)
        else:
            self.tar.addfile(info)

    def add_bytes(self, arcname: str, data: bytes, mode: int = 0o644, uid: int = 0) -> None:
        info = tarfile.TarInfo(arcname)
        info.size, info.mode, info.mtime, info.uid, info.gid = len(data), mode, self.epoch, uid, uid
        self.tar.addfile(info, io.BytesIO(data))

    def add_dir(self, arcname: str, uid: int = 0, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(arcname)
        info.type, info.mode, info.mtime, info.uid, info.gid = tarfile.DIRTYPE, mode, self.epoch, uid, uid
        self.tar.addfile(info)

    def close(self, blobs: Path) -> dict[str, Any]:
        self.tar.close()
        raw = self.buf.getvalue()
        packed = gzip.compress(raw, compresslevel=1, mtime=0)
        digest = write_blob(blobs, packed)
        return {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": len(packed),
            "diff_id": "sha256:" + hashlib.sha256(raw).hexdigest(),
        }


def write_blob(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}"


def base_layer(runtime_root: Path, cache: Path, blobs: Path, epoch: int) -> dict[str, Any]:
    """Layer 1, the runtime root as debootstrap made it: cached beside the root (same key)."""
    cached = cache / (runtime_root.name + ".layer.json")
    if cached.exists():
        meta = json.loads(cached.read_text())
        blob = cache / (runtime_root.name + ".layer.tar.gz")
        shutil.copyfile(blob, blobs / meta["digest"].split(":")[1])
        return meta
    log("base layer: tar of the runtime root (cached after the first build)")
    layer = Layer(epoch)
    layer.add_tree(runtime_root, skip=SKIP + (".complete/",))
    for d in ("dev", "proc", "sys", "run"):
        layer.add_dir(d)
    layer.add_dir("tmp", mode=0o1777)
    meta = layer.close(blobs)
    shutil.copyfile(blobs / meta["digest"].split(":")[1], cache / (runtime_root.name + ".layer.tar.gz"))
    cached.write_text(json.dumps(meta))
    return meta


# ---- SBOM ---------------------------------------------------------------------------------------------
def python_packages(opt: Path) -> list[tuple[str, str, str]]:
    out = []
    for meta in sorted(opt.glob("lib/python3*/site-packages/*.dist-info/METADATA")):
        fields: dict[str, str] = {}
        for line in meta.read_text(errors="replace").splitlines():
            if not line:
                break
            if ":" in line and not line.startswith(" "):
                k, v = line.split(":", 1)
                fields.setdefault(k, v.strip())
        # Only an SPDX expression is declared as such; free-text License fields stay NOASSERTION.
        out.append(
            (
                fields.get("Name", meta.parent.name),
                fields.get("Version", ""),
                fields.get("License-Expression", ""),
            )
        )
    return out


def sbom(name: str, version: str, created: str, debs, wheels_) -> dict[str, Any]:
    def pkg(kind: str, n: str, v: str, purl: str, lic: str = "NOASSERTION") -> dict[str, Any]:
        return {
            "SPDXID": f"SPDXRef-{kind}-{hashlib.sha1(f'{n}{v}'.encode()).hexdigest()[:12]}",
            "name": n,
            "versionInfo": v,
            "downloadLocation": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": lic or "NOASSERTION",
            "externalRefs": [
                {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}
            ],
        }

    pkgs = [pkg("deb", n, v, f"pkg:deb/debian/{n}@{v}?arch={a}&distro=debian-12") for n, v, a in debs]
    pkgs += [pkg("pypi", n, v, f"pkg:pypi/{n.lower()}@{v}", lic) for n, v, lic in wheels_]
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}-{version}",
        "documentNamespace": f"https://netobs.invalid/spdx/{name}-{version}-{created}",
        "creationInfo": {"created": created, "creators": ["Tool: netobs deploy/image/build.py"]},
        "packages": pkgs,
    }


# ---- the image -----------------------------------------------------------------------------------------
def build(out: Path, tag: str, cache: Path) -> str:
    commit = run("git", "-C", str(ROOT), "rev-parse", "HEAD", capture_output=True).stdout.strip()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or run(
        "git", "-C", str(ROOT), "log", "-1", "--format=%ct", capture_output=True).stdout)  # fmt: skip
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    runtime_root, build_root = stage_root(cache, "runtime"), stage_root(cache, "build")
    shutil.rmtree(out, ignore_errors=True)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    work = cache / f"work-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        opt = build_stage(build_root, wheels(cache), work)
        base = base_layer(runtime_root, cache, blobs, epoch)
        debs, pys = packages(runtime_root), python_packages(opt)
        doc = sbom("netobs", tag, created, debs, pys)
        sbom_bytes = json.dumps(doc, indent=1, sort_keys=True).encode()
        app = Layer(epoch)
        app.add_tree(opt, prefix="opt/netobs")
        passwd = (
            runtime_root / "etc/passwd"
        ).read_text() + f"netobs:x:{UID}:{UID}:netobs:/var/lib/netobs:/usr/sbin/nologin\n"
        group = (runtime_root / "etc/group").read_text() + f"netobs:x:{UID}:\n"
        app.add_bytes("etc/passwd", passwd.encode())
        app.add_bytes("etc/group", group.encode())
        app.add_dir("var/lib/netobs", uid=UID, mode=0o750)
        app.add_dir("etc/netobs")
        app.add_bytes("usr/share/doc/netobs/sbom.spdx.json", sbom_bytes)
        app.add_bytes("usr/share/doc/netobs/LICENSE", (ROOT / "LICENSE").read_bytes())
        layer = app.close(blobs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    labels = {
        "org.opencontainers.image.title": "netobs",
        "org.opencontainers.image.description": "Network observability for Kube-OVN banks",
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.source": "netobs (git)",
        "org.opencontainers.image.base.name": f"debian:{SUITE} (debootstrap minbase: {STAGES['runtime']})",
        "org.opencontainers.image.base.digest": base["digest"],
        "io.netobs.sbom": "/usr/share/doc/netobs/sbom.spdx.json",
    }
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{UID}:{UID}",
            "Entrypoint": ["/opt/netobs/bin/netobs"],
            "Cmd": ["--help"],
            "WorkingDir": "/var/lib/netobs",
            "Env": [
                "PATH=/opt/netobs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PYTHONDONTWRITEBYTECODE=1",
                "PYTHONUNBUFFERED=1",
            ],
            "ExposedPorts": {"6343/udp": {}, "4739/udp": {}, "9464/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [base["diff_id"], layer["diff_id"]]},
        "history": [
            {
                "created": created,
                "created_by": f"debootstrap --variant=minbase --include={STAGES['runtime']} {SUITE}",
            },
            {
                "created": created,
                "created_by": "deploy/image/build.py: /opt/netobs (build stage), user netobs, SBOM",
            },
        ],
    }
    cfg = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": write_blob(blobs, cfg),
            "size": len(cfg),
        },
        "layers": [{k: v for k, v in x.items() if k != "diff_id"} for x in (base, layer)],
        "annotations": {k: v for k, v in labels.items() if k.startswith("org.opencontainers")},
    }
    man = json.dumps(manifest, sort_keys=True).encode()
    man_digest = write_blob(blobs, man)
    empty = write_blob(blobs, b"{}")
    sbom_manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [
            {
                "mediaType": "application/spdx+json",
                "digest": write_blob(blobs, sbom_bytes),
                "size": len(sbom_bytes),
            }
        ],
        "subject": {"mediaType": manifest["mediaType"], "digest": man_digest, "size": len(man)},
    }
    sman = json.dumps(sbom_manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": manifest["mediaType"], "digest": man_digest, "size": len(man),
             "annotations": {"org.opencontainers.image.ref.name": tag}},
            {"mediaType": sbom_manifest["mediaType"], "digest": write_blob(blobs, sman), "size": len(sman),
             "artifactType": "application/spdx+json"},
        ],
    }  # fmt: skip
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    (out / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    log(f"{out}:{tag} {man_digest} ({len(debs)} Debian packages, {len(pys)} Python packages in the SBOM)")
    return man_digest


def main(argv: list[str] | None = None) -> int:
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "netobs/__init__.py").read_text())
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "dist" / "netobs-oci")
    p.add_argument("--tag", default=version.group(1) if version else "dev")
    default_cache = Path(os.environ.get("NETOBS_CACHE", Path.home() / ".cache" / "netobs")) / "image"
    p.add_argument("--cache", type=Path, default=default_cache)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("image: needs root (debootstrap, chroot, mount namespaces)", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    print(build(args.out, args.tag, args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
