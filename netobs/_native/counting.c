/* netobs._native_counting: the counting model's per-record columns in one pass over a batch.
 *
 * apply(arrays, consts) fills the output arrays given in `arrays` (see ARG_* below for the order)
 * from the batch's columns, the per-exporter facts and the lookup tables that netobs/observations.py
 * builds once. It computes exactly what the numpy reference in netobs/observations.py computes
 * (decide(), roles(), event_times(), _observers()): the tests compare the two on random batches.
 * Every array is a C-contiguous buffer of the item size named below; optional inputs may be None.
 * The GIL is released while rows are processed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

enum {
    /* per row, inputs */
    ARG_EXP, /* int64 exporter code (index into the per-exporter arrays) */
    ARG_DIRECTION, /* int8: 0 ingress, 1 egress, 2 other */
    ARG_SRC_NODE, ARG_DST_NODE, ARG_SRC_CENTER, ARG_DST_CENTER, /* int64 codes, 0 = unknown */
    ARG_SPORT, ARG_DPORT, /* uint16 */
    ARG_PROTO, /* uint8 */
    ARG_FLAGS, /* uint16 or None */
    ARG_PACKETS, /* uint64 or None */
    ARG_BIFLOW, ARG_BIFLOW_DIR, /* uint8 or None */
    ARG_SRC_LISTEN, ARG_DST_LISTEN, /* uint8 (bool) or None */
    ARG_RECV, ARG_END, ARG_START, /* int64 ms or None */
    /* per exporter code */
    ARG_E_NODE, ARG_E_CENTER, /* int64 codes in the same spaces as the row codes */
    ARG_DUAL, ARG_FORCE, ARG_SECONDARY, ARG_OBSERVER, ARG_OBSERVER_BI, /* uint8 */
    /* per node / center code */
    ARG_NODE_COVERED, ARG_CENTER_DEVICES, /* uint8 */
    /* lookup tables */
    ARG_DECISIONS, /* int8[1 << 14] */
    ARG_COUNTING, /* uint8[reasons] */
    ARG_RANK, /* uint8[65536] */
    ARG_PAIR, /* int16[25] */
    ARG_ECHO_REQUEST, ARG_ECHO_REPLY, /* uint8[256] */
    /* outputs, per row */
    OUT_REASON, /* int32: the dictionary indices of the string columns, as Arrow takes them */
    OUT_COUNTED, /* uint8 */
    OUT_INITIATOR, OUT_METHOD, /* int32 */
    OUT_OBSERVER, /* int32 */
    OUT_EVENT_START, OUT_EVENT_END, /* int64 */
    OUT_REASON_COUNTS, /* int64[reasons] */
    N_ARGS
};

static const Py_ssize_t ITEMSIZE[N_ARGS] = {
    8, 1, 4, 4, 4, 4, 2, 2, 1, 2, 8, 1, 1, 1, 1, 8, 8, 8,
    8, 8, 1, 1, 1, 1, 1,
    1, 1,
    1, 1, 1, 2, 1, 1,
    4, 1, 4, 4, 4, 8, 8, 8,
};

/* Which arguments are per row (length n), may be None, and are written. */
static int per_row(int i) {
    return (i <= ARG_START) || (i >= OUT_REASON && i <= OUT_EVENT_END);
}
static int optional(int i) {
    return i == ARG_FLAGS || i == ARG_PACKETS || i == ARG_BIFLOW || i == ARG_BIFLOW_DIR || i == ARG_SRC_LISTEN ||
           i == ARG_DST_LISTEN || i == ARG_RECV || i == ARG_END || i == ARG_START;
}
static int writable(int i) { return i >= OUT_REASON; }

typedef struct {
    int64_t now, max_lag, max_ahead, max_span;
    int lower, service, synack, synonly, icmp, biflow;
} Consts;

#define GET(T, i) ((const T *)bufs[i].buf)
#define PUT(T, i) ((T *)bufs[i].buf)
#define HAS(i) (bufs[i].buf != NULL)

