"""Compiled programs, built once and kept: in memory for the process, and on disk across processes when
the compile cache is on (:func:`ufm.compile_cache.enable_compile_cache`; the ``ufm`` command turns it
on).

:func:`program` is ``jax.jit`` for the toolkit's solvers and kernels, with three differences:

- **Kept across processes.** A program is traced and lowered once and saved as a ``jax.export``
  module under a key made of the function, its static arguments, the shapes and dtypes of the others,
  and a fingerprint of everything that could change it (the toolkit's own source, the versions of jax,
  jaxlib, optax and numpy, the JAX settings that change a trace, ``XLA_FLAGS``, the device and the host
  CPU). Its compiled executable goes to JAX's persistent compilation cache (turned on with it). A later
  process with the same key loads the module and the executable (0.05-0.4 s) instead of tracing,
  lowering and compiling again (1-10 s on 2 cores). Every other JAX program of the process is kept by
  JAX's cache too, which skips XLA's compile but not the trace.
- **Cheap compiles for small programs.** XLA's CPU backend spends its compile in LLVM; a program whose
  ``cost`` (the caller's estimate of the work of one evaluation, e.g. batch rows squared) is at most
  :data:`FAST_COMPILE_COST` is compiled with :data:`FAST_COMPILE_OPTIONS`, 2-3x faster to compile and
  no slower to run at that size (measured in benchmarks/, section ``startup``).
- **Accounted.** :func:`compile_seconds` is the wall time spent building programs (trace, lower and
  compile, or load), which the command reports apart from the solve.

A cache entry that cannot be read (corrupt, truncated, written by another version) or written (a
read-only or full disk) never breaks a run: one warning (:class:`ufm.compile_cache.CompileCacheWarning`)
per process, then
the program is compiled as if there were no cache. Entries are written to a temporary file and
renamed into place, and each directory is kept under :data:`CACHE_MAX_BYTES` (least recently used
entries removed first). Called with tracers (inside another ``jit``, ``vmap`` or ``grad``), a program
is plain ``jax.jit``. A program that ``jax.export`` cannot serialise is compiled and kept in memory.

(Compiled executables are not pickled here: an executable that JAX had itself loaded from its cache
and that was serialised again ran into "Function ... not found" in the next process, with jaxlib
0.10.2 on CPU. Export modules are JAX's documented, versioned serialisation.)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import pickle
import platform
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np

from ufm.compile_cache import CACHE_MAX_BYTES, cache_dir, warn

#: Work estimates (a program's ``cost``) up to this count as small: compiled with
#: :data:`FAST_COMPILE_OPTIONS` on a CPU. 256^2: a full batch of 256 rows.
FAST_COMPILE_COST = 256 ** 2
#: XLA options for small programs on a CPU: no LLVM optimisation and the classic (non-MLIR) fusion
#: emitters. Measured on 2 cores (gradient descent's whole loop, n = 40): compile 3.1 s -> 1.0 s, one
#: solve 0.008 s -> 0.026 s; at n = 1000 the loop would run 3.4x slower, hence the size limit.
FAST_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
_PACKAGES = ("ufm", "solvers", "theory_checks")
_lock = threading.RLock()
_state: dict[str, Any] = {"seconds": 0.0, "depth": 0, "built": 0, "loaded": 0}


def bucket(size: int, least: int = 1) -> int:
    """The next power of two >= ``size`` (at least ``least``): sizes rounded so that problems of nearby
    shapes share one compiled program (padded, with the padding masked out by the caller)."""
    return max(int(least), 1 << (max(int(size), 1) - 1).bit_length())


def compile_seconds() -> float:
    """Wall seconds this process has spent building programs (:func:`program`): tracing, lowering and
    compiling, or loading from the cache."""
    return float(_state["seconds"])


def counts() -> dict[str, int]:
    """``{"built": programs traced and compiled, "loaded": programs loaded from disk}`` in this process."""
    return {"built": int(_state["built"]), "loaded": int(_state["loaded"])}


def clear() -> None:
    """Drop every program held in memory (the on-disk cache stays): with ``jax.clear_caches()``, what a
    long test session does to release the compiled code's memory maps."""
    with _lock:
        for made in _PROGRAMS:
            made._compiled.clear()


# ---------------------------------------------------------------- the key
@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    """A digest of the toolkit's own source files (a changed file changes every key)."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for package in _PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _cpu_model() -> str:
    """The host CPU's model and feature flags (compiled CPU code uses them), where the OS says."""
    try:
        with open("/proc/cpuinfo") as info:
            lines = [line for line in info.read().splitlines() if line.startswith(("model name", "flags"))]
        return "\n".join(dict.fromkeys(lines))
    except OSError:
        return platform.processor()


