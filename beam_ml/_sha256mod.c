/* sha256_mod(keys, modulus): for each bytes object k of the list `keys`,
 * int(hashlib.sha256(k).hexdigest(), 16) % modulus, as little-endian int64s in a bytes object.
 *
 * The hot loop of the hash split (one digest per row). hashlib costs about 1 us per row in Python-level
 * overhead; here the digests are computed with OpenSSL (the library hashlib itself uses) with the GIL released.
 * beam_ml.split falls back to hashlib when this extension is not built; a test checks both agree.
 */
#define PY_SSIZE_T_CLEAN
/* The low-level SHA256_Init/Update/Final: OpenSSL 3 deprecates them, but its one-shot SHA256() and the EVP calls
 * look the algorithm up (or allocate) per call, which costs more than hashing a CSV line. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <openssl/sha.h>
#include <stdint.h>

static PyObject *sha256_mod(PyObject *self, PyObject *args) {
    PyObject *list;
    long long modulus;
    if (!PyArg_ParseTuple(args, "O!L", &PyList_Type, &list, &modulus)) return NULL;
    if (modulus <= 0 || modulus >= (1LL << 31)) {
        PyErr_SetString(PyExc_ValueError, "modulus must be in (0, 2**31)");
        return NULL;
    }
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
        uint64_t remainder = 0; /* Horner over big-endian 32-bit words; remainder < 2**31 keeps it in 64 bits */
        for (int j = 0; j < SHA256_DIGEST_LENGTH; j += 4) {
            uint64_t word = ((uint64_t)digest[j] << 24) | ((uint64_t)digest[j + 1] << 16) |
                            ((uint64_t)digest[j + 2] << 8) | (uint64_t)digest[j + 3];
            remainder = ((remainder << 32) | word) % m;
        }
        result[i] = (int64_t)remainder;
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(data);
    PyMem_Free(sizes);
    Py_DECREF(keys);
    return out;
}

static PyMethodDef methods[] = {
    {"sha256_mod", sha256_mod, METH_VARARGS,
     "sha256_mod(keys: list[bytes], modulus: int) -> bytes of int64: sha256(k) as a big-endian integer mod "
     "modulus, for each key."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sha256mod", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sha256mod(void) { return PyModule_Create(&module); }
