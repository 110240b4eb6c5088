/* IPFIX / NetFlow v9 data sets decoded straight into flow columns (collectors._native_ipfix).
 *
 * The pure-Python decoder (collectors/ipfix.py, collectors/_ipfix_columns.py) is the
 * reference; this module is its data-record path in C. A Layout is compiled once per
 * template in Python (collectors/_ipfix_columns.native_layout): the template's fixed runs
 * between variable-length fields, and per role (a flow column's source element) where
 * the element sits, plus the conversion modes Python chose for the template (which time
 * element, which sampling elements, how the ethertype is found). A Batch decodes every
 * record of a data set into growable column buffers (bytearrays, handed to numpy at
 * flush) with no Python object per record.
 *
 * Input is untrusted UDP: every read is bounded by the set's end, and the record walk
 * (RFC 7011 section 7) stops at the first truncated record exactly where the Python
 * walker does, counting the same error reason. Arithmetic that numpy does modulo 2^64 is
 * done on uint64_t here, never on signed integers (no undefined overflow).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* --- roles: where a flow column's value comes from (order = ROLES in the module) ----- */
enum {
    R_PACKETS, R_BYTES, R_PROTO, R_SRC_PORT, R_TCP_FLAGS, R_TOS, R_IN_IF, R_OUT_IF,
    R_SRC_MAC, R_DST_MAC, R_ETYPE, R_IP_VERSION, R_DIRECTION, R_VLAN,
    R_SRC_V4, R_SRC_V6, R_DST_V4, R_DST_V6, R_DST_PORT, R_ICMP, R_ICMP_TYPE, R_ICMP_CODE,
    R_TUNNEL_TYPE, R_TUNNEL_KEY, R_TUNNEL_SRC, R_TUNNEL_DST,
    R_START, R_END, R_SYSTEM_INIT, R_SAMPLING, R_SAMPLING_A, R_SAMPLING_B,
    R_SRC_AS, R_DST_AS, R_NEXT_HOP_V4, R_NEXT_HOP_V6, R_BGP_NEXT_HOP_V4, R_BGP_NEXT_HOP_V6,
    R_SRC_MASK_V4, R_SRC_MASK_V6, R_DST_MASK_V4, R_DST_MASK_V6, R_OBSERVATION_POINT,
    R_REV_PACKETS, R_REV_BYTES, R_REV_TCP_FLAGS, R_REV_TOS, R_BIFLOW_DIRECTION, R_SAMPLER_ID,
    R_OUTER_SRC_V4, R_OUTER_SRC_V6, R_OUTER_DST_V4, R_OUTER_DST_V6, R_OUTER_PROTO, R_OUTER_DST_PORT,
    R_POST_NAT_SRC_PORT, R_POST_NAT_DST_PORT, R_POST_NAT_SRC_V4, R_POST_NAT_SRC_V6, R_POST_NAT_DST_V4,
    R_POST_NAT_DST_V6,
    NROLES
};
static const char *const ROLE_NAMES[NROLES] = {
    "packets", "bytes", "proto", "src_port", "tcp_flags", "tos", "in_if", "out_if",
    "src_mac", "dst_mac", "etype", "ip_version", "direction", "vlan",
    "src_v4", "src_v6", "dst_v4", "dst_v6", "dst_port", "icmp", "icmp_type", "icmp_code",
    "tunnel_type", "tunnel_key", "tunnel_src", "tunnel_dst",
    "start", "end", "system_init", "sampling", "sampling_a", "sampling_b",
    "src_as", "dst_as", "next_hop_v4", "next_hop_v6", "bgp_next_hop_v4", "bgp_next_hop_v6",
    "src_mask_v4", "src_mask_v6", "dst_mask_v4", "dst_mask_v6", "observation_point",
    "rev_packets", "rev_bytes", "rev_tcp_flags", "rev_tos", "biflow_direction", "sampler_id",
    "outer_src_v4", "outer_src_v6", "outer_dst_v4", "outer_dst_v6", "outer_proto", "outer_dst_port",
    "post_nat_src_port", "post_nat_dst_port", "post_nat_src_v4", "post_nat_src_v6", "post_nat_dst_v4",
    "post_nat_dst_v6",
};

/* Time conversions (collectors._ipfix_columns.flow_time) and sampling rules (sampling_from). */
enum { T_EXPORT, T_MS, T_S, T_NTP, T_DELTA_US, T_UPTIME, NTIME };
enum { S_NONE, S_DIRECT, S_INTERVAL, S_SIZE, NSAMPLING };

/* --- output columns (order = COLUMNS in the module; dtypes are numpy's, native order) -- */
enum {
    C_TIME_RECEIVED, C_FLOW_START, C_FLOW_END, C_EXPORTER, C_DOMAIN, C_SAMPLING_RATE,
    C_DIRECTION, C_IN_IF, C_OUT_IF, C_SRC_ADDR, C_DST_ADDR, C_SRC_PORT, C_DST_PORT,
    C_PROTO, C_ETYPE, C_TCP_FLAGS, C_TOS, C_SRC_MAC, C_DST_MAC, C_VLAN, C_PACKETS,
    C_BYTES, C_TUNNEL_TYPE, C_TUNNEL_ID, C_TUNNEL_SRC, C_TUNNEL_DST, C_NEXT_HOP, C_SRC_AS, C_DST_AS,
    C_SRC_MASK, C_DST_MASK, C_OBSERVATION_POINT, C_BIFLOW, C_BIFLOW_DIRECTION, C_POST_NAT_SRC_ADDR,
    C_POST_NAT_DST_ADDR, C_POST_NAT_SRC_PORT, C_POST_NAT_DST_PORT, NCOLS
};
typedef struct {
    const char *name;
    const char *dtype;
    Py_ssize_t width;
} ColSpec;
static const ColSpec COLS[NCOLS] = {
    {"time_received", "=i8", 8}, {"flow_start", "=i8", 8}, {"flow_end", "=i8", 8},
    {"exporter", "V16", 16}, {"observation_domain", "=u4", 4}, {"sampling_rate", "=u4", 4},
    {"direction", "u1", 1}, /* code: 0 ingress, 1 egress, 2 unknown */
    {"in_if", "=u4", 4}, {"out_if", "=u4", 4}, {"src_addr", "V16", 16}, {"dst_addr", "V16", 16},
    {"src_port", "=u2", 2}, {"dst_port", "=u2", 2}, {"proto", "u1", 1}, {"etype", "=u2", 2},
    {"tcp_flags", "=u2", 2}, {"tos", "u1", 1}, {"src_mac", "=u8", 8}, {"dst_mac", "=u8", 8},
    {"vlan", "=u2", 2}, {"packets", "=u8", 8}, {"bytes", "=u8", 8},
    {"tunnel_type", "u1", 1}, /* index into the tunnel type names (0-7) */
    {"tunnel_id", "=u4", 4}, {"tunnel_src", "V16", 16}, {"tunnel_dst", "V16", 16},
    {"next_hop", "V16", 16}, {"src_as", "=u4", 4}, {"dst_as", "=u4", 4},
    {"src_mask", "u1", 1}, {"dst_mask", "u1", 1}, {"observation_point", "=u4", 4},
    {"biflow", "u1", 1}, {"biflow_direction", "u1", 1},
    {"post_nat_src_addr", "V16", 16}, {"post_nat_dst_addr", "V16", 16},
    {"post_nat_src_port", "=u2", 2}, {"post_nat_dst_port", "=u2", 2},
};

#if defined(__GNUC__)
#define HOT_INLINE inline __attribute__((always_inline)) /* the per-field readers of emit() */
#else
#define HOT_INLINE inline
#endif

#define NTP_EPOCH_OFFSET INT64_C(2208988800)
#define MAX_SEGMENTS 65536 /* a template cannot have more fields than fit in a message */

/* --- Layout ------------------------------------------------------------------------- */

typedef struct {
    int present;
    int seg;        /* >= 0: fixed field in that run; < 0: variable-length field -seg-1 */
    Py_ssize_t off; /* offset inside the run (fixed fields) */
    Py_ssize_t len; /* length (fixed fields) */
} Source;

typedef struct {
    PyObject_HEAD
    Py_ssize_t nseg; /* fixed runs: one more than the variable-length fields */
    Py_ssize_t *segments;
    Py_ssize_t min_len; /* every run plus one length byte per variable field */
    Py_ssize_t *scratch; /* per record: run starts, variable field starts and lengths */
    Source roles[NROLES];
    int start_mode, end_mode, sampling_mode;
    unsigned etype_guess; /* ethertype when neither ETYPE nor IP_VERSION is present */
    int routing;          /* any next hop or prefix length role: else those columns are 0 */
    int biflow;           /* an RFC 5103 biflow template: a reverse counter role */
    int outer;            /* a template repeating header fields: outer header roles */
    int post_nat;         /* any post-NAT role: else those columns are 0 */
} Layout;

