/* Pod packet capture: an AF_PACKET TPACKET_V3 ring on one interface, walked block by block in C.
 *
 * The kernel runs the classic BPF program the agent compiled (libpcap): it filters and, by its
 * return value, truncates every frame to the snap length, so no byte past it ever leaves the
 * kernel. Here each frame of a retired block is parsed (Ethernet, 802.1Q, IPv4/IPv6, TCP/UDP),
 * 1:N sampled (deterministic: every Nth; random: probability 1/N, xorshift64*), rate capped per
 * interface (token buckets in packet time), and written as one fixed-size record (numpy dtype
 * collectors.sampler._capture.RECORD). Frames whose payload starts a DNS message, a TLS
 * handshake or an HTTP/1.x message are L7 candidates: those frames, cut at the transport
 * header + l7_snap bytes, go to a second buffer already in pcap record form (for one tshark run
 * per batch). They are never written anywhere else: the agent sends only what tshark made of
 * them. Nothing here loops in Python; drain() releases the GIL while it walks.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

enum { PC_NONE = 0, PC_TLS = 1, PC_HTTP = 2, PC_DNS = 3, PC_TEXT = 4, PC_BINARY = 5 };

#pragma pack(push, 1)
typedef struct {
    int64_t ts_ns;
    uint8_t src_addr[16], dst_addr[16];
    uint32_t wire_len;    /* frame length on the wire */
    uint32_t payload_len; /* L4 payload length from the IP/UDP lengths (not what was captured) */
    uint16_t src_port, dst_port, tcp_flags, etype, vlan;
    uint8_t proto, tos, ttl, direction, payload_class, sampled;
    uint64_t src_mac, dst_mac;
} cap_record; /* 80 bytes */

typedef struct {
    uint32_t sec, usec, incl, orig;
} pcap_rec_hdr;
#pragma pack(pop)

typedef struct {
    PyObject_HEAD int fd;
    uint8_t *map;
    size_t map_len;
    unsigned block_size, block_nr, next_block;
    unsigned sample_n, random, l7_snap;
    uint64_t rng, count;
    double cap_rate, cap_burst, tokens;          /* sampled records */
    double l7_rate, l7_burst, l7_tokens;         /* L7 candidates */
    int64_t last_ns;
    uint64_t seen, seen_bytes, sampled, capped, l7, l7_capped;
} Ring;

static const uint8_t V4_PREFIX[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((unsigned)p[0] << 8 | p[1]); }
static inline uint64_t mac48(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 6; i++) v = v << 8 | p[i];
    return v;
}

static int is_http(const uint8_t *p, size_t n)
{
    static const char *starts[] = {"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ",
                                   "PATCH ", "CONNECT ", "TRACE ", "HTTP/1."};
    for (size_t i = 0; i < sizeof starts / sizeof *starts; i++) {
        size_t k = strlen(starts[i]);
        if (n >= k && memcmp(p, starts[i], k) == 0) return 1;
    }
    return 0;
}

/* What the payload's first bytes say; *candidate: worth a dissection (handshake, DNS, HTTP). */
static int classify(const uint8_t *p, size_t n, uint16_t sport, uint16_t dport, uint8_t proto, int *candidate)
{
    *candidate = 0;
    if (proto == 17 && (sport == 53 || dport == 53)) return *candidate = 1, PC_DNS;
    if (n == 0) return PC_NONE;
    if (proto == 6 && (sport == 53 || dport == 53)) return *candidate = 1, PC_DNS;
    if (proto == 6 && n >= 6 && p[0] >= 0x14 && p[0] <= 0x17 && p[1] == 3 && p[2] <= 4) {
        *candidate = p[0] == 0x16 && (p[5] == 1 || p[5] == 2); /* ClientHello, ServerHello */
        return PC_TLS;
    }
    if (is_http(p, n)) return *candidate = 1, PC_HTTP;
    size_t k = n < 16 ? n : 16, printable = 0;
    for (size_t i = 0; i < k; i++) printable += (p[i] >= 0x20 && p[i] < 0x7F) || p[i] == '\r' || p[i] == '\n' || p[i] == '\t';
    return printable == k ? PC_TEXT : PC_BINARY;
}

