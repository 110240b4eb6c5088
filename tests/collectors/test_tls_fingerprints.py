"""JA3/JA4 of netobs sample checked against references no one here wrote.

* JA4: tshark 4.0 (this machine's, Debian 12) has no JA4 field, so the reference is FoxIO's JA4
  definition and the vectors FoxIO publishes with it: ``technical_details/JA4.md`` of
  github.com/FoxIO-LLC/ja4 (the worked example ``t13d1516h2_8daaf6152771_e5627efa2ab1``, its raw
  lists, the no-signature-algorithm hash ``6d807ffa2a79`` and the ALPN hex examples; the same JA4 is
  in the Rust crate's snapshot ``rust/ja4/src/snapshots/ja4__insta@tls3.pcapng.snap``, a real Chrome
  hello) and ``python/test/testdata/sigalg-grease.pcapng.json`` (``t13d1517h2_8daaf6152771_cb7bf5808d99``
  with its raw ``JA4_ro`` lists). ClientHellos carrying those lists (in the original order, with
  GREASE, SNI and other extensions added at places drawn per run) are dissected by tshark exactly as
  the agent does and must give FoxIO's fingerprints.
* JA3 and the JA4 parts JA3 shares: real handshakes of OpenSSL's s_client and curl (TLS 1.2/1.3,
  cipher lists, ALPN, SNI or none, explicit signature algorithms) against a local s_server, captured
  on ``lo``: the agent's path (frames cut at the snap length, reassembly off) must give tshark's own
  JA3 of the full capture; JA4's cipher hash and counts must agree with tshark's ``ja3_full`` lists,
  and its extension hash with those lists plus the signature algorithms the client was told to send.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from collectors.sampler import l7
from collectors.sampler._capture import pcap_file
from tests.services._require import unavailable

GREASE = [0x0A0A + 0x1010 * i for i in range(16)]


def needs_tshark() -> None:
    if not shutil.which("tshark"):
        unavailable("tshark is not installed (scripts/install-services.sh)")


# ---- ClientHello bytes (RFC 8446 4.1.2, RFC 6066 3, RFC 7301 3.1) ----------------------------------------
def _u16(x: int) -> bytes:
    return struct.pack("!H", x)


def _vec16(b: bytes) -> bytes:
    return _u16(len(b)) + b


def _body(t: int, h: dict) -> bytes:
    if t == 0x0000:
        return _vec16(b"\x00" + _vec16(h["sni"]))
    if t == 0x0010:
        return _vec16(b"".join(bytes([len(p)]) + p for p in h["alpn"]))
    if t in (0x000D, 0x0032):
        return _vec16(b"".join(_u16(s) for s in h["sigalgs" if t == 0x000D else "sigalgs_cert"]))
    if t == 0x0022:  # delegated_credentials: a signature scheme list
        return _vec16(_u16(0x0403) + _u16(0x0503))
    if t == 0x002B:
        return bytes([2 * len(h["versions"])]) + b"".join(_u16(v) for v in h["versions"])
    bodies = {
        0x000A: _vec16(_u16(0x001D) + _u16(0x0017)),
        0x000B: b"\x01\x00",
        0x0033: _vec16(_u16(0x001D) + _vec16(bytes(32))),
        0x002D: b"\x01\x01",
        0x0005: b"\x01\x00\x00\x00\x00",
        0xFF01: b"\x00",
        0x001B: b"\x02\x00\x02",
        0x001C: _u16(0x4001),
        0x0015: bytes(8),
    }
    return bodies.get(t, b"")


def client_hello(h: dict) -> bytes:
    """A TLS record holding a ClientHello with ``h``'s ciphers and extensions in the given order."""
    exts = b"".join(_u16(t) + _vec16(_body(t, h)) for t in h["extensions"])
    body = _u16(0x0303) + bytes(32) + b"\x00" + _vec16(b"".join(_u16(c) for c in h["ciphers"]))
    body += b"\x01\x00" + _vec16(exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + _vec16(hs)


def _frames_pcap(payloads: list[bytes], snap: int = 128 + 1024) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    records = b""
    for i, p in enumerate(payloads):
        f = bytes(
            Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000 + i, dport=443, flags="PA") / p
        )
        cut = f[:snap]
        records += np.array([(1, 0, len(cut), len(f))], dtype="<u4,<u4,<u4,<u4").tobytes() + cut
    return pcap_file(records, snap)


