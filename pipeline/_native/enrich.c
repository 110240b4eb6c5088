/* pipeline._native_enrich: the enrichment's per-row version lookup in one pass.
 *
 * pipeline/lookups.py keeps the numpy form of every function here as the reference (and the path
 * with NETOBS_NATIVE=0); tests/pipeline/test_enrich_native.py compares the two on drawn indexes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

static int get(PyObject *obj, Py_buffer *view, int flags, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: items of %zd bytes, expected %zd", what, view->itemsize, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* interval(record, keys, times, out) -> int
 *
 * The version row valid at each time for each key, over an IntervalIndex's per-key records
 * (pipeline/lookups.py `_RECORD`: int64 s, e, row; one record per key, then the sentinel):
 *     out[i] = rec.row if rec.s <= times[i] < rec.e else -1, with rec = record[keys[i]]
 * where a negative key counts from the end (-1: the sentinel), as numpy's take does. A key with
 * several versions (rec.row == -2) gets -2 in `out` and is left to the caller (a scan or a binary
 * search over its versions); the count of such rows is returned. `keys`, `times` and `out` are
 * int64 arrays of one length. A key outside the records raises IndexError. The GIL is released.
 */
typedef struct {
    int64_t s, e, row;
} Record;

static PyObject *interval(PyObject *self, PyObject *args) {
    PyObject *robj, *kobj, *tobj, *oobj;
    if (!PyArg_ParseTuple(args, "OOOO", &robj, &kobj, &tobj, &oobj))
        return NULL;
    Py_buffer rec, keys, times, out;
    PyObject *result = NULL;
    if (get(robj, &rec, PyBUF_SIMPLE, (Py_ssize_t)sizeof(Record), "record") < 0)
        return NULL;
    if (get(kobj, &keys, PyBUF_SIMPLE, 8, "keys") < 0) {
        PyBuffer_Release(&rec);
        return NULL;
    }
    if (get(tobj, &times, PyBUF_SIMPLE, 8, "times") < 0) {
        PyBuffer_Release(&keys);
        PyBuffer_Release(&rec);
        return NULL;
    }
    if (get(oobj, &out, PyBUF_WRITABLE, 8, "out") < 0) {
        PyBuffer_Release(&times);
        PyBuffer_Release(&keys);
        PyBuffer_Release(&rec);
        return NULL;
    }
    Py_ssize_t n = keys.len / 8, nrec = rec.len / (Py_ssize_t)sizeof(Record);
    if (rec.len % (Py_ssize_t)sizeof(Record) || nrec < 1 || times.len != keys.len || out.len != keys.len) {
        PyErr_SetString(PyExc_ValueError, "interval: records of 24 bytes (at least the sentinel); keys, times "
                                          "and out of one length");
        goto done;
    }
    const int64_t *k = (const int64_t *)keys.buf, *t = (const int64_t *)times.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (k[i] >= nrec || k[i] < -nrec) {
            PyErr_Format(PyExc_IndexError, "interval: key %lld outside %zd records", (long long)k[i], nrec);
            goto done;
        }
    }
    const Record *r = (const Record *)rec.buf;
    int64_t *o = (int64_t *)out.buf;
    Py_ssize_t multi = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const Record *x = r + (k[i] < 0 ? k[i] + nrec : k[i]);
        if (x->row == -2) {
            o[i] = -2;
            multi++;
        } else {
            o[i] = (x->s <= t[i] && t[i] < x->e) ? x->row : -1;
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(multi);
done:
    PyBuffer_Release(&out);
    PyBuffer_Release(&times);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&rec);
    return result;
}

static PyMethodDef METHODS[] = {
    {"interval", interval, METH_VARARGS, "The version row valid at each time for each key (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_native_enrich", NULL, -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native_enrich(void) { return PyModule_Create(&MODULE); }
