/* collectors._native_recv: many UDP datagrams per system call, with recvmmsg(2).
 *
 * recv_many(fd, buffer, slots) reads at most `slots` queued datagrams of a non-blocking
 * socket into `buffer` (a writable buffer the caller keeps and reuses: `slots` equal slices),
 * and returns (datagrams, truncated): datagrams is a list of (payload bytes, source address
 * text) in arrival order, the text as socket.recvfrom gives it ("192.0.2.1", "2001:db8::1",
 * "::ffff:192.0.2.1" on a dual-stack socket); truncated counts datagrams longer than a slice,
 * which are left out rather than delivered cut. Nothing queued (EAGAIN) or a signal gives an
 * empty list; any other error raises OSError (e.g. a closed socket: EBADF). The GIL is released
 * during the system call. Consecutive datagrams from one address share one text object.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_SLOTS 256

static PyObject *address_text(const struct sockaddr_storage *sa, socklen_t len) {
    char text[INET6_ADDRSTRLEN];
    const void *raw;
    if (sa->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        raw = &((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        raw = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    } else {
        return PyUnicode_FromString("");  /* not an IP source: the allowlist / decoder see it as unknown */
    }
    if (inet_ntop(sa->ss_family, raw, text, sizeof text) == NULL) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyUnicode_FromString(text);
}

static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) {
        return 0;
    }
    if (a->ss_family == AF_INET) {
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    }
    return 0;
}

static PyObject *recv_many(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer buf;
    Py_ssize_t slots;
    if (!PyArg_ParseTuple(args, "iw*n", &fd, &buf, &slots)) {
        return NULL;
    }
    if (slots < 1 || slots > MAX_SLOTS || buf.len / slots < 1) {
        PyBuffer_Release(&buf);
        return PyErr_Format(PyExc_ValueError, "recv_many: %zd slots in a buffer of %zd bytes (1..%d slots of 1 byte or more)",
                            slots, buf.len, MAX_SLOTS);
    }
    size_t slot_len = (size_t)(buf.len / slots);
    struct mmsghdr msgs[MAX_SLOTS];
    struct iovec iovs[MAX_SLOTS];
    struct sockaddr_storage addrs[MAX_SLOTS];
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)slots);
    for (Py_ssize_t i = 0; i < slots; i++) {
        iovs[i].iov_base = (char *)buf.buf + (size_t)i * slot_len;
        iovs[i].iov_len = slot_len;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
    }
    int n, err = 0;
    Py_BEGIN_ALLOW_THREADS
    n = recvmmsg(fd, msgs, (unsigned int)slots, MSG_DONTWAIT, NULL);
    if (n < 0) {
        err = errno;
    }
    Py_END_ALLOW_THREADS
    if (n < 0) {
        PyBuffer_Release(&buf);
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
            return Py_BuildValue("(Ni)", PyList_New(0), 0);
        }
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(0);
    PyObject *text = NULL; /* the source text of the previous datagram, reused while it repeats */
    int truncated = 0, previous = -1;
    if (out == NULL) {
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || msgs[i].msg_len > slot_len) {
            truncated++;
            continue;
        }
        if (previous < 0 || !same_address(&addrs[i], &addrs[previous]) || addrs[i].ss_family == AF_UNSPEC) {
            Py_XDECREF(text);
            text = address_text(&addrs[i], msgs[i].msg_hdr.msg_namelen);
            if (text == NULL) {
                goto fail;
            }
        }
        previous = i;
        PyObject *payload = PyBytes_FromStringAndSize(iovs[i].iov_base, (Py_ssize_t)msgs[i].msg_len);
        if (payload == NULL) {
            goto fail;
        }
        PyObject *item = PyTuple_Pack(2, payload, text);
        Py_DECREF(payload);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    Py_XDECREF(text);
    PyBuffer_Release(&buf);
    return Py_BuildValue("(Ni)", out, truncated);
fail:
    Py_XDECREF(text);
    Py_XDECREF(out);
    PyBuffer_Release(&buf);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"recv_many", recv_many, METH_VARARGS,
     "recv_many(fd, buffer, slots) -> (list of (payload, source address), truncated count)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "collectors._native_recv",
    .m_doc = "recvmmsg(2): many UDP datagrams per system call.",
    .m_size = -1,
    .m_methods = METHODS,
};

PyMODINIT_FUNC PyInit__native_recv(void) {
    PyObject *m = PyModule_Create(&MODULE);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_SLOTS", MAX_SLOTS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
