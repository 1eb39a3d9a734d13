/* The top-level element walk of medseg.io.dicom.fast_walk._scan, in C.
 *
 * walk(buf, pos, explicit, fields, tags, us_tags, stop, only_group=-1, split=True) walks the
 * little-endian data elements of ``buf`` from ``pos`` exactly as the pure-Python loop of ``_scan``
 * does, storing the values of ``tags`` (tag -> field name) in ``fields``: US tags as int, the others
 * as ASCII text with trailing NUL/space stripped, split on backslashes into a list when there is
 * one (and ``split``). With ``only_group`` >= 0 it also stops at the first element of another group
 * (``file_meta``'s walk of group 0002). It returns
 * ``(pos, True)`` at PixelData (``fields["pixel_offset"]`` / ``["pixel_length"]`` set) and
 * ``(pos, False)`` at the first element it leaves to the Python loop, unconsumed: an element whose
 * header or wanted value is not inside ``buf`` (the reader may need to read more), an undefined
 * length, a tag in ``stop`` or past PixelData, a bad VR, a US value that is not 2 bytes, non-ASCII
 * text. The Python loop handles that one element (or declines the file) and calls ``walk`` again,
 * so both walks give the same result; the test-suite checks it on every real file and on
 * corrupted copies. With it a classic file's header scan takes 18 us instead of 57 (the Python
 * loop stays the fallback when this module was not compiled).
 *
 * dataset(buf, pos, end, explicit, depth, seqs, leaves, us_leaves) is fast_walk.walk_dataset in C:
 * the values of ``leaves`` (US leaves as int, text ones as lists of strings) and of ``seqs`` (as
 * lists of item dicts, recursively) from ``pos`` to ``end`` (-1: up to an item delimiter, or
 * PixelData at depth 0), as ``(dict, pos after)``. It returns None, leaving the whole walk to the
 * Python loop, at anything that loop would read more bytes for, decline, or skip element by element:
 * the end of ``buf``, a bad VR or item, an undefined-length element that is not a wanted sequence,
 * non-ASCII text, a US leaf shorter than 2 bytes, nesting deeper than 8. With it seg_scan.scan_seg
 * takes 0.24 ms instead of 0.45 ms on a 32-frame SEG of the demo archive.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define PIXEL_DATA 0x7FE00010u
#define UNDEFINED_LENGTH 0xFFFFFFFFu

static PyObject *key_offset;
static PyObject *key_length;

static inline uint32_t u16(const unsigned char *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

static inline uint32_t u32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* VRs with a 2-byte reserved field and a 4-byte length (fast_walk._LONG_VRS). */
static int long_vr(unsigned char a, unsigned char b)
{
    switch (a) {
    case 'O':
        return b == 'B' || b == 'D' || b == 'F' || b == 'L' || b == 'V' || b == 'W';
    case 'S':
        return b == 'Q' || b == 'V';
    case 'U':
        return b == 'C' || b == 'N' || b == 'R' || b == 'T' || b == 'V';
    default:
        return 0;
    }
}

/* fast_walk._text(raw), split on backslashes as _scan does; NULL (no exception) when not ASCII. */
static PyObject *text_value(const unsigned char *p, Py_ssize_t n, int split)
{
    while (n > 0 && (p[n - 1] == 0 || p[n - 1] == ' '))
        n--;
    Py_ssize_t parts = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] > 127)
            return NULL;
        if (p[i] == '\\')
            parts++;
    }
    if (parts == 1 || !split)
        return PyUnicode_DecodeASCII((const char *)p, n, NULL);
    PyObject *list = PyList_New(parts);
    if (list == NULL)
        return NULL;
    Py_ssize_t start = 0, k = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '\\') {
            PyObject *s = PyUnicode_DecodeASCII((const char *)p + start, i - start, NULL);
            if (s == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, k++, s);
            start = i + 1;
        }
    }
    return list;
}

static PyObject *done(Py_ssize_t pos, int at_pixels)
{
    return Py_BuildValue("(nO)", pos, at_pixels ? Py_True : Py_False);
}

