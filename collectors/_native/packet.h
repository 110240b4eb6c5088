/* Sampled packet header parser: the C twin of collectors/packet.py (which stays the reference).
 *
 * Ethernet, 802.1Q / QinQ tags, MPLS label stacks, IPv4 (options, fragments), IPv6 (common
 * extension headers), TCP / UDP / ICMP / ICMPv6, and the Geneve / VXLAN / GRE tunnels whose
 * inner frame becomes the flow while the outer addresses become tunnel_src / tunnel_dst, and
 * OVN's Geneve option gives the logical ingress / egress port keys.
 * Every read checks the remaining length: a cut or malformed header yields the fields that
 * could be read, never an over-read. Header-only (static functions) so that the sFlow and
 * the IPFIX/PSAMP extensions can both include it. The tests compare both parsers.
 */
#ifndef NETOBS_PACKET_H
#define NETOBS_PACKET_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { PKT_TUNNEL_NONE = 0, PKT_TUNNEL_GENEVE = 1, PKT_TUNNEL_VXLAN = 2, PKT_TUNNEL_GRE = 3, PKT_TUNNEL_SRV6 = 4 };

#define PKT_ETH_IPV4 0x0800
#define PKT_ETH_IPV6 0x86DD
#define PKT_ETH_TEB 0x6558 /* Transparent Ethernet Bridging: a full inner frame */
#define PKT_MAX_VLAN_TAGS 4
#define PKT_MAX_MPLS_LABELS 8
#define PKT_MAX_IPV6_EXT 8
#define PKT_GRE 47
#define PKT_SRH 43 /* IPv6 routing header; routing type 4 is the Segment Routing Header (RFC 8754) */
#define PKT_GENEVE_PORT 6081 /* RFC 8926 §3.3 */
#define PKT_VXLAN_PORT 4789  /* RFC 7348 §5 */
/* OVN's Geneve option (ovn controller/physical.h OVN_GENEVE_CLASS / _TYPE / _LEN 4): physical.c
 * put_encapsulation() loads the logical egress port key into bits 0-15 and moves the 15-bit
 * logical ingress port key into bits 16-30; bit 31 is reserved (ovn-architecture(7)). */
#define PKT_OVN_GENEVE_CLASS 0x0102
#define PKT_OVN_GENEVE_TYPE 0x80

/* The flow fields of one sampled frame (zeros for what was not reached); addresses are
 * 16 bytes, IPv4 mapped into IPv6. Field for field collectors.packet.PacketInfo. */
typedef struct {
    uint64_t src_mac, dst_mac;
    uint16_t vlan, etype;
    uint8_t src_addr[16], dst_addr[16];
    uint8_t proto, tos;
    uint16_t src_port, dst_port, tcp_flags; /* ICMP: dst_port = type * 256 + code */
    uint8_t tunnel_type;                    /* PKT_TUNNEL_* */
    uint32_t tunnel_id;
    uint8_t tunnel_src[16], tunnel_dst[16];
    uint16_t ovn_ingress_port, ovn_egress_port; /* OVN logical port keys (Geneve option) */
} pkt_info;

