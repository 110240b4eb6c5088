"""PSAMP packet reports (RFC 5476/5477): the carried packet section becomes the flow.

An IPFIX record with a ``dataLinkFrameSection`` (IE 315), ``layer2packetSectionData``
(IE 104) or ``ipHeaderPacketSection`` (IE 313) is one sampled packet, like an sFlow raw
header record: the section is parsed with :mod:`collectors.packet` (VLAN, IPv6
extension headers, Geneve / VXLAN inner frames) and ``packets = 1``, ``bytes`` = the
frame size the exporter states (IE 312, else the IP total length IE 224, else the
section's exported octets IE 410, else the section length).
"""

from __future__ import annotations

import numpy as np

from collectors import _ipfix_fields as F
from collectors import packet
from collectors._columns import transpose
from collectors._ipfix_fields import Records
from netobs import schema

_DTYPES = schema.numpy_dtypes()
_NAMES = packet.PacketInfo._fields


def packet_columns(r: Records, cols: dict[str, np.ndarray], srv6: bool = False) -> None:
    """Overwrite the header columns with what each record's packet section holds (``srv6``:
    SRv6 packets opened, see collectors.packet)."""
    key = r.template.section
    sections = r.sections(key) if key is not None else []
    if len(sections) != r.n:  # a variable section the walker could not keep: leave as is
        return
    parse = packet.ip_fields if key == F.IP_SECTION else packet.ethernet_fields
    cols.update(transpose([parse(s, 0, srv6) for s in sections], _NAMES, _DTYPES))
    if "packets" not in cols:
        cols["packets"] = np.ones(r.n, dtype=np.uint64)
    if "bytes" not in cols:
        size = r.first(F.FRAME_SIZE, F.IP_TOTAL_LENGTH, F.SECTION_OCTETS)
        if size is None:
            size = np.fromiter((len(s) for s in sections), dtype=np.uint64, count=r.n)
        cols["bytes"] = size
