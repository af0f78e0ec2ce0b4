/* Page-delta records put into pages, for the restore (apps/backups/delta_restore.py, Runs.put).
 *
 * A pgbench page changed by an update and the hint bits set after it holds ~70 runs of ~4 bytes, and its
 * incremental changes 62,000 pages: numpy needed a dozen passes over index arrays as long as the runs' bytes
 * (1.3 s of CPU per restore, more than the decompression of the whole full). Here each record is read where it
 * lies and its runs copied in one pass, without the GIL. The numpy code stays as the fallback where this module
 * was not built (the install marks it optional), and the tests hold the two to the same results.
 *
 * put(target, region, at, slots) -> int
 *   target: writable bytes-like of whole 8 KiB pages;
 *   region: bytes-like holding the records (page_delta's P records from their fields on: u32 pages skipped,
 *           u16 run count n, u16 data length, n x (u16 bytes kept before the run, u16 run length), the data);
 *   at:     an int32 array (native order, C-contiguous), where each record's fields begin in region;
 *   slots:  an int32 array, the page of target each record goes into.
 * Returns -1, or the index of the first record that does not fit (out of region, runs past the page, data
 * length not the runs' total, slot out of target): the pages before it are put, it and those after are not.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PAGE 8192

static inline uint32_t u16(const unsigned char *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

static Py_ssize_t put_records(unsigned char *out, Py_ssize_t out_len, const unsigned char *src, Py_ssize_t src_len,
                              const int32_t *at, const int32_t *slots, Py_ssize_t n) {
    for (Py_ssize_t r = 0; r < n; r++) {
        int64_t a = at[r], slot = slots[r];
        if (a < 0 || a + 8 > src_len || slot < 0 || (slot + 1) * (int64_t)PAGE > out_len)
            return r;
        uint32_t count = u16(src + a + 4), length = u16(src + a + 6);
        int64_t head = a + 8, data = head + 4 * (int64_t)count;
        if (data + length > src_len)
            return r;
        unsigned char *page = out + slot * PAGE;
        uint32_t pos = 0, used = 0;
        for (uint32_t k = 0; k < count; k++) {
            const unsigned char *run = src + head + 4 * (int64_t)k;
            uint32_t kept = u16(run), size = u16(run + 2);
            pos += kept;
            if (pos + size > PAGE || used + size > length)
                return r;
            memcpy(page + pos, src + data + used, size);
            pos += size;
            used += size;
        }
        if (used != length)
            return r;
    }
    return -1;
}

/* An int32 array (format "i", C-contiguous) as a buffer: a numpy int32 array or an array.array("i"). */
static int int32_buffer(PyObject *obj, Py_buffer *view, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "i") != 0) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must be an int32 array", name);
        return -1;
    }
    return 0;
}

static PyObject *put(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer target, region, at, slots;
    PyObject *at_obj, *slots_obj, *result = NULL;
    if (!PyArg_ParseTuple(args, "w*y*OO", &target, &region, &at_obj, &slots_obj))
        return NULL;
    if (int32_buffer(at_obj, &at, "at") == 0) {
        if (int32_buffer(slots_obj, &slots, "slots") == 0) {
            if (slots.len != at.len) {
                PyErr_SetString(PyExc_ValueError, "at and slots must be of the same length");
            } else {
                Py_ssize_t bad;
                Py_BEGIN_ALLOW_THREADS
                bad = put_records(target.buf, target.len, region.buf, region.len, at.buf, slots.buf, at.len / 4);
                Py_END_ALLOW_THREADS
                result = PyLong_FromSsize_t(bad);
            }
            PyBuffer_Release(&slots);
        }
        PyBuffer_Release(&at);
    }
    PyBuffer_Release(&target);
    PyBuffer_Release(&region);
    return result;
}

static PyMethodDef methods[] = {
    {"put", put, METH_VARARGS,
     "put(target, region, at, slots) -> -1, or the index of the first record that does not fit"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_pagepatch", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__pagepatch(void) { return PyModule_Create(&module); }