static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos;
    int explicit;
    PyObject *fields, *tags, *us_tags, *stop;
    long only_group = -1;
    int split = 1;
    if (!PyArg_ParseTuple(args, "y*npO!O!OO|lp", &view, &pos, &explicit, &PyDict_Type, &fields, &PyDict_Type, &tags,
                          &us_tags, &stop, &only_group, &split))
        return NULL;
    const unsigned char *buf = (const unsigned char *)view.buf;
    const Py_ssize_t n = view.len;
    PyObject *result = NULL;
    while (pos >= 0 && pos + 12 <= n) {
        const unsigned char *e = buf + pos;
        uint32_t group = u16(e), tag = (group << 16) | u16(e + 2);
        uint32_t length;
        Py_ssize_t vpos;
        if (only_group >= 0 && group != (uint32_t)only_group)
            break;
        if (group == 0xFFFE || !explicit) {
            length = u32(e + 4);
            vpos = pos + 8;
        } else {
            unsigned char a = e[4], b = e[5];
            if (a < 'A' || a > 'Z' || b < 'A' || b > 'Z')
                break; /* bad VR: the Python loop declines the file */
            if (long_vr(a, b)) {
                length = u32(e + 8);
                vpos = pos + 12;
            } else {
                length = u16(e + 6);
                vpos = pos + 8;
            }
        }
        if (tag == PIXEL_DATA) {
            PyObject *o = PyLong_FromSsize_t(vpos), *l = PyLong_FromUnsignedLong(length);
            int bad = o == NULL || l == NULL || PyDict_SetItem(fields, key_offset, o) < 0 ||
                      PyDict_SetItem(fields, key_length, l) < 0;
            Py_XDECREF(o);
            Py_XDECREF(l);
            result = bad ? NULL : done(pos, 1);
            goto out;
        }
        if (tag > PIXEL_DATA || length == UNDEFINED_LENGTH)
            break;
        PyObject *key = PyLong_FromUnsignedLong(tag);
        if (key == NULL)
            goto out;
        int stopping = PySet_Contains(stop, key);
        PyObject *name = stopping == 0 ? PyDict_GetItemWithError(tags, key) : NULL;
        if (stopping < 0 || (name == NULL && PyErr_Occurred())) {
            Py_DECREF(key);
            goto out;
        }
        if (stopping) {
            Py_DECREF(key);
            break;
        }
        if (name != NULL) {
            if (vpos + (Py_ssize_t)length > n) {
                Py_DECREF(key);
                break; /* the value is past what was read: the Python loop reads on */
            }
            int is_us = PySet_Contains(us_tags, key);
            Py_DECREF(key);
            if (is_us < 0)
                goto out;
            PyObject *value;
            if (is_us) {
                if (length != 2)
                    break;
                value = PyLong_FromUnsignedLong(u16(buf + vpos));
            } else {
                value = text_value(buf + vpos, (Py_ssize_t)length, split);
                if (value == NULL) {
                    if (PyErr_Occurred())
                        goto out;
                    break; /* non-ASCII text */
                }
            }
            if (value == NULL)
                goto out;
            int bad = PyDict_SetItem(fields, name, value) < 0;
            Py_DECREF(value);
            if (bad)
                goto out;
        } else {
            Py_DECREF(key);
        }
        pos = vpos + (Py_ssize_t)length;
    }
    result = done(pos, 0);
out:
    PyBuffer_Release(&view);
    return result;
}

#define ITEM 0xFFFEE000u
#define ITEM_END 0xFFFEE00Du
#define SEQ_END 0xFFFEE0DDu
#define MAX_DEPTH 8

typedef struct {
    const unsigned char *buf;
    Py_ssize_t n;
    int explicit;
    PyObject *seqs, *leaves, *us_leaves;
} Walk;

/* fast_walk.read_element: -1 where the Python loop would read on (or decline a bad VR). */
static int element(const Walk *w, Py_ssize_t pos, uint32_t *tag, int *vr_sq, int *has_vr, uint32_t *length,
                   Py_ssize_t *vpos)
{
    if (pos < 0 || pos + 8 > w->n)
        return -1;
    const unsigned char *e = w->buf + pos;
    uint32_t group = u16(e);
    *tag = (group << 16) | u16(e + 2);
    if (group == 0xFFFE || !w->explicit) {
        *has_vr = *vr_sq = 0;
        *length = u32(e + 4);
        *vpos = pos + 8;
        return 0;
    }
    unsigned char a = e[4], b = e[5];
    if (a < 'A' || a > 'Z' || b < 'A' || b > 'Z')
        return -1;
    *has_vr = 1;
    *vr_sq = a == 'S' && b == 'Q';
    if (long_vr(a, b)) {
        if (pos + 12 > w->n)
            return -1;
        *length = u32(e + 8);
        *vpos = pos + 12;
    } else {
        *length = u16(e + 6);
        *vpos = pos + 8;
    }
    return 0;
}

static PyObject *items_of(const Walk *w, Py_ssize_t pos, uint32_t length, int depth, Py_ssize_t *after);

