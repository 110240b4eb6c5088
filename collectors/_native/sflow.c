/* collectors._native_sflow: the per-datagram work of the sFlow v5 decoder, in C.
 *
 * The C twin of collectors/sflow.py (which stays the reference and the fallback): the
 * datagram header, flow samples and expanded flow samples with their records (raw packet
 * header through packet.h, sampled IPv4 / IPv6, Ethernet, extended switch / router / gateway), the datagram
 * and sample sequence numbers, and one row per flow sample appended to growable column
 * buffers that flush() hands to numpy. Counter samples are only located here: their
 * (offset, end, records, source) go back to Python, which decodes them as before.
 *
 * Every read is bounds-checked against the datagram; malformed input is counted under the
 * same reasons as the Python decoder ("sflow:truncated_sample"...) in the exporter's
 * ExporterStats, never raised. No Python object is made per flow sample.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "packet.h"

/* --- reasons and findings, counted per datagram then added to the ExporterStats -------- */

enum {
    E_BAD_VERSION,
    E_BAD_HEADER,
    E_TRUNCATED_SAMPLE,
    E_SHORT_SAMPLE,
    E_UNKNOWN_SAMPLE_FORMAT,
    E_TRUNCATED_RECORD,
    E_TOO_MANY_STREAMS,
    E_BAD_ROUTER_RECORD,
    E_BAD_GATEWAY_RECORD,
    E_COUNT
};
static const char *const ERROR_NAMES[E_COUNT] = {
    "sflow:bad_version",         "sflow:bad_header",           "sflow:truncated_sample", "sflow:short_sample",
    "sflow:unknown_sample_format", "sflow:truncated_record", "sequence:too_many_streams",
    "sflow:bad_router_record",     "sflow:bad_gateway_record",
};
enum { S_MISSING, S_LATE, S_RESET, S_KINDS };
static const char *const SEQUENCE_KINDS[S_KINDS] = {"missing", "late", "reset"};

typedef struct {
    uint64_t errors[E_COUNT];
    uint64_t datagrams[S_KINDS]; /* sequence findings, stream unit "datagrams" */
    uint64_t samples[S_KINDS];   /* unit "samples" */
    uint64_t gaps;               /* datagrams ahead of the expected number */
    uint64_t flows;
} tally;

static PyObject *ERROR_STRS[E_COUNT];
static PyObject *KIND_STRS[S_KINDS];
static PyObject *STR_SFLOW, *STR_DATAGRAMS, *STR_SAMPLES, *STR_ERROR, *STR_SEQUENCE, *STR_GAPS, *STR_FLOWS;

/* --- sequence tracking: collectors/_sequence.py's SequenceTracker over fixed keys ------- */

#define KEY_SIZE 40

typedef struct {
    uint8_t key[KEY_SIZE];
    uint32_t expected;
    uint32_t used;
} seq_slot;

typedef struct {
    seq_slot *slots;
    size_t cap, count; /* cap a power of two (or 0), at most half full */
} seq_table;

static size_t seq_hash(const uint8_t *key)
{
    /* Python's keyed hash (SipHash, randomised per process): streams come from the network. */
#if PY_VERSION_HEX >= 0x030E0000
    return (size_t)Py_HashBuffer(key, KEY_SIZE);
#else
    return (size_t)_Py_HashBytes(key, KEY_SIZE);
#endif
}

static seq_slot *seq_find(seq_table *t, const uint8_t *key, size_t h)
{
    if (!t->cap)
        return NULL;
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        seq_slot *s = &t->slots[i];
        if (!s->used)
            return s;
        if (memcmp(s->key, key, KEY_SIZE) == 0)
            return s;
    }
}