/* Parse one frame into rec; returns the offset of the L4 payload (0 when none was reached). */
static size_t parse(const uint8_t *b, size_t len, cap_record *r)
{
    if (len < 14) return 0;
    r->dst_mac = mac48(b), r->src_mac = mac48(b + 6);
    size_t off = 12;
    uint16_t et = be16(b + off);
    for (int tags = 0; (et == 0x8100 || et == 0x88A8) && tags < 2 && off + 6 <= len; tags++) {
        if (!r->vlan) r->vlan = be16(b + off + 2) & 0x0FFF;
        off += 4, et = be16(b + off);
    }
    off += 2, r->etype = et;
    size_t l4 = 0, l4_end = 0;
    if (et == 0x0800 && off + 20 <= len) {
        const uint8_t *ip = b + off;
        size_t ihl = (size_t)(ip[0] & 0x0F) * 4, total = be16(ip + 2);
        if (ihl < 20 || off + ihl > len) return 0;
        r->tos = ip[1], r->ttl = ip[8], r->proto = ip[9];
        memcpy(r->src_addr, V4_PREFIX, 12), memcpy(r->src_addr + 12, ip + 12, 4);
        memcpy(r->dst_addr, V4_PREFIX, 12), memcpy(r->dst_addr + 12, ip + 16, 4);
        if (be16(ip + 6) & 0x1FFF) return 0; /* a later fragment: no transport header */
        l4 = off + ihl, l4_end = off + (total > ihl ? total : ihl);
    } else if (et == 0x86DD && off + 40 <= len) {
        const uint8_t *ip = b + off;
        r->tos = (uint8_t)((be16(ip) >> 4) & 0xFF), r->ttl = ip[7];
        memcpy(r->src_addr, ip + 8, 16), memcpy(r->dst_addr, ip + 24, 16);
        uint8_t nh = ip[6];
        l4 = off + 40, l4_end = l4 + be16(ip + 4);
        for (int i = 0; i < 4 && (nh == 0 || nh == 43 || nh == 60) && l4 + 8 <= len; i++)
            nh = b[l4], l4 += (size_t)(b[l4 + 1] + 1) * 8;
        r->proto = nh;
    } else
        return 0;
    if (r->proto == 6 && l4 + 20 <= len) {
        r->src_port = be16(b + l4), r->dst_port = be16(b + l4 + 2);
        r->tcp_flags = be16(b + l4 + 12) & 0x01FF;
        size_t hl = (size_t)(b[l4 + 12] >> 4) * 4;
        if (hl < 20) return 0;
        r->payload_len = l4_end > l4 + hl ? (uint32_t)(l4_end - l4 - hl) : 0;
        return l4 + hl;
    }
    if (r->proto == 17 && l4 + 8 <= len) {
        r->src_port = be16(b + l4), r->dst_port = be16(b + l4 + 2);
        uint16_t ulen = be16(b + l4 + 4);
        r->payload_len = ulen > 8 ? ulen - 8u : 0;
        return l4 + 8;
    }
    if ((r->proto == 1 || r->proto == 58) && l4 + 2 <= len) r->dst_port = (uint16_t)(b[l4] << 8 | b[l4 + 1]);
    return 0;
}

static inline int take_token(double *tokens, double rate, double burst, double dt)
{
    if (rate <= 0) return 1;
    *tokens += dt * rate;
    if (*tokens > burst) *tokens = burst;
    if (*tokens < 1.0) return 0;
    *tokens -= 1.0;
    return 1;
}

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void Ring_release(Ring *self)
{
    if (self->map) munmap(self->map, self->map_len), self->map = NULL;
    if (self->fd >= 0) close(self->fd), self->fd = -1;
}