/* A leaf's value as walk_dataset decodes it; NULL without an exception: leave it to the Python loop. */
static PyObject *leaf_value(const Walk *w, PyObject *key, Py_ssize_t vpos, uint32_t length)
{
    if (vpos + (Py_ssize_t)length > w->n)
        return NULL;
    int is_us = PySet_Contains(w->us_leaves, key);
    if (is_us < 0)
        return NULL;
    if (is_us)
        return length < 2 ? NULL : PyLong_FromUnsignedLong(u16(w->buf + vpos));
    PyObject *value = text_value(w->buf + vpos, (Py_ssize_t)length, 1);
    if (value == NULL || PyList_Check(value))
        return value;
    PyObject *list = PyList_New(1); /* _text(raw).split("\\") is a list, one value too */
    if (list == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    PyList_SET_ITEM(list, 0, value);
    return list;
}

/* fast_walk.walk_dataset; NULL without an exception: leave the whole walk to the Python loop. */
static PyObject *dataset_of(const Walk *w, Py_ssize_t pos, Py_ssize_t end, int depth, Py_ssize_t *after)
{
    if (depth > MAX_DEPTH)
        return NULL;
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    while (end < 0 || pos < end) {
        uint32_t tag, length;
        int sq, has_vr;
        Py_ssize_t vpos;
        if (element(w, pos, &tag, &sq, &has_vr, &length, &vpos) < 0)
            goto fail;
        if (tag == ITEM_END) {
            *after = vpos;
            return out;
        }
        if (depth == 0 && tag >= PIXEL_DATA) {
            *after = pos;
            return out;
        }
        PyObject *key = PyLong_FromUnsignedLong(tag);
        if (key == NULL)
            goto fail;
        int wanted = PySet_Contains(w->seqs, key);
        if (wanted > 0 && (!has_vr || sq)) {
            PyObject *items = items_of(w, vpos, length, depth + 1, &pos);
            int bad = items == NULL || PyDict_SetItem(out, key, items) < 0;
            Py_XDECREF(items);
            Py_DECREF(key);
            if (bad)
                goto fail;
            continue;
        }
        if (wanted < 0 || length == UNDEFINED_LENGTH) {
            Py_DECREF(key);
            goto fail;
        }
        wanted = PySet_Contains(w->leaves, key);
        if (wanted != 0) {
            PyObject *value = wanted > 0 ? leaf_value(w, key, vpos, length) : NULL;
            int bad = value == NULL || PyDict_SetItem(out, key, value) < 0;
            Py_XDECREF(value);
            if (bad) {
                Py_DECREF(key);
                goto fail;
            }
        }
        Py_DECREF(key);
        pos = vpos + (Py_ssize_t)length;
    }
    *after = pos;
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* fast_walk._items */
static PyObject *items_of(const Walk *w, Py_ssize_t pos, uint32_t length, int depth, Py_ssize_t *after)
{
    Py_ssize_t end = length == UNDEFINED_LENGTH ? -1 : pos + (Py_ssize_t)length;
    PyObject *items = PyList_New(0);
    if (items == NULL)
        return NULL;
    while (end < 0 || pos < end) {
        uint32_t tag, item_length;
        int sq, has_vr;
        Py_ssize_t ipos, item_after;
        if (element(w, pos, &tag, &sq, &has_vr, &item_length, &ipos) < 0)
            goto fail;
        if (tag == SEQ_END) {
            *after = ipos;
            return items;
        }
        if (tag != ITEM)
            goto fail;
        Py_ssize_t item_end = item_length == UNDEFINED_LENGTH ? -1 : ipos + (Py_ssize_t)item_length;
        PyObject *values = dataset_of(w, ipos, item_end, depth, &item_after);
        int bad = values == NULL || PyList_Append(items, values) < 0;
        Py_XDECREF(values);
        if (bad)
            goto fail;
        pos = item_end >= 0 ? item_end : item_after;
    }
    *after = pos;
    return items;
fail:
    Py_DECREF(items);
    return NULL;
}

static PyObject *dataset(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, end, after = 0;
    int explicit, depth;
    Walk w;
    if (!PyArg_ParseTuple(args, "y*nnpiOOO", &view, &pos, &end, &explicit, &depth, &w.seqs, &w.leaves, &w.us_leaves))
        return NULL;
    w.buf = (const unsigned char *)view.buf;
    w.n = view.len;
    w.explicit = explicit;
    PyObject *out = dataset_of(&w, pos, end, depth, &after);
    PyBuffer_Release(&view);
    if (out == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *result = Py_BuildValue("(Nn)", out, after);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "Walk the top-level elements of a DICOM buffer (see the module source)."},
    {"dataset", dataset, METH_VARARGS, "fast_walk.walk_dataset in C, or None (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_walk", "C walk of fast_walk._scan", -1, methods};

PyMODINIT_FUNC PyInit__walk(void)
{
    key_offset = PyUnicode_InternFromString("pixel_offset");
    key_length = PyUnicode_InternFromString("pixel_length");
    if (key_offset == NULL || key_length == NULL)
        return NULL;
    return PyModule_Create(&module);
}