def _hexes(text: str) -> list[int]:
    return [int(x, 16) for x in text.split(",") if x]


#: FoxIO's published vectors: (source, original-order ciphers, extensions, signature algorithms, JA4).
SPEC = "FoxIO JA4.md example / tls3.pcapng snapshot"
VECTORS = [
    (
        SPEC,
        "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
        "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015",
        "0403,0804,0401,0503,0805,0501,0806,0601",
        "t13d1516h2_8daaf6152771_e5627efa2ab1",
    ),
    (
        "FoxIO JA4.md: no signature algorithms",
        "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
        "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015",
        "",
        "t13d1516h2_8daaf6152771_6d807ffa2a79",
    ),
    (
        "FoxIO sigalg-grease.pcapng.json",
        "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
        "fe0d,0010,0017,0033,44cd,ff01,000a,000d,0023,002b,000b,ca34,002d,0000,0005,001b,0012",
        "0904,0905,0906,0403,0804,0401,0503,0805,0501,0806,0601",
        "t13d1517h2_8daaf6152771_cb7bf5808d99",
    ),
]


def _variant(rng: random.Random, ciphers: str, extensions: str, sigalgs: str, with_sni: bool) -> dict:
    """The vector's hello with GREASE and harmless differences drawn by ``rng``: the same JA4."""
    cs, ext, sig = _hexes(ciphers), _hexes(extensions), _hexes(sigalgs)
    if not with_sni:
        ext.remove(0x0000)
    if rng.random() < 0.5:  # JA4 sorts ciphers and extensions: their order must not matter
        rng.shuffle(cs)
        rng.shuffle(ext)
    for lst in (cs, ext, sig):
        for _ in range(rng.randint(0, 2)):
            lst.insert(rng.randint(0, len(lst)), rng.choice(GREASE))
    return {
        "ciphers": cs,
        "extensions": ext,
        "sni": (f"h{rng.getrandbits(24):x}.example").encode(),
        "alpn": [b"h2"] + ([b"http/1.1"] if rng.random() < 0.5 else []),
        "sigalgs": sig,
        "sigalgs_cert": [0x0601, 0x0401],
        "versions": [rng.choice(GREASE), 0x0304, 0x0303],
    }


@pytest.mark.slow
def test_ja4_matches_foxio_published_vectors_through_tshark():
    needs_tshark()
    seed = int(os.environ.get("NETOBS_TEST_SEED") or random.randrange(2**32))
    print(f"seed {seed}")
    rng = random.Random(seed)
    cases = []
    for source, ciphers, extensions, sigalgs, want in VECTORS:
        for _ in range(4):
            cases.append((source, want, _variant(rng, ciphers, extensions, sigalgs, True)))
        # Without SNI: 'i' and one extension fewer; SNI is not in the extension hash (JA4.md, "SNI").
        n_ext = int(want[6:8]) - 1
        cases.append((source + " without SNI", f"t13i{want[4:6]}{n_ext:02d}{want[8:]}",
                      _variant(rng, ciphers, extensions, sigalgs, False)))  # fmt: skip
    # The first vector with signature_algorithms_cert (50) or delegated_credentials (34) before
    # extension 13: tshark reports their lists under the same field; only 13's list is JA4's.
    other = rng.choice([0x0032, 0x0022])
    h = _variant(rng, *VECTORS[0][1:4], True)
    h["extensions"].insert(0, other)
    exts = sorted({*_hexes(VECTORS[0][2]), other} - {0x0000, 0x0010})
    c = hashlib.sha256(f"{','.join(f'{e:04x}' for e in exts)}_{VECTORS[0][3]}".encode()).hexdigest()[:12]
    cases.append((f"{SPEC} + extension {other}", f"t13d1517h2_8daaf6152771_{c}", h))
    fields = l7.dissect(_frames_pcap([client_hello(h) for _, _, h in cases]))
    s = l7.summarise(fields)
    assert fields.num_rows == len(cases)
    for i, (source, want, h) in enumerate(cases):
        assert s["tls_ja4"][i] == want, (source, h)
        assert s["tls_ja3"][i], source  # tshark's JA3 of the same hello