static void run(Py_buffer *bufs, Py_ssize_t n, const Consts *c) {
    const int64_t *exp = GET(int64_t, ARG_EXP);
    const int8_t *direction = GET(int8_t, ARG_DIRECTION);
    /* int32: the codes as the enrichment has them, no widening copy per batch */
    const int32_t *sn = GET(int32_t, ARG_SRC_NODE), *dn = GET(int32_t, ARG_DST_NODE);
    const int32_t *sc = GET(int32_t, ARG_SRC_CENTER), *dc = GET(int32_t, ARG_DST_CENTER);
    const uint16_t *sp = GET(uint16_t, ARG_SPORT), *dp = GET(uint16_t, ARG_DPORT);
    const uint8_t *proto = GET(uint8_t, ARG_PROTO);
    const uint16_t *flags = GET(uint16_t, ARG_FLAGS);
    const uint64_t *packets = GET(uint64_t, ARG_PACKETS);
    const uint8_t *bif = GET(uint8_t, ARG_BIFLOW), *bdir = GET(uint8_t, ARG_BIFLOW_DIR);
    const uint8_t *slisten = GET(uint8_t, ARG_SRC_LISTEN), *dlisten = GET(uint8_t, ARG_DST_LISTEN);
    const int64_t *recv = GET(int64_t, ARG_RECV), *end = GET(int64_t, ARG_END), *start = GET(int64_t, ARG_START);
    const int64_t *e_node = GET(int64_t, ARG_E_NODE), *e_center = GET(int64_t, ARG_E_CENTER);
    const uint8_t *dual = GET(uint8_t, ARG_DUAL), *force = GET(uint8_t, ARG_FORCE);
    const uint8_t *secondary = GET(uint8_t, ARG_SECONDARY);
    const uint8_t *observer = GET(uint8_t, ARG_OBSERVER), *observer_bi = GET(uint8_t, ARG_OBSERVER_BI);
    const uint8_t *covered = GET(uint8_t, ARG_NODE_COVERED), *devices = GET(uint8_t, ARG_CENTER_DEVICES);
    const int8_t *decisions = GET(int8_t, ARG_DECISIONS);
    const uint8_t *counting = GET(uint8_t, ARG_COUNTING);
    const uint8_t *rank = GET(uint8_t, ARG_RANK);
    const int16_t *pair = GET(int16_t, ARG_PAIR);
    const uint8_t *echo_req = GET(uint8_t, ARG_ECHO_REQUEST), *echo_rep = GET(uint8_t, ARG_ECHO_REPLY);
    int32_t *o_reason = PUT(int32_t, OUT_REASON);
    uint8_t *o_counted = PUT(uint8_t, OUT_COUNTED);
    int32_t *o_who = PUT(int32_t, OUT_INITIATOR), *o_how = PUT(int32_t, OUT_METHOD);
    int32_t *o_observer = PUT(int32_t, OUT_OBSERVER);
    int64_t *o_es = PUT(int64_t, OUT_EVENT_START), *o_ee = PUT(int64_t, OUT_EVENT_END);
    int64_t *o_counts = PUT(int64_t, OUT_REASON_COUNTS);
    const int listening = HAS(ARG_SRC_LISTEN) && HAS(ARG_DST_LISTEN);

    for (Py_ssize_t i = 0; i < n; i++) {
        /* ---- the counting decision (decide(): 14 bits of facts → a reason) ---- */
        const int64_t e = exp[i];
        const int64_t en = e_node[e], ec = e_center[e];
        const int64_t s_n = sn[i], d_n = dn[i], s_c = sc[i], d_c = dc[i];
        unsigned state = force[e] & 3u;
        state |= (unsigned)(dual[e] && direction[i] == 1) << 2;
        state |= (unsigned)(en != 0) << 3;
        state |= (unsigned)(en == s_n && s_n != 0) << 4;
        state |= (unsigned)(en == d_n && d_n != 0) << 5;
        state |= (unsigned)(covered[s_n] != 0) << 6;
        state |= (unsigned)(covered[d_n] != 0) << 7;
        state |= (unsigned)(ec == s_c && s_c != 0) << 8;
        state |= (unsigned)(ec == d_c && d_c != 0) << 9;
        state |= (unsigned)(devices[s_c] != 0) << 10;
        state |= (unsigned)(devices[d_c] != 0) << 11;
        state |= (unsigned)(ec == 0) << 12;
        state |= (unsigned)(secondary[e] != 0) << 13;
        const int8_t reason = decisions[state];
        o_reason[i] = reason;
        o_counted[i] = counting[(uint8_t)reason];
        o_counts[(uint8_t)reason]++;

        /* ---- roles (roles(): port ranks, then the surer methods on top) ---- */
        const unsigned s = sp[i], d = dp[i];
        const unsigned p = proto[i];
        const int is_icmp = p == 1 || p == 58;
        const unsigned rs = rank[s], rd = rank[d];
        int code = pair[rs * 5 + rd];
        if (rs == rd && rs > 0) {
            if (d < s) code = c->lower + 1;
            else if (s < d) code = c->lower + 2;
        }
        if (is_icmp) code = 0;
        if (listening && !is_icmp) {
            const int sl = slisten[i] != 0, dl = dlisten[i] != 0;
            if (sl && !dl) code = c->service + 2;
            if (dl && !sl) code = c->service + 1;
        }
        if (flags != NULL && p == 6) {
            const unsigned f = flags[i];
            if ((f & 0xFF) == 0x12 && (packets == NULL || packets[i] <= 1)) code = c->synack + 2;
            if ((f & 0x12) == 0x02) code = c->synonly + 1;
        }
        if (is_icmp) {
            const unsigned t = (d >> 8) & 0xFF;
            if (echo_rep[t]) code = c->icmp + 2;
            if (echo_req[t]) code = c->icmp + 1;
        }
        const unsigned b = bif != NULL ? bif[i] : 0;
        if (b) {
            const unsigned bd = bdir != NULL ? bdir[i] : 0;
            if ((b == 1 && bd == 2) || (b == 2 && bd == 1)) code = c->biflow + 2;
            if ((b == 1 && bd == 1) || (b == 2 && bd == 2)) code = c->biflow + 1;
        }
        o_who[i] = code % 3;
        o_how[i] = code / 3;
        o_observer[i] = b ? observer_bi[e] : observer[e];

        /* ---- event time (event_times()) ---- */
        int64_t r = recv != NULL ? recv[i] : (end != NULL ? end[i] : c->now);
        int64_t en_t = end != NULL ? end[i] : r;
        int64_t st = start != NULL ? start[i] : en_t;
        const int ok = en_t > r - c->max_lag && en_t <= r + c->max_ahead;
        const int64_t ee = ok ? en_t : r;
        int64_t es = ee;
        if (ok && st > 0 && st <= ee) {
            const int64_t floor = ee - c->max_span;
            es = st > floor ? st : floor;
        }
        o_es[i] = es;
        o_ee[i] = ee;
    }
}