static void Layout_dealloc(Layout *self)
{
    PyMem_Free(self->segments);
    PyMem_Free(self->scratch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int parse_source(Layout *self, int role, PyObject *spec)
{
    Source *s = &self->roles[role];
    memset(s, 0, sizeof(*s));
    if (spec == Py_None)
        return 0;
    long seg;
    Py_ssize_t off, len;
    if (!PyArg_ParseTuple(spec, "lnn;a role is (run, offset, length) or None", &seg, &off, &len))
        return -1;
    Py_ssize_t nvar = self->nseg - 1;
    if (seg >= 0) {
        if (seg >= self->nseg || off < 0 || len < 1 || off > self->segments[seg] - len) {
            PyErr_Format(PyExc_ValueError, "role %s: field outside its run", ROLE_NAMES[role]);
            return -1;
        }
    } else if (seg < -nvar) {
        PyErr_Format(PyExc_ValueError, "role %s: no such variable-length field", ROLE_NAMES[role]);
        return -1;
    }
    int address = role == R_SRC_V4 || role == R_DST_V4 || role == R_TUNNEL_SRC || role == R_TUNNEL_DST ||
                  role == R_NEXT_HOP_V4 || role == R_BGP_NEXT_HOP_V4 || role == R_OUTER_SRC_V4 ||
                  role == R_OUTER_DST_V4 || role == R_POST_NAT_SRC_V4 || role == R_POST_NAT_DST_V4;
    int address6 = role == R_SRC_V6 || role == R_DST_V6 || role == R_NEXT_HOP_V6 || role == R_BGP_NEXT_HOP_V6 ||
                   role == R_OUTER_SRC_V6 || role == R_OUTER_DST_V6 || role == R_POST_NAT_SRC_V6 ||
                   role == R_POST_NAT_DST_V6;
    if ((address || address6) && (seg < 0 || len != (address ? 4 : 16))) {
        PyErr_Format(PyExc_ValueError, "role %s: addresses are fixed 4 or 16 bytes", ROLE_NAMES[role]);
        return -1;
    }
    s->present = 1;
    s->seg = (int)seg;
    s->off = off;
    s->len = len;
    return 0;
}

static PyObject *Layout_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"segments", "roles", "start", "end", "sampling", "etype_guess", "outer", NULL};
    PyObject *segments, *roles;
    int start, end, sampling, outer = 0;
    unsigned etype_guess;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!iiiI|p", kwlist, &PyTuple_Type, &segments,
                                     &PyTuple_Type, &roles, &start, &end, &sampling, &etype_guess, &outer))
        return NULL;
    Py_ssize_t nseg = PyTuple_GET_SIZE(segments);
    if (nseg < 1 || nseg > MAX_SEGMENTS) {
        PyErr_SetString(PyExc_ValueError, "a layout has 1 to 65536 fixed runs");
        return NULL;
    }
    if (PyTuple_GET_SIZE(roles) != NROLES) {
        PyErr_Format(PyExc_ValueError, "expected %d roles", NROLES);
        return NULL;
    }
    if (start < 0 || start >= NTIME || end < 0 || end >= NTIME || sampling < 0 || sampling >= NSAMPLING ||
        etype_guess > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "unknown time, sampling or ethertype mode");
        return NULL;
    }
    Layout *self = (Layout *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->nseg = nseg;
    self->segments = PyMem_New(Py_ssize_t, nseg);
    self->scratch = PyMem_New(Py_ssize_t, 3 * nseg);
    if (self->segments == NULL || self->scratch == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    Py_ssize_t total = nseg - 1; /* one length byte at least per variable-length field */
    for (Py_ssize_t i = 0; i < nseg; i++) {
        Py_ssize_t run = PyLong_AsSsize_t(PyTuple_GET_ITEM(segments, i));
        if (run == -1 && PyErr_Occurred()) {
            Py_DECREF(self);
            return NULL;
        }
        if (run < 0 || run > 0xFFFF) {
            Py_DECREF(self);
            PyErr_SetString(PyExc_ValueError, "a fixed run is 0 to 65535 bytes");
            return NULL;
        }
        self->segments[i] = run;
        total += run;
    }
    if (total < 1) { /* each record must consume a byte, or the walk would not end */
        Py_DECREF(self);
        PyErr_SetString(PyExc_ValueError, "a record of zero length");
        return NULL;
    }
    self->min_len = total;
    for (int r = 0; r < NROLES; r++)
        if (parse_source(self, r, PyTuple_GET_ITEM(roles, r)) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    int need[][2] = {{start, R_START}, {end, R_END}};
    for (int i = 0; i < 2; i++)
        if (need[i][0] != T_EXPORT && !self->roles[need[i][1]].present) {
            Py_DECREF(self);
            PyErr_SetString(PyExc_ValueError, "a time mode without its element");
            return NULL;
        }
    if ((sampling == S_DIRECT && !self->roles[R_SAMPLING].present) ||
        (sampling >= S_INTERVAL && !(self->roles[R_SAMPLING_A].present && self->roles[R_SAMPLING_B].present))) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_ValueError, "a sampling mode without its elements");
        return NULL;
    }
    for (int r = R_NEXT_HOP_V4; r <= R_DST_MASK_V6; r++)
        self->routing |= self->roles[r].present;
    self->biflow = self->roles[R_REV_PACKETS].present || self->roles[R_REV_BYTES].present;
    self->outer = outer;
    for (int r = R_POST_NAT_SRC_PORT; r <= R_POST_NAT_DST_V6; r++)
        self->post_nat |= self->roles[r].present;
    self->start_mode = start;
    self->end_mode = end;
    self->sampling_mode = sampling;
    self->etype_guess = etype_guess;
    return (PyObject *)self;
}

static PyTypeObject LayoutType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "collectors._native_ipfix.Layout",
    .tp_basicsize = sizeof(Layout),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Layout(segments, roles, start, end, sampling, etype_guess): a compiled template.",
    .tp_new = Layout_new,
    .tp_dealloc = (destructor)Layout_dealloc,
};

/* --- reading one record ------------------------------------------------------------- */

/* Unsigned big-endian value of the last min(len, 8) bytes of a field (numpy's reading of
 * odd sizes and of longer fields: their low 8 bytes). */
static HOT_INLINE uint64_t be_uint(const uint8_t *p, Py_ssize_t len)
{
    switch (len) { /* the common sizes unrolled (compilers turn these into byte swaps) */
    case 1:
        return p[0];
    case 2:
        return ((uint64_t)p[0] << 8) | p[1];
    case 4:
        return ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
    case 6: /* MAC addresses */
        return ((uint64_t)p[0] << 40) | ((uint64_t)p[1] << 32) | ((uint64_t)p[2] << 24) | ((uint64_t)p[3] << 16) |
               ((uint64_t)p[4] << 8) | p[5];
    case 8:
        return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) | ((uint64_t)p[3] << 32) |
               ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) | ((uint64_t)p[6] << 8) | p[7];
    default:
        break;
    }
    if (len > 8) {
        p += len - 8;
        len = 8;
    }
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < len; i++)
        v = (v << 8) | p[i];
    return v;
}

typedef struct {
    const uint8_t *buf;
    const Py_ssize_t *run; /* start of each fixed run in buf */
    const Py_ssize_t *var_pos, *var_len;
} Record;

static HOT_INLINE const uint8_t *field(const Layout *L, const Record *rec, int role, Py_ssize_t *len)
{
    const Source *s = &L->roles[role];
    if (s->seg >= 0) {
        *len = s->len;
        return rec->buf + rec->run[s->seg] + s->off;
    }
    *len = rec->var_len[-s->seg - 1];
    return rec->buf + rec->var_pos[-s->seg - 1];
}

static HOT_INLINE uint64_t value(const Layout *L, const Record *rec, int role)
{
    Py_ssize_t len;
    const uint8_t *p = field(L, rec, role, &len);
    return be_uint(p, len);
}

#define HAS(role) (L->roles[role].present)
#define GET(role) (HAS(role) ? value(L, rec, role) : 0)
#define GET_REVERSE(role) (L->roles[role].present ? value(L, rec, role) : 0)

static inline int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t flow_time(const Layout *L, const Record *rec, int mode, int role, int64_t export_s, int64_t init)
{
    if (mode == T_EXPORT)
        return export_s * 1000;
    uint64_t v = value(L, rec, role);
    switch (mode) {
    case T_MS:
        return (int64_t)v;
    case T_S:
        return (int64_t)(v * 1000u);
    case T_NTP: /* dateTimeMicro/Nanoseconds: NTP seconds and fraction (RFC 7011 6.1.9) */
        return ((int64_t)(v >> 32) - NTP_EPOCH_OFFSET) * 1000 + (int64_t)(((v & 0xFFFFFFFFu) * 1000u) >> 32);
    case T_DELTA_US: /* microseconds before the export time (RFC 5102 5.9) */
        return floor_div((int64_t)((uint64_t)export_s * 1000000u - v), 1000);
    default: /* T_UPTIME: sysUpTime ms + systemInitTimeMilliseconds */
        if (HAS(R_SYSTEM_INIT))
            init = (int64_t)value(L, rec, R_SYSTEM_INIT);
        return init >= 0 ? (int64_t)((uint64_t)init + v) : export_s * 1000;
    }
}