@pytest.mark.parametrize(
    ("alpn", "code"),  # FoxIO JA4.md, "ALPN Extension Value", and its single-character rule
    [(b"h2", "h2"), (b"http/1.1", "h1"), (b"\xab", "ab"), (b"\xab\xcd", "ad"), (b"\x30\xab", "3b"),
     (b"\x30\x31\xab\xcd", "3d"), (b"\x30\xab\xcd\x31", "01"), (b"h", "hh"), (b"", "00")],
)  # fmt: skip
def test_alpn_characters_follow_the_foxio_examples(alpn, code):
    assert l7.alpn_code(alpn) == code


def test_signature_algorithms_are_told_apart_from_the_other_lists():
    # tshark reports the lists of extensions 13, 34 and 50 under one field; only 13's counts.
    assert l7.signature_algorithms([0, 50, 13, 34], "0x0601,0x0403,0x0804,0x0403,0x0503", "2,4,4") == [
        0x0403,
        0x0804,
    ]
    assert l7.signature_algorithms([0, 13], "", "0") == []
    assert l7.signature_algorithms([0, 13, 50], "0x0403,0x0601", "2") is None  # cannot be told apart
    assert l7.ja4("0x0303", "", "x", "0x002f", "0,13,50", "", "0x0403,0x0601", "2") == ""


# ---- real handshakes ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: (name, client command with {port}, version, SNI sent, ALPN first value, signature algorithms told).
CLIENTS = [
    ("s_client tls1.3 sni alpn h2", "openssl s_client -connect 127.0.0.1:{port} -tls1_3 -servername svc.example "
     "-alpn h2,http/1.1", "13", True, "h2", None),
    ("s_client tls1.2 no sni, one cipher", "openssl s_client -connect 127.0.0.1:{port} -tls1_2 -noservername "
     "-cipher AES128-SHA", "12", False, "", None),
    ("s_client tls1.2 sigalgs", "openssl s_client -connect 127.0.0.1:{port} -tls1_2 -servername a.example "
     "-sigalgs ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256 -alpn http/1.1", "12", True, "http/1.1",
     [0x0403, 0x0804, 0x0401]),
    ("s_client tls1.3 sigalgs ciphersuites", "openssl s_client -connect 127.0.0.1:{port} -tls1_3 -servername "
     "b.example -ciphersuites TLS_AES_128_GCM_SHA256 -sigalgs rsa_pss_rsae_sha256:ecdsa_secp384r1_sha384",
     "13", True, "", [0x0804, 0x0503]),
    ("curl http2 by name", "curl -sk -m 3 --http2 --resolve web.example:{port}:127.0.0.1 https://web.example:{port}/",
     "13", True, "h2", None),
    ("curl tls1.2 by address", "curl -sk -m 3 --http1.1 --tlsv1.2 --tls-max 1.2 https://127.0.0.1:{port}/",
     "12", False, "http/1.1", None),
]  # fmt: skip