static int seq_grow(seq_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    seq_slot *slots = PyMem_Calloc(cap, sizeof *slots);
    if (!slots) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < t->cap; i++) {
        seq_slot *old = &t->slots[i];
        if (!old->used)
            continue;
        size_t j = seq_hash(old->key) & (cap - 1);
        while (slots[j].used)
            j = (j + 1) & (cap - 1);
        slots[j] = *old;
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

typedef struct {
    size_t max_streams;
    uint32_t late_window;
} seq_limits;

/* Stream `key` sent number `seq` covering one unit; findings go to `kinds` (and `gaps`). */
static int seq_check(seq_table *t, const seq_limits *lim, const uint8_t *key, uint32_t seq, uint64_t *kinds,
                     uint64_t *gaps, tally *tl)
{
    size_t h = seq_hash(key);
    seq_slot *s = seq_find(t, key, h);
    if (s && s->used && s->expected == seq) { /* the common case */
        s->expected = seq + 1;
        return 0;
    }
    if (!s || !s->used) {
        if (t->count >= lim->max_streams) {
            tl->errors[E_TOO_MANY_STREAMS]++;
            return 0;
        }
        if ((t->count + 1) * 2 > t->cap) {
            if (seq_grow(t) < 0)
                return -1;
            s = seq_find(t, key, h);
        }
        memcpy(s->key, key, KEY_SIZE);
        s->used = 1;
        s->expected = seq + 1;
        t->count++;
        return 0;
    }
    int64_t diff = (int64_t)(int32_t)(seq - s->expected); /* signed distance, wrapping at 2^32 */
    if (diff > 0) {
        if (gaps)
            (*gaps)++;
        kinds[S_MISSING] += (uint64_t)diff;
    } else {
        if (-diff <= (int64_t)lim->late_window) {
            kinds[S_LATE]++;
            return 0; /* the expected number stays where it was */
        }
        kinds[S_RESET]++;
    }
    s->expected = seq + 1;
    return 0;
}

/* --- the column buffers: one row per flow sample, in sflow.py's ROW_FIELDS order -------- */

enum {
    C_TIME, C_EXPORTER, C_DOMAIN, C_RATE, C_IN_IF, C_OUT_IF, C_DIRECTION, C_BYTES, C_SRC_MAC, C_DST_MAC,
    C_VLAN, C_ETYPE, C_SRC_ADDR, C_DST_ADDR, C_PROTO, C_TOS, C_SRC_PORT, C_DST_PORT, C_TCP_FLAGS,
    C_TUNNEL_TYPE, C_TUNNEL_ID, C_TUNNEL_SRC, C_TUNNEL_DST, C_OVN_INGRESS, C_OVN_EGRESS, C_NEXT_HOP, C_SRC_AS,
    C_DST_AS, C_SRC_MASK, C_DST_MASK, NCOLS
};
static const size_t WIDTHS[NCOLS] = {8, 16, 4, 4, 4, 4, 1, 8, 8, 8, 2, 2, 16, 16, 1, 1, 2, 2, 2, 1, 4, 16, 16,
                                     2, 2, 16, 4, 4, 1, 1};
_Static_assert(NCOLS <= 64, "take_nonzero reports the zero columns in 64 bits");
#define MAX_KEPT_ROWS 65536 /* capacity kept across flushes; more is given back */

typedef struct {
    PyObject_HEAD
    uint8_t *cols[NCOLS];
    size_t rows, cap;
    seq_table datagram_seq, sample_seq;
    seq_limits limits;
} State;

static int reserve(State *st)
{
    if (st->rows < st->cap)
        return 0;
    size_t cap = st->cap ? st->cap * 2 : 1024;
    for (int c = 0; c < NCOLS; c++) {
        uint8_t *p = PyMem_Realloc(st->cols[c], cap * WIDTHS[c]);
        if (!p) {
            PyErr_NoMemory();
            return -1;
        }
        st->cols[c] = p;
    }
    st->cap = cap;
    return 0;
}

/* Column `col` of row `n` (columns are native-endian, as numpy reads them) is `value` of `type`. */
#define PUT(col, type, value)                                                                            \
    do {                                                                                                 \
        type v_ = (value);                                                                               \
        memcpy(st->cols[col] + n * sizeof v_, &v_, sizeof v_);                                           \
    } while (0)

typedef struct {
    int64_t time_ms;
    uint8_t agent[16];
    uint32_t sub_agent;
    int srv6; /* open SRv6 packets in raw headers (a per-exporter option) */
} dgram;

/* What the extended router and gateway records say (sflow.py's route tuple). */
typedef struct {
    uint8_t next_hop[16];
    uint32_t src_as, dst_as;
    uint8_t src_mask, dst_mask;
} route;

static int append_row(State *st, const dgram *d, uint32_t rate, uint32_t in_if, uint32_t out_if,
                      uint8_t direction, uint64_t frame_len, const pkt_info *p, const route *rt)
{
    if (reserve(st) < 0)
        return -1;
    size_t n = st->rows;
    PUT(C_TIME, int64_t, d->time_ms);
    memcpy(st->cols[C_EXPORTER] + n * 16, d->agent, 16);
    PUT(C_DOMAIN, uint32_t, d->sub_agent);
    PUT(C_RATE, uint32_t, rate);
    PUT(C_IN_IF, uint32_t, in_if);
    PUT(C_OUT_IF, uint32_t, out_if);
    PUT(C_DIRECTION, uint8_t, direction);
    PUT(C_BYTES, uint64_t, frame_len);
    PUT(C_SRC_MAC, uint64_t, p->src_mac);
    PUT(C_DST_MAC, uint64_t, p->dst_mac);
    PUT(C_VLAN, uint16_t, p->vlan);
    PUT(C_ETYPE, uint16_t, p->etype);
    memcpy(st->cols[C_SRC_ADDR] + n * 16, p->src_addr, 16);
    memcpy(st->cols[C_DST_ADDR] + n * 16, p->dst_addr, 16);
    PUT(C_PROTO, uint8_t, p->proto);
    PUT(C_TOS, uint8_t, p->tos);
    PUT(C_SRC_PORT, uint16_t, p->src_port);
    PUT(C_DST_PORT, uint16_t, p->dst_port);
    PUT(C_TCP_FLAGS, uint16_t, p->tcp_flags);
    PUT(C_TUNNEL_TYPE, uint8_t, p->tunnel_type);
    PUT(C_TUNNEL_ID, uint32_t, p->tunnel_id);
    memcpy(st->cols[C_TUNNEL_SRC] + n * 16, p->tunnel_src, 16);
    memcpy(st->cols[C_TUNNEL_DST] + n * 16, p->tunnel_dst, 16);
    PUT(C_OVN_INGRESS, uint16_t, p->ovn_ingress_port);
    PUT(C_OVN_EGRESS, uint16_t, p->ovn_egress_port);
    memcpy(st->cols[C_NEXT_HOP] + n * 16, rt->next_hop, 16);
    PUT(C_SRC_AS, uint32_t, rt->src_as);
    PUT(C_DST_AS, uint32_t, rt->dst_as);
    PUT(C_SRC_MASK, uint8_t, rt->src_mask);
    PUT(C_DST_MASK, uint8_t, rt->dst_mask);
    st->rows = n + 1;
    return 0;
}

/* --- flow sample records ---------------------------------------------------------------- */

static void sampled_ip(pkt_info *fb, const uint8_t *rec, int v6)
{
    /* length, protocol, src, dst, src port, dst port, tcp flags, tos / priority */
    size_t a = v6 ? 16 : 4;
    const uint8_t *tail = rec + 8 + 2 * a;
    fb->etype = v6 ? PKT_ETH_IPV6 : PKT_ETH_IPV4;
    if (v6) {
        memcpy(fb->src_addr, rec + 8, 16);
        memcpy(fb->dst_addr, rec + 24, 16);
    } else {
        memcpy(fb->src_addr, PKT_V4_PREFIX, 12);
        memcpy(fb->src_addr + 12, rec + 8, 4);
        memcpy(fb->dst_addr, PKT_V4_PREFIX, 12);
        memcpy(fb->dst_addr + 12, rec + 12, 4);
    }
    fb->proto = (uint8_t)pkt_be32(rec + 4);
    fb->src_port = (uint16_t)pkt_be32(tail);
    fb->dst_port = (uint16_t)pkt_be32(tail + 4);
    fb->tcp_flags = (uint16_t)pkt_be32(tail + 8);
    fb->tos = (uint8_t)pkt_be32(tail + 12);
}

/* An sFlow address at off (type 1 IPv4, 2 IPv6, 0 unknown and empty) into out (16 bytes,
 * IPv4 mapped); the offset after it, or 0 when the type is unknown or it overruns end. */
static uint64_t next_hop(const uint8_t *b, uint64_t off, uint64_t end, uint8_t *out)
{
    if (off + 4 > end)
        return 0;
    uint32_t atype = pkt_be32(b + off);
    off += 4;
    memset(out, 0, 16);
    if (atype == 0)
        return off;
    if (atype == 1 && off + 4 <= end) {
        memcpy(out, PKT_V4_PREFIX, 12);
        memcpy(out + 12, b + off, 4);
        return off + 4;
    }
    if (atype == 2 && off + 16 <= end) {
        memcpy(out, b + off, 16);
        return off + 16;
    }
    return 0;
}

/* Extended router (0:1002): next hop, src and dst prefix lengths; 0 if malformed. */
static int router_record(const uint8_t *b, uint64_t body, uint64_t end, uint8_t *hop, uint8_t *src_mask,
                         uint8_t *dst_mask)
{
    uint64_t off = next_hop(b, body, end, hop);
    if (!off || off + 8 > end)
        return 0;
    uint32_t s = pkt_be32(b + off), d = pkt_be32(b + off + 4);
    if (s > 128 || d > 128) /* a prefix length, of IPv4 or IPv6 */
        return 0;
    *src_mask = (uint8_t)s;
    *dst_mask = (uint8_t)d;
    return 1;
}

/* Extended gateway (0:1003): BGP next hop, src AS (the router's when 0), dst AS (the last AS
 * of the last path segment, the router's when the path is empty); 0 if malformed. */
static int gateway_record(const uint8_t *b, uint64_t body, uint64_t end, uint8_t *hop, uint32_t *src_as,
                          uint32_t *dst_as)
{
    uint64_t off = next_hop(b, body, end, hop);
    if (!off || off + 16 > end)
        return 0;
    uint32_t router_as = pkt_be32(b + off), src = pkt_be32(b + off + 4), segments = pkt_be32(b + off + 12);
    uint32_t dst = router_as;
    off += 16;
    for (uint32_t i = 0; i < segments; i++) { /* each segment takes 8 bytes at least: bounded */
        if (off + 8 > end)
            return 0;
        uint32_t count = pkt_be32(b + off + 4);
        off += 8 + 4 * (uint64_t)count;
        if (off > end)
            return 0;
        if (count)
            dst = pkt_be32(b + off - 4);
    }
    *src_as = src ? src : router_as;
    *dst_as = dst;
    return 1;
}

/* A flow sample's records → the packet, its frame length and route (sflow.py's _flow_records):
 * the raw packet header wins; sampled IPv4 / IPv6 and Ethernet records fill in when an
 * agent sends no header, and the extended switch record gives an untagged packet its VLAN.
 * The last well-formed extended router / gateway records give the route. */
static void flow_records(const uint8_t *b, uint64_t off, uint64_t end, uint32_t nrec, int srv6, tally *tl,
                         pkt_info *info, uint64_t *frame_len_out, route *rt)
{
    pkt_info fallback;
    uint8_t router_hop[16], gateway_hop[16], hop[16];
    uint8_t src_mask = 0, dst_mask = 0, m1, m2;
    uint32_t src_as = 0, dst_as = 0, a1, a2;
    int have_info = 0, have_fallback = 0, have_router = 0, have_gateway = 0;
    uint64_t frame_len = 0, other_len = 0;
    uint16_t vlan = 0;
    for (uint32_t i = 0; i < nrec; i++) {
        if (off + 8 > end) {
            tl->errors[E_TRUNCATED_RECORD]++;
            break;
        }
        uint32_t fmt = pkt_be32(b + off), length = pkt_be32(b + off + 4);
        uint64_t body = off + 8;
        off = body + length;
        if (off > end) {
            tl->errors[E_TRUNCATED_RECORD]++;
            break;
        }
        const uint8_t *r = b + body;
        if (fmt == 1 && length >= 16) { /* raw packet header */
            uint32_t proto = pkt_be32(r), hlen = pkt_be32(r + 12);
            frame_len = pkt_be32(r + 4);
            uint64_t hend = body + 16 + (uint64_t)hlen;
            size_t hsize = (size_t)((hend < off ? hend : off) - (body + 16));
            /* header_protocol values from the sFlow v5 spec: 1 ethernet, 11 IPv4, 12 IPv6. */
            if (proto == 1)
                pkt_parse_ethernet(r + 16, hsize, srv6, info);
            else if (proto == 11 || proto == 12)
                pkt_parse_ip(r + 16, hsize, srv6, info);
            else
                memset(info, 0, sizeof *info);
            have_info = 1;
        } else if ((fmt == 3 && length >= 32) || (fmt == 4 && length >= 56)) { /* sampled IPv4 / IPv6 */
            if (!have_fallback)
                memset(&fallback, 0, sizeof fallback);
            have_fallback = 1;
            sampled_ip(&fallback, r, fmt == 4);
            if (!other_len)
                other_len = pkt_be32(r);
        } else if (fmt == 2 && length >= 24) { /* sampled Ethernet: length, src mac, dst mac, type */
            if (!have_fallback)
                memset(&fallback, 0, sizeof fallback);
            have_fallback = 1;
            fallback.src_mac = pkt_mac(r + 4);
            fallback.dst_mac = pkt_mac(r + 12);
            other_len = pkt_be32(r);
        } else if (fmt == 1001 && length >= 16) { /* extended switch: src vlan first */
            uint32_t v = pkt_be32(r); /* 0xFFFFFFFF: unknown; not a VLAN id: unknown (0) */
            vlan = v <= 0x0FFF ? (uint16_t)v : 0;
        } else if (fmt == 1002) {
            if (router_record(b, body, off, hop, &m1, &m2)) {
                memcpy(router_hop, hop, 16);
                src_mask = m1;
                dst_mask = m2;
                have_router = 1;
            } else {
                tl->errors[E_BAD_ROUTER_RECORD]++;
            }
        } else if (fmt == 1003) {
            if (gateway_record(b, body, off, hop, &a1, &a2)) {
                memcpy(gateway_hop, hop, 16);
                src_as = a1;
                dst_as = a2;
                have_gateway = 1;
            } else {
                tl->errors[E_BAD_GATEWAY_RECORD]++;
            }
        }
    }
    memset(rt, 0, sizeof *rt);
    if (have_router) {
        memcpy(rt->next_hop, router_hop, 16);
        rt->src_mask = src_mask;
        rt->dst_mask = dst_mask;
    } else if (have_gateway) {
        memcpy(rt->next_hop, gateway_hop, 16);
    }
    rt->src_as = src_as;
    rt->dst_as = dst_as;
    if (!have_info) {
        if (have_fallback)
            *info = fallback;
        else
            memset(info, 0, sizeof *info);
        frame_len = other_len;
    }
    if (vlan && !info->vlan)
        info->vlan = vlan;
    *frame_len_out = frame_len;
}

/* --- samples ---------------------------------------------------------------------------- */

static void sample_key(uint8_t *key, const dgram *d, uint32_t source, uint32_t kind)
{
    memset(key, 0, KEY_SIZE);
    memcpy(key, d->agent, 16);
    memcpy(key + 16, &d->sub_agent, 4);
    memcpy(key + 20, &source, 4);
    memcpy(key + 24, &kind, 4);
}

static int flow_sample(State *st, const uint8_t *b, uint64_t off, uint64_t end, const dgram *d, uint32_t source,
                       uint32_t rate, uint32_t in_if, uint32_t out_if, uint32_t nrec, tally *tl)
{
    pkt_info info;
    route rt;
    uint64_t frame_len;
    flow_records(b, off, end, nrec, d->srv6, tl, &info, &frame_len, &rt);
    /* The data source (an ifIndex, class 0) is the side the packet was sampled on; OVS
     * samples per bridge (class 2, index 1000+), which says nothing. */
    uint8_t direction = source >> 24 ? 2 : source == in_if ? 0 : source == out_if ? 1 : 2;
    if (append_row(st, d, rate, in_if, out_if, direction, frame_len, &info, &rt) < 0)
        return -1;
    tl->flows++;
    return 0;
}

static PyObject *counter_entry(uint64_t off, uint64_t end, uint32_t nrec, uint32_t source)
{
    return Py_BuildValue("(KKkk)", (unsigned long long)off, (unsigned long long)end, (unsigned long)nrec,
                         (unsigned long)source);
}

#define IF_FOLD(format, value) (((format) & 3u) << 30 | ((value) & 0x3FFFFFFFu))

static int samples(State *st, const uint8_t *b, uint64_t off, uint64_t end, uint32_t count, const dgram *d,
                   tally *tl, PyObject **counters)
{
    uint8_t key[KEY_SIZE];
    for (uint32_t i = 0; i < count; i++) {
        if (off + 8 > end) {
            tl->errors[E_TRUNCATED_SAMPLE]++;
            return 0;
        }
        uint32_t fmt = pkt_be32(b + off), length = pkt_be32(b + off + 4);
        uint64_t body = off + 8;
        off = body + length;
        if (off > end) {
            tl->errors[E_TRUNCATED_SAMPLE]++;
            return 0;
        }
        const uint8_t *s = b + body;
        uint32_t source, nrec;
        uint64_t first;
        if (fmt == 1 && length >= 32) { /* seq, source, rate, pool, drops, input, output, records */
            source = pkt_be32(s + 4);
            sample_key(key, d, source, 0);
            if (seq_check(&st->sample_seq, &st->limits, key, pkt_be32(s), tl->samples, NULL, tl) < 0)
                return -1;
            if (flow_sample(st, b, body + 32, off, d, source, pkt_be32(s + 8), pkt_be32(s + 20), pkt_be32(s + 24),
                            pkt_be32(s + 28), tl) < 0)
                return -1;
            continue;
        }
        if (fmt == 3 && length >= 44) { /* expanded: source type / index, in / out format + value */
            source = (pkt_be32(s + 4) & 0xFF) << 24 | (pkt_be32(s + 8) & 0xFFFFFF);
            sample_key(key, d, source, 0);
            if (seq_check(&st->sample_seq, &st->limits, key, pkt_be32(s), tl->samples, NULL, tl) < 0)
                return -1;
            uint32_t in_if = IF_FOLD(pkt_be32(s + 24), pkt_be32(s + 28));
            uint32_t out_if = IF_FOLD(pkt_be32(s + 32), pkt_be32(s + 36));
            if (flow_sample(st, b, body + 44, off, d, source, pkt_be32(s + 12), in_if, out_if, pkt_be32(s + 40),
                            tl) < 0)
                return -1;
            continue;
        }
        if (fmt == 2 && length >= 12) { /* counters: seq, source, records */
            source = pkt_be32(s + 4);
            nrec = pkt_be32(s + 8);
            first = body + 12;
        } else if (fmt == 4 && length >= 16) { /* expanded counters: seq, source type, index, records */
            source = (pkt_be32(s + 4) & 0xFF) << 24 | (pkt_be32(s + 8) & 0xFFFFFF);
            nrec = pkt_be32(s + 12);
            first = body + 16;
        } else {
            tl->errors[fmt >= 1 && fmt <= 4 ? E_SHORT_SAMPLE : E_UNKNOWN_SAMPLE_FORMAT]++;
            continue;
        }
        sample_key(key, d, source, 1);
        if (seq_check(&st->sample_seq, &st->limits, key, pkt_be32(s), tl->samples, NULL, tl) < 0)
            return -1;
        if (!*counters && !(*counters = PyList_New(0)))
            return -1;
        PyObject *entry = counter_entry(first, off, nrec, source);
        if (!entry || PyList_Append(*counters, entry) < 0) {
            Py_XDECREF(entry);
            return -1;
        }
        Py_DECREF(entry);
    }
    return 0;
}

/* The datagram: header, sequence, samples. -1 with an exception only on memory errors. */
static int datagram(State *st, const uint8_t *b, size_t len, const uint8_t *exporter, int64_t time_ms, tally *tl,
                    dgram *d, PyObject **counters)
{
    if (len < 8 || pkt_be32(b) != 5) {
        tl->errors[E_BAD_VERSION]++;
        return 0;
    }
    uint32_t atype = pkt_be32(b + 4);
    size_t alen = atype == 1 ? 4 : atype == 2 ? 16 : 0;
    if (!alen || len < 8 + alen + 16) {
        tl->errors[E_BAD_HEADER]++;
        return 0;
    }
    if (alen == 4) {
        memcpy(d->agent, PKT_V4_PREFIX, 12);
        memcpy(d->agent + 12, b + 8, 4);
    } else {
        memcpy(d->agent, b + 8, 16);
    }
    static const uint8_t zero[16], v4_zero[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (!memcmp(d->agent, zero, 16) || !memcmp(d->agent, v4_zero, 16)) /* unset: the UDP source */
        memcpy(d->agent, exporter, 16);
    const uint8_t *h = b + 8 + alen; /* sub-agent, sequence, uptime ms, samples */
    d->sub_agent = pkt_be32(h);
    d->time_ms = time_ms;
    uint8_t key[KEY_SIZE];
    memcpy(key, exporter, 16);
    memcpy(key + 16, d->agent, 16);
    memcpy(key + 32, &d->sub_agent, 4);
    memset(key + 36, 0, 4);
    if (seq_check(&st->datagram_seq, &st->limits, key, pkt_be32(h + 4), tl->datagrams, &tl->gaps, tl) < 0)
        return -1;
    return samples(st, b, 8 + alen + 16, len, pkt_be32(h + 12), d, tl, counters);
}

/* --- bringing the tally to the ExporterStats -------------------------------------------- */

static int add_attr(PyObject *obj, PyObject *name, uint64_t n)
{
    PyObject *old = PyObject_GetAttr(obj, name);
    if (!old)
        return -1;
    PyObject *inc = PyLong_FromUnsignedLongLong(n);
    PyObject *sum = inc ? PyNumber_Add(old, inc) : NULL;
    Py_DECREF(old);
    Py_XDECREF(inc);
    if (!sum)
        return -1;
    int rc = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return rc;
}

static int call_stats(PyObject *stats, PyObject *method, PyObject *const *args, size_t nargs)
{
    PyObject *stack[5] = {stats};
    for (size_t i = 0; i < nargs; i++)
        stack[i + 1] = args[i];
    PyObject *r = PyObject_VectorcallMethod(method, stack, (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int report_sequences(PyObject *stats, PyObject *unit, const uint64_t *kinds)
{
    for (int k = 0; k < S_KINDS; k++) {
        if (!kinds[k])
            continue;
        PyObject *n = PyLong_FromUnsignedLongLong(kinds[k]);
        if (!n)
            return -1;
        PyObject *args[4] = {STR_SFLOW, unit, KIND_STRS[k], n};
        int rc = call_stats(stats, STR_SEQUENCE, args, 4);
        Py_DECREF(n);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int report(PyObject *stats, const tally *tl)
{
    for (int e = 0; e < E_COUNT; e++) {
        if (!tl->errors[e])
            continue;
        PyObject *n = PyLong_FromUnsignedLongLong(tl->errors[e]);
        if (!n)
            return -1;
        PyObject *args[2] = {ERROR_STRS[e], n};
        int rc = call_stats(stats, STR_ERROR, args, 2);
        Py_DECREF(n);
        if (rc < 0)
            return -1;
    }
    if (tl->gaps && add_attr(stats, STR_GAPS, tl->gaps) < 0)
        return -1;
    if (report_sequences(stats, STR_DATAGRAMS, tl->datagrams) < 0 ||
        report_sequences(stats, STR_SAMPLES, tl->samples) < 0)
        return -1;
    if (tl->flows && add_attr(stats, STR_FLOWS, tl->flows) < 0)
        return -1;
    return 0;
}

/* --- the State type ---------------------------------------------------------------------- */

PyDoc_STRVAR(feed_doc,
             "feed(datagram, exporter_addr, time_ms, stats[, srv6]) -> None | (agent, sub_agent, counters)\n\n"
             "Decode one datagram: its flow samples become pending rows, findings go to ``stats``\n"
             "(an ExporterStats). ``exporter_addr`` is the 16-byte UDP source. When the datagram\n"
             "has counter samples, returns the agent, sub-agent and, per counter sample, its\n"
             "(records offset, end, record count, source id), for Python to decode.");

static PyObject *State_feed(State *st, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "feed() takes 4 or 5 arguments");
        return NULL;
    }
    int srv6 = nargs == 5 ? PyObject_IsTrue(args[4]) : 0;
    if (srv6 < 0)
        return NULL;
    Py_buffer buf, exp;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &exp, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    PyObject *result = NULL, *counters = NULL;
    long long time_ms = PyLong_AsLongLong(args[2]);
    if (time_ms == -1 && PyErr_Occurred())
        goto done;
    if (exp.len != 16) {
        PyErr_SetString(PyExc_ValueError, "exporter_addr must be 16 bytes");
        goto done;
    }
    tally tl;
    dgram d;
    memset(&tl, 0, sizeof tl);
    memset(&d, 0, sizeof d);
    d.srv6 = srv6;
    int rc = datagram(st, buf.buf, (size_t)buf.len, exp.buf, time_ms, &tl, &d, &counters);
    if (report(args[3], &tl) < 0 || rc < 0)
        goto done;
    if (counters)
        result = Py_BuildValue("(y#kO)", (const char *)d.agent, (Py_ssize_t)16, (unsigned long)d.sub_agent, counters);
    else
        result = Py_NewRef(Py_None);
done:
    Py_XDECREF(counters);
    PyBuffer_Release(&exp);
    PyBuffer_Release(&buf);
    return result;
}

PyDoc_STRVAR(take_doc, "take() -> tuple of bytearray | None\n\n"
                       "The pending rows, one native-endian column per ROW_FIELDS entry (None if none);\n"
                       "the buffers start empty again.");

static PyObject *State_take(State *st, PyObject *unused)
{
    if (!st->rows)
        Py_RETURN_NONE;
    PyObject *out = PyTuple_New(NCOLS);
    if (!out)
        return NULL;
    for (int c = 0; c < NCOLS; c++) {
        PyObject *col = PyByteArray_FromStringAndSize((const char *)st->cols[c], (Py_ssize_t)(st->rows * WIDTHS[c]));
        if (!col) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, c, col);
    }
    st->rows = 0;
    if (st->cap > MAX_KEPT_ROWS) { /* a burst: give the memory back */
        for (int c = 0; c < NCOLS; c++) {
            PyMem_Free(st->cols[c]);
            st->cols[c] = NULL;
        }
        st->cap = 0;
    }
    return out;
}

PyDoc_STRVAR(take_groups_doc,
             "take_groups(groups) -> (rows, tuple of bytearray, direction, tunnel, unrated) | None\n\n"
             "The pending rows with the columns of each group (a tuple of column indexes, all of\n"
             "one width) one after the other in one buffer: rows[g] is a (len(group), rows) array\n"
             "once numpy reads it, so a flush makes one array per group rather than per column.\n"
             "direction and tunnel: the code every row has (-1: not all alike); unrated: rows\n"
             "with sampling rate 0.\n"
             "None if no row is pending; the buffers start empty again.");

PyDoc_STRVAR(take_nonzero_doc,
             "take_nonzero(groups) -> (rows, tuple of bytearray, direction, tunnel, unrated, zeros) | None\n\n"
             "As take_groups, but a column whose every byte is 0 is left out of its group's buffer\n"
             "and its bit (1 << column index) set in ``zeros``: the caller gives such columns a\n"
             "shared array of zeros instead of a view of its own (a flush per datagram makes ~30\n"
             "columns, and routes, tunnels or MPLS are 0 in most traffic).");

/* Whether the `size` bytes at `p` are all 0. */
static int all_zero(const uint8_t *p, size_t size)
{
    return size == 0 || (p[0] == 0 && memcmp(p, p + 1, size - 1) == 0);
}

static PyObject *take(State *st, PyObject *groups, int skip_zero)
{
    if (!PyTuple_Check(groups)) {
        PyErr_SetString(PyExc_TypeError, "take_groups() takes a tuple of tuples of column indexes");
        return NULL;
    }
    if (!st->rows)
        Py_RETURN_NONE;
    Py_ssize_t ngroups = PyTuple_GET_SIZE(groups);
    PyObject *out = PyTuple_New(ngroups);
    if (!out)
        return NULL;
    unsigned long long zeros = 0;
    if (skip_zero)
        for (int c = 0; c < NCOLS; c++)
            if (all_zero(st->cols[c], st->rows * WIDTHS[c]))
                zeros |= 1ull << c;
    for (Py_ssize_t g = 0; g < ngroups; g++) {
        PyObject *group = PyTuple_GET_ITEM(groups, g);
        if (!PyTuple_Check(group) || PyTuple_GET_SIZE(group) == 0) {
            PyErr_SetString(PyExc_TypeError, "a group is a non-empty tuple of column indexes");
            goto fail;
        }
        Py_ssize_t k = PyTuple_GET_SIZE(group), kept = 0;
        size_t width = 0;
        for (Py_ssize_t j = 0; j < k; j++) {
            long c = PyLong_AsLong(PyTuple_GET_ITEM(group, j));
            if (c < 0 || c >= NCOLS || (j && WIDTHS[c] != width)) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "a group's columns are known and of one width");
                goto fail;
            }
            width = WIDTHS[c];
            kept += !(zeros >> c & 1);
        }
        size_t size = st->rows * width;
        PyObject *buf = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(size * (size_t)kept));
        if (!buf)
            goto fail;
        char *p = PyByteArray_AS_STRING(buf);
        for (Py_ssize_t j = 0; j < k; j++) {
            long c = PyLong_AsLong(PyTuple_GET_ITEM(group, j));
            if (!(zeros >> c & 1)) {
                memcpy(p, st->cols[c], size);
                p += size;
            }
        }
        PyTuple_SET_ITEM(out, g, buf);
    }
    /* What saves the flush numpy calls: the direction and tunnel codes when one for every
     * row (else -1), and how many rows have no sampling rate. */
    size_t n = st->rows, unrated = 0;
    int direction = st->cols[C_DIRECTION][0], tunnel = st->cols[C_TUNNEL_TYPE][0];
    for (size_t r = 1; r < n && (direction >= 0 || tunnel >= 0); r++) {
        if (st->cols[C_DIRECTION][r] != direction)
            direction = -1;
        if (st->cols[C_TUNNEL_TYPE][r] != tunnel)
            tunnel = -1;
    }
    for (size_t r = 0; r < n; r++) {
        uint32_t rate;
        memcpy(&rate, st->cols[C_RATE] + r * 4, 4);
        unrated += rate == 0;
    }
    PyObject *result = skip_zero ? Py_BuildValue("(nNiinK)", (Py_ssize_t)n, out, direction, tunnel,
                                                 (Py_ssize_t)unrated, zeros)
                                 : Py_BuildValue("(nNiin)", (Py_ssize_t)n, out, direction, tunnel, (Py_ssize_t)unrated);
    if (!result)
        return NULL;
    st->rows = 0;
    if (st->cap > MAX_KEPT_ROWS) { /* a burst: give the memory back */
        for (int c = 0; c < NCOLS; c++) {
            PyMem_Free(st->cols[c]);
            st->cols[c] = NULL;
        }
        st->cap = 0;
    }
    return result;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *State_take_groups(State *st, PyObject *groups) { return take(st, groups, 0); }

static PyObject *State_take_nonzero(State *st, PyObject *groups) { return take(st, groups, 1); }

PyDoc_STRVAR(streams_doc, "streams() -> (datagram streams, sample streams) being tracked.");

static PyObject *State_streams(State *st, PyObject *unused)
{
    return Py_BuildValue("(nn)", (Py_ssize_t)st->datagram_seq.count, (Py_ssize_t)st->sample_seq.count);
}

static Py_ssize_t State_len(State *st) { return (Py_ssize_t)st->rows; }

static int State_init(State *st, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"max_streams", "late_window", NULL};
    Py_ssize_t max_streams = 65536;
    unsigned long late_window = 1ul << 16;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|nk", kwlist, &max_streams, &late_window))
        return -1;
    if (max_streams < 0) {
        PyErr_SetString(PyExc_ValueError, "max_streams must be >= 0");
        return -1;
    }
    st->limits.max_streams = (size_t)max_streams;
    st->limits.late_window = (uint32_t)late_window;
    return 0;
}

static void State_dealloc(State *st)
{
    for (int c = 0; c < NCOLS; c++)
        PyMem_Free(st->cols[c]);
    PyMem_Free(st->datagram_seq.slots);
    PyMem_Free(st->sample_seq.slots);
    Py_TYPE(st)->tp_free((PyObject *)st);
}

static PyMethodDef State_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))State_feed, METH_FASTCALL, feed_doc},
    {"take", (PyCFunction)State_take, METH_NOARGS, take_doc},
    {"take_groups", (PyCFunction)State_take_groups, METH_O, take_groups_doc},
    {"take_nonzero", (PyCFunction)State_take_nonzero, METH_O, take_nonzero_doc},
    {"streams", (PyCFunction)State_streams, METH_NOARGS, streams_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods State_as_sequence = {.sq_length = (lenfunc)State_len};

static PyTypeObject StateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "collectors._native_sflow.State",
    .tp_doc = PyDoc_STR("State(max_streams=65536, late_window=65536): pending rows and sequence state of "
                        "one sFlow decoder."),
    .tp_basicsize = sizeof(State),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)State_init,
    .tp_dealloc = (destructor)State_dealloc,
    .tp_methods = State_methods,
    .tp_as_sequence = &State_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "collectors._native_sflow",
    .m_doc = "sFlow v5 datagrams into column buffers (the C twin of collectors.sflow).",
    .m_size = -1,
};

