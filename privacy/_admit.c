/* privmon.privacy._admit: the participation cap's decisions for a batch, one pass.
 *
 * admit(period, count, recent, dirty, accounts, windows, period_ms, cap, keep) -> dropped
 *
 * The state (privacy/participation.py's DenseParticipationLimiter owns every array), per
 * dense account id a:
 *   period  int32|int64[ids]        its period number, -1: none;
 *   count   int32[ids]              windows admitted in that period;
 *   recent  int32|int64[ids, R]     the last R admitted windows' starts minus the
 *                                   period's start, oldest first, -1: none;
 *   dirty   bool[ids]               set where the state changes.
 * Per event i, in order (accounts[i] < ids, windows[i] >= 0 the window's start in ms):
 * its (account, window) pair is decided once, at its first event in the batch, as
 * ParticipationLimiter (the reference, in Python) decides it: a later period than the
 * state's starts the account afresh; an earlier one is dropped; a window among the
 * recent ones is admitted again; else it is admitted while count < cap (count grows,
 * the window joins recent, the oldest leaving). keep[i] (bool[n]) gets the decision.
 * Returns how many events were dropped.
 *
 * Why: the numpy form decides in rounds with two lexsorts and a unique of the batch
 * (~0.4 us an event); this is one pass with a hash of the batch's pairs.
 *
 * Everything is checked before anything is written (types, shapes, ids and windows in
 * range); a failed check raises TypeError or ValueError, naming the argument, and
 * leaves the state as it was.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_buf.h"

/* A C-contiguous buffer of ndim dimensions whose items are one of the formats in
 * ``formats`` (e.g. "iq": int32 or int64); its first dimension in *rows. */
static int
get(Buf *b, PyObject *obj, const char *name, int writable, const char *formats, int ndim,
    Py_ssize_t *rows)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous%s array, got %.80s", name,
                     writable ? " writable" : "", Py_TYPE(obj)->tp_name);
        return -1;
    }
    b->held = 1;
    const char *f = b->view.format ? b->view.format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    char c = f[0] == 'l' && b->view.itemsize == 8 ? 'q' : f[0];  /* int64 is 'l' here */
    int ok = c != '\0' && f[1] == '\0' && strchr(formats, c) != NULL
             && b->view.itemsize == (c == 'i' ? 4 : c == 'q' ? 8 : 1);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of format '%s' (i: int32, q: int64, "
                     "?: bool), got '%s' of %zd bytes", name, formats,
                     b->view.format ? b->view.format : "B", b->view.itemsize);
        return -1;
    }
    if (b->view.ndim != ndim) {
        PyErr_Format(PyExc_ValueError, "%s: expected %d dimension(s), got %d", name, ndim,
                     b->view.ndim);
        return -1;
    }
    *rows = b->view.shape[0];
    return 0;
}

static inline int64_t
at(const Buf *b, Py_ssize_t i)
{
    return b->view.itemsize == 4 ? ((const int32_t *)b->view.buf)[i]
                                 : ((const int64_t *)b->view.buf)[i];
}

static inline void
set(Buf *b, Py_ssize_t i, int64_t v)
{
    if (b->view.itemsize == 4)
        ((int32_t *)b->view.buf)[i] = (int32_t)v;
    else
        ((int64_t *)b->view.buf)[i] = v;
}

