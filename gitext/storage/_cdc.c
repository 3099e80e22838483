/*
 * gitext.storage._cdc: the fast path of gitext.storage.chunker (content-defined chunking).
 *
 * FastCDC-style gear hash with normalized chunking. The algorithm is specified in docs/store.md
 * and implemented a second time, byte for byte, in gitext/storage/chunker.py (_cut_points_py); the two
 * must give identical boundaries, which the tests check on random data.
 *
 * For one chunk starting at offset s with n = bytes left in the buffer:
 *   limit = min(n, max_size); a chunk never exceeds max_size.
 *   fp = 0; for each byte index i (relative to s) from max(0, min_size - 64) while i < limit:
 *       fp = (fp << 1) + GEAR[byte]                          (mod 2^64)
 *       L = i + 1                                            (chunk length if we cut here)
 *       if L >= min_size and (fp & (L < avg_size ? MASK_S : MASK_L)) == 0: cut at L
 *   no cut found: cut at limit if limit == max_size or the buffer is final, else stop (the
 *   caller carries the tail into the next call).
 * MASK_S has the top (log2(avg) + nc) bits set, MASK_L the top (log2(avg) - nc) bits, where nc is
 * the normalization level (default 1): the gear hash shifts left, so its top bits depend on the
 * last 64 bytes, and starting 64 bytes before min_size makes every cut decision a function of
 * the 64 bytes before the cut and of L alone.
 *
 * GEAR[i] is splitmix64 output number i+1 from the seed 0x6769742d6d6c7821 ("git-mlx!").
 *
 * The scan runs without the GIL so chunking overlaps with hashing and compression threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>

#define GEAR_SEED 0x6769742d6d6c7821ULL
#define WINDOW 64

static uint64_t GEAR[256];

static void init_gear(void) {
    uint64_t state = GEAR_SEED;
    for (int i = 0; i < 256; i++) {
        uint64_t z;
        state += 0x9E3779B97F4A7C15ULL;
        z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        GEAR[i] = z ^ (z >> 31);
    }
}

static int log2_exact(Py_ssize_t v) {
    int bits = 0;
    if (v <= 0 || (v & (v - 1)) != 0) return -1;
    while (((Py_ssize_t)1 << bits) < v) bits++;
    return bits;
}

/* Length of the chunk starting at p with n bytes available; 0 means "need more data". */
static Py_ssize_t next_cut(const unsigned char *p, Py_ssize_t n, Py_ssize_t min_size,
                           Py_ssize_t avg_size, Py_ssize_t max_size, uint64_t mask_s,
                           uint64_t mask_l, int final) {
    Py_ssize_t limit = n < max_size ? n : max_size;
    Py_ssize_t i = min_size > WINDOW ? min_size - WINDOW : 0;
    Py_ssize_t normal = avg_size < limit ? avg_size : limit;
    Py_ssize_t first_test = min_size - 1; /* index whose inclusion makes L == min_size */
    uint64_t fp = 0, mask;

    if (limit <= first_test) {
        /* Fewer than min_size bytes: only a final buffer may end here. */
        return final ? limit : 0;
    }
    for (; i < first_test; i++) fp = (fp << 1) + GEAR[p[i]];
    /* Indexes below normal - 1 give L < avg_size: the strict mask. */
    for (; i < normal - 1; i++) {
        fp = (fp << 1) + GEAR[p[i]];
        if ((fp & mask_s) == 0) return i + 1;
    }
    /* The rest have L >= avg_size (the loose mask), except when the buffer ends before
       avg_size: then this loop sees one index, with L = limit < avg_size. */
    mask = limit >= avg_size ? mask_l : mask_s;
    for (; i < limit; i++) {
        fp = (fp << 1) + GEAR[p[i]];
        if ((fp & mask) == 0) return i + 1;
    }
    return (final || limit == max_size) ? limit : 0;
}

static PyObject *cut_points(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"buffer", "min_size", "avg_size", "max_size", "final",
                             "normalization", NULL};
    Py_buffer view;
    Py_ssize_t min_size, avg_size, max_size, count = 0, cap, pos = 0;
    int final = 0, bits, nc = 1;
    Py_ssize_t *cuts;
    PyObject *result;
    (void)self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*nnnp|i", kwlist, &view, &min_size,
                                     &avg_size, &max_size, &final, &nc))
        return NULL;
    bits = log2_exact(avg_size);
    if (min_size < 1 || bits < 6 || bits > 30 || nc < 0 || nc > 3 || min_size > avg_size ||
        avg_size > max_size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError,
                        "need 1 <= min_size <= avg_size <= max_size, avg_size a power of two "
                        "in [64, 2**30], 0 <= normalization <= 3");
        return NULL;
    }
    cap = view.len / min_size + 2;
    cuts = (Py_ssize_t *)PyMem_RawMalloc((size_t)cap * sizeof(Py_ssize_t));
    if (cuts == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }

    Py_BEGIN_ALLOW_THREADS
    {
        const unsigned char *data = (const unsigned char *)view.buf;
        uint64_t mask_s = ~0ULL << (64 - (bits + nc));
        uint64_t mask_l = ~0ULL << (64 - (bits - nc));
        while (pos < view.len) {
            Py_ssize_t len = next_cut(data + pos, view.len - pos, min_size, avg_size, max_size,
                                      mask_s, mask_l, final);
            if (len == 0) break;
            pos += len;
            cuts[count++] = pos;
        }
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    result = PyList_New(count);
    if (result != NULL) {
        for (Py_ssize_t k = 0; k < count; k++) {
            PyObject *v = PyLong_FromSsize_t(cuts[k]);
            if (v == NULL) {
                Py_CLEAR(result);
                break;
            }
            PyList_SET_ITEM(result, k, v);
        }
    }
    PyMem_RawFree(cuts);
    return result;
}

