"""Which globals a model pickle may name: a guard around every scikit-learn model load.

Loading a pickle runs code: every global it names is imported and may be called with
arguments of the pickle's choosing (``os.system``, ``subprocess.Popen``,
``numpy.load(..., allow_pickle=True)`` of another file...). ``spec.model.sha256`` does
not make a file trusted: in a pull request its author writes both the file and the
digest, and validate (run on every pull request) loads the model to check it. So every
scikit-learn model load (validate's check, the build, the served Bento) runs under
:func:`restricted`, which refuses a global before it is imported unless it is

- in a module under :data:`MODULES` (numpy, scipy, scikit-learn, LightGBM, XGBoost,
  pandas, joblib's array wrapper, a few standard containers) and not under
  :data:`DENIED_MODULES` (test helpers, file readers and writers, compilers), and
- a class (not :data:`DENIED_CLASSES`, which open or create files), a NumPy ufunc (a
  ``FunctionTransformer(np.log1p)``), or one of the reconstruction functions pickles of
  arrays, scalars, random states and Cython classes use (:data:`FUNCTIONS`,
  ``__pyx_unpickle_*``); ``builtins`` only the containers and scalars of
  :data:`BUILTINS`.

What a fitted estimator pickles is classes, arrays and those functions, so a model saved
with ``joblib.dump`` loads; a custom function or class of the team's own (a
``FunctionTransformer(my_module.clean)``) is refused by name (the served Bento could not
import it either). This narrows what a hostile pickle can do to what those libraries'
classes do when constructed with arguments of its choosing; it is a guard, not a
sandbox: docs/runtime.md, "Model files".

The check uses the interpreter's ``pickle.find_class`` audit event (PEP 578), which both
the C and the pure-Python unpicklers raise (joblib's is the latter), so it holds for
``pickle`` and ``joblib`` files, compressed or not, on every version of them.
Standard library only, plus NumPy when a pickle names it.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Iterator

#: Top-level modules whose globals a model pickle may name (with their submodules).
MODULES = (
    "numpy",
    "scipy",
    "sklearn",
    "lightgbm",
    "xgboost",
    "pandas",
    "joblib",
    "collections",
    "copyreg",
    "_codecs",
    "builtins",
    "datetime",
    "functools",
)
#: Submodules that are never allowed: test helpers (some run strings as code), readers
#: and writers of files (``numpy.load`` of another pickle), compilers and C bindings.
DENIED_MODULES = (
    "numpy.testing",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.ctypeslib",
    "numpy.lib.npyio",
    "numpy.lib.format",
    "numpy._core.memmap",
    "numpy.core.memmap",
    "scipy.io",
    "scipy.weave",
    "scipy._lib._testutils",
    "sklearn.datasets",
    "sklearn.utils._testing",
    "pandas.io",
    "pandas.testing",
    "pandas._testing",
    "joblib.parallel",
    "joblib.memory",
    "joblib.pool",
    "joblib._memmapping_reducer",
    "joblib.externals",
    "xgboost.testing",
    "xgboost.tracker",
)
#: Classes of allowed modules that read, create or map files when constructed.
DENIED_CLASSES = frozenset({("numpy", "memmap")})
#: ``builtins`` names allowed: containers and scalars (never ``eval``, ``getattr``...).
BUILTINS = frozenset(
    {
        "bool",
        "bytearray",
        "bytes",
        "complex",
        "dict",
        "float",
        "frozenset",
        "int",
        "list",
        "object",
        "range",
        "set",
        "slice",
        "str",
        "tuple",
    }
)
#: Functions (not classes) that pickles of arrays, scalars and random states call.
FUNCTIONS = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
    }
)

_ACTIVE = threading.local()
_HOOKED = False
_HOOK_LOCK = threading.Lock()


class UnsafePickleError(Exception):
    """A model pickle names a global that :mod:`pickles` does not allow.

    Attributes:
        name: the global, ``module.qualname``.
    """

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        super().__init__(
            f"refused to load: the pickle names {name} ({why}); a model pickle may name "
            "only the classes of numpy, scipy, scikit-learn, LightGBM, XGBoost and pandas, "
            "NumPy ufuncs and the functions that rebuild arrays (loading a pickle runs "
            "the code it names: docs/runtime.md, 'Model files')"
        )


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def check_global(module: str, name: str) -> None:
    """Refuse ``module.name`` unless a model pickle may name it (the rules above).

    Imports ``module`` only when it is under :data:`MODULES` and not denied.

    Raises:
        UnsafePickleError: the global is not allowed; the message names it and why.
    """
    full = f"{module}.{name}"
    if not isinstance(module, str) or not isinstance(name, str):
        raise UnsafePickleError(repr((module, name)), "not a module and a name")
    parts = module.split(".")
    if not _under(module, MODULES):
        raise UnsafePickleError(full, f"module {parts[0]} is not one a model needs")
    if _under(module, DENIED_MODULES) or any(
        p in ("tests", "testing", "_testing", "conftest") for p in parts
    ):
        raise UnsafePickleError(full, f"module {module} reads files or runs code")
    if module == "builtins":
        if name in BUILTINS:
            return
        raise UnsafePickleError(full, "only containers and scalars of builtins are allowed")
    if (module, name) in FUNCTIONS or (name.startswith("__pyx_unpickle_") and "." not in name):
        return
    try:
        obj = importlib.import_module(module)
        for attr in name.split("."):
            obj = getattr(obj, attr)
    except (ImportError, AttributeError) as exc:
        raise UnsafePickleError(full, f"it cannot be imported: {exc}") from None
    if (module.split(".")[0], name) in DENIED_CLASSES or (
        isinstance(obj, type) and (obj.__module__, obj.__qualname__) in DENIED_CLASSES
    ):
        raise UnsafePickleError(full, "it opens or maps files")
    if isinstance(obj, type):
        return
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.ufunc):
        return
    raise UnsafePickleError(full, "a function, which unpickling could call")


def _hook(event: str, args: tuple) -> None:
    if event != "pickle.find_class" or not getattr(_ACTIVE, "depth", 0):
        return
    module, name = args
    check_global(module, name)


@contextlib.contextmanager
def restricted() -> Iterator[None]:
    """While the block runs, unpickling in this thread refuses what :func:`check_global`
    refuses (the first use installs the audit hook for the process; outside the block,
    and in other threads, it does nothing).

    Raises:
        UnsafePickleError: from inside the block's ``pickle``/``joblib`` load.
    """
    global _HOOKED
    with _HOOK_LOCK:
        if not _HOOKED:
            sys.addaudithook(_hook)
            _HOOKED = True
    _ACTIVE.depth = getattr(_ACTIVE, "depth", 0) + 1
    try:
        yield
    finally:
        _ACTIVE.depth -= 1