static PyObject *apply(PyObject *self, PyObject *args) {
    PyObject *arrays;
    Consts c;
    if (!PyArg_ParseTuple(args, "O!(LLLLiiiiii)", &PyTuple_Type, &arrays, &c.now, &c.max_lag, &c.max_ahead,
                          &c.max_span, &c.lower, &c.service, &c.synack, &c.synonly, &c.icmp, &c.biflow)) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(arrays) != N_ARGS) {
        return PyErr_Format(PyExc_ValueError, "apply: %d arrays expected, got %zd", N_ARGS,
                            PyTuple_GET_SIZE(arrays));
    }
    Py_buffer bufs[N_ARGS];
    memset(bufs, 0, sizeof bufs);
    int got = 0;
    Py_ssize_t n = -1;
    PyObject *result = NULL;
    for (; got < N_ARGS; got++) {
        PyObject *a = PyTuple_GET_ITEM(arrays, got);
        if (a == Py_None) {
            if (!optional(got)) {
                PyErr_Format(PyExc_ValueError, "apply: array %d is required", got);
                goto done;
            }
            continue;
        }
        int how = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable(got) ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(a, &bufs[got], how) < 0) {
            goto done;
        }
        if (bufs[got].itemsize != ITEMSIZE[got]) {
            PyErr_Format(PyExc_ValueError, "apply: array %d has items of %zd bytes, not %zd", got,
                         bufs[got].itemsize, ITEMSIZE[got]);
            got++;
            goto done;
        }
        if (per_row(got)) {
            Py_ssize_t len = bufs[got].len / ITEMSIZE[got];
            if (n < 0) n = len;
            if (len != n) {
                PyErr_Format(PyExc_ValueError, "apply: array %d has %zd rows, not %zd", got, len, n);
                got++;
                goto done;
            }
        }
    }
    /* Bounds that the per-row loop relies on: lookup tables of the right size, codes within the
     * per-exporter and per-code arrays (checked here once, so the loop needs no checks). */
    if (bufs[ARG_DECISIONS].len != (1 << 14) || bufs[ARG_RANK].len != 65536 || bufs[ARG_PAIR].len != 50 ||
        bufs[ARG_ECHO_REQUEST].len != 256 || bufs[ARG_ECHO_REPLY].len != 256) {
        PyErr_SetString(PyExc_ValueError, "apply: a lookup table has the wrong size");
        goto done;
    }
    if (n < 0) n = 0;
    {
        const Py_ssize_t n_exp = bufs[ARG_E_NODE].len / 8, n_node = bufs[ARG_NODE_COVERED].len,
                         n_center = bufs[ARG_CENTER_DEVICES].len, n_reasons = bufs[ARG_COUNTING].len;
        const int per_exp[] = {ARG_E_CENTER, ARG_DUAL, ARG_FORCE, ARG_SECONDARY, ARG_OBSERVER, ARG_OBSERVER_BI};
        for (size_t k = 0; k < sizeof per_exp / sizeof per_exp[0]; k++) {
            if (bufs[per_exp[k]].len / ITEMSIZE[per_exp[k]] != n_exp) {
                PyErr_SetString(PyExc_ValueError, "apply: per-exporter arrays differ in length");
                goto done;
            }
        }
        if (bufs[OUT_REASON_COUNTS].len / 8 != n_reasons || n_reasons > 128) {
            PyErr_SetString(PyExc_ValueError, "apply: reason counts and the counting table differ");
            goto done;
        }
        for (int k = 0; k < (1 << 14); k++) {
            int8_t r = ((const int8_t *)bufs[ARG_DECISIONS].buf)[k];
            if (r < 0 || r >= n_reasons) {
                PyErr_SetString(PyExc_ValueError, "apply: a decision outside the reasons");
                goto done;
            }
        }
        const int64_t *exp = GET(int64_t, ARG_EXP);
        const int64_t *e_node = GET(int64_t, ARG_E_NODE), *e_center = GET(int64_t, ARG_E_CENTER);
        for (Py_ssize_t k = 0; k < n_exp; k++) {
            if (e_node[k] < 0 || e_node[k] >= n_node || e_center[k] < 0 || e_center[k] >= n_center) {
                PyErr_SetString(PyExc_ValueError, "apply: an exporter's node or center code is out of range");
                goto done;
            }
        }
        const int row_codes[][2] = {{ARG_SRC_NODE, 0}, {ARG_DST_NODE, 0}, {ARG_SRC_CENTER, 1}, {ARG_DST_CENTER, 1}};
        for (Py_ssize_t i = 0; i < n; i++) {
            if (exp[i] < 0 || exp[i] >= n_exp) {
                PyErr_SetString(PyExc_ValueError, "apply: an exporter code is out of range");
                goto done;
            }
        }
        for (size_t k = 0; k < 4; k++) {
            const int32_t *codes = GET(int32_t, row_codes[k][0]);
            const Py_ssize_t limit = row_codes[k][1] ? n_center : n_node;
            for (Py_ssize_t i = 0; i < n; i++) {
                if (codes[i] < 0 || codes[i] >= limit) {
                    PyErr_SetString(PyExc_ValueError, "apply: a node or center code is out of range");
                    goto done;
                }
            }
        }
        const int16_t *pair = GET(int16_t, ARG_PAIR);
        for (int k = 0; k < 25; k++) {
            if (pair[k] < 0 || pair[k] > 120) {
                PyErr_SetString(PyExc_ValueError, "apply: a port-pair code is out of range");
                goto done;
            }
        }
        const uint8_t *rank = GET(uint8_t, ARG_RANK);
        for (int k = 0; k < 65536; k++) {
            if (rank[k] > 4) {
                PyErr_SetString(PyExc_ValueError, "apply: a port rank is out of range");
                goto done;
            }
        }
    }
    memset(bufs[OUT_REASON_COUNTS].buf, 0, (size_t)bufs[OUT_REASON_COUNTS].len);
    Py_BEGIN_ALLOW_THREADS
    run(bufs, n, &c);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    for (int k = 0; k < got && k < N_ARGS; k++) {
        if (bufs[k].obj != NULL) PyBuffer_Release(&bufs[k]);
    }
    return result;
}

