/* privmon.privacy._rows: n rows of bytes spliced from columns in one pass.
 *
 * splice(n, parts) -> list[bytes], where parts is a list of (kind, object):
 *   (0, bytes)  the same text in every row;
 *   (1, list)   row i gets the list's item i (bytes; the list holds n of them);
 *   (2, bytes)  a JSON array of n numbers, "[a,b,c]" as msgspec or json writes it:
 *               row i gets number i's text (the characters between its commas).
 * Row i is the concatenation of every part's text for row i, in order.
 *
 * Why: a 100k-cell window's release records are ~100 MB of JSON made of a few
 * constant pieces and ~12 numbers a record. Python's own string building copies
 * every record several times and costs ~8 us a record (privacy/rowjson.py says
 * more); here each record is written once, straight into its bytes object.
 * Nothing here formats a number: the digits come from the caller's encoder.
 * Anything that does not fit the description above raises (TypeError or
 * ValueError, naming the part, what was expected and what arrived); no input
 * makes it write outside a buffer it sized itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { CONST = 0, EACH = 1, ARRAY = 2 };

typedef struct {
    int kind;
    const char *data;     /* CONST, ARRAY: the bytes' buffer */
    Py_ssize_t len;       /* CONST: its length */
    PyObject *items;      /* EACH: the list (borrowed) */
    Py_ssize_t *starts;   /* ARRAY: n + 1 offsets; number i is data[starts[i], starts[i+1] - 1) */
} Part;

static int
number_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '.' || c == '-' || c == '+';
}

