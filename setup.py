"""The one thing pyproject.toml cannot say: the optional C extension ``pandanode.core._verify``.

It checks a batch of Ed25519 signatures with the GIL released once (core/_verify.c). It is
optional: without a C compiler or Python's headers the install still succeeds, with a warning,
and pandanode.core.signatures falls back to PyNaCl (same results, more GIL contention).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pandanode.core._verify",
            sources=["core/_verify.c"],
            optional=True,
        )
    ]
)
