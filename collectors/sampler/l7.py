"""L7 context from the captured L7 candidates: one tshark run per batch, fields as columns.

Why tshark (located through pyshark's own lookup, which honours pyshark's config): its DNS, TLS
and HTTP dissectors are the maintained reference, and one ``tshark -T fields`` run over a batch
of frames costs one process start, where pyshark's per-packet objects would cost a Python object
tree per frame. TCP and TLS reassembly are off: frames were cut at the snap length and a
truncated hello must yield the fields before the cut, not wait for segments that never come.
JA3/JA3S come from tshark; JA4 (which tshark 4.0 lacks) is computed here from the same fields,
once per ClientHello. Nothing but the fields below leaves this module; the frames are piped to
tshark's stdin and never written to disk.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

FIELDS = (
    "frame.number",
    "dns.flags.response",
    "dns.qry.name",
    "dns.qry.type",
    "dns.flags.rcode",
    "dns.a",
    "dns.aaaa",
    "dns.cname",
    "tls.handshake.type",
    "tls.handshake.extensions_server_name",
    "tls.handshake.version",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.ja3",
    "tls.handshake.ja3s",
    "tls.handshake.extension.type",
    "tls.handshake.sig_hash_alg",
    "tls.handshake.sig_hash_alg_len",
    "http.request.method",
    "http.host",
    "http.request.uri",
    "http.response.code",
)
#: Column names of the dissected batch, one per field.
COLUMNS = tuple(f.replace("tls.handshake.", "tls_").replace(".", "_") for f in FIELDS)
_GREASE = {0x0A0A + 0x1010 * i for i in range(16)}
_TLS_VERSIONS = {0x0300: "SSL3.0", 0x0301: "TLS1.0", 0x0302: "TLS1.1", 0x0303: "TLS1.2", 0x0304: "TLS1.3"}
_JA4_VERSIONS = {0x0002: "s2", 0x0300: "s3", 0x0301: "10", 0x0302: "11", 0x0303: "12", 0x0304: "13"}
#: ClientHello extensions whose algorithm lists tshark 4.0 reports under ``tls.handshake.sig_hash_alg``
#: (one list each, in extension order): signature_algorithms (13), delegated_credentials (34),
#: signature_algorithms_cert (50). JA4 takes only the first kind's list.
_SIGALG_LIST_EXTENSIONS = (13, 34, 50)


class DissectError(RuntimeError):
    """tshark could not dissect a batch."""


def tshark_path() -> str:
    """tshark as pyshark finds it (its config file, then the usual places); 'tshark' otherwise."""
    try:
        from pyshark.tshark.tshark import get_process_path

        return str(get_process_path())
    except Exception:  # pyshark absent or its lookup failed: PATH decides
        return "tshark"


def dissect(
    pcap: bytes, tls_ports: Iterable[int] = (), http_ports: Iterable[int] = (), timeout_s: float = 30.0
) -> pa.Table:
    """The fields of every frame of ``pcap`` (a table of strings, one row per frame, '' where absent)."""
    decode_as = [a for p in sorted(set(tls_ports)) if p not in (443,) for a in ("-d", f"tcp.port=={p},tls")]
    decode_as += [a for p in sorted(set(http_ports)) if p not in (80,) for a in ("-d", f"tcp.port=={p},http")]
    cmd = [tshark_path(), "-n", "-r", "-", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]
    cmd += [
        "-E",
        "aggregator=,",
        "-o",
        "tcp.desegment_tcp_streams:FALSE",
        "-o",
        "tcp.analyze_sequence_numbers:FALSE",
    ]
    cmd += ["-o", "tls.desegment_ssl_records:FALSE", "-o", "http.desegment_headers:FALSE", *decode_as]
    for f in FIELDS:
        cmd += ["-e", f]
    try:
        proc = subprocess.run(cmd, input=pcap, capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DissectError(f"tshark: {e}") from None
    if proc.returncode != 0 and not proc.stdout:
        raise DissectError(f"tshark exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}")
    return parse_fields(proc.stdout)


def parse_fields(out: bytes) -> pa.Table:
    if not out.strip():
        return pa.table({c: pa.array([], pa.string()) for c in COLUMNS})
    table = pacsv.read_csv(
        io.BytesIO(out),
        read_options=pacsv.ReadOptions(column_names=list(COLUMNS)),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in COLUMNS}, strings_can_be_null=False
        ),
    )
    return table


def _ints(text: str, base: int = 0) -> list[int]:
    return [int(x, base) for x in text.split(",") if x]


def _first(text: str) -> str:
    return text.split(",", 1)[0]


def tls_version(hello_version: str, supported: str, server: bool) -> str:
    """Negotiated (ServerHello: supported_versions wins) or highest offered (ClientHello) version."""
    versions = [v for v in _ints(supported) if v not in _GREASE]
    if versions:
        v = versions[0] if server else max(versions)
    else:
        v = int(hello_version, 0) if hello_version else 0
    return _TLS_VERSIONS.get(v, f"0x{v:04x}" if v else "")


def _alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def alpn_code(first: bytes) -> str:
    """JA4's two ALPN characters for the first ALPN value (FoxIO JA4 spec, "ALPN Extension Value"):
    its first and last characters when both are ASCII letters or digits, else the first and last hex
    digits of its bytes; "00" when there is none."""
    if not first:
        return "00"
    a, b = chr(first[0]), chr(first[-1])
    if _alnum(a) and _alnum(b):
        return a + b
    h = first.hex()
    return h[0] + h[-1]


def signature_algorithms(extensions: list[int], sigalgs: str, lengths: str) -> list[int] | None:
    """The signature_algorithms (13) list of a ClientHello, from tshark's flat ``sig_hash_alg``
    occurrences split by ``sig_hash_alg_len`` (bytes per list) over the list-carrying extensions in
    the order they came. None when the lists cannot be told apart."""
    algs = _ints(sigalgs)
    sizes = [n // 2 for n in _ints(lengths)]
    kinds = [e for e in extensions if e in _SIGALG_LIST_EXTENSIONS]
    if not sizes:
        return [] if not algs else (algs if kinds[:1] == [13] else None)
    if sum(sizes) != len(algs) or len(sizes) != len(kinds):
        return None
    start = 0
    for kind, size in zip(kinds, sizes, strict=True):
        if kind == 13:
            return algs[start : start + size]
        start += size
    return []


def ja4(
    version: str,
    supported: str,
    sni: str,
    ciphers: str,
    extensions: str,
    alpn: str,
    sigalgs: str,
    sigalg_lengths: str | None = None,
) -> str:
    """JA4 (FoxIO, TLS over TCP) of a ClientHello from its dissected fields, '' when the fields do not
    determine it (a non-UTF-8 ALPN value that tshark replaced, algorithm lists not told apart).

    Follows FoxIO's JA4 definition (technical_details/JA4.md): GREASE ignored everywhere (versions,
    ciphers, extensions, signature algorithms); version = highest supported_versions entry, else the
    hello's version; counts capped at 99; ciphers and extensions (less SNI 0000 and ALPN 0010) sorted
    and hashed (SHA-256, first 12 hex digits, '000000000000' when empty); signature algorithms of
    extension 13 appended in their order after '_'. Checked against FoxIO's published vectors in
    tests/collectors/test_tls_fingerprints.py."""
    vs = [v for v in _ints(supported) if v not in _GREASE] or ([int(version, 0)] if version else [0])
    cs = sorted(c for c in _ints(ciphers) if c not in _GREASE)
    ext_all = _ints(extensions)
    ext = [e for e in ext_all if e not in _GREASE]
    first_alpn = _first(alpn)
    if "\ufffd" in first_alpn:  # tshark replaced bytes that were not UTF-8: the hex rule cannot be applied
        return ""
    a = alpn_code(first_alpn.encode())
    head = f"t{_JA4_VERSIONS.get(max(vs), '00')}{'d' if sni else 'i'}{min(len(cs), 99):02d}{min(len(ext), 99):02d}{a}"
    ext_sorted = sorted(e for e in ext if e not in (0x0000, 0x0010))
    if sigalg_lengths is None:  # one list assumed (older callers)
        sig: list[int] | None = _ints(sigalgs)
    else:
        sig = signature_algorithms(ext_all, sigalgs, sigalg_lengths)
    if sig is None:
        return ""
    sig = [s for s in sig if s not in _GREASE]
    b = hashlib.sha256(",".join(f"{c:04x}" for c in cs).encode()).hexdigest()[:12] if cs else "0" * 12
    ext_text = ",".join(f"{e:04x}" for e in ext_sorted)
    if sig:
        ext_text += "_" + ",".join(f"{s:04x}" for s in sig)
    c = hashlib.sha256(ext_text.encode()).hexdigest()[:12] if ext_sorted else "0" * 12
    return f"{head}_{b}_{c}"


def summarise(fields: pa.Table) -> dict[str, np.ndarray]:
    """Per dissected frame: the L7 summary columns (object arrays of str, ints for codes).

    One pass over the frames tshark dissected (only handshakes, DNS and HTTP heads: a small share
    of the traffic); the JA4 and version logic is per hello."""
    n = fields.num_rows
    col = {c: fields.column(c).to_pylist() for c in COLUMNS}
    out: dict[str, np.ndarray] = {
        k: np.full(n, "", dtype=object)
        for k in ("l7_protocol", "dns_qname", "dns_answers", "tls_sni", "tls_version", "tls_cipher", "tls_alpn",
                  "tls_ja3", "tls_ja4", "http_method", "http_host", "http_path")
    }  # fmt: skip
    for k in ("dns_qtype", "dns_rcode", "http_status"):
        out[k] = np.zeros(n, dtype=np.uint16)
    out["client_side"] = np.zeros(n, dtype=bool)
    out["dns_response"] = np.zeros(n, dtype=bool)
    for i in range(n):
        if col["dns_qry_name"][i] or col["dns_flags_response"][i]:
            resp = col["dns_flags_response"][i] in ("1", "True", "true")
            out["l7_protocol"][i], out["client_side"][i], out["dns_response"][i] = "dns", not resp, resp
            out["dns_qname"][i] = _first(col["dns_qry_name"][i]).lower()
            out["dns_qtype"][i] = (_ints(col["dns_qry_type"][i]) or [0])[0]
            out["dns_rcode"][i] = (_ints(col["dns_flags_rcode"][i]) or [0])[0] if resp else 0
            answers = [a for k in ("dns_a", "dns_aaaa", "dns_cname") for a in col[k][i].split(",") if a]
            out["dns_answers"][i] = ",".join(answers[:16])
        elif col["tls_type"][i]:
            types = _ints(col["tls_type"][i])
            client, server = 1 in types, 2 in types
            if not (client or server):
                continue
            out["l7_protocol"][i], out["client_side"][i] = "tls", client
            sup = col["tls_extensions_supported_version"][i]
            out["tls_version"][i] = tls_version(_first(col["tls_version"][i]), sup, server and not client)
            out["tls_alpn"][i] = col["tls_extensions_alpn_str"][i]
            if client:
                out["tls_sni"][i] = _first(col["tls_extensions_server_name"][i]).lower()
                out["tls_ja3"][i] = _first(col["tls_ja3"][i])
                out["tls_ja4"][i] = ja4(
                    _first(col["tls_version"][i]), sup, out["tls_sni"][i], col["tls_ciphersuite"][i],
                    col["tls_extension_type"][i], col["tls_extensions_alpn_str"][i], col["tls_sig_hash_alg"][i],
                    col["tls_sig_hash_alg_len"][i],
                )  # fmt: skip
            else:
                cipher = _ints(col["tls_ciphersuite"][i])
                out["tls_cipher"][i] = f"0x{cipher[0]:04x}" if cipher else ""
                out["tls_ja3"][i] = _first(col["tls_ja3s"][i])
        elif col["http_request_method"][i] or col["http_response_code"][i]:
            out["l7_protocol"][i] = "http"
            if col["http_request_method"][i]:
                out["client_side"][i] = True
                out["http_method"][i] = _first(col["http_request_method"][i])
                out["http_host"][i] = _first(col["http_host"][i]).lower()
                out["http_path"][i] = path_template(_first(col["http_request_uri"][i]))
            else:
                out["http_status"][i] = (_ints(col["http_response_code"][i]) or [0])[0]
    return out


def path_template(uri: str) -> str:
    """The path without its query, numbers and long hex/uuid segments replaced by ``{}``: a
    template, never the values a request carried."""
    path = uri.split("?", 1)[0].split("#", 1)[0][:256]
    parts = []
    for seg in path.split("/"):
        plain = seg.replace("-", "")
        if seg.isdigit() or (len(plain) >= 16 and all(ch in "0123456789abcdefABCDEF" for ch in plain)):
            parts.append("{}")
        else:
            parts.append(seg)
    return "/".join(parts)


__all__ = [
    "COLUMNS",
    "FIELDS",
    "DissectError",
    "alpn_code",
    "dissect",
    "ja4",
    "path_template",
    "summarise",
    "tshark_path",
]