static void Ring_dealloc(Ring *self)
{
    Ring_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Ring_init(Ring *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"ifname", "bpf", "sample_n", "random", "seed", "cap_rate", "l7_rate",
                            "l7_snap", "block_size", "block_nr", "fanout", NULL};
    const char *ifname;
    Py_buffer bpf;
    unsigned sample_n = 1, random = 0, l7_snap = 512, block_size = 1 << 16, block_nr = 8, fanout = 0;
    unsigned long long seed = 0x9E3779B97F4A7C15ULL;
    double cap_rate = 0, l7_rate = 0;
    self->fd = -1, self->map = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sy*|IIKddIIII", names, &ifname, &bpf, &sample_n, &random,
                                     &seed, &cap_rate, &l7_rate, &l7_snap, &block_size, &block_nr, &fanout))
        return -1;
    int rc = -1;
    if (bpf.len == 0 || bpf.len % 8 || sample_n == 0 || block_size < 4096 || block_size % 4096 || !block_nr) {
        PyErr_SetString(PyExc_ValueError, "bad ring parameters (bpf program, sample_n, block size/count)");
        goto out;
    }
    unsigned ifindex = if_nametoindex(ifname);
    if (!ifindex) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, ifname);
        goto out;
    }
    self->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0); /* no traffic before bind */
    if (self->fd < 0) goto oserr;
    struct sock_fprog prog = {(unsigned short)(bpf.len / 8), (struct sock_filter *)bpf.buf};
    int v3 = TPACKET_V3;
    if (setsockopt(self->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) goto oserr;
    if (setsockopt(self->fd, SOL_PACKET, PACKET_VERSION, &v3, sizeof v3) < 0) goto oserr;
    struct tpacket_req3 req = {0};
    req.tp_block_size = block_size, req.tp_block_nr = block_nr, req.tp_frame_size = 2048;
    req.tp_frame_nr = block_size / 2048 * block_nr, req.tp_retire_blk_tov = 50;
    if (setsockopt(self->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) goto oserr;
    self->map_len = (size_t)block_size * block_nr;
    self->map = mmap(NULL, self->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, self->fd, 0);
    if (self->map == MAP_FAILED) /* MAP_LOCKED needs RLIMIT_MEMLOCK; without it the ring may swap */
        self->map = mmap(NULL, self->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
    if (self->map == MAP_FAILED) {
        self->map = NULL;
        goto oserr;
    }
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET, sll.sll_protocol = htons(ETH_P_ALL), sll.sll_ifindex = (int)ifindex;
    if (bind(self->fd, (struct sockaddr *)&sll, sizeof sll) < 0) goto oserr;
    if (fanout) { /* several workers share the interface's packets, a flow always to the same one */
        int arg = (int)((fanout & 0xFFFF) | (PACKET_FANOUT_HASH << 16));
        if (setsockopt(self->fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) < 0) goto oserr;
    }
    self->block_size = block_size, self->block_nr = block_nr, self->next_block = 0;
    self->sample_n = sample_n, self->random = random, self->rng = seed ? seed : 1, self->l7_snap = l7_snap;
    self->cap_rate = cap_rate, self->cap_burst = cap_rate > 1 ? cap_rate : 1, self->tokens = self->cap_burst;
    self->l7_rate = l7_rate, self->l7_burst = l7_rate > 1 ? l7_rate : 1, self->l7_tokens = self->l7_burst;
    rc = 0;
    goto out;
oserr:
    PyErr_SetFromErrnoWithFilename(PyExc_OSError, ifname);
    Ring_release(self);
out:
    PyBuffer_Release(&bpf);
    return rc;
}

typedef struct {
    uint8_t *rec, *l7;
    size_t nrec, rec_cap, l7_len, l7_cap;
} out_bufs;

/* One frame: sample, cap, record; L7 candidates to the pcap buffer. */
static void frame(Ring *self, struct tpacket3_hdr *h, out_bufs *o)
{
    const uint8_t *b = (const uint8_t *)h + h->tp_mac;
    const struct sockaddr_ll *sll = (const void *)((uint8_t *)h + TPACKET_ALIGN(sizeof(struct tpacket3_hdr)));
    int64_t ts = (int64_t)h->tp_sec * 1000000000LL + h->tp_nsec;
    double dt = self->last_ns && ts > self->last_ns ? (double)(ts - self->last_ns) / 1e9 : 0.0;
    if (ts > self->last_ns) self->last_ns = ts;
    self->seen++, self->seen_bytes += h->tp_len;
    int sampled = self->random ? xorshift(&self->rng) % self->sample_n == 0 : self->count++ % self->sample_n == 0;
    cap_record r;
    memset(&r, 0, sizeof r);
    size_t pay = parse(b, h->tp_snaplen, &r);
    int candidate = 0;
    size_t avail = pay && pay < h->tp_snaplen ? h->tp_snaplen - pay : 0;
    if (pay) r.payload_class = (uint8_t)classify(b + pay, avail < r.payload_len ? avail : r.payload_len,
                                                 r.src_port, r.dst_port, r.proto, &candidate);
    if (candidate) {
        if (!take_token(&self->l7_tokens, self->l7_rate, self->l7_burst, dt))
            self->l7_capped++, candidate = 0;
    } else
        take_token(&self->l7_tokens, self->l7_rate, self->l7_burst, dt); /* refill only */
    if (sampled && !take_token(&self->tokens, self->cap_rate, self->cap_burst, dt)) self->capped++, sampled = 0;
    else if (!sampled) take_token(&self->tokens, self->cap_rate, self->cap_burst, 0);
    if (!sampled && !candidate) return;
    size_t keep = pay + (avail < self->l7_snap ? avail : self->l7_snap);
    if (candidate && o->l7_len + sizeof(pcap_rec_hdr) + keep > o->l7_cap) candidate = 0, self->l7_capped++;
    if ((!sampled && !candidate) || o->nrec >= o->rec_cap) return;
    r.ts_ns = ts, r.wire_len = h->tp_len, r.sampled = (uint8_t)(sampled | candidate << 1);
    r.direction = sll->sll_pkttype == PACKET_OUTGOING; /* host end of a pod veth: outgoing = to the pod */
    memcpy(o->rec + o->nrec++ * sizeof r, &r, sizeof r);
    if (sampled) self->sampled++;
    if (!candidate) return;
    pcap_rec_hdr ph = {h->tp_sec, h->tp_nsec / 1000, (uint32_t)keep, h->tp_len};
    memcpy(o->l7 + o->l7_len, &ph, sizeof ph);
    memcpy(o->l7 + o->l7_len + sizeof ph, b, keep);
    o->l7_len += sizeof ph + keep, self->l7++;
}

/* drain(max_records) -> (records bytes, l7 pcap records bytes): every retired block, until
 * max_records records are out (a block is never split). */
static PyObject *Ring_drain(Ring *self, PyObject *args)
{
    unsigned max_records = 65536;
    if (!PyArg_ParseTuple(args, "|I", &max_records)) return NULL;
    if (!self->map) return PyErr_Format(PyExc_ValueError, "ring is closed");
    out_bufs o = {0};
    /* a block holds at most block_size / 64 frames: room for one more block past the limit */
    o.rec_cap = max_records + self->block_size / 64;
    o.l7_cap = (size_t)self->block_size * 2;
    o.rec = PyMem_RawMalloc(o.rec_cap * sizeof(cap_record));
    o.l7 = PyMem_RawMalloc(o.l7_cap);
    if (!o.rec || !o.l7) {
        PyMem_RawFree(o.rec), PyMem_RawFree(o.l7);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS;
    for (unsigned walked = 0; walked < self->block_nr && o.nrec < max_records; walked++) {
        struct tpacket_block_desc *bd = (void *)(self->map + (size_t)self->next_block * self->block_size);
        if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) break;
        if (o.l7_cap - o.l7_len < self->block_size) break; /* the L7 buffer takes the rest next time */
        struct tpacket3_hdr *h = (void *)((uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt);
        for (uint32_t i = 0; i < bd->hdr.bh1.num_pkts; i++) {
            frame(self, h, &o);
            h = (void *)((uint8_t *)h + h->tp_next_offset);
        }
        __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        self->next_block = (self->next_block + 1) % self->block_nr;
    }
    Py_END_ALLOW_THREADS;
    PyObject *res = Py_BuildValue("(y#y#)", (char *)o.rec, (Py_ssize_t)(o.nrec * sizeof(cap_record)),
                                  (char *)o.l7, (Py_ssize_t)o.l7_len);
    PyMem_RawFree(o.rec), PyMem_RawFree(o.l7);
    return res;
}

static PyObject *Ring_stats(Ring *self, PyObject *unused)
{
    unsigned kernel_packets = 0, kernel_drops = 0, freezes = 0;
    if (self->fd >= 0) { /* reading resets the kernel's counters: the caller adds them up */
        struct tpacket_stats_v3 st;
        socklen_t sl = sizeof st;
        if (getsockopt(self->fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0)
            kernel_packets = st.tp_packets, kernel_drops = st.tp_drops, freezes = st.tp_freeze_q_cnt;
    }
    return Py_BuildValue("{sKsKsKsKsKsKsIsIsI}", "seen", self->seen, "seen_bytes", self->seen_bytes, "sampled",
                         self->sampled, "capped", self->capped, "l7", self->l7, "l7_capped", self->l7_capped,
                         "kernel_packets", kernel_packets, "kernel_drops", kernel_drops, "freezes", freezes);
}

static PyObject *Ring_wait(Ring *self, PyObject *args)
{
    int timeout_ms = 100, n;
    if (!PyArg_ParseTuple(args, "|i", &timeout_ms)) return NULL;
    struct pollfd p = {self->fd, POLLIN | POLLERR, 0};
    Py_BEGIN_ALLOW_THREADS;
    n = poll(&p, 1, timeout_ms);
    Py_END_ALLOW_THREADS;
    return PyBool_FromLong(n > 0);
}

static PyObject *Ring_fileno(Ring *self, PyObject *unused) { return PyLong_FromLong(self->fd); }
static PyObject *Ring_close(Ring *self, PyObject *unused)
{
    Ring_release(self);
    Py_RETURN_NONE;
}

static PyMethodDef Ring_methods[] = {
    {"drain", (PyCFunction)Ring_drain, METH_VARARGS, "(records, l7 pcap records) of the retired blocks"},
    {"stats", (PyCFunction)Ring_stats, METH_NOARGS, "counters; the kernel's since the last call"},
    {"wait", (PyCFunction)Ring_wait, METH_VARARGS, "poll the ring up to timeout_ms; True when ready"},
    {"fileno", (PyCFunction)Ring_fileno, METH_NOARGS, "the socket"},
    {"close", (PyCFunction)Ring_close, METH_NOARGS, "unmap and close"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "collectors._native_capture.Ring",
    .tp_basicsize = sizeof(Ring),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AF_PACKET TPACKET_V3 ring on one interface",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Ring_init,
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_methods = Ring_methods,
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_native_capture", "pod packet capture", -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native_capture(void)
{
    if (PyType_Ready(&RingType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&RingType);
    PyModule_AddObject(m, "Ring", (PyObject *)&RingType);
    PyModule_AddIntConstant(m, "RECORD_SIZE", sizeof(cap_record));
    return m;
}