static void address(const Layout *L, const Record *rec, int v4, int v6, uint8_t *out)
{
    Py_ssize_t len;
    if (v6 >= 0 && HAS(v6)) {
        const uint8_t *a6 = field(L, rec, v6, &len);
        int any = 0;
        for (int i = 0; i < 16; i++)
            any |= a6[i];
        if (any || !HAS(v4)) {
            memcpy(out, a6, 16);
            return;
        }
    }
    if (HAS(v4)) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xFF;
        memcpy(out + 12, field(L, rec, v4, &len), 4);
        return;
    }
    memset(out, 0, 16);
}

/* A next hop from an (IPv4, IPv6) pair: 1 and `out` set if one of them is set (IPv6
 * first), 0 if both are absent or unspecified (0.0.0.0, ::). Mirrors
 * Records.address_bytes(unset_zero=True). */
static int next_hop(const Layout *L, const Record *rec, int v4, int v6, uint8_t *out)
{
    Py_ssize_t len;
    int any = 0;
    if (HAS(v6)) {
        const uint8_t *a6 = field(L, rec, v6, &len);
        for (int i = 0; i < 16; i++)
            any |= a6[i];
        if (any) {
            memcpy(out, a6, 16);
            return 1;
        }
    }
    if (HAS(v4)) {
        const uint8_t *a4 = field(L, rec, v4, &len);
        any = a4[0] | a4[1] | a4[2] | a4[3];
        if (any) {
            memset(out, 0, 10);
            out[10] = out[11] = 0xFF;
            memcpy(out + 12, a4, 4);
            return 1;
        }
    }
    return 0;
}

/* Tunnel type code from the outer header of a template repeating header fields
 * (collectors._ipfix_columns._outer_tunnel): 8 ipip, 2 gre, 1 vxlan, 7 geneve, 9 udp, 10 ip. */
static uint8_t outer_tunnel(const Layout *L, const Record *rec)
{
    if (!HAS(R_OUTER_PROTO))
        return 10;
    uint8_t proto = (uint8_t)value(L, rec, R_OUTER_PROTO);
    uint16_t dport = (uint16_t)GET(R_OUTER_DST_PORT);
    if (proto == 4 || proto == 41)
        return 8;
    if (proto == 47)
        return 2;
    if (proto == 17)
        return dport == 4789 ? 1 : dport == 6081 ? 7 : 9;
    return 10;
}

/* A prefix length: the IPv6 one where set, else the IPv4 one; out of range: 0 (unknown). */
static uint8_t prefix_length(const Layout *L, const Record *rec, int v4, int v6)
{
    uint64_t m6 = GET(v6), m4 = GET(v4);
    m6 = m6 <= 128 ? m6 : 0;
    m4 = m4 <= 32 ? m4 : 0;
    return (uint8_t)(m6 ? m6 : m4);
}

/* --- Batch: growable column buffers ------------------------------------------------- */

typedef struct Batch {
    PyObject_HEAD
    Layout *layout; /* NULL for a sink: columns only, filled by the batches that name it */
    struct Batch *sink; /* where the records go (NULL: this batch's own columns) */
    Py_ssize_t n, cap;
    Py_ssize_t hint; /* records at the last take: the next buffers start that big */
    PyObject *cols[NCOLS]; /* bytearrays of cap * width bytes, or NULL before the first record */
} Batch;

static int Batch_traverse(Batch *self, visitproc visit, void *arg)
{
    Py_VISIT(self->layout);
    Py_VISIT(self->sink);
    return 0;
}