static int intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot ? 0 : -1;
}

PyMODINIT_FUNC PyInit__native_sflow(void)
{
    for (int e = 0; e < E_COUNT; e++)
        if (intern(&ERROR_STRS[e], ERROR_NAMES[e]) < 0)
            return NULL;
    for (int k = 0; k < S_KINDS; k++)
        if (intern(&KIND_STRS[k], SEQUENCE_KINDS[k]) < 0)
            return NULL;
    if (intern(&STR_SFLOW, "sflow") < 0 || intern(&STR_DATAGRAMS, "datagrams") < 0 ||
        intern(&STR_SAMPLES, "samples") < 0 || intern(&STR_ERROR, "error") < 0 ||
        intern(&STR_SEQUENCE, "sequence") < 0 || intern(&STR_GAPS, "sequence_gaps") < 0 ||
        intern(&STR_FLOWS, "flow_records") < 0)
        return NULL;
    if (PyType_Ready(&StateType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    PyObject *widths = PyTuple_New(NCOLS);
    if (!widths) {
        Py_DECREF(m);
        return NULL;
    }
    for (int c = 0; c < NCOLS; c++) {
        PyObject *w = PyLong_FromSize_t(WIDTHS[c]);
        if (!w) {
            Py_DECREF(widths);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(widths, c, w);
    }
    if (PyModule_AddObject(m, "WIDTHS", widths) < 0) {
        Py_DECREF(widths);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&StateType);
    if (PyModule_AddObject(m, "State", (PyObject *)&StateType) < 0) {
        Py_DECREF(&StateType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
