/* privmon.agents._columns: stage 1's numpy columns from decoded events (and from dict
 * probes), one C loop each.
 *
 * fill(events, field, out) -> None
 *     out[i] = events[i].<field>, where ``field`` is the attribute's descriptor (e.g.
 *     TelemetryEvent.__dict__["latency_ms"]) and ``out`` a writable C-contiguous
 *     buffer of len(events) items: int64 (the attribute an int), float64 (a float or
 *     an int) or bool (a bool).
 * codes(events, field, table, labels, out) -> int
 *     out[i] = table[events[i].<field>], where table is a dict of value -> code (codes
 *     0 .. len(table) - 1, in order of first sight) and labels[code] the value's str: a
 *     value not in it gets the next code, and its str is appended to labels (as
 *     agents/stage1_columns.py's _Codes would give). Returns how many values were new.
 * dense(values, codes, firsts) -> int
 *     Numbers the distinct int64 values in order of first sight: codes[i] is values[i]'s
 *     number, firsts[c] the index of number c's first event; returns how many numbers
 *     (codes, firsts: int64[len(values)]; firsts past that count are left as they are).
 * lookup(table, keys, out) -> int
 *     out[i] = table[keys[i]] (table: a dict of key -> int, keys: a list), or -1 where
 *     the key is not in it; returns how many are not (agents/account_ids.py's RawIds).
 *
 * Why: stage 1 turns each batch of decoded events into columns (agents/stage1_columns.py).
 * ``np.fromiter(map(attrgetter(f), events))`` costs ~35-60 ns an event and field, in
 * attrgetter's call and the iterator protocol; here one descriptor call and one
 * conversion, ~10.
 *
 * The attribute is read through the descriptor's own __get__, which checks that the
 * event is an instance of the descriptor's class (else TypeError). A value of another
 * type than the column's raises TypeError naming the event and the type that arrived.
 * On any raise ``out`` may be partly written; the caller discards it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { INT64, FLOAT64, BOOL };

static int
column_type(const Py_buffer *v)
{
    const char *f = v->format ? v->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (f[0] != '\0' && f[1] == '\0') {
        if ((f[0] == 'q' || f[0] == 'l') && v->itemsize == 8)
            return INT64;
        if (f[0] == 'd' && v->itemsize == 8)
            return FLOAT64;
        if (f[0] == '?' && v->itemsize == 1)
            return BOOL;
    }
    return -1;
}

/* A C-contiguous buffer of one dimension of n items (n < 0: any number), writable if
 * asked, of int64, float64 or bool items (``want``: that type only; -1: any of them).
 * Returns its type, or -1 with an exception set (and nothing held). */