/* exporter_keys(addresses, types, domains, out) numbers the distinct (exporter address, export type,
 * observation domain) of a batch in order of first appearance: out[i] is row i's number, and the
 * result is the list of each number's first row. addresses: n * 16 bytes; types: int64[n] (codes of
 * the type column); domains: uint32[n] or None (all 0); out: int64[n]. One open-addressing table,
 * grown as needed: no sort and no Python object per row. */
typedef struct {
    uint64_t hi, lo, extra;
    int64_t id;
} Slot;

static inline uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static PyObject *exporter_keys(PyObject *self, PyObject *args) {
    Py_buffer addr = {0}, types = {0}, domains = {0}, out = {0};
    PyObject *dom_obj, *result = NULL, *firsts = NULL;
    Slot *slots = NULL;
    int64_t *first = NULL;
    if (!PyArg_ParseTuple(args, "y*y*Ow*", &addr, &types, &dom_obj, &out)) {
        return NULL;
    }
    const Py_ssize_t n = types.len / 8;
    if (types.len % 8 || addr.len != n * 16 || out.len != n * 8) {
        PyErr_SetString(PyExc_ValueError, "exporter_keys: arrays of different lengths");
        goto done;
    }
    if (dom_obj != Py_None) {
        if (PyObject_GetBuffer(dom_obj, &domains, PyBUF_C_CONTIGUOUS) < 0) goto done;
        if (domains.len != n * 4) {
            PyErr_SetString(PyExc_ValueError, "exporter_keys: domains of a different length");
            goto done;
        }
    }
    size_t cap = 64, used = 0, first_cap = 16;
    slots = PyMem_Calloc(cap, sizeof(Slot));
    first = PyMem_Malloc(first_cap * sizeof(int64_t));
    if (slots == NULL || first == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *a = addr.buf;
    const int64_t *t = types.buf;
    const uint32_t *d = domains.buf;
    int64_t *o = out.buf;
    int64_t last_id = -1;
    uint64_t last_hi = 0, last_lo = 0, last_extra = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t hi, lo;
        memcpy(&hi, a + 16 * i, 8);
        memcpy(&lo, a + 16 * i + 8, 8);
        const uint64_t extra = ((uint64_t)t[i] << 32) | (d != NULL ? d[i] : 0u);
        if (last_id >= 0 && hi == last_hi && lo == last_lo && extra == last_extra) {
            o[i] = last_id; /* runs: records of one datagram come together */
            continue;
        }
        if (2 * (used + 1) > cap) { /* grow: rehash into twice the slots */
            size_t ncap = cap * 2;
            Slot *ns = PyMem_Calloc(ncap, sizeof(Slot));
            if (ns == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            for (size_t k = 0; k < cap; k++) {
                if (slots[k].id == 0) continue;
                size_t h = mix64(slots[k].hi ^ mix64(slots[k].lo ^ mix64(slots[k].extra))) & (ncap - 1);
                while (ns[h].id != 0) h = (h + 1) & (ncap - 1);
                ns[h] = slots[k];
            }
            PyMem_Free(slots);
            slots = ns;
            cap = ncap;
        }
        size_t h = mix64(hi ^ mix64(lo ^ mix64(extra))) & (cap - 1);
        int64_t id;
        for (;;) {
            Slot *s = &slots[h];
            if (s->id == 0) { /* new: ids are stored + 1 so that 0 marks an empty slot */
                s->hi = hi, s->lo = lo, s->extra = extra, s->id = (int64_t)used + 1;
                if (used == first_cap) {
                    first_cap *= 2;
                    int64_t *nf = PyMem_Realloc(first, first_cap * sizeof(int64_t));
                    if (nf == NULL) {
                        PyErr_NoMemory();
                        goto done;
                    }
                    first = nf;
                }
                first[used++] = i;
                id = s->id - 1;
                break;
            }
            if (s->hi == hi && s->lo == lo && s->extra == extra) {
                id = s->id - 1;
                break;
            }
            h = (h + 1) & (cap - 1);
        }
        o[i] = id;
        last_id = id, last_hi = hi, last_lo = lo, last_extra = extra;
    }
    firsts = PyList_New((Py_ssize_t)used);
    if (firsts == NULL) goto done;
    for (size_t k = 0; k < used; k++) {
        PyObject *v = PyLong_FromLongLong(first[k]);
        if (v == NULL) goto done;
        PyList_SET_ITEM(firsts, (Py_ssize_t)k, v);
    }
    result = firsts;
    firsts = NULL;
done:
    Py_XDECREF(firsts);
    PyMem_Free(slots);
    PyMem_Free(first);
    PyBuffer_Release(&addr);
    PyBuffer_Release(&types);
    if (domains.obj != NULL) PyBuffer_Release(&domains);
    PyBuffer_Release(&out);
    return result;
}

/* edge_codes(offsets, data, lut, last, out): out[i] = lut[first (or last) byte of string i], lut[0] for
 * an empty string; offsets: int32[n + 1] of an Arrow string column (already sliced), data: its bytes.
 * For enum columns (direction, type) whose values differ in that byte. */
static PyObject *edge_codes(PyObject *self, PyObject *args) {
    Py_buffer off = {0}, data = {0}, lut = {0}, out = {0};
    int last;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*y*pw*", &off, &data, &lut, &last, &out)) {
        return NULL;
    }
    const Py_ssize_t n = out.len;
    if (off.len != (n + 1) * 4 || lut.len != 256) {
        PyErr_SetString(PyExc_ValueError, "edge_codes: offsets, lookup table and output disagree");
        goto done;
    }
    const int32_t *o = off.buf;
    const uint8_t *d = data.buf, *l = lut.buf;
    uint8_t *r = out.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int32_t a = o[i], b = o[i + 1];
        if (b <= a) {
            r[i] = l[0];
            continue;
        }
        const int32_t at = last ? b - 1 : a;
        if (a < 0 || at >= data.len) {
            PyErr_SetString(PyExc_ValueError, "edge_codes: an offset beyond the data");
            goto done;
        }
        r[i] = l[d[at]];
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&off);
    PyBuffer_Release(&data);
    PyBuffer_Release(&lut);
    PyBuffer_Release(&out);
    return result;
}