@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    """Everything outside a program's own arguments that can change its compiled code."""
    import jaxlib
    import optax

    device = jax.devices()[0]
    parts = [_source_digest(), jax.__version__, jaxlib.__version__, optax.__version__, np.__version__,
             sys.version, platform.machine(), _cpu_model(), device.platform, getattr(device, "device_kind", ""),
             str(jax.device_count()), os.environ.get("XLA_FLAGS", "")]
    for name in ("jax_enable_x64", "jax_default_matmul_precision", "jax_threefry_partitionable",
                 "jax_default_prng_impl", "jax_numpy_dtype_promotion", "jax_use_shardy_partitioner"):
        parts.append(f"{name}={getattr(jax.config, name, None)}")
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """``value`` as nested tuples of plain data that name it across processes (every field of a
    dataclass or NamedTuple, whatever its repr shows), or raise TypeError where it cannot (an object
    known only by its address: a function, a user's optax transform, a device mesh; or defined
    outside the toolkit, whose code the fingerprint does not cover: a user's loss options)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.dtype):
        return ("dtype", value.str)
    if isinstance(value, (tuple, list, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, frozenset) else value
        return (type(value).__name__, tuple(_canonical(v) for v in items))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(k), _canonical(v)) for k, v in value.items())))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if type(value).__module__.split(".")[0] not in _PACKAGES:
            # a class of the user's (a loss registered from outside): its code is not in the
            # fingerprint, so a program built with it is kept in memory only
            raise TypeError(f"{type(value).__qualname__} is defined outside the toolkit")
        return (type(value).__qualname__, tuple((f.name, _canonical(getattr(value, f.name)))
                                                for f in dataclasses.fields(value)))
    if isinstance(value, tuple) or hasattr(value, "_fields"):
        return (type(value).__qualname__, tuple((f, _canonical(getattr(value, f))) for f in value._fields))
    raise TypeError(f"{type(value).__name__} has no stable name")


def _static_name(static: dict) -> str | None:
    """The static arguments as a string stable across processes, or None (then no disk cache)."""
    try:
        return repr(_canonical(dict(static)))
    except TypeError:
        return None


def _aval(leaf) -> tuple:
    aval = jax.api_util.shaped_abstractify(leaf)
    return (tuple(aval.shape), str(aval.dtype), bool(getattr(aval, "weak_type", False)))


# ---------------------------------------------------------------- programs
_PROGRAMS: "list[Program]" = []


class _Built(NamedTuple):
    """A compiled program of flat leaves, and the tree of its outputs."""

    compiled: Any
    out_tree: Any


class Program:
    """A function compiled per (static arguments, shapes and dtypes) and kept (module docstring)."""

    def __init__(self, fn: Callable, static_argnames: Sequence[str] = (), cost: Callable | None = None,
                 name: str | None = None):
        self.fn = fn
        self.static_argnames = tuple(static_argnames)
        self.cost = cost
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.jit = jax.jit(fn, static_argnames=self.static_argnames or None)
        self._compiled: dict[tuple, _Built] = {}
        # static arguments may come by position: every argument from the first static one on is
        # passed by name (so one call and the next bind the same way)
        names = list(inspect.signature(fn).parameters)
        self._params = names
        self._first_static = min((names.index(a) for a in self.static_argnames if a in names), default=len(names))
        functools.update_wrapper(self, fn)
        with _lock:
            _PROGRAMS.append(self)

    # the jax.jit surface that callers use
    def lower(self, *args: Any, **kwargs: Any) -> jax.stages.Lowered:
        return self.jit.lower(*args, **kwargs)

    def clear(self) -> None:
        """Drop this program's compiled forms held in memory (the disk cache stays)."""
        self._compiled.clear()

    def _cache_size(self) -> int:
        """How many compiled programs this one holds in memory (as ``jax.jit``'s own method)."""
        return len(self._compiled)

    def bind(self, **static: Any) -> "BoundProgram":
        """This program with some static arguments fixed (called and lowered with the rest)."""
        return BoundProgram(self, static)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) > self._first_static:
            named = dict(zip(self._params[self._first_static:], args[self._first_static:]))
            args, kwargs = args[:self._first_static], {**named, **kwargs}
        static = {k: kwargs.pop(k) for k in self.static_argnames if k in kwargs}
        leaves, in_tree = jax.tree_util.tree_flatten((args, kwargs))
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            # inside another transformation: plain jit (JAX takes no compile options on a jit that a
            # transformation stages into another program, as grad does)
            return self.jit(*args, **kwargs, **static)
        key = (tuple(sorted(static.items())), in_tree, tuple(_aval(leaf) for leaf in leaves))
        built = self._compiled.get(key)
        if built is None:
            built = self._build(key, leaves, in_tree, static)
        return jax.tree_util.tree_unflatten(built.out_tree, built.compiled(*leaves))

    def _flat(self, in_tree, static: dict, out_trees: list) -> Callable:
        """The function of the flat leaves (what is exported and compiled); it records its output tree."""
        def flat(*leaves):
            args, kwargs = jax.tree_util.tree_unflatten(in_tree, leaves)
            out, out_tree = jax.tree_util.tree_flatten(self.fn(*args, **kwargs, **static))
            out_trees.append(out_tree)
            return out
        return flat

    def _build(self, key: tuple, leaves: list, in_tree, static: dict) -> _Built:
        start = time.perf_counter()
        with _lock:
            _state["depth"] += 1
        try:
            args, kwargs = jax.tree_util.tree_unflatten(in_tree, leaves)
            options = self._options(args, kwargs, static) or None
            path = self._path(key, static)
            built = _load(path, leaves, options) if path is not None else None
            if built is None:
                built = self._compile(leaves, in_tree, static, options, path)
            else:
                _count("loaded")
            self._compiled[key] = built
            return built
        finally:
            with _lock:
                _state["depth"] -= 1
                if _state["depth"] == 0:
                    _state["seconds"] += time.perf_counter() - start

    def _compile(self, leaves: list, in_tree, static: dict, options: dict | None, path: Path | None) -> _Built:
        """Trace, lower and compile; where ``path`` is given, export the lowered module there first and
        compile that (so this process and the next compile the same module)."""
        out_trees: list = []
        flat = jax.jit(self._flat(in_tree, static, out_trees))
        _count("built")
        if path is not None:
            try:
                from jax import export

                exported = export.export(flat)(*leaves)
                _save(path, bytes(exported.serialize()), out_trees[-1])
                return _Built(jax.jit(exported.call).lower(*leaves).compile(compiler_options=options),
                              out_trees[-1])
            except Exception:  # noqa: BLE001 - a program export cannot serialise stays in memory
                pass
        return _Built(flat.lower(*leaves).compile(compiler_options=options), out_trees[-1])

    def _options(self, args: tuple, kwargs: dict, static: dict) -> dict:
        if self.cost is None or jax.default_backend() != "cpu":
            return {}
        return dict(FAST_COMPILE_OPTIONS) if self.cost(*args, **kwargs, **static) <= FAST_COMPILE_COST else {}

    def _path(self, key: tuple, static: dict) -> Path | None:
        root = cache_dir()
        if root is None or "<locals>" in self.name or "<lambda>" in self.name \
                or not self.name.startswith(tuple(p + "." for p in _PACKAGES)):
            return None
        static_name = _static_name(static)
        if static_name is None:
            return None
        name = "\0".join([fingerprint(), self.name, static_name, str(key[1]), repr(key[2])])
        return root / (hashlib.sha256(name.encode()).hexdigest() + ".jaxexport")


