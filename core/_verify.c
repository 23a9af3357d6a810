/* pandanode.core._verify: check a batch of Ed25519 signatures with the GIL released once.
 *
 * PyNaCl takes and releases the GIL around every call, and spends some microseconds of Python
 * per signature; a batch of a few hundred entries then keeps the verifying threads contending
 * with the event loop for the GIL. Here the arguments are checked and their buffers held while
 * the GIL is held, and every signature is checked in one stretch without it.
 *
 * No libsodium is linked in: the module calls the crypto_sign_verify_detached of the libsodium
 * PyNaCl already loaded (bundled in nacl._sodium, or a system libsodium it links against), so
 * the results are exactly PyNaCl's. It is found at import: nacl._sodium is imported, then its
 * file is dlopen'ed with RTLD_NOLOAD (the library already mapped, never a second copy).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <string.h>

#define SIGNATURE_BYTES 64
#define PUBLIC_KEY_BYTES 32

typedef int (*verify_detached_fn)(const unsigned char *sig, const unsigned char *m,
                                  unsigned long long mlen, const unsigned char *pk);

static verify_detached_fn verify_detached = NULL;

/* One signature to check: pointers into bytes objects the batch holds a reference to. */
typedef struct {
    const unsigned char *signature;
    const unsigned char *message;
    unsigned long long message_length;
    const unsigned char *public_key;
} job_t;

/* The bytes object at position `field` of item `index`, or NULL with TypeError set. */
static PyObject *
bytes_field(PyObject *item, Py_ssize_t index, Py_ssize_t field, const char *name)
{
    PyObject *value = PyTuple_GET_ITEM(item, field);
    if (!PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "item %zd: %s must be bytes, not %.100s", index, name,
                     Py_TYPE(value)->tp_name);
        return NULL;
    }
    return value;
}

PyDoc_STRVAR(verify_many_doc,
"verify_many(items, /)\n"
"--\n"
"\n"
"Check Ed25519 signatures, releasing the GIL once for the whole batch.\n"
"\n"
"items: a list or tuple of (signature, message, public_key) tuples of bytes, the\n"
"signature 64 bytes and the public key 32. Returns a list of bools, True where the\n"
"signature is valid (libsodium's crypto_sign_verify_detached). Raises TypeError or\n"
"ValueError, naming the item, when an item has another shape; nothing is checked then.");

static PyObject *
verify_many(PyObject *module, PyObject *items)
{
    (void)module;
    PyObject *sequence = PySequence_Fast(items, "items must be a list or tuple");
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    PyObject **elements = PySequence_Fast_ITEMS(sequence);
    PyObject *result = NULL;
    job_t *jobs = NULL;
    char *valid = NULL;
    /* The items themselves, each holding its three bytes objects: a list the caller shares
     * could be changed by another thread while the GIL is released. */
    PyObject **held = NULL;
    Py_ssize_t held_count = 0;

    if (count > 0) {
        jobs = PyMem_New(job_t, count);
        valid = PyMem_Malloc((size_t)count);
        held = PyMem_New(PyObject *, count);
        if (jobs == NULL || valid == NULL || held == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = elements[i];
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_Format(PyExc_TypeError,
                         "item %zd must be a (signature, message, public_key) tuple, not %.100s",
                         i, Py_TYPE(item)->tp_name);
            goto done;
        }
        PyObject *signature = bytes_field(item, i, 0, "signature");
        PyObject *message = signature ? bytes_field(item, i, 1, "message") : NULL;
        PyObject *public_key = message ? bytes_field(item, i, 2, "public_key") : NULL;
        if (public_key == NULL) {
            goto done;
        }
        if (PyBytes_GET_SIZE(signature) != SIGNATURE_BYTES) {
            PyErr_Format(PyExc_ValueError, "item %zd: a signature is %d bytes, got %zd", i,
                         SIGNATURE_BYTES, PyBytes_GET_SIZE(signature));
            goto done;
        }
        if (PyBytes_GET_SIZE(public_key) != PUBLIC_KEY_BYTES) {
            PyErr_Format(PyExc_ValueError, "item %zd: a public key is %d bytes, got %zd", i,
                         PUBLIC_KEY_BYTES, PyBytes_GET_SIZE(public_key));
            goto done;
        }
        Py_INCREF(item);
        held[held_count++] = item;
        jobs[i].signature = (const unsigned char *)PyBytes_AS_STRING(signature);
        jobs[i].message = (const unsigned char *)PyBytes_AS_STRING(message);
        jobs[i].message_length = (unsigned long long)PyBytes_GET_SIZE(message);
        jobs[i].public_key = (const unsigned char *)PyBytes_AS_STRING(public_key);
    }

    if (count > 0) {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < count; i++) {
            valid[i] = verify_detached(jobs[i].signature, jobs[i].message,
                                       jobs[i].message_length, jobs[i].public_key) == 0;
        }
        Py_END_ALLOW_THREADS
    }

    result = PyList_New(count);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *flag = valid[i] ? Py_True : Py_False;
        Py_INCREF(flag);
        PyList_SET_ITEM(result, i, flag);
    }

done:
    for (Py_ssize_t i = 0; i < held_count; i++) {
        Py_DECREF(held[i]);
    }
    PyMem_Free(held);
    PyMem_Free(valid);
    PyMem_Free(jobs);
    Py_DECREF(sequence);
    return result;
}

/* Find crypto_sign_verify_detached in the libsodium PyNaCl loaded; 0, or -1 with ImportError. */
static int
find_libsodium(void)
{
    /* nacl.bindings first: it imports nacl._sodium and runs sodium_init(). */
    PyObject *bindings = PyImport_ImportModule("nacl.bindings");
    if (bindings == NULL) {
        return -1;
    }
    Py_DECREF(bindings);
    PyObject *sodium = PyImport_ImportModule("nacl._sodium");
    if (sodium == NULL) {
        return -1;
    }
    PyObject *file = PyObject_GetAttrString(sodium, "__file__");
    Py_DECREF(sodium);
    if (file == NULL) {
        return -1;
    }
    PyObject *encoded = NULL;
    if (!PyUnicode_FSConverter(file, &encoded)) {
        Py_DECREF(file);
        return -1;
    }
    Py_DECREF(file);
    const char *path = PyBytes_AS_STRING(encoded);
    void *library = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (library == NULL) {
        const char *why = dlerror();
        PyErr_Format(PyExc_ImportError, "nacl._sodium (%s) is not loaded: %s", path,
                     why ? why : "dlopen failed");
        Py_DECREF(encoded);
        return -1;
    }
    dlerror();
    void *symbol = dlsym(library, "crypto_sign_verify_detached");
    /* The handle only counted a reference: nacl._sodium stays loaded, as Python never
     * unloads an extension module. */
    dlclose(library);
    if (symbol == NULL) {
        PyErr_Format(PyExc_ImportError, "no crypto_sign_verify_detached in %s", path);
        Py_DECREF(encoded);
        return -1;
    }
    Py_DECREF(encoded);
    verify_detached = (verify_detached_fn)symbol;
    return 0;
}

static PyMethodDef methods[] = {
    {"verify_many", verify_many, METH_O, verify_many_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pandanode.core._verify",
    .m_doc = "Batch Ed25519 signature checks with the GIL released once per batch.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__verify(void)
{
    if (verify_detached == NULL && find_libsodium() < 0) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