static void Batch_dealloc(Batch *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->layout);
    Py_CLEAR(self->sink);
    for (int c = 0; c < NCOLS; c++)
        Py_CLEAR(self->cols[c]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject BatchType;

/* Batch(layout, sink=None): a template's decoder; with a sink (a Batch(None)) its records go
 * to the sink's columns, which every template of a decoder shares, so that a flush takes one
 * set of per-dtype buffers however many exporters and templates fed it. */
static PyObject *Batch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *layout, *sink = Py_None;
    if (!PyArg_ParseTuple(args, "O|O:Batch", &layout, &sink))
        return NULL;
    if (layout != Py_None && !Py_IS_TYPE(layout, &LayoutType)) {
        PyErr_SetString(PyExc_TypeError, "Batch(layout, sink=None): a Layout, or None for a sink");
        return NULL;
    }
    if (sink != Py_None && (!Py_IS_TYPE(sink, &BatchType) || ((Batch *)sink)->layout != NULL || layout == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "a sink is a Batch(None), given with a layout");
        return NULL;
    }
    Batch *self = (Batch *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->layout = layout == Py_None ? NULL : (Layout *)Py_NewRef(layout);
    self->sink = sink == Py_None ? NULL : (Batch *)Py_NewRef(sink);
    return (PyObject *)self;
}

static int reserve(Batch *self, Py_ssize_t more)
{
    if (more > PY_SSIZE_T_MAX / 16 - self->n) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = self->n + more;
    if (need <= self->cap && self->cols[0] != NULL)
        return 0;
    Py_ssize_t cap = self->cap > 64 ? self->cap : 64;
    if (self->cols[0] == NULL && self->hint > cap)
        cap = self->hint;
    while (cap < need)
        cap = cap > PY_SSIZE_T_MAX / 32 ? need : cap * 2;
    for (int c = 0; c < NCOLS; c++) {
        if (self->cols[c] == NULL) {
            self->cols[c] = PyByteArray_FromStringAndSize(NULL, cap * COLS[c].width);
            if (self->cols[c] == NULL)
                return -1;
        } else if (PyByteArray_Resize(self->cols[c], cap * COLS[c].width) < 0) {
            return -1;
        }
    }
    self->cap = cap;
    return 0;
}

/* Per-datagram values every record of a set shares. */
typedef struct {
    int64_t export_s, time_ms, init;
    const uint8_t *exporter;
    uint32_t domain, rate;
    const uint64_t *samplers; /* the domain's (sampler id, rate) pairs, sorted by id */
    Py_ssize_t nsamplers;
} Meta;

/* The rate options data gave this sampler id, else the domain's (collectors._ipfix_columns.sampler_rates). */
static uint32_t sampler_rate(const Meta *m, uint64_t id)
{
    Py_ssize_t lo = 0, hi = m->nsamplers;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        uint64_t v;
        memcpy(&v, m->samplers + 2 * mid, 8);
        if (v < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < m->nsamplers) {
        uint64_t v, rate;
        memcpy(&v, m->samplers + 2 * lo, 8);
        memcpy(&rate, m->samplers + 2 * lo + 1, 8);
        if (v == id)
            return (uint32_t)rate;
    }
    return m->rate;
}

/* Where record i of the batch goes in each column (the buffers do not move during a set). */
static void column_bases(Batch *self, uint8_t **base)
{
    for (int c = 0; c < NCOLS; c++)
        base[c] = (uint8_t *)PyByteArray_AS_STRING(self->cols[c]);
}

/* Flow times accepted (collectors/_times.py): 1970-01-01 up to 2200-01-01, in ms. */
#define TIME_MIN_MS INT64_C(0)
#define TIME_MAX_MS INT64_C(7258118400000)

static HOT_INLINE int64_t guard_time(int64_t t, int64_t received, int *bad)
{
    if (t >= TIME_MIN_MS && t < TIME_MAX_MS)
        return t;
    *bad = 1;
    return received;
}

/* The reverse half of a biflow record (collectors._ipfix_columns.biflow_rows), as row i + 1
 * from the forward half at row i: ends exchanged, reverse counters, flags and TOS. */
static int reverse_half(const Layout *L, uint8_t *const *base, Py_ssize_t i, const Record *rec)
{
    uint64_t packets = GET_REVERSE(R_REV_PACKETS), bytes = GET_REVERSE(R_REV_BYTES);
    if (!packets && !bytes)
        return 0;
    Py_ssize_t j = i + 1;
    for (int c = 0; c < NCOLS; c++)
        memcpy(base[c] + j * COLS[c].width, base[c] + i * COLS[c].width, (size_t)COLS[c].width);
    static const int ends[][2] = {{C_SRC_ADDR, C_DST_ADDR}, {C_SRC_PORT, C_DST_PORT}, {C_SRC_MAC, C_DST_MAC},
                                  {C_IN_IF, C_OUT_IF},       {C_SRC_AS, C_DST_AS},     {C_SRC_MASK, C_DST_MASK},
                                  {C_TUNNEL_SRC, C_TUNNEL_DST}, {C_POST_NAT_SRC_ADDR, C_POST_NAT_DST_ADDR},
                                  {C_POST_NAT_SRC_PORT, C_POST_NAT_DST_PORT}};
    for (size_t k = 0; k < sizeof ends / sizeof ends[0]; k++) {
        int a = ends[k][0], b = ends[k][1];
        Py_ssize_t w = COLS[a].width;
        memcpy(base[a] + j * w, base[b] + i * w, (size_t)w);
        memcpy(base[b] + j * w, base[a] + i * w, (size_t)w);
    }
    uint8_t proto = base[C_PROTO][i];
    if (proto == 1 || proto == 58) /* ICMP: no ports; the replies' type and code are not exported */
        memset(base[C_SRC_PORT] + j * 2, 0, 2), memset(base[C_DST_PORT] + j * 2, 0, 2);
    uint16_t flags = (uint16_t)GET_REVERSE(R_REV_TCP_FLAGS);
    memcpy(base[C_PACKETS] + j * 8, &packets, 8);
    memcpy(base[C_BYTES] + j * 8, &bytes, 8);
    memcpy(base[C_TCP_FLAGS] + j * 2, &flags, 2);
    if (L->roles[R_REV_TOS].present)
        base[C_TOS][j] = (uint8_t)value(L, rec, R_REV_TOS);
    base[C_BIFLOW][j] = 2;
    return 1;
}

/* One record's columns (two rows for a biflow record with reverse traffic); rec locates its
 * runs and variable fields. Returns the rows written; *bad_time is set when a time was out
 * of range (replaced by the receive time, counted by the caller). */
static int emit(const Layout *L, uint8_t *const *base, Py_ssize_t i, const Record *rec, const Meta *m,
                int *bad_time)
{
    int64_t export_s = m->export_s, init = m->init;
#define AT16(c) (base[c] + i * 16) /* the 16-byte columns: addresses */
#define PUT(c, type, v)                                                                                     \
    do {                                                                                                    \
        type x_ = (type)(v);                                                                                \
        memcpy(base[c] + i * (Py_ssize_t)sizeof x_, &x_, sizeof x_);                                       \
    } while (0)
    PUT(C_TIME_RECEIVED, int64_t, m->time_ms);
    PUT(C_FLOW_START, int64_t,
        guard_time(flow_time(L, rec, L->start_mode, R_START, export_s, init), m->time_ms, bad_time));
    PUT(C_FLOW_END, int64_t,
        guard_time(flow_time(L, rec, L->end_mode, R_END, export_s, init), m->time_ms, bad_time));
    memcpy(AT16(C_EXPORTER), m->exporter, 16);
    PUT(C_DOMAIN, uint32_t, m->domain);

    uint64_t rate = 0, a, b;
    switch (L->sampling_mode) {
    case S_DIRECT:
        rate = value(L, rec, R_SAMPLING);
        break;
    case S_INTERVAL: /* PSAMP (RFC 5477 8.2): N taken, then M skipped: 1 in (N+M)/N */
    case S_SIZE:     /* N taken out of a population of M */
        a = value(L, rec, R_SAMPLING_A);
        b = value(L, rec, R_SAMPLING_B);
        rate = a > 0 ? (L->sampling_mode == S_INTERVAL ? a + b : b) / a : 0;
        break;
    default:
        break;
    }
    uint32_t state = HAS(R_SAMPLER_ID) && m->nsamplers ? sampler_rate(m, value(L, rec, R_SAMPLER_ID)) : m->rate;
    PUT(C_SAMPLING_RATE, uint32_t, rate > 0 && rate <= 0xFFFFFFFFu ? rate : state);

    uint8_t direction = HAS(R_DIRECTION) ? (uint8_t)value(L, rec, R_DIRECTION) : 2;
    PUT(C_DIRECTION, uint8_t, direction < 2 ? direction : 2);
    PUT(C_IN_IF, uint32_t, GET(R_IN_IF));
    PUT(C_OUT_IF, uint32_t, GET(R_OUT_IF));
    address(L, rec, R_SRC_V4, R_SRC_V6, AT16(C_SRC_ADDR));
    address(L, rec, R_DST_V4, R_DST_V6, AT16(C_DST_ADDR));
    PUT(C_SRC_PORT, uint16_t, GET(R_SRC_PORT));

    uint8_t proto = (uint8_t)GET(R_PROTO);
    PUT(C_PROTO, uint8_t, proto);
    /* dst_port: ICMP type * 256 + code where the record is ICMP (the schema's convention) */
    int icmp_known = HAS(R_ICMP) || HAS(R_ICMP_TYPE);
    uint16_t icmp = HAS(R_ICMP) ? (uint16_t)value(L, rec, R_ICMP)
                                : (uint16_t)(((uint16_t)GET(R_ICMP_TYPE) << 8) | (uint16_t)GET(R_ICMP_CODE));
    uint16_t dport = (uint16_t)GET(R_DST_PORT);
    if (icmp_known) {
        if (!HAS(R_DST_PORT) || proto == 1 || proto == 58 || (proto == 0 && dport == 0))
            dport = icmp;
    }
    PUT(C_DST_PORT, uint16_t, dport);

    uint16_t etype;
    if (HAS(R_ETYPE)) {
        etype = (uint16_t)value(L, rec, R_ETYPE);
    } else if (HAS(R_IP_VERSION)) {
        uint8_t version = (uint8_t)value(L, rec, R_IP_VERSION);
        etype = version == 4 ? 0x0800 : version == 6 ? 0x86DD : 0;
    } else {
        etype = (uint16_t)L->etype_guess;
    }
    PUT(C_ETYPE, uint16_t, etype);
    PUT(C_TCP_FLAGS, uint16_t, GET(R_TCP_FLAGS));
    PUT(C_TOS, uint8_t, GET(R_TOS));
    PUT(C_SRC_MAC, uint64_t, GET(R_SRC_MAC));
    PUT(C_DST_MAC, uint64_t, GET(R_DST_MAC));
    PUT(C_VLAN, uint16_t, GET(R_VLAN) & 0x0FFF);
    PUT(C_PACKETS, uint64_t, GET(R_PACKETS));
    PUT(C_BYTES, uint64_t, GET(R_BYTES));
    uint8_t tunnel = (uint8_t)GET(R_TUNNEL_TYPE);
    tunnel = tunnel < 8 ? tunnel : 0;
    if (!HAS(R_TUNNEL_TYPE) && L->outer)
        tunnel = outer_tunnel(L, rec);
    PUT(C_TUNNEL_TYPE, uint8_t, tunnel);
    PUT(C_TUNNEL_ID, uint32_t, GET(R_TUNNEL_KEY) & 0xFFFFFFFFu);
    if (HAS(R_TUNNEL_SRC) || !L->outer)
        address(L, rec, R_TUNNEL_SRC, -1, AT16(C_TUNNEL_SRC));
    else
        address(L, rec, R_OUTER_SRC_V4, R_OUTER_SRC_V6, AT16(C_TUNNEL_SRC));
    if (HAS(R_TUNNEL_DST) || !L->outer)
        address(L, rec, R_TUNNEL_DST, -1, AT16(C_TUNNEL_DST));
    else
        address(L, rec, R_OUTER_DST_V4, R_OUTER_DST_V6, AT16(C_TUNNEL_DST));
    /* routing (collectors._ipfix_columns._route): IP next hop, else BGP next hop */
    if (!L->routing || (!next_hop(L, rec, R_NEXT_HOP_V4, R_NEXT_HOP_V6, AT16(C_NEXT_HOP)) &&
                        !next_hop(L, rec, R_BGP_NEXT_HOP_V4, R_BGP_NEXT_HOP_V6, AT16(C_NEXT_HOP))))
        memset(AT16(C_NEXT_HOP), 0, 16);
    PUT(C_SRC_AS, uint32_t, GET(R_SRC_AS));
    PUT(C_DST_AS, uint32_t, GET(R_DST_AS));
    PUT(C_SRC_MASK, uint8_t, L->routing ? prefix_length(L, rec, R_SRC_MASK_V4, R_SRC_MASK_V6) : 0);
    PUT(C_DST_MASK, uint8_t, L->routing ? prefix_length(L, rec, R_DST_MASK_V4, R_DST_MASK_V6) : 0);
    uint64_t point = GET(R_OBSERVATION_POINT); /* unsigned64 in the registry, a 32-bit column */
    PUT(C_OBSERVATION_POINT, uint32_t, point <= 0xFFFFFFFFu ? point : 0);
    PUT(C_BIFLOW, uint8_t, L->biflow ? 1 : 0);
    PUT(C_BIFLOW_DIRECTION, uint8_t, GET(R_BIFLOW_DIRECTION));
    /* after a NAT middlebox (collectors._ipfix_columns._post_nat): unset (0.0.0.0, ::) is :: */
    if (!L->post_nat || !next_hop(L, rec, R_POST_NAT_SRC_V4, R_POST_NAT_SRC_V6, AT16(C_POST_NAT_SRC_ADDR)))
        memset(AT16(C_POST_NAT_SRC_ADDR), 0, 16);
    if (!L->post_nat || !next_hop(L, rec, R_POST_NAT_DST_V4, R_POST_NAT_DST_V6, AT16(C_POST_NAT_DST_ADDR)))
        memset(AT16(C_POST_NAT_DST_ADDR), 0, 16);
    PUT(C_POST_NAT_SRC_PORT, uint16_t, GET(R_POST_NAT_SRC_PORT));
    PUT(C_POST_NAT_DST_PORT, uint16_t, GET(R_POST_NAT_DST_PORT));
#undef PUT
#undef AT16
    return L->biflow ? 1 + reverse_half(L, base, i, rec) : 1;
}

/* Walk one record with variable-length fields (RFC 7011 section 7): 1 and *next set if it
 * is complete inside [off, end), 0 if it is truncated. Mirrors ipfix._walk_variable. */
static int walk(const Layout *L, const uint8_t *buf, Py_ssize_t off, Py_ssize_t end, Py_ssize_t *run,
                Py_ssize_t *var_pos, Py_ssize_t *var_len, Py_ssize_t *next)
{
    Py_ssize_t p = off, nvar = L->nseg - 1;
    for (Py_ssize_t k = 0; k < nvar; k++) {
        run[k] = p;
        p += L->segments[k];
        if (p >= end)
            return 0;
        Py_ssize_t len = buf[p++];
        if (len == 255) { /* 3-byte form: 255, then a 16-bit length */
            if (end - p < 2)
                return 0;
            len = ((Py_ssize_t)buf[p] << 8) | buf[p + 1];
            p += 2;
        }
        var_pos[k] = p;
        var_len[k] = len;
        if (len > end - p)
            return 0;
        p += len;
    }
    run[nvar] = p;
    if (L->segments[nvar] > end - p)
        return 0;
    *next = p + L->segments[nvar];
    return 1;
}

static PyObject *TRUNCATED; /* "ipfix:record_truncated", the Python walker's reason */
static PyObject *BAD_TIME, *BAD_TIME_V9; /* "ipfix:time_out_of_range", "netflow9:..." */
static PyObject *ERROR, *NATIVE, *SAMPLING_RATE, *SYSTEM_INIT, *FLOW_RECORDS; /* method and attribute names */
static PyObject *SAMPLER_TABLE;

/* A domain's sampler table (bytes of (id, rate) uint64 pairs) into m; the bytes must outlive m. */
static int sampler_table(PyObject *table, Meta *m)
{
    if (!PyBytes_Check(table) || PyBytes_GET_SIZE(table) % 16) {
        PyErr_SetString(PyExc_TypeError, "a sampler table is bytes of (id, rate) uint64 pairs");
        return -1;
    }
    m->samplers = (const uint64_t *)PyBytes_AS_STRING(table);
    m->nsamplers = PyBytes_GET_SIZE(table) / 16;
    return 0;
}

/* Decode the records of one data set, buf[off:end], into the batch; 1 in *truncated when
 * a record is cut short (the walk stops there, as the Python walker does). */
static void release(Batch *self)
{
    for (int c = 0; c < NCOLS; c++)
        Py_CLEAR(self->cols[c]);
    self->cap = 0;
}

static int decode_set(Batch *batch, const uint8_t *buf, Py_ssize_t off, Py_ssize_t end, const Meta *m,
                      int *truncated, Py_ssize_t *bad_times, Py_ssize_t *records)
{
    const Layout *L = batch->layout;
    Batch *self = batch->sink ? batch->sink : batch; /* the columns written */
    if (L == NULL) {
        PyErr_SetString(PyExc_TypeError, "a sink decodes nothing itself");
        return -1;
    }
    Py_ssize_t nvar = L->nseg - 1, i = self->n, rows = L->biflow ? 2 : 1; /* rows per record, at most */
    *truncated = 0;
    *records = 0;
    if (end - off < L->min_len)
        return 0;
    /* Fixed-length records: their count is exact. With variable-length fields, only a
     * bound (each record takes at least min_len >= 1 bytes) that hostile lengths can make
     * far larger than what decodes: the buffers grow as records are decoded instead. */
    if (reserve(self, nvar == 0 ? (end - off) / L->segments[0] * rows : rows) < 0)
        return -1;
    uint8_t *base[NCOLS];
    column_bases(self, base);
    Py_ssize_t *run = L->scratch, *var_pos = run + L->nseg, *var_len = var_pos + L->nseg;
    Record rec = {buf, run, var_pos, var_len};
    int bad;
    if (nvar == 0) {
        Py_ssize_t len = L->segments[0];
        for (Py_ssize_t p = off; end - p >= len; p += len) {
            run[0] = p;
            bad = 0;
            i += emit(L, base, i, &rec, m, &bad);
            *bad_times += bad;
            ++*records;
        }
    } else {
        Py_ssize_t p = off, next;
        while (end - p >= L->min_len) {
            if (!walk(L, buf, p, end, run, var_pos, var_len, &next)) {
                *truncated = 1;
                break;
            }
            if (i + rows > self->cap) {
                self->n = i;
                if (reserve(self, rows) < 0)
                    return -1;
                column_bases(self, base);
            }
            bad = 0;
            i += emit(L, base, i, &rec, m, &bad);
            *bad_times += bad;
            ++*records;
            p = next;
        }
    }
    self->n = i;
    if (i == 0) /* nothing decoded: hold no buffers for a template with no pending records */
        release(self);
    return 0;
}

static int count_truncated(PyObject *stats)
{
    PyObject *r = PyObject_CallMethodOneArg(stats, ERROR, TRUNCATED);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* stats.error("<ipfix|netflow9>:time_out_of_range", n) */
static int count_bad_times(PyObject *stats, long version, Py_ssize_t n)
{
    if (n == 0)
        return 0;
    PyObject *count = PyLong_FromSsize_t(n);
    if (count == NULL)
        return -1;
    PyObject *args[3] = {stats, version == 9 ? BAD_TIME_V9 : BAD_TIME, count};
    PyObject *r = PyObject_VectorcallMethod(ERROR, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(count);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* decode(buf, off, end, export_s, time_ms, exporter, domain, sampling_rate, system_init, stats)
 * -> number of records appended; a truncated record calls stats.error(reason). */
static PyObject *Batch_decode(Batch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "decode() takes 12 arguments");
        return NULL;
    }
    long version = PyLong_AsLong(args[10]);
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    long long export_s = PyLong_AsLongLong(args[3]);
    long long time_ms = PyLong_AsLongLong(args[4]);
    unsigned long domain = PyLong_AsUnsignedLong(args[6]);
    unsigned long rate = PyLong_AsUnsignedLong(args[7]);
    long long init = PyLong_AsLongLong(args[8]);
    if (PyErr_Occurred())
        return NULL;
    if (domain > 0xFFFFFFFFul || rate > 0xFFFFFFFFul || export_s < 0 || export_s > 0xFFFFFFFFll) {
        PyErr_SetString(PyExc_OverflowError, "domain, sampling rate or export time out of range");
        return NULL;
    }
    char *exporter;
    Py_ssize_t exporter_len;
    if (PyBytes_AsStringAndSize(args[5], &exporter, &exporter_len) < 0)
        return NULL;
    if (exporter_len != 16) {
        PyErr_SetString(PyExc_ValueError, "the exporter address is 16 bytes");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (off < 0 || end < off || end > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "set bounds outside the buffer");
        return NULL;
    }
    Meta m = {export_s, time_ms, init, (const uint8_t *)exporter, (uint32_t)domain, (uint32_t)rate, NULL, 0};
    if (sampler_table(args[11], &m) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t bad_times = 0, records;
    int truncated,
        rc = decode_set(self, (const uint8_t *)view.buf, off, end, &m, &truncated, &bad_times, &records);
    PyBuffer_Release(&view);
    if (rc < 0 || (truncated && count_truncated(args[9]) < 0) || count_bad_times(args[9], version, bad_times) < 0)
        return NULL;
    return PyLong_FromSsize_t(records); /* records, not rows (a biflow record may make two) */
}

/* take() -> (n, (bytearray per column...)): the decoded columns; the batch starts empty. */
static PyObject *Batch_take(Batch *self, PyObject *unused)
{
    PyObject *cols = PyTuple_New(NCOLS);
    if (cols == NULL)
        return NULL;
    for (int c = 0; c < NCOLS; c++) {
        PyObject *col = self->cols[c];
        if (col == NULL) {
            col = PyByteArray_FromStringAndSize(NULL, 0);
        } else if (PyByteArray_Resize(col, self->n * COLS[c].width) < 0) {
            Py_DECREF(cols);
            return NULL;
        }
        self->cols[c] = NULL;
        if (col == NULL) {
            Py_DECREF(cols);
            return NULL;
        }
        PyTuple_SET_ITEM(cols, c, col);
    }
    PyObject *out = Py_BuildValue("(nN)", self->n, cols);
    self->hint = self->n < (1 << 16) ? self->n : (1 << 16);
    self->n = self->cap = 0;
    return out;
}

/* take_groups(groups) -> (n, (bytearray per group...)): the decoded columns of each group
 * (a tuple of column indexes of one width) one after the other, so that numpy reads a group
 * as one (len(group), n) array; the batch starts empty. */
static PyObject *Batch_take_groups(Batch *self, PyObject *groups)
{
    if (!PyTuple_Check(groups)) {
        PyErr_SetString(PyExc_TypeError, "take_groups() takes a tuple of tuples of column indexes");
        return NULL;
    }
    Py_ssize_t ngroups = PyTuple_GET_SIZE(groups), n = self->n;
    PyObject *out = PyTuple_New(ngroups);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t g = 0; g < ngroups; g++) {
        PyObject *group = PyTuple_GET_ITEM(groups, g);
        if (!PyTuple_Check(group) || PyTuple_GET_SIZE(group) == 0) {
            PyErr_SetString(PyExc_TypeError, "a group is a non-empty tuple of column indexes");
            goto fail;
        }
        Py_ssize_t k = PyTuple_GET_SIZE(group), width = 0;
        for (Py_ssize_t j = 0; j < k; j++) {
            long c = PyLong_AsLong(PyTuple_GET_ITEM(group, j));
            if (c < 0 || c >= NCOLS || (j && COLS[c].width != width)) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "a group's columns are known and of one width");
                goto fail;
            }
            width = COLS[c].width;
        }
        PyObject *buf = PyByteArray_FromStringAndSize(NULL, k * n * width);
        if (buf == NULL)
            goto fail;
        char *p = PyByteArray_AS_STRING(buf);
        for (Py_ssize_t j = 0; j < k && n; j++) {
            PyObject *col = self->cols[PyLong_AsLong(PyTuple_GET_ITEM(group, j))];
            memcpy(p + j * n * width, PyByteArray_AS_STRING(col), (size_t)(n * width));
        }
        PyTuple_SET_ITEM(out, g, buf);
    }
    PyObject *result = Py_BuildValue("(nN)", n, out);
    if (result == NULL)
        return NULL;
    self->hint = n < (1 << 16) ? n : (1 << 16);
    release(self); /* the next records get fresh buffers (hint-sized), as after take() */
    self->n = 0;
    return result;
fail:
    Py_DECREF(out);
    return NULL;
}

