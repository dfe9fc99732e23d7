/* The hot loops of the hash split (one SHA-256 per row), as int(sha256(...).hexdigest(), 16) % modulus per row,
 * returned as little-endian int64s in a bytes object:
 *
 *   sha256_mod(keys, modulus)               the digest of each bytes object of the list `keys`;
 *   sha256_mod_records(columns, n, modulus) the digest of each row's canonical record bytes (see beam_ml.split),
 *                                           read straight from Arrow buffers.
 *
 * hashlib costs about 1 us per row in Python-level overhead; here the digests are computed with OpenSSL (the
 * library hashlib itself uses) with the GIL released. beam_ml.split computes the same values in Python when
 * this extension is not built; a test checks both agree.
 */
#define PY_SSIZE_T_CLEAN
/* The low-level SHA256_Init/Update/Final: OpenSSL 3 deprecates them, but its one-shot SHA256() and the EVP calls
 * look the algorithm up (or allocate) per call, which costs more than hashing a CSV line. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int64_t mod_of_digest(const unsigned char *digest, uint64_t m) {
    uint64_t remainder = 0; /* Horner over big-endian 32-bit words; remainder < 2**31 keeps it in 64 bits */
    for (int j = 0; j < SHA256_DIGEST_LENGTH; j += 4) {
        uint64_t word = ((uint64_t)digest[j] << 24) | ((uint64_t)digest[j + 1] << 16) |
                        ((uint64_t)digest[j + 2] << 8) | (uint64_t)digest[j + 3];
        remainder = ((remainder << 32) | word) % m;
    }
    return (int64_t)remainder;
}

static int check_modulus(long long modulus) {
    if (modulus <= 0 || modulus >= (1LL << 31)) {
        PyErr_SetString(PyExc_ValueError, "modulus must be in (0, 2**31)");
        return 0;
    }
    return 1;
}

static PyObject *sha256_mod(PyObject *self, PyObject *args) {
    PyObject *list;
    long long modulus;
    if (!PyArg_ParseTuple(args, "O!L", &PyList_Type, &list, &modulus) || !check_modulus(modulus)) return NULL;
    /* A tuple of the keys keeps every buffer alive while the GIL is released, whatever happens to the list. */
    PyObject *keys = PySequence_Tuple(list);
    if (!keys) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    const unsigned char **data = PyMem_Malloc(sizeof(*data) * (n ? n : 1));
    Py_ssize_t *sizes = PyMem_Malloc(sizeof(*sizes) * (n ? n : 1));
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    if (!data || !sizes || !out) {
        PyMem_Free(data);
        PyMem_Free(sizes);
        Py_XDECREF(out);
        Py_DECREF(keys);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i);
        if (!PyBytes_Check(key)) {
            PyErr_Format(PyExc_TypeError, "keys[%zd] is not bytes", i);
            PyMem_Free(data);
            PyMem_Free(sizes);
            Py_DECREF(out);
            Py_DECREF(keys);
            return NULL;
        }
        data[i] = (const unsigned char *)PyBytes_AS_STRING(key);
        sizes[i] = PyBytes_GET_SIZE(key);
    }
    int64_t *result = (int64_t *)PyBytes_AS_STRING(out);
    uint64_t m = (uint64_t)modulus;
    Py_BEGIN_ALLOW_THREADS
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX context;
    for (Py_ssize_t i = 0; i < n; i++) {
        SHA256_Init(&context);
        SHA256_Update(&context, data[i], (size_t)sizes[i]);
        SHA256_Final(digest, &context);
        result[i] = mod_of_digest(digest, m);
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(data);
    PyMem_Free(sizes);
    Py_DECREF(keys);
    return out;
}

/* One column of a RecordBatch in beam_ml's layout: a large_list whose lists hold 0 (missing) or 1 value. */
enum { KIND_INT64 = 0, KIND_FLOAT32 = 1, KIND_BINARY = 2 };
typedef struct {
    int kind;
    Py_buffer list_offsets; /* int64[n + 1 + first], the large_list's offsets */
    Py_buffer values;       /* int64 / float32 values, or the large_binary's data bytes */
    Py_buffer value_offsets; /* int64 offsets of the large_binary values (binary columns only) */
    Py_ssize_t first;       /* the list array's own offset (a slice) */
} Column;

static void release_columns(Column *columns, Py_ssize_t count) {
    for (Py_ssize_t c = 0; c < count; c++) {
        PyBuffer_Release(&columns[c].list_offsets);
        PyBuffer_Release(&columns[c].values);
        if (columns[c].kind == KIND_BINARY) PyBuffer_Release(&columns[c].value_offsets);
    }
}