@pytest.mark.integration
def test_real_handshakes_match_tshark_ja3_and_its_lists(tmp_path: Path):
    needs_tshark()
    if os.geteuid() != 0:
        unavailable("capturing on lo needs root (CAP_NET_RAW)")
    for tool in ("openssl", "curl", "tcpdump"):
        if not shutil.which(tool):
            unavailable(f"{tool} is not installed (scripts/install-services.sh)")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=svc",
                    "-keyout", tmp_path / "k.pem", "-out", tmp_path / "c.pem"], check=True, capture_output=True)  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", str(port), "-cert", tmp_path / "c.pem", "-key", tmp_path / "k.pem",
         "-www", "-alpn", "h2,http/1.1"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)  # fmt: skip
    cap = tmp_path / "hs.pcap"
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-s", "0", "-w", cap, f"tcp port {port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        time.sleep(1.0)  # tcpdump is listening
        order = []
        for name, cmd, *_ in CLIENTS:
            subprocess.run(cmd.format(port=port).split(), input=b"Q\n", capture_output=True, timeout=30)
            order.append(name)
        time.sleep(1.0)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)
    # The reference: tshark on the full capture, with its default reassembly.
    ref = subprocess.run(
        ["tshark", "-n", "-r", cap, "-Y", "tls.handshake.type == 1", "-T", "fields", "-E", "separator=/t",
         "-e", "tcp.srcport", "-e", "tls.handshake.ja3", "-e", "tls.handshake.ja3_full"],
        capture_output=True, check=True).stdout.decode().split("\n")  # fmt: skip
    ref_rows = [r.split("\t") for r in ref if r.strip()]
    assert len(ref_rows) == len(CLIENTS), ref
    # The agent's path: every frame cut at its snap length (128 + l7_snap 1024), reassembly off.
    raw = cap.read_bytes()
    endian = "<" if raw[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    records, off = b"", 24
    while off + 16 <= len(raw):
        sec, usec, incl, orig = struct.unpack(endian + "IIII", raw[off : off + 16])
        data = raw[off + 16 : off + 16 + incl]
        off += 16 + incl
        cut = data[: 128 + 1024]
        ip = 14 + 4 * (data[14] & 0x0F) if len(data) > 34 else len(data)
        tcp = ip + 4 * (data[ip + 12] >> 4) if len(data) > ip + 12 else len(data)
        if data[tcp : tcp + 1] == b"\x16":  # only TLS handshake records are L7 candidates of the agent
            records += np.array([(sec, usec, len(cut), orig)], dtype="<u4,<u4,<u4,<u4").tobytes() + cut
    fields = l7.dissect(pcap_file(records, 128 + 1024))
    s = l7.summarise(fields)
    hellos = [i for i in range(fields.num_rows) if s["client_side"][i] and s["l7_protocol"][i] == "tls"]
    assert len(hellos) == len(CLIENTS)
    for (name, _cmd, version, sni, alpn, sigalgs), (_port, ja3, ja3_full), i in zip(
        CLIENTS, ref_rows, hellos, strict=True
    ):
        ja4 = s["tls_ja4"][i]
        assert s["tls_ja3"][i] == ja3, name
        assert hashlib.md5(ja3_full.encode()).hexdigest() == ja3, name  # noqa: S324 - JA3 is MD5 by definition
        _ver, ciphers, exts, _curves, _formats = ja3_full.split(",")
        cs = sorted(int(c) for c in ciphers.split("-") if c)
        ex = [int(e) for e in exts.split("-") if e]
        want_b = hashlib.sha256(",".join(f"{c:04x}" for c in cs).encode()).hexdigest()[:12]
        assert (
            ja4[:10]
            == f"t{version}{'d' if sni else 'i'}{len(cs):02d}{len(ex):02d}{l7.alpn_code(alpn.encode())}"
        ), name
        assert ja4.split("_")[1] == want_b, name
        if sigalgs is not None:
            text = ",".join(f"{e:04x}" for e in sorted(e for e in ex if e not in (0, 16)))
            text += "_" + ",".join(f"{a:04x}" for a in sigalgs)
            assert ja4.split("_")[2] == hashlib.sha256(text.encode()).hexdigest()[:12], name