static Py_ssize_t Batch_len(Batch *self)
{
    return self->sink ? self->sink->n : self->n; /* the rows in the columns it writes */
}

static PyMethodDef Batch_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))Batch_decode, METH_FASTCALL,
     "decode(buf, off, end, export_s, time_ms, exporter, domain, sampling_rate, system_init, stats, version,"
     " sampler_table) -> records"},
    {"take", (PyCFunction)Batch_take, METH_NOARGS, "take() -> (n, columns): the decoded columns."},
    {"take_groups", (PyCFunction)Batch_take_groups, METH_O,
     "take_groups(groups) -> (n, buffers): the columns of each group back to back, one buffer per group."},
    {NULL},
};

static PyMemberDef Batch_members[] = {
    {"sink", T_OBJECT, offsetof(Batch, sink), READONLY, "the Batch whose columns the records go to, or None"},
    {NULL},
};

static PySequenceMethods Batch_as_sequence = {.sq_length = (lenfunc)Batch_len};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "collectors._native_ipfix.Batch",
    .tp_basicsize = sizeof(Batch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Batch(layout, sink=None): decoded records of one template, as growable columns (a sink's"
              " when given; Batch(None) is a sink).",
    .tp_new = Batch_new,
    .tp_dealloc = (destructor)Batch_dealloc,
    .tp_traverse = (traverseproc)Batch_traverse,
    .tp_methods = Batch_methods,
    .tp_members = Batch_members,
    .tp_as_sequence = &Batch_as_sequence,
};

/* --- whole messages ----------------------------------------------------------------- */

#define STACK_SETS 64 /* data sets of a message kept on the stack; more: on the heap */

typedef struct {
    PyObject *template, *batch; /* strong references */
    Py_ssize_t off, end;
} DataSet;

static inline uint32_t be16(const uint8_t *p)
{
    return ((uint32_t)p[0] << 8) | p[1];
}

static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The template of data set `tid` if its records can be decoded here: a Template whose
 * `native` is a Batch that the pending queue does not hold a Python queue for. 0 with
 * *template NULL: not here (the Python walk takes the message); -1: an exception. */
static int find_template(PyObject *templates, PyObject *pending, PyObject *session, PyObject *domain,
                         uint32_t tid, DataSet *set)
{
    set->template = set->batch = NULL;
    PyObject *id = PyLong_FromUnsignedLong(tid);
    if (id == NULL)
        return -1;
    PyObject *key = PyTuple_Pack(3, session, domain, id);
    Py_DECREF(id);
    if (key == NULL)
        return -1;
    PyObject *template = PyDict_GetItemWithError(templates, key); /* borrowed */
    Py_DECREF(key);
    if (template == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *batch = PyObject_GetAttr(template, NATIVE);
    if (batch == NULL)
        return -1;
    if (!Py_IS_TYPE(batch, &BatchType)) { /* not compiled yet, or options / PSAMP records */
        Py_DECREF(batch);
        return 0;
    }
    PyObject *queued = PyDict_GetItemWithError(pending, template);
    if (queued != NULL && queued != batch) { /* queued by the Python path: keep one queue */
        Py_DECREF(batch);
        return 0;
    }
    if (queued == NULL && PyErr_Occurred()) {
        Py_DECREF(batch);
        return -1;
    }
    Py_INCREF(template);
    set->template = template;
    set->batch = batch;
    return 0;
}

/* Header fields of an IPFIX (version 10) or NetFlow v9 message; 0 if it is not one the
 * fast path takes (short, wrong version, IPFIX length not the datagram's). */
typedef struct {
    uint32_t domain, sequence;
    int64_t export_s, init; /* init: v9's boot time from sysUptime, -1 for IPFIX */
    Py_ssize_t first_set;
} Header;

static int header(const uint8_t *buf, Py_ssize_t len, long version, Header *h)
{
    if (version == 10) {
        if (len < 16 || be16(buf) != 10 || (Py_ssize_t)be16(buf + 2) != len)
            return 0;
        h->export_s = be32(buf + 4);
        h->sequence = be32(buf + 8);
        h->domain = be32(buf + 12);
        h->init = -1;
        h->first_set = 16;
        return 1;
    }
    if (len < 20 || be16(buf) != 9)
        return 0;
    h->export_s = be32(buf + 8);
    h->init = h->export_s * 1000 - (int64_t)be32(buf + 4); /* unix_secs * 1000 - sysUptime */
    h->sequence = be32(buf + 12);
    h->domain = be32(buf + 16);
    h->first_set = 20;
    return 1;
}

/* Every set a data set of a template decoded here (first pass, nothing decoded yet);
 * the count of sets, 0 when the Python walk must take the message, -1 on an exception. */
static Py_ssize_t data_sets(const uint8_t *buf, Py_ssize_t len, long version, Py_ssize_t off, PyObject *templates,
                            PyObject *pending, PyObject *session, PyObject *domain, DataSet *sets)
{
    Py_ssize_t nsets = 0;
    uint32_t last_tid = 0;
    while (off < len) {
        if (len - off < 4) /* IPFIX counts trailing bytes; v9 ignores them (padding) */
            return version == 9 ? nsets : 0;
        uint32_t tid = be16(buf + off), set_len = be16(buf + off + 2);
        if (set_len < 4 || set_len > len - off || tid < 256)
            return 0; /* errors, template sets, reserved ids: counted by the Python walk */
        DataSet *set = &sets[nsets];
        if (nsets > 0 && tid == last_tid) { /* OVS: one record per set, many sets */
            *set = sets[nsets - 1];
            Py_INCREF(set->template);
            Py_INCREF(set->batch);
        } else if (find_template(templates, pending, session, domain, tid, set) < 0) {
            return -1;
        } else if (set->template == NULL) {
            return 0;
        }
        set->off = off + 4;
        set->end = off + set_len;
        nsets++;
        last_tid = tid;
        off += set_len;
    }
    return nsets;
}

static int domain_state(PyObject *state, const Header *h, long version, Meta *m)
{
    PyObject *table = PyObject_GetAttr(state, SAMPLER_TABLE);
    if (table == NULL)
        return -1;
    int rc = sampler_table(table, m); /* (the domain object keeps the bytes alive) */
    Py_DECREF(table);
    if (rc < 0)
        return -1;
    PyObject *rate = PyObject_GetAttr(state, SAMPLING_RATE);
    if (rate == NULL)
        return -1;
    unsigned long r = PyLong_AsUnsignedLong(rate);
    Py_DECREF(rate);
    if (r == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (r > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_OverflowError, "sampling rate out of range");
        return -1;
    }
    m->rate = (uint32_t)r;
    if (version == 9) { /* the Python walk sets it per packet too */
        PyObject *init = PyLong_FromLongLong(h->init);
        if (init == NULL || PyObject_SetAttr(state, SYSTEM_INIT, init) < 0) {
            Py_XDECREF(init);
            return -1;
        }
        Py_DECREF(init);
        m->init = h->init;
        return 0;
    }
    PyObject *init = PyObject_GetAttr(state, SYSTEM_INIT);
    if (init == NULL)
        return -1;
    m->init = PyLong_AsLongLong(init);
    Py_DECREF(init);
    return m->init == -1 && PyErr_Occurred() ? -1 : 0;
}

/* collectors._sequence.SequenceTracker.check for a stream it already tracks, inline (its
 * `expected` dict is meant for that): in order, the number advances; a gap, a late message or
 * a reset is counted in the exporter's stats as ExporterStats.sequence() counts it (its
 * `sequences` and `fresh_sequences` Counters, `sequence_gaps`), with no Python call: with
 * hundreds of exporters and a kernel dropping datagrams, almost every message starts a gap.
 * 1 if done, 0 if the tracker must look at it (a new stream, an unexpected value), -1 on an
 * exception. Keys (protocol, unit, kind): ("ipfix", "records", ...) or ("netflow9", "datagrams", ...). */
#define LATE_WINDOW (1 << 16) /* collectors._sequence.LATE_WINDOW */
enum { K_MISSING, K_LATE, K_RESET, K_KINDS };
static PyObject *SEQ_KEYS[2][K_KINDS]; /* [version 9, version 10][kind] */
static PyObject *SEQUENCES, *FRESH_SEQUENCES, *SEQUENCE_GAPS, *FRESH;

static int add_to(PyObject *dict, PyObject *key, unsigned long long n)
{
    if (!PyDict_Check(dict)) {
        PyErr_SetString(PyExc_TypeError, "stats sequence counters must be dicts");
        return -1;
    }
    PyObject *old = PyDict_GetItemWithError(dict, key); /* borrowed */
    if (old == NULL && PyErr_Occurred())
        return -1;
    PyObject *more = PyLong_FromUnsignedLongLong(n);
    PyObject *sum = more && old ? PyNumber_Add(old, more) : Py_XNewRef(more);
    Py_XDECREF(more);
    if (sum == NULL)
        return -1;
    int rc = PyDict_SetItem(dict, key, sum);
    Py_DECREF(sum);
    return rc;
}

static int add_attr(PyObject *obj, PyObject *name, unsigned long long n)
{
    PyObject *old = PyObject_GetAttr(obj, name);
    if (old == NULL)
        return -1;
    PyObject *more = PyLong_FromUnsignedLongLong(n);
    PyObject *sum = more ? PyNumber_Add(old, more) : NULL;
    Py_DECREF(old);
    Py_XDECREF(more);
    if (sum == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return rc;
}

static int count_finding(PyObject *stats, long version, int kind, unsigned long long n)
{
    PyObject *key = SEQ_KEYS[version == 10][kind];
    PyObject *total = PyObject_GetAttr(stats, SEQUENCES);
    if (total == NULL)
        return -1;
    int rc = add_to(total, key, n);
    Py_DECREF(total);
    if (rc < 0)
        return -1;
    PyObject *fresh = PyObject_GetAttr(stats, FRESH_SEQUENCES);
    if (fresh == NULL)
        return -1;
    rc = add_to(fresh, key, n);
    Py_DECREF(fresh);
    if (rc < 0)
        return -1;
    return kind == K_MISSING ? add_attr(stats, SEQUENCE_GAPS, 1) : 0;
}

static int sequence_check(PyObject *expected, PyObject *key, uint32_t seq, uint32_t advance, PyObject *stats,
                          long version)
{
    PyObject *want = PyDict_GetItemWithError(expected, key);
    if (want == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyLong_CheckExact(want))
        return 0;
    unsigned long v = PyLong_AsUnsignedLong(want);
    if (v == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (v > 0xFFFFFFFFul)
        return 0;
    if (v != seq) {
        int64_t diff = (int64_t)(int32_t)(seq - (uint32_t)v); /* signed distance, wrapping at 2^32 */
        int rc;
        if (diff > 0) {
            rc = count_finding(stats, version, K_MISSING, (unsigned long long)diff);
        } else if (-diff <= LATE_WINDOW) { /* the expected number stays where it was */
            return count_finding(stats, version, K_LATE, advance ? advance : 1) < 0 ? -1 : 1;
        } else {
            rc = count_finding(stats, version, K_RESET, 1);
        }
        if (rc < 0)
            return -1;
    }
    PyObject *next = PyLong_FromUnsignedLong((uint32_t)(seq + advance));
    if (next == NULL)
        return -1;
    int rc = PyDict_SetItem(expected, key, next);
    Py_DECREF(next);
    return rc < 0 ? -1 : 1;
}


/* feed(buf, version, session, exporter, time_ms, templates, domains, pending, expected, stats)
 * decodes a message whose sets are all data sets of templates decoded here, adding to
 * stats.flow_records. Returns None when the message needs the Python walk instead
 * (template sets, options data, unknown templates, anything malformed: nothing was
 * decoded then), True when its sequence number was judged here (a stream the tracker knows:
 * advanced in `expected`, the sequence tracker's dict, findings counted in stats), else
 * (domain, sequence, advance) for the tracker to judge (a new stream): NetFlow v9 sequence numbers count packets (advance 1), IPFIX ones
 * data records (advance: the records of the message). */
static PyObject *feed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "feed() takes 10 arguments");
        return NULL;
    }
    long version = PyLong_AsLong(args[1]);
    if (version != 9 && version != 10) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "feed(): version 9 or 10");
        return NULL;
    }
    PyObject *session = args[2], *templates = args[5], *domains = args[6], *pending = args[7], *expected = args[8],
             *stats = args[9];
    long long time_ms = PyLong_AsLongLong(args[4]);
    if (time_ms == -1 && PyErr_Occurred())
        return NULL;
    if (!PyDict_Check(templates) || !PyDict_Check(domains) || !PyDict_Check(pending) || !PyDict_Check(expected) ||
        !PyBytes_Check(args[3]) ||
        PyBytes_GET_SIZE(args[3]) != 16) {
        PyErr_SetString(PyExc_TypeError, "feed(): dicts of templates, domains, pending, a 16-byte exporter");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *buf = (const uint8_t *)view.buf;
    PyObject *result = NULL, *domain = NULL, *key = NULL;
    DataSet stack[STACK_SETS], *sets = NULL;
    Py_ssize_t nsets = 0;
    Header h;
    if (!header(buf, view.len, version, &h)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    domain = PyLong_FromUnsignedLong(h.domain);
    key = domain ? PyTuple_Pack(2, session, domain) : NULL;
    if (key == NULL)
        goto done;
    PyObject *state = PyDict_GetItemWithError(domains, key); /* borrowed */
    if (state == NULL) { /* a new domain: the Python walk creates its state */
        if (!PyErr_Occurred())
            result = Py_NewRef(Py_None);
        goto done;
    }
    Py_INCREF(state);
    Py_ssize_t most = (view.len - h.first_set) / 4; /* a set has at least its 4-byte header */
    sets = most <= STACK_SETS ? stack : PyMem_New(DataSet, most);
    if (sets == NULL) {
        Py_DECREF(state);
        PyErr_NoMemory();
        goto done;
    }
    nsets = data_sets(buf, view.len, version, h.first_set, templates, pending, session, domain, sets);
    if (nsets <= 0) { /* -1: an exception; 0 (or no sets at all): the Python walk */
        nsets = 0;
        Py_DECREF(state);
        if (!PyErr_Occurred())
            result = Py_NewRef(Py_None);
        goto done;
    }
    Meta m = {h.export_s, time_ms, -1, (const uint8_t *)PyBytes_AS_STRING(args[3]), h.domain, 0};
    int rc = domain_state(state, &h, version, &m);
    Py_DECREF(state);
    if (rc < 0)
        goto done;
    Py_ssize_t records = 0;
    for (Py_ssize_t i = 0; i < nsets; i++) {
        Batch *batch = (Batch *)sets[i].batch, *out = batch->sink ? batch->sink : batch;
        Py_ssize_t before = out->n;
        int truncated;
        Py_ssize_t bad_times = 0, set_records;
        if (decode_set(batch, buf, sets[i].off, sets[i].end, &m, &truncated, &bad_times, &set_records) < 0 ||
            (truncated && count_truncated(stats) < 0) || count_bad_times(stats, version, bad_times) < 0)
            goto done;
        records += set_records;
        if (out->n > before) {
            int queued = PyDict_Contains(pending, sets[i].template);
            if (queued < 0 || (!queued && PyDict_SetItem(pending, sets[i].template, sets[i].batch) < 0))
                goto done;
        }
    }
    if (add_attr(stats, FLOW_RECORDS, (unsigned long long)records) < 0)
        goto done;
    int judged = sequence_check(expected, key, h.sequence, version == 9 ? 1 : (uint32_t)records, stats, version);
    if (judged < 0)
        goto done;
    result = judged ? Py_NewRef(Py_True)
                      : Py_BuildValue("(kkn)", (unsigned long)h.domain, (unsigned long)h.sequence,
                                      version == 9 ? (Py_ssize_t)1 : records);
done:
    for (Py_ssize_t i = 0; i < nsets; i++) {
        Py_DECREF(sets[i].template);
        Py_DECREF(sets[i].batch);
    }
    if (sets != stack)
        PyMem_Free(sets);
    Py_XDECREF(key);
    Py_XDECREF(domain);
    PyBuffer_Release(&view);
    return result;
}

/* out[key] += n (a missing key counts from 0), for the Counters of collectors.decoder.Decoded. */
static int add_object(PyObject *out, PyObject *key, PyObject *n)
{
    PyObject *old = PyDict_GetItemWithError(out, key); /* borrowed */
    if (old == NULL && PyErr_Occurred())
        return -1;
    PyObject *sum = old ? PyNumber_Add(old, n) : Py_NewRef(n);
    if (sum == NULL)
        return -1;
    int rc = PyDict_SetItem(out, key, sum);
    Py_DECREF(sum);
    return rc;
}

/* One exporter's stats.<attr> Counter into out, keyed (exporter, reason) or, with spread, by the
 * exporter followed by the items of its tuple key (exporter, protocol, unit, kind); then cleared. */
static int drain_one(PyObject *stats, PyObject *attr, PyObject *exporter, PyObject *out, int spread)
{
    PyObject *fresh = PyObject_GetAttr(stats, attr);
    if (fresh == NULL)
        return -1;
    if (!PyDict_Check(fresh)) {
        Py_DECREF(fresh);
        PyErr_SetString(PyExc_TypeError, "stats fresh counters must be dicts");
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int rc = 0;
    while (rc == 0 && PyDict_Next(fresh, &pos, &k, &v)) {
        PyObject *key;
        if (spread) {
            if (!PyTuple_Check(k)) {
                PyErr_SetString(PyExc_TypeError, "sequence findings are keyed by tuples");
                rc = -1;
                break;
            }
            Py_ssize_t n = PyTuple_GET_SIZE(k);
            key = PyTuple_New(n + 1);
            if (key != NULL) {
                PyTuple_SET_ITEM(key, 0, Py_NewRef(exporter));
                for (Py_ssize_t i = 0; i < n; i++)
                    PyTuple_SET_ITEM(key, i + 1, Py_NewRef(PyTuple_GET_ITEM(k, i)));
            }
        } else {
            key = PyTuple_Pack(2, exporter, k);
        }
        if (key == NULL) {
            rc = -1;
            break;
        }
        rc = add_object(out, key, v);
        Py_DECREF(key);
    }
    if (rc == 0)
        PyDict_Clear(fresh);
    Py_DECREF(fresh);
    return rc;
}

/* drain(touched, stats, errors, sequences): collectors.decoder.Decoder.flush's loop over the
 * exporters a flush touched, in C (hundreds of them at every flush while the kernel drops). */
static PyObject *drain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_Check(args[1]) || !PyDict_Check(args[2]) || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "drain(touched, stats, errors, sequences): an iterable and three dicts");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(args[0]);
    if (it == NULL)
        return NULL;
    PyObject *exporter;
    while ((exporter = PyIter_Next(it)) != NULL) {
        PyObject *stats = PyDict_GetItemWithError(args[1], exporter); /* borrowed */
        int rc = -1;
        if (stats == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, exporter);
        } else if (drain_one(stats, FRESH, exporter, args[2], 0) == 0) {
            rc = drain_one(stats, FRESH_SEQUENCES, exporter, args[3], 1);
        }
        Py_DECREF(exporter);
        if (rc < 0) {
            Py_DECREF(it);
            return NULL;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))feed, METH_FASTCALL,
     "feed(buf, version, session, exporter, time_ms, templates, domains, pending, expected, stats)\n"
     "-> None (the Python walk must take the message), True, or (domain, sequence, advance)."},
    {"drain", (PyCFunction)(void (*)(void))drain, METH_FASTCALL,
     "drain(touched, stats, errors, sequences): each touched exporter's fresh errors and sequence\n"
     "findings into errors[(exporter, reason)] and sequences[(exporter, protocol, unit, kind)], cleared."},
    {NULL},
};