static PyObject *sha256_mod_records(PyObject *self, PyObject *args) {
    PyObject *specs;
    Py_ssize_t n;
    long long modulus;
    if (!PyArg_ParseTuple(args, "O!nL", &PyList_Type, &specs, &n, &modulus) || !check_modulus(modulus)) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(specs);
    Column *columns = PyMem_Calloc(count ? count : 1, sizeof(Column));
    if (!columns) return PyErr_NoMemory();
    Py_ssize_t ready = 0;
    for (; ready < count; ready++) {
        Column *col = &columns[ready];
        PyObject *value_offsets = NULL;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(specs, ready), "iy*y*On", &col->kind, &col->list_offsets,
                              &col->values, &value_offsets, &col->first))
            goto fail;
        if (col->kind == KIND_BINARY) {
            if (PyObject_GetBuffer(value_offsets, &col->value_offsets, PyBUF_SIMPLE) < 0) {
                PyBuffer_Release(&col->list_offsets);
                PyBuffer_Release(&col->values);
                goto fail;
            }
        } else if (col->kind != KIND_INT64 && col->kind != KIND_FLOAT32) {
            PyBuffer_Release(&col->list_offsets);
            PyBuffer_Release(&col->values);
            PyErr_SetString(PyExc_ValueError, "unknown column kind");
            goto fail;
        }
        if (col->list_offsets.len < (Py_ssize_t)sizeof(int64_t) * (col->first + n + 1)) {
            ready++;
            PyErr_SetString(PyExc_ValueError, "list offsets shorter than the rows");
            goto fail;
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    if (!out) goto fail;
    int64_t *result = (int64_t *)PyBytes_AS_STRING(out);
    uint64_t m = (uint64_t)modulus;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    unsigned char digest[SHA256_DIGEST_LENGTH];
    /* Each row's bytes are assembled in one buffer and hashed with one call: per-field SHA256_Update calls cost
     * more than the hashing. */
    size_t capacity = 1024, used;
    unsigned char *row = malloc(capacity);
    if (!row) bad = 2;
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        used = 0;
        for (Py_ssize_t c = 0; c < count && !bad; c++) {
            const Column *col = &columns[c];
            const int64_t *offsets = (const int64_t *)col->list_offsets.buf + col->first;
            int64_t at = offsets[i];
            if (at < 0 || offsets[i + 1] < at) { bad = 1; break; }
            int present = offsets[i + 1] > at;
            int64_t start = 0, length = 0;
            if (present && col->kind == KIND_BINARY) {
                const int64_t *value_offsets = (const int64_t *)col->value_offsets.buf;
                if ((at + 2) * 8 > col->value_offsets.len) { bad = 1; break; }
                start = value_offsets[at];
                length = value_offsets[at + 1] - start;
                if (start < 0 || length < 0 || start + length > col->values.len) { bad = 1; break; }
            }
            size_t need = used + 1 + 8 + (size_t)length;
            if (need > capacity) {
                while (need > capacity) capacity *= 2;
                unsigned char *grown = realloc(row, capacity);
                if (!grown) { bad = 2; break; }
                row = grown;
            }
            row[used++] = (unsigned char)present;
            if (!present) continue;
            if (col->kind == KIND_INT64) {
                if ((at + 1) * 8 > col->values.len) { bad = 1; break; }
                uint64_t v = (uint64_t)((const int64_t *)col->values.buf)[at];
                for (int b = 0; b < 8; b++) row[used++] = (unsigned char)(v >> (8 * b));
            } else if (col->kind == KIND_FLOAT32) {
                if ((at + 1) * 4 > col->values.len) { bad = 1; break; }
                float f = ((const float *)col->values.buf)[at];
                uint32_t u;
                if (f != f) u = 0x7fc00000u;  /* every NaN alike */
                else if (f == 0.0f) u = 0;     /* -0.0 == 0.0 */
                else memcpy(&u, &f, 4);
                for (int b = 0; b < 4; b++) row[used++] = (unsigned char)(u >> (8 * b));
            } else {
                for (int b = 0; b < 8; b++) row[used++] = (unsigned char)((uint64_t)length >> (8 * b));
                memcpy(row + used, (const unsigned char *)col->values.buf + start, (size_t)length);
                used += (size_t)length;
            }
        }
        if (bad) break;
        SHA256_CTX context;
        SHA256_Init(&context);
        SHA256_Update(&context, row, used);
        SHA256_Final(digest, &context);
        result[i] = mod_of_digest(digest, m);
    }
    free(row);
    Py_END_ALLOW_THREADS
    release_columns(columns, count);
    PyMem_Free(columns);
    if (bad) {
        Py_DECREF(out);
        if (bad == 2) return PyErr_NoMemory();
        PyErr_SetString(PyExc_ValueError, "a value lies outside its column's buffers");
        return NULL;
    }
    return out;
fail:
    release_columns(columns, ready);
    PyMem_Free(columns);
    return NULL;
}

static PyMethodDef methods[] = {
    {"sha256_mod", sha256_mod, METH_VARARGS,
     "sha256_mod(keys: list[bytes], modulus: int) -> bytes of int64: sha256(k) as a big-endian integer mod "
     "modulus, for each key."},
    {"sha256_mod_records", sha256_mod_records, METH_VARARGS,
     "sha256_mod_records(columns: list[(kind, list_offsets, values, value_offsets | None, first)], n: int, "
     "modulus: int) -> bytes of int64: the same for each row's canonical record bytes."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sha256mod", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sha256mod(void) { return PyModule_Create(&module); }