/* The offsets of an ARRAY part's n numbers; -1 with an exception set. */
static int
scan_array(Part *part, Py_ssize_t index, Py_ssize_t n)
{
    const char *s = part->data;
    Py_ssize_t len = part->len, found = 0, i;
    if (len < 2 || s[0] != '[' || s[len - 1] != ']') {
        PyErr_Format(PyExc_ValueError,
                     "part %zd: expected a JSON array of numbers \"[...]\", got %zd bytes "
                     "not in brackets", index, len);
        return -1;
    }
    part->starts = PyMem_New(Py_ssize_t, n + 1);
    if (part->starts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (n == 0) {
        if (len != 2) {
            PyErr_Format(PyExc_ValueError, "part %zd: expected an empty array for 0 rows, "
                         "got %zd bytes", index, len);
            return -1;
        }
        part->starts[0] = 1;
        return 0;
    }
    part->starts[0] = 1;
    for (i = 1; i < len - 1; i++) {
        char c = s[i];
        if (c == ',') {
            if (i == part->starts[found] || found + 1 >= n) {
                PyErr_Format(PyExc_ValueError,
                             i == part->starts[found]
                                 ? "part %zd: expected %zd numbers, got an empty one"
                                 : "part %zd: expected %zd numbers, got more",
                             index, n);
                return -1;
            }
            part->starts[++found] = i + 1;
        }
        else if (!number_char(c)) {
            PyErr_Format(PyExc_ValueError, "part %zd: expected numbers only, got byte 0x%02x "
                         "at %zd", index, (unsigned char)c, i);
            return -1;
        }
    }
    if (found + 1 != n || part->starts[found] == len - 1) {
        PyErr_Format(PyExc_ValueError, "part %zd: expected %zd numbers, got %zd%s", index, n,
                     found + 1, part->starts[found] == len - 1 ? " (the last one empty)" : "");
        return -1;
    }
    part->starts[n] = len;  /* number n-1 ends before the ']' */
    return 0;
}

static void
free_parts(Part *parts, Py_ssize_t count)
{
    for (Py_ssize_t j = 0; j < count; j++)
        PyMem_Free(parts[j].starts);
    PyMem_Free(parts);
}

static PyObject *
splice(PyObject *module, PyObject *args)
{
    Py_ssize_t n, count, i, j;
    PyObject *list, *out = NULL;
    Part *parts;

    if (!PyArg_ParseTuple(args, "nO!:splice", &n, &PyList_Type, &list))
        return NULL;
    if (n < 0)
        return PyErr_Format(PyExc_ValueError, "n: expected rows >= 0, got %zd", n);
    count = PyList_GET_SIZE(list);
    parts = PyMem_New(Part, count > 0 ? count : 1);
    if (parts == NULL)
        return PyErr_NoMemory();
    memset(parts, 0, sizeof(Part) * (count > 0 ? count : 1));
    /* The one allocation that can run Python code (a GC pass, and finalizers) comes
     * before the checks: after them nothing runs that could change what was checked. */
    out = PyList_New(n);
    if (out == NULL)
        goto fail;
    for (j = 0; j < count; j++) {
        PyObject *item = PyList_GET_ITEM(list, j), *obj;
        long kind;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyLong_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_Format(PyExc_TypeError, "part %zd: expected a (kind, object) tuple, got %.100s",
                         j, Py_TYPE(item)->tp_name);
            goto fail;
        }
        kind = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        obj = PyTuple_GET_ITEM(item, 1);
        parts[j].kind = (int)kind;
        if (kind == CONST || kind == ARRAY) {
            if (!PyBytes_Check(obj)) {
                PyErr_Format(PyExc_TypeError, "part %zd (kind %ld): expected bytes, got %.100s",
                             j, kind, Py_TYPE(obj)->tp_name);
                goto fail;
            }
            parts[j].data = PyBytes_AS_STRING(obj);
            parts[j].len = PyBytes_GET_SIZE(obj);
            if (kind == ARRAY && scan_array(&parts[j], j, n) < 0)
                goto fail;
        }
        else if (kind == EACH) {
            if (!PyList_Check(obj) || PyList_GET_SIZE(obj) != n) {
                PyErr_Format(PyExc_ValueError, "part %zd (kind 1): expected a list of %zd "
                             "bytes, got %.100s of %zd", j, n, Py_TYPE(obj)->tp_name,
                             PyList_Check(obj) ? PyList_GET_SIZE(obj) : (Py_ssize_t)-1);
                goto fail;
            }
            for (i = 0; i < n; i++) {
                PyObject *b = PyList_GET_ITEM(obj, i);
                if (!PyBytes_Check(b)) {
                    PyErr_Format(PyExc_TypeError, "part %zd (kind 1): item %zd: expected "
                                 "bytes, got %.100s", j, i, Py_TYPE(b)->tp_name);
                    goto fail;
                }
            }
            parts[j].items = obj;
        }
        else {
            PyErr_Format(PyExc_ValueError, "part %zd: expected kind 0 (text), 1 (per row) or "
                         "2 (array of numbers), got %ld", j, kind);
            goto fail;
        }
    }
    for (i = 0; i < n; i++) {
        Py_ssize_t size = 0;
        PyObject *row;
        char *w;
        for (j = 0; j < count; j++) {
            Part *p = &parts[j];
            if (p->kind == CONST)
                size += p->len;
            else if (p->kind == EACH)
                size += PyBytes_GET_SIZE(PyList_GET_ITEM(p->items, i));
            else
                size += p->starts[i + 1] - 1 - p->starts[i];
        }
        row = PyBytes_FromStringAndSize(NULL, size);
        if (row == NULL)
            goto fail;
        w = PyBytes_AS_STRING(row);
        for (j = 0; j < count; j++) {
            Part *p = &parts[j];
            const char *src;
            Py_ssize_t len;
            if (p->kind == CONST) {
                src = p->data;
                len = p->len;
            }
            else if (p->kind == EACH) {
                PyObject *b = PyList_GET_ITEM(p->items, i);
                src = PyBytes_AS_STRING(b);
                len = PyBytes_GET_SIZE(b);
            }
            else {
                src = p->data + p->starts[i];
                len = p->starts[i + 1] - 1 - p->starts[i];
            }
            memcpy(w, src, (size_t)len);
            w += len;
        }
        PyList_SET_ITEM(out, i, row);
    }
    free_parts(parts, count);
    return out;
fail:
    Py_XDECREF(out);
    free_parts(parts, count);
    return NULL;
}

static PyMethodDef methods[] = {
    {"splice", splice, METH_VARARGS,
     "splice(n, parts) -> list[bytes]: n rows, each the concatenation of every part's text "
     "for that row. parts: (0, bytes) the same text in every row; (1, list of n bytes) item "
     "i in row i; (2, bytes of a JSON array of n numbers) number i in row i."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rows",
    "Rows of bytes spliced from columns in one pass (see privacy/rowjson.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__rows(void)
{
    return PyModule_Create(&module);
}