def _count(what: str) -> None:
    with _lock:
        _state[what] += 1


class BoundProgram:
    """A :class:`Program` with static arguments fixed: ``bound(data)`` is ``program(data, **static)``."""

    def __init__(self, made: Program, static: dict):
        self.program, self.static = made, static

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.program(*args, **kwargs, **self.static)

    def lower(self, *args: Any, **kwargs: Any) -> jax.stages.Lowered:
        return self.program.lower(*args, **kwargs, **self.static)


def program(fn: Callable | None = None, *, static_argnames: Sequence[str] = (),
            cost: Callable | None = None) -> Program | Callable[[Callable], Program]:
    """``jax.jit`` with a kept executable (module docstring); use as ``program(fn, ...)`` or as a
    decorator. ``cost(*args, **kwargs)`` (same arguments as ``fn``): the work of one evaluation, which
    decides :data:`FAST_COMPILE_OPTIONS` (None: always the full optimisation)."""
    if fn is None:
        return lambda f: Program(f, static_argnames, cost)
    return Program(fn, static_argnames, cost)


# ---------------------------------------------------------------- disk
def _load(path: Path, leaves: list, options: dict | None) -> _Built | None:
    """The program saved at ``path``, compiled for ``leaves`` (JAX's cache holds its executable), or
    None (missing; unreadable: one warning, the entry removed)."""
    if not path.exists():
        return None
    try:
        from jax import export

        module, out_tree = pickle.loads(zlib.decompress(path.read_bytes()))
        exported = export.deserialize(bytearray(module))
        compiled = jax.jit(exported.call).lower(*leaves).compile(compiler_options=options)
        os.utime(path)                          # recently used: kept longest
        return _Built(compiled, out_tree)
    except Exception as err:  # noqa: BLE001 - any unreadable entry: compile instead
        warn(f"a compiled program in the compile cache could not be read ({type(err).__name__}: {err}); "
              f"compiling it again (the entry {path} is removed)")
        try:
            path.unlink()
        except OSError:
            pass
        return None


def _save(path: Path, module: bytes, out_tree) -> None:
    """Write an exported module and its output tree to ``path`` atomically; a failure is one warning,
    never an error."""
    blob = zlib.compress(pickle.dumps((module, out_tree)), 1)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
        os.replace(tmp, path)
        tmp = None
        _trim(path.parent)
    except OSError as err:
        warn(f"a compiled program could not be saved in the compile cache {path.parent} "
              f"({err.strerror or err}); the run goes on without keeping it")
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _trim(root: Path, limit: int = CACHE_MAX_BYTES) -> None:
    """Remove the least recently used entries while the directory holds more than ``limit`` bytes."""
    entries = []
    for entry in os.scandir(root):
        if entry.name.endswith(".jaxexport"):
            stat = entry.stat()
            entries.append((stat.st_mtime, stat.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    for _, size, name in sorted(entries):
        if total <= limit:
            break
        try:
            os.unlink(name)
            total -= size
        except OSError:
            pass