static PyObject *gear_table(PyObject *self, PyObject *unused) {
    PyObject *result = PyList_New(256);
    (void)self;
    (void)unused;
    if (result == NULL) return NULL;
    for (int i = 0; i < 256; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(GEAR[i]);
        if (v == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, i, v);
    }
    return result;
}

/* Byte planes and deltas for storage/codecs.py (docs/store.md, "Coded chunks"); each has a
 * Python twin there, and the tests check the two agree. */

static PyObject *planes(PyObject *self, PyObject *args, int inverse) {
    Py_buffer view;
    int width;
    PyObject *result;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*i", &view, &width)) return NULL;
    if (width < 1 || width > 16) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "width must be in 1..16");
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, view.len);
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    {
        const unsigned char *src = (const unsigned char *)view.buf;
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
        Py_ssize_t count = view.len / width, whole = count * width;
        for (int k = 0; k < width; k++) {
            if (inverse) {
                const unsigned char *plane = src + (Py_ssize_t)k * count;
                for (Py_ssize_t i = 0; i < count; i++) dst[i * width + k] = plane[i];
            } else {
                unsigned char *plane = dst + (Py_ssize_t)k * count;
                for (Py_ssize_t i = 0; i < count; i++) plane[i] = src[i * width + k];
            }
        }
        memcpy(dst + whole, src + whole, (size_t)(view.len - whole));
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return result;
}

static PyObject *group_bytes(PyObject *self, PyObject *args) { return planes(self, args, 0); }
static PyObject *ungroup_bytes(PyObject *self, PyObject *args) { return planes(self, args, 1); }

/* A delta of float elements (docs/store.md, "Coded chunks"): each whole element of `data`
 * within the base's length, read as a little-endian unsigned integer of `width` bytes, minus the
 * base's element (mod 2^(8 width)), zigzag-encoded so that small changes either way are small
 * numbers; bytes past the last whole common element are XORed with the base where it has them.
 * `inverse` turns such bytes back into the data. */
static PyObject *delta_impl(PyObject *args, int inverse) {
    Py_buffer a, b;
    int width;
    PyObject *result;
    if (!PyArg_ParseTuple(args, "y*y*i", &a, &b, &width)) return NULL;
    if (width != 2 && width != 4) {
        PyBuffer_Release(&a);
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "width must be 2 or 4");
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, a.len);
    if (result != NULL) {
        Py_BEGIN_ALLOW_THREADS
        {
            const unsigned char *x = (const unsigned char *)a.buf, *y = (const unsigned char *)b.buf;
            unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
            Py_ssize_t common = a.len < b.len ? a.len : b.len;
            Py_ssize_t whole = common - common % width, i;
            for (i = 0; i < whole; i += width) {
                uint32_t u = 0, v = 0, out;
                for (int k = 0; k < width; k++) {
                    u |= (uint32_t)x[i + k] << (8 * k);
                    v |= (uint32_t)y[i + k] << (8 * k);
                }
                if (width == 4) {
                    if (!inverse) {
                        int32_t d = (int32_t)(u - v);
                        out = ((uint32_t)d << 1) ^ (uint32_t)(d >> 31);
                    } else {
                        uint32_t d = (u >> 1) ^ (0u - (u & 1u));
                        out = d + v;
                    }
                } else {
                    if (!inverse) {
                        int16_t d = (int16_t)(uint16_t)(u - v);
                        out = (uint16_t)(((uint16_t)d << 1) ^ (uint16_t)(d >> 15));
                    } else {
                        uint16_t d = (uint16_t)((u >> 1) ^ (0u - (u & 1u)));
                        out = (uint16_t)(d + v);
                    }
                }
                for (int k = 0; k < width; k++) dst[i + k] = (unsigned char)(out >> (8 * k));
            }
            for (; i < common; i++) dst[i] = x[i] ^ y[i];
            memcpy(dst + common, x + common, (size_t)(a.len - common));
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return result;
}

static PyObject *delta_encode(PyObject *self, PyObject *args) { (void)self; return delta_impl(args, 0); }
static PyObject *delta_decode(PyObject *self, PyObject *args) { (void)self; return delta_impl(args, 1); }

static PyMethodDef methods[] = {
    {"cut_points", (PyCFunction)(void (*)(void))cut_points, METH_VARARGS | METH_KEYWORDS,
     "cut_points(buffer, min_size, avg_size, max_size, final, normalization=1) -> list[int]\n\n"
     "End offsets of the content-defined chunks found in buffer (which starts a chunk). When\n"
     "final is false the trailing partial chunk is not emitted: carry buffer[last:] over."},
    {"gear_table", gear_table, METH_NOARGS, "The 256 gear values (for cross-checking)."},
    {"group", group_bytes, METH_VARARGS, "group(data, width) -> bytes: byte planes, then the tail."},
    {"ungroup", ungroup_bytes, METH_VARARGS, "ungroup(data, width) -> bytes: the inverse of group."},
    {"delta_encode", delta_encode, METH_VARARGS,
     "delta_encode(data, base, width) -> bytes: zigzag differences of elements (codecs.py)."},
    {"delta_decode", delta_decode, METH_VARARGS,
     "delta_decode(coded, base, width) -> bytes: the inverse of delta_encode."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cdc", "FastCDC-style content-defined chunking (C fast path).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cdc(void) {
    init_gear();
    return PyModule_Create(&module);
}