/* --- module ------------------------------------------------------------------------- */

static int add_tables(PyObject *m)
{
    PyObject *roles = PyTuple_New(NROLES), *cols = PyTuple_New(NCOLS);
    if (roles == NULL || cols == NULL)
        goto fail;
    for (int r = 0; r < NROLES; r++) {
        PyObject *s = PyUnicode_FromString(ROLE_NAMES[r]);
        if (s == NULL)
            goto fail;
        PyTuple_SET_ITEM(roles, r, s);
    }
    for (int c = 0; c < NCOLS; c++) {
        PyObject *t = Py_BuildValue("(ss)", COLS[c].name, COLS[c].dtype);
        if (t == NULL)
            goto fail;
        PyTuple_SET_ITEM(cols, c, t);
    }
    if (PyModule_AddObject(m, "ROLES", roles) < 0)
        goto fail;
    roles = NULL;
    if (PyModule_AddObject(m, "COLUMNS", cols) < 0)
        goto fail;
    return 0;
fail:
    Py_XDECREF(roles);
    Py_XDECREF(cols);
    return -1;
}

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "collectors._native_ipfix",
    .m_doc = "IPFIX / NetFlow v9 data sets decoded into flow columns (see collectors/_native/ipfix.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__native_ipfix(void)
{
    if (PyType_Ready(&LayoutType) < 0 || PyType_Ready(&BatchType) < 0)
        return NULL;
    TRUNCATED = PyUnicode_InternFromString("ipfix:record_truncated");
    BAD_TIME = PyUnicode_InternFromString("ipfix:time_out_of_range");
    BAD_TIME_V9 = PyUnicode_InternFromString("netflow9:time_out_of_range");
    if (BAD_TIME == NULL || BAD_TIME_V9 == NULL)
        return NULL;
    ERROR = PyUnicode_InternFromString("error");
    NATIVE = PyUnicode_InternFromString("native");
    SAMPLING_RATE = PyUnicode_InternFromString("sampling_rate");
    SYSTEM_INIT = PyUnicode_InternFromString("system_init");
    FLOW_RECORDS = PyUnicode_InternFromString("flow_records");
    SAMPLER_TABLE = PyUnicode_InternFromString("sampler_table");
    if (SAMPLER_TABLE == NULL)
        return NULL;
    SEQUENCES = PyUnicode_InternFromString("sequences");
    FRESH_SEQUENCES = PyUnicode_InternFromString("fresh_sequences");
    SEQUENCE_GAPS = PyUnicode_InternFromString("sequence_gaps");
    FRESH = PyUnicode_InternFromString("fresh");
    if (SEQUENCES == NULL || FRESH_SEQUENCES == NULL || SEQUENCE_GAPS == NULL || FRESH == NULL)
        return NULL;
    static const char *const KINDS[K_KINDS] = {"missing", "late", "reset"};
    for (int k = 0; k < K_KINDS; k++) {
        SEQ_KEYS[0][k] = Py_BuildValue("(sss)", "netflow9", "datagrams", KINDS[k]);
        SEQ_KEYS[1][k] = Py_BuildValue("(sss)", "ipfix", "records", KINDS[k]);
        if (SEQ_KEYS[0][k] == NULL || SEQ_KEYS[1][k] == NULL)
            return NULL;
    }
    if (TRUNCATED == NULL || ERROR == NULL || NATIVE == NULL || SAMPLING_RATE == NULL || SYSTEM_INIT == NULL ||
        FLOW_RECORDS == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    if (add_tables(m) < 0 || PyModule_AddIntConstant(m, "T_EXPORT", T_EXPORT) < 0 ||
        PyModule_AddIntConstant(m, "T_MS", T_MS) < 0 || PyModule_AddIntConstant(m, "T_S", T_S) < 0 ||
        PyModule_AddIntConstant(m, "T_NTP", T_NTP) < 0 || PyModule_AddIntConstant(m, "T_DELTA_US", T_DELTA_US) < 0 ||
        PyModule_AddIntConstant(m, "T_UPTIME", T_UPTIME) < 0 || PyModule_AddIntConstant(m, "S_NONE", S_NONE) < 0 ||
        PyModule_AddIntConstant(m, "S_DIRECT", S_DIRECT) < 0 ||
        PyModule_AddIntConstant(m, "S_INTERVAL", S_INTERVAL) < 0 ||
        PyModule_AddIntConstant(m, "S_SIZE", S_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&LayoutType);
    if (PyModule_AddObject(m, "Layout", (PyObject *)&LayoutType) < 0) {
        Py_DECREF(&LayoutType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&BatchType);
    if (PyModule_AddObject(m, "Batch", (PyObject *)&BatchType) < 0) {
        Py_DECREF(&BatchType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