static PyObject *
admit(PyObject *self, PyObject *args)
{
    PyObject *o_period, *o_count, *o_recent, *o_dirty, *o_acc, *o_win, *o_keep;
    long long period_ms, cap;
    if (!PyArg_ParseTuple(args, "OOOOOOLLO:admit", &o_period, &o_count, &o_recent, &o_dirty,
                          &o_acc, &o_win, &period_ms, &cap, &o_keep))
        return NULL;
    Buf period = {0}, count = {0}, recent = {0}, dirty = {0}, acc = {0}, win = {0}, keep = {0};
    int64_t *memo = NULL;
    PyObject *result = NULL;
    Py_ssize_t ids, r2, r3, r4, n, n2, n3;
    if (get(&period, o_period, "period", 1, "iq", 1, &ids) < 0
        || get(&count, o_count, "count", 1, "i", 1, &r2) < 0
        || get(&recent, o_recent, "recent", 1, "iq", 2, &r3) < 0
        || get(&dirty, o_dirty, "dirty", 1, "?", 1, &r4) < 0
        || get(&acc, o_acc, "accounts", 0, "q", 1, &n) < 0
        || get(&win, o_win, "windows", 0, "q", 1, &n2) < 0
        || get(&keep, o_keep, "keep", 1, "?", 1, &n3) < 0)
        goto done;
    if (r2 != ids || r3 != ids || r4 != ids) {
        PyErr_Format(PyExc_ValueError, "count, recent, dirty: expected %zd rows like period, "
                     "got %zd, %zd and %zd", ids, r2, r3, r4);
        goto done;
    }
    if (n2 != n || n3 != n) {
        PyErr_Format(PyExc_ValueError, "windows, keep: expected %zd entries like accounts, "
                     "got %zd and %zd", n, n2, n3);
        goto done;
    }
    if (period_ms < 1 || cap < 0) {
        PyErr_Format(PyExc_ValueError, "period_ms, cap: expected >= 1 and >= 0, got %lld and "
                     "%lld", period_ms, cap);
        goto done;
    }
    Py_ssize_t width = recent.view.shape[1];
    const int64_t *a = (const int64_t *)acc.view.buf, *w = (const int64_t *)win.view.buf;
    int64_t most = period.view.itemsize == 4 ? INT32_MAX : INT64_MAX;
    int64_t offset_most = recent.view.itemsize == 4 ? INT32_MAX : INT64_MAX;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= ids || w[i] < 0 || w[i] / period_ms > most
            || period_ms - 1 > offset_most) {
            PyErr_Format(PyExc_ValueError, "accounts/windows: expected ids in [0, %zd) and "
                         "window starts >= 0 whose period and offset fit the state's types, "
                         "got %lld and %lld at %zd", ids, (long long)a[i], (long long)w[i], i);
            goto done;
        }
    }
    /* The batch's decided pairs: open addressing over (account, window) -> index of the
     * pair's first event, whose keep[] holds the decision. */
    Py_ssize_t slots = 2;
    while (slots < 2 * n)
        slots <<= 1;
    memo = PyMem_New(int64_t, slots);
    if (memo == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t s = 0; s < slots; s++)
        memo[s] = -1;
    uint64_t mask = (uint64_t)slots - 1;
    char *k = (char *)keep.view.buf, *d = (char *)dirty.view.buf;
    int32_t *cnt = (int32_t *)count.view.buf;
    Py_ssize_t dropped = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t h = ((uint64_t)a[i] * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)w[i] * 0xC2B2AE3D27D4EB4FULL);
        uint64_t s = (h ^ (h >> 29)) & mask;
        int64_t first = -1;
        while (memo[s] >= 0) {
            int64_t j = memo[s];
            if (a[j] == a[i] && w[j] == w[i]) {
                first = j;
                break;
            }
            s = (s + 1) & mask;
        }
        if (first >= 0) {
            k[i] = k[first];
            dropped += !k[i];
            continue;
        }
        memo[s] = i;
        Py_ssize_t id = (Py_ssize_t)a[i];
        int64_t p = w[i] / period_ms, off = w[i] - p * period_ms;
        int64_t have = at(&period, id);
        Py_ssize_t row = id * width;
        if (have < p) {  /* no state, or an older period: start afresh */
            set(&period, id, p);
            cnt[id] = 0;
            for (Py_ssize_t c = 0; c < width; c++)
                set(&recent, row + c, -1);
            d[id] = 1;
            have = p;
        }
        int ok;
        if (have > p) {  /* an earlier period, after a later one began: drop */
            ok = 0;
        } else {
            int seen = 0;
            for (Py_ssize_t c = 0; c < width && !seen; c++)
                seen = at(&recent, row + c) == off;
            if (seen) {
                ok = 1;
            } else if (cnt[id] < cap) {
                ok = 1;
                cnt[id]++;
                if (width) {
                    for (Py_ssize_t c = 0; c + 1 < width; c++)
                        set(&recent, row + c, at(&recent, row + c + 1));
                    set(&recent, row + width - 1, off);
                }
                d[id] = 1;
            } else {
                ok = 0;
            }
        }
        k[i] = (char)ok;
        dropped += !ok;
    }
    result = PyLong_FromSsize_t(dropped);
done:
    PyMem_Free(memo);
    release(&period);
    release(&count);
    release(&recent);
    release(&dirty);
    release(&acc);
    release(&win);
    release(&keep);
    return result;
}

static PyMethodDef methods[] = {
    {"admit", admit, METH_VARARGS,
     "admit(period, count, recent, dirty, accounts, windows, period_ms, cap, keep) -> dropped:"
     " the participation cap's decisions for a batch (see privacy/_admit.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_admit",
    "The participation cap's decisions for a batch, one pass (privacy/_admit.c).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__admit(void)
{
    return PyModule_Create(&module);
}