static const uint8_t PKT_V4_PREFIX[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

static inline uint16_t pkt_be16(const uint8_t *p) { return (uint16_t)((unsigned)p[0] << 8 | p[1]); }

static inline uint32_t pkt_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t pkt_mac(const uint8_t *p) { return (uint64_t)pkt_be16(p) << 32 | pkt_be32(p + 2); }

/* The network layer's reading: ok = 0 is "no addresses" (packet.py's _NO_L3); payload is
 * the offset of a UDP payload or GRE header to look into for a tunnel, or -1. */
typedef struct {
    int ok;
    uint8_t src[16], dst[16];
    uint8_t proto, tos;
    uint16_t sport, dport, flags;
    int64_t payload;
} pkt_l3;

static void pkt_network(const uint8_t *b, size_t len, size_t off, uint64_t smac, uint64_t dmac, uint16_t vlan,
                        uint16_t etype, int outer, int srv6, pkt_info *out);
static void pkt_ethernet(const uint8_t *b, size_t len, size_t off, int outer, int pw, int srv6, pkt_info *out);

/* SRv6 payloads (RFC 8986 6.1): IPv4, IPv6, Ethernet. */
static inline int pkt_srv6_payload(uint8_t nh) { return nh == 4 || nh == 41 || nh == 143; }

static void pkt_l4(const uint8_t *b, size_t len, size_t off, uint8_t proto, pkt_l3 *r)
{
    r->sport = r->dport = r->flags = 0;
    r->payload = -1;
    if (proto == 6) {
        if (len < off + 14) {
            if (len >= off + 4) {
                r->sport = pkt_be16(b + off);
                r->dport = pkt_be16(b + off + 2);
            }
            return;
        }
        r->sport = pkt_be16(b + off);
        r->dport = pkt_be16(b + off + 2);
        /* Low 12 bits of the word at offset 12: NS, CWR..FIN (RFC 7125 tcpControlBits). */
        r->flags = pkt_be16(b + off + 12) & 0x0FFF;
    } else if (proto == 17) {
        if (len < off + 4)
            return;
        r->sport = pkt_be16(b + off);
        r->dport = pkt_be16(b + off + 2);
        if (len >= off + 8)
            r->payload = (int64_t)(off + 8);
    } else if (proto == 1 || proto == 58) {
        if (len < off + 2)
            return;
        r->dport = pkt_be16(b + off);
    } else if (proto == PKT_GRE) {
        r->payload = (int64_t)off; /* the GRE header: a tunnel to look into */
    }
}

static void pkt_ipv4(const uint8_t *b, size_t len, size_t off, pkt_l3 *r)
{
    if (len < off + 20)
        return;
    uint8_t ver_ihl = b[off];
    size_t ihl = (size_t)(ver_ihl & 0x0F) * 4;
    if (ver_ihl >> 4 != 4 || ihl < 20)
        return;
    r->ok = 1;
    memcpy(r->src, PKT_V4_PREFIX, 12);
    memcpy(r->src + 12, b + off + 12, 4);
    memcpy(r->dst, PKT_V4_PREFIX, 12);
    memcpy(r->dst + 12, b + off + 16, 4);
    r->tos = b[off + 1];
    r->proto = b[off + 9];
    if (pkt_be16(b + off + 6) & 0x1FFF) /* not the first fragment: no transport header (RFC 791 §3.1) */
        return;
    pkt_l4(b, len, off + ihl, r->proto, r);
}

static int pkt_ipv6_ext(uint8_t nh)
{
    return nh == 0 || nh == 43 || nh == 60 || nh == 51 || nh == 135 || nh == 139 || nh == 140;
}

/* With srv6, a packet with a Segment Routing Header whose last next header is an SRv6
 * payload gives that payload's offset in r->payload, to be opened (packet.py's _ipv6). */
static void pkt_ipv6(const uint8_t *b, size_t len, size_t off, int srv6, pkt_l3 *r)
{
    int srh = 0;
    if (len < off + 40)
        return;
    uint32_t vtf = pkt_be32(b + off);
    if (vtf >> 28 != 6)
        return;
    r->ok = 1;
    r->tos = (uint8_t)(vtf >> 20);
    uint8_t nh = b[off + 6];
    memcpy(r->src, b + off + 8, 16);
    memcpy(r->dst, b + off + 24, 16);
    off += 40;
    for (int i = 0; i < PKT_MAX_IPV6_EXT; i++) {
        if (pkt_ipv6_ext(nh)) {
            if (len < off + 2) {
                r->proto = nh;
                return;
            }
            /* AH counts its length in 4-byte units minus 2 (RFC 4302 §2.2); the others in
             * 8-byte units not counting the first 8 (RFC 8200 §4.3). */
            size_t size = nh == 51 ? ((size_t)b[off + 1] + 2) * 4 : ((size_t)b[off + 1] + 1) * 8;
            if (nh == PKT_SRH && len >= off + 3 && b[off + 2] == 4)
                srh = 1;
            nh = b[off];
            off += size;
        } else if (nh == 44) {
            if (len < off + 8) {
                r->proto = nh;
                return;
            }
            int later_fragment = pkt_be16(b + off + 2) & 0xFFF8;
            nh = b[off];
            off += 8;
            if (later_fragment) {
                r->proto = nh;
                return;
            }
        } else {
            break;
        }
    }
    r->proto = nh;
    if (srh && srv6 && pkt_srv6_payload(nh) && len > off) {
        r->sport = r->dport = r->flags = 0;
        r->payload = (int64_t)off;
        return;
    }
    pkt_l4(b, len, off, nh, r);
}

/* pw: an MPLS Ethernet pseudowire may be opened (not inside one: bounded nesting). */
static void pkt_ethernet(const uint8_t *b, size_t len, size_t off, int outer, int pw, int srv6, pkt_info *out)
{
    memset(out, 0, sizeof *out);
    if (len < off + 14)
        return;
    uint64_t dmac = pkt_mac(b + off), smac = pkt_mac(b + off + 6);
    uint16_t etype = pkt_be16(b + off + 12);
    uint16_t vlan = 0;
    off += 14;
    for (int tags = 0; (etype == 0x8100 || etype == 0x88A8 || etype == 0x9100) && tags < PKT_MAX_VLAN_TAGS; tags++) {
        if (len < off + 4) {
            out->src_mac = smac;
            out->dst_mac = dmac;
            out->vlan = vlan;
            out->etype = etype;
            return;
        }
        vlan = pkt_be16(b + off) & 0x0FFF; /* QinQ: the innermost (customer 802.1Q) tag wins */
        etype = pkt_be16(b + off + 2);
        off += 4;
    }
    if (etype == 0x8847 || etype == 0x8848) {
        /* MPLS: skip the label stack to its bottom (S bit); the payload's type from its first
         * nibble, as label switching routers do (RFC 3032 carries no payload type): 4 / 6 an IP
         * packet, 0 a pseudowire control word (RFC 4385), which on an Ethernet pseudowire
         * (RFC 4448) is followed by the customer frame. */
        int found = 0;
        for (int i = 0; i < PKT_MAX_MPLS_LABELS && !found; i++) {
            if (len < off + 4)
                break;
            int bottom = b[off + 2] & 0x01;
            off += 4;
            if (bottom) {
                found = 1;
                if (len <= off)
                    break;
                unsigned nibble = b[off] >> 4;
                if (nibble == 0 && len >= off + 4 + 14) {
                    off += 4;
                    etype = PKT_ETH_TEB;
                } else {
                    etype = nibble == 4 ? PKT_ETH_IPV4 : nibble == 6 ? PKT_ETH_IPV6 : 0;
                }
            }
        }
        if (etype == 0x8847 || etype == 0x8848)
            etype = 0; /* no bottom of stack, or nothing after it */
        if (etype == PKT_ETH_TEB) {
            if (!pw) {
                memset(out, 0, sizeof *out);
                out->src_mac = smac;
                out->dst_mac = dmac;
                out->vlan = vlan;
                return;
            }
            pkt_ethernet(b, len, off, outer, 0, srv6, out);
            if (!out->vlan)
                out->vlan = vlan;
            return;
        }
    }
    pkt_network(b, len, off, smac, dmac, vlan, etype, outer, srv6, out);
}

/* OVN's logical port keys from the Geneve options in b[off, end): each option is a 4-byte
 * header (class, type, 5-bit length in 4-byte words) and its data (RFC 8926 §3.5). An option
 * overrunning the block, or cut by the sample's end, stops the walk (ports stay 0). */
static void pkt_ovn_option(const uint8_t *b, size_t len, size_t off, size_t end, uint16_t *ingress,
                           uint16_t *egress)
{
    if (end > len)
        end = len;
    while (off + 4 <= end) {
        size_t size = 4 + (size_t)(b[off + 3] & 0x1F) * 4;
        if (off + size > end)
            return;
        if (pkt_be16(b + off) == PKT_OVN_GENEVE_CLASS && b[off + 2] == PKT_OVN_GENEVE_TYPE && size == 8) {
            uint32_t data = pkt_be32(b + off + 4);
            *ingress = (uint16_t)((data >> 16) & 0x7FFF);
            *egress = (uint16_t)(data & 0xFFFF);
            return;
        }
        off += size;
    }
}

/* The inner packet after a Geneve or VXLAN header at off; 0 if it is not one. */
static int pkt_udp_tunnel(const uint8_t *b, size_t len, size_t off, uint16_t port, pkt_info *out)
{
    if (len < off + 8)
        return 0;
    uint16_t ptype, ovn_in = 0, ovn_out = 0;
    uint32_t vni;
    uint8_t kind;
    if (port == PKT_GENEVE_PORT) {
        uint8_t ver_optlen = b[off];
        ptype = pkt_be16(b + off + 2);
        vni = pkt_be32(b + off + 4);
        if (ver_optlen >> 6) /* only version 0 exists (RFC 8926 §3.4) */
            return 0;
        /* Opt Len counts the option TLVs in 4-byte words: the inner frame starts after them
         * whatever the individual options; OVN's is read on the way. */
        size_t opt_end = off + 8 + (size_t)(ver_optlen & 0x3F) * 4;
        pkt_ovn_option(b, len, off + 8, opt_end, &ovn_in, &ovn_out);
        off = opt_end;
        kind = PKT_TUNNEL_GENEVE;
    } else {
        uint32_t flags = pkt_be32(b + off);
        vni = pkt_be32(b + off + 4);
        if (!(flags & 0x08000000)) /* I flag: VNI valid (RFC 7348 §5) */
            return 0;
        off += 8;
        ptype = PKT_ETH_TEB;
        kind = PKT_TUNNEL_VXLAN;
    }
    if (ptype == PKT_ETH_TEB)
        pkt_ethernet(b, len, off, 0, 1, 0, out);
    else if (ptype == PKT_ETH_IPV4 || ptype == PKT_ETH_IPV6)
        pkt_network(b, len, off, 0, 0, 0, ptype, 0, 0, out);
    else
        memset(out, 0, sizeof *out);
    out->tunnel_type = kind;
    out->tunnel_id = vni >> 8;
    out->ovn_ingress_port = ovn_in;
    out->ovn_egress_port = ovn_out;
    return 1;
}

/* The packet inside GRE (RFC 2784 / 2890): C, K, S flags add 4 bytes each, K is the key. */
static int pkt_gre(const uint8_t *b, size_t len, size_t off, pkt_info *out)
{
    if (len < off + 4)
        return 0;
    uint16_t flags = pkt_be16(b + off), ptype = pkt_be16(b + off + 2);
    if (flags & 0x0007) /* version 0 only (1 is PPTP's enhanced GRE) */
        return 0;
    off += 4 + ((flags & 0x8000) ? 4 : 0);
    uint32_t key = 0;
    if (flags & 0x2000) {
        if (len < off + 4)
            return 0;
        key = pkt_be32(b + off);
        off += 4;
    }
    off += (flags & 0x1000) ? 4 : 0;
    if (ptype == PKT_ETH_TEB)
        pkt_ethernet(b, len, off, 0, 1, 0, out);
    else if (ptype == PKT_ETH_IPV4 || ptype == PKT_ETH_IPV6)
        pkt_network(b, len, off, 0, 0, 0, ptype, 0, 0, out);
    else
        return 0;
    out->tunnel_type = PKT_TUNNEL_GRE;
    out->tunnel_id = key;
    return 1;
}

/* The payload of an SRv6 packet (RFC 8986): an IP packet keeps the outer frame's MACs and
 * VLAN (it has none of its own); an Ethernet payload (End.DX2) brings its own. */
static int pkt_srv6(const uint8_t *b, size_t len, size_t off, uint8_t nh, uint64_t smac, uint64_t dmac,
                    uint16_t vlan, pkt_info *out)
{
    if (nh == 143)
        pkt_ethernet(b, len, off, 0, 1, 0, out);
    else
        pkt_network(b, len, off, smac, dmac, vlan, nh == 4 ? PKT_ETH_IPV4 : PKT_ETH_IPV6, 0, 0, out);
    out->tunnel_type = PKT_TUNNEL_SRV6;
    out->tunnel_id = 0;
    out->ovn_ingress_port = out->ovn_egress_port = 0;
    return 1;
}

/* The IP part; on an outer UDP packet to a tunnel port (or GRE; SRv6 when asked), the inner
 * frame instead. */
static void pkt_network(const uint8_t *b, size_t len, size_t off, uint64_t smac, uint64_t dmac, uint16_t vlan,
                        uint16_t etype, int outer, int srv6, pkt_info *out)
{
    pkt_l3 l3;
    memset(&l3, 0, sizeof l3);
    l3.payload = -1;
    if (etype == PKT_ETH_IPV4)
        pkt_ipv4(b, len, off, &l3);
    else if (etype == PKT_ETH_IPV6)
        pkt_ipv6(b, len, off, srv6 && outer, &l3);
    if (outer && l3.ok && l3.payload >= 0) {
        int inner = 0;
        if (l3.proto == PKT_GRE)
            inner = pkt_gre(b, len, (size_t)l3.payload, out);
        else if (pkt_srv6_payload(l3.proto)) /* a payload only for an SRH with srv6 */
            inner = pkt_srv6(b, len, (size_t)l3.payload, l3.proto, smac, dmac, vlan, out);
        else if (l3.dport == PKT_GENEVE_PORT || l3.dport == PKT_VXLAN_PORT)
            inner = pkt_udp_tunnel(b, len, (size_t)l3.payload, l3.dport, out);
        if (inner) {
            memcpy(out->tunnel_src, l3.src, 16);
            memcpy(out->tunnel_dst, l3.dst, 16);
            return;
        }
    }
    memset(out, 0, sizeof *out);
    out->src_mac = smac;
    out->dst_mac = dmac;
    out->vlan = vlan;
    out->etype = etype;
    if (!l3.ok)
        return;
    memcpy(out->src_addr, l3.src, 16);
    memcpy(out->dst_addr, l3.dst, 16);
    out->proto = l3.proto;
    out->tos = l3.tos;
    out->src_port = l3.sport;
    out->dst_port = l3.dport;
    out->tcp_flags = l3.flags;
}

/* An Ethernet frame (sFlow header_protocol 1); srv6: open SRv6 packets (per exporter). */
static inline void pkt_parse_ethernet(const uint8_t *b, size_t len, int srv6, pkt_info *out)
{
    pkt_ethernet(b, len, 0, 1, 1, srv6, out);
}

/* A bare IPv4 or IPv6 packet (sFlow header_protocol 11 / 12): the version nibble decides. */
static inline void pkt_parse_ip(const uint8_t *b, size_t len, int srv6, pkt_info *out)
{
    if (len == 0) {
        memset(out, 0, sizeof *out);
        return;
    }
    pkt_network(b, len, 0, 0, 0, 0, (b[0] >> 4) == 4 ? PKT_ETH_IPV4 : PKT_ETH_IPV6, 1, srv6, out);
}

#endif /* NETOBS_PACKET_H */