static int
column(Py_buffer *view, PyObject *obj, const char *name, Py_ssize_t n, int writable, int want)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous%s array, got %.80s", name,
                     writable ? " writable" : "", Py_TYPE(obj)->tp_name);
        return -1;
    }
    int type = column_type(view);
    if (type < 0 || (want >= 0 && type != want)) {
        PyErr_Format(PyExc_TypeError, "%s: expected %s items, got format '%s' of %zd bytes",
                     name, want == INT64 ? "int64" : "int64, float64 or bool",
                     view->format ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    if (view->ndim != 1 || (n >= 0 && view->shape[0] != n)) {
        PyErr_Format(PyExc_ValueError, "%s: expected one dimension of %zd items, got %d "
                     "dimension(s) of %zd", name, n, view->ndim,
                     view->ndim ? view->shape[0] : 0);
        PyBuffer_Release(view);
        return -1;
    }
    return type;
}

static int
check_args(PyObject *events, PyObject *field)
{
    if (!PyList_Check(events)) {
        PyErr_Format(PyExc_TypeError, "events: expected a list, got %.80s",
                     Py_TYPE(events)->tp_name);
        return -1;
    }
    if (Py_TYPE(field)->tp_descr_get == NULL) {
        PyErr_Format(PyExc_TypeError, "field: expected an attribute descriptor (a class's "
                     "__dict__ entry), got %.80s", Py_TYPE(field)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *
fill(PyObject *self, PyObject *args)
{
    PyObject *events, *field, *out;
    if (!PyArg_ParseTuple(args, "OOO:fill", &events, &field, &out) || check_args(events, field) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(events);
    Py_buffer view;
    int type = column(&view, out, "out", n, 1, -1);
    if (type < 0)
        return NULL;
    descrgetfunc get = Py_TYPE(field)->tp_descr_get;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = PyList_GET_ITEM(events, i);
        PyObject *value = get(field, event, (PyObject *)Py_TYPE(event));
        if (value == NULL)
            goto fail;
        int ok = 1;
        if (type == INT64 && PyLong_CheckExact(value)) {
            long long v = PyLong_AsLongLong(value);
            if (v == -1 && PyErr_Occurred())
                ok = 0;
            ((long long *)view.buf)[i] = v;
        } else if (type == FLOAT64 && PyFloat_CheckExact(value)) {
            ((double *)view.buf)[i] = PyFloat_AS_DOUBLE(value);
        } else if (type == FLOAT64 && PyLong_CheckExact(value)) {
            double v = PyLong_AsDouble(value);
            if (v == -1.0 && PyErr_Occurred())
                ok = 0;
            ((double *)view.buf)[i] = v;
        } else if (type == BOOL && PyBool_Check(value)) {
            ((char *)view.buf)[i] = value == Py_True;
        } else {
            PyErr_Format(PyExc_TypeError, "events[%zd]: expected %s, got %.80s", i,
                         type == INT64 ? "an int" : type == FLOAT64 ? "a float or an int"
                         : "a bool", Py_TYPE(value)->tp_name);
            ok = 0;
        }
        Py_DECREF(value);
        if (!ok)
            goto fail;
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&view);
    return NULL;
}

/* Whether a and b are the same object, or both exact str of the same characters (a
 * dict would give them one code: equal str compare equal). PEP 393 keeps every ready
 * str in its narrowest kind, so equal ones have equal kind, length and bytes. */
static int
same_str(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    if (!PyUnicode_CheckExact(a) || !PyUnicode_CheckExact(b) || !PyUnicode_IS_READY(a) ||
        !PyUnicode_IS_READY(b))
        return 0;
    Py_ssize_t len = PyUnicode_GET_LENGTH(a);
    return len == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b) &&
           memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)len * PyUnicode_KIND(a)) == 0;
}

static PyObject *
codes(PyObject *self, PyObject *args)
{
    PyObject *events, *field, *table, *labels, *out;
    if (!PyArg_ParseTuple(args, "OOO!O!O:codes", &events, &field, &PyDict_Type, &table,
                          &PyList_Type, &labels, &out)
        || check_args(events, field) < 0)
        return NULL;
    if (PyDict_GET_SIZE(table) != PyList_GET_SIZE(labels)) {
        PyErr_Format(PyExc_ValueError, "labels: expected one per code of table (%zd), got %zd",
                     PyDict_GET_SIZE(table), PyList_GET_SIZE(labels));
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(events), fresh = 0;
    Py_buffer view;
    if (column(&view, out, "out", n, 1, INT64) < 0)
        return NULL;
    long long *o = (long long *)view.buf;
    descrgetfunc get = Py_TYPE(field)->tp_descr_get;
    PyObject *prev = NULL;  /* the last value looked up, and its code */
    long long prev_code = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = PyList_GET_ITEM(events, i);
        PyObject *value = get(field, event, (PyObject *)Py_TYPE(event));
        if (value == NULL)
            goto fail;
        if (prev != NULL && same_str(value, prev)) {  /* (an envelope's events repeat) */
            Py_DECREF(value);
            o[i] = prev_code;
            continue;
        }
        PyObject *code = PyDict_GetItemWithError(table, value);  /* borrowed */
        if (code == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(value);
                goto fail;
            }
            /* a new value: the next code, its str as the label (label first: a failure
               leaves table and labels one to one) */
            Py_ssize_t next = PyDict_GET_SIZE(table);
            PyObject *label = PyObject_Str(value), *num = PyLong_FromSsize_t(next);
            int bad = label == NULL || num == NULL || PyList_Append(labels, label) < 0;
            if (!bad && PyDict_SetItem(table, value, num) < 0) {
                bad = 1;
                PyList_SetSlice(labels, next, next + 1, NULL);
            }
            Py_XDECREF(label);
            Py_XDECREF(num);
            if (bad) {
                Py_DECREF(value);
                goto fail;
            }
            o[i] = next;
            fresh++;
            Py_XSETREF(prev, value);
            prev_code = next;
            continue;
        }
        if (!PyLong_CheckExact(code)) {
            Py_DECREF(value);
            PyErr_Format(PyExc_TypeError, "table: expected int codes, got %.80s",
                         Py_TYPE(code)->tp_name);
            goto fail;
        }
        long long v = PyLong_AsLongLong(code);
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(value);
            goto fail;
        }
        o[i] = v;
        Py_XSETREF(prev, value);
        prev_code = v;
    }
    Py_XDECREF(prev);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(fresh);