/* dense_keys(keys, nkeys, out) numbers the distinct values of keys (int64[n], each in 0..nkeys-1) in
 * order of first appearance, as exporter_keys does for addresses: out[i] (int64[n]) is row i's number
 * and the result the list of each number's first row. For keys the caller has already made small
 * (the enrichment's exporter address codes with the type): one table of nkeys entries, no hashing. */
static PyObject *dense_keys(PyObject *self, PyObject *args) {
    Py_buffer keys = {0}, out = {0};
    Py_ssize_t nkeys;
    PyObject *result = NULL;
    int64_t *seen = NULL;
    if (!PyArg_ParseTuple(args, "y*nw*", &keys, &nkeys, &out))
        return NULL;
    const Py_ssize_t n = keys.len / 8;
    if (keys.len % 8 || out.len != keys.len || nkeys < 0 || nkeys > ((Py_ssize_t)1 << 28)) {
        PyErr_SetString(PyExc_ValueError, "dense_keys: int64 keys and out of one length, 0 <= nkeys <= 2**28");
        goto done;
    }
    const int64_t *k = keys.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (k[i] < 0 || k[i] >= nkeys) {
            PyErr_Format(PyExc_IndexError, "dense_keys: key %lld outside 0..%zd", (long long)k[i], nkeys - 1);
            goto done;
        }
    }
    seen = PyMem_Malloc((size_t)(nkeys > 0 ? nkeys : 1) * sizeof(int64_t));
    if (seen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memset(seen, 0xFF, (size_t)nkeys * sizeof(int64_t)); /* -1: not seen */
    result = PyList_New(0);
    if (result == NULL)
        goto done;
    int64_t *o = out.buf, used = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t id = seen[k[i]];
        if (id < 0) {
            id = seen[k[i]] = used++;
            PyObject *row = PyLong_FromSsize_t(i);
            if (row == NULL || PyList_Append(result, row) < 0) {
                Py_XDECREF(row);
                Py_CLEAR(result);
                goto done;
            }
            Py_DECREF(row);
        }
        o[i] = id;
    }
done:
    PyMem_Free(seen);
    PyBuffer_Release(&out);
    PyBuffer_Release(&keys);
    return result;
}

static PyMethodDef METHODS[] = {
    {"apply", apply, METH_VARARGS, "Fill the counting model's per-record columns in one pass (see the module)."},
    {"edge_codes", edge_codes, METH_VARARGS, "Codes of an enum string column from each value's edge byte."},
    {"exporter_keys", exporter_keys, METH_VARARGS, "Number the (exporter, type, domain) of each record."},
    {"dense_keys", dense_keys, METH_VARARGS, "Number small integer keys in order of first appearance."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_native_counting", NULL, -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native_counting(void) { return PyModule_Create(&MODULE); }