fail:
    Py_XDECREF(prev);
    PyBuffer_Release(&view);
    return NULL;
}

static PyObject *
dense(PyObject *self, PyObject *args)
{
    PyObject *o_values, *o_codes, *o_firsts;
    if (!PyArg_ParseTuple(args, "OOO:dense", &o_values, &o_codes, &o_firsts))
        return NULL;
    Py_buffer values, codes_view, firsts;
    if (column(&values, o_values, "values", -1, 0, INT64) < 0)
        return NULL;
    Py_ssize_t n = values.shape[0];
    if (column(&codes_view, o_codes, "codes", n, 1, INT64) < 0) {
        PyBuffer_Release(&values);
        return NULL;
    }
    if (column(&firsts, o_firsts, "firsts", n, 1, INT64) < 0) {
        PyBuffer_Release(&values);
        PyBuffer_Release(&codes_view);
        return NULL;
    }
    PyObject *result = NULL;
    int64_t *slot = NULL;
    const char *vb = values.buf, *cb = codes_view.buf, *fb = firsts.buf;
    Py_ssize_t bytes = 8 * n;
    if (n && ((vb < cb + bytes && cb < vb + bytes) || (vb < fb + bytes && fb < vb + bytes)
              || (cb < fb + bytes && fb < cb + bytes))) {
        PyErr_SetString(PyExc_ValueError, "values, codes, firsts: expected three arrays that "
                        "do not overlap");
        goto done;
    }
    Py_ssize_t slots = 2;
    while (slots < 2 * n)
        slots <<= 1;
    slot = PyMem_New(int64_t, slots);  /* the number at each slot, -1: empty */
    if (slot == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t s = 0; s < slots; s++)
        slot[s] = -1;
    const int64_t *v = (const int64_t *)values.buf;
    int64_t *c = (int64_t *)codes_view.buf, *f = (int64_t *)firsts.buf;
    uint64_t mask = (uint64_t)slots - 1;
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t h = (uint64_t)v[i] * 0x9E3779B97F4A7C15ULL;
        uint64_t s = (h ^ (h >> 31)) & mask;
        for (;;) {
            int64_t number = slot[s];
            if (number < 0) {
                slot[s] = count;
                f[count] = i;
                c[i] = count++;
                break;
            }
            if (v[f[number]] == v[i]) {
                c[i] = number;
                break;
            }
            s = (s + 1) & mask;
        }
    }
    result = PyLong_FromSsize_t(count);
done:
    PyMem_Free(slot);
    PyBuffer_Release(&values);
    PyBuffer_Release(&codes_view);
    PyBuffer_Release(&firsts);
    return result;
}

static PyObject *
lookup(PyObject *self, PyObject *args)
{
    PyObject *table, *keys, *out;
    if (!PyArg_ParseTuple(args, "O!O!O:lookup", &PyDict_Type, &table, &PyList_Type, &keys, &out))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keys), missing = 0;
    Py_buffer view;
    if (column(&view, out, "out", n, 1, INT64) < 0)
        return NULL;
    long long *o = (long long *)view.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyDict_GetItemWithError(table, PyList_GET_ITEM(keys, i));  /* borrowed */
        if (value == NULL) {
            if (PyErr_Occurred())
                goto fail;
            o[i] = -1;
            missing++;
            continue;
        }
        long long v = PyLong_CheckExact(value) ? PyLong_AsLongLong(value) : -1;
        if (v < 0) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "table: expected int values >= 0, got %.80R",
                             value);
            goto fail;
        }
        o[i] = v;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(missing);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS,
     "fill(events, field, out): out[i] = events[i].<field> (see agents/_columns.c)."},
    {"codes", codes, METH_VARARGS,
     "codes(events, field, table, labels, out) -> new: each event's code of its <field> "
     "(see agents/_columns.c)."},
    {"dense", dense, METH_VARARGS,
     "dense(values, codes, firsts) -> count: int64 values numbered in order of first sight."},
    {"lookup", lookup, METH_VARARGS,
     "lookup(table, keys, out) -> missing: out[i] = table.get(keys[i], -1)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_columns",
    "numpy columns from a list of decoded events, one C loop each (agents/_columns.c).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__columns(void)
{
    return PyModule_Create(&module);
}
