"""Where compiled programs are kept across processes, and the one call that turns it on.

:func:`enable_compile_cache` points this toolkit's program cache (:mod:`ufm.programs`: exported,
lowered modules) and JAX's persistent compilation cache (compiled executables) at one directory,
``$UFM_CACHE_DIR``, else ``$XDG_CACHE_HOME/ufm-scl``, else ``~/.cache/ufm-scl``. The ``ufm`` command
calls it (``--no-cache`` or ``UFM_NO_CACHE=1`` turn it off); the library never does by itself, and
otherwise leaves the JAX configuration as the user set it.

Nothing here imports JAX: where JAX is not loaded yet its settings go through its environment
variables (read when it loads), so the cache is on before the first program is compiled (JAX decides
once per process whether it uses its cache). Where JAX is loaded, they go through ``jax.config``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

#: The environment variables of the cache: its directory, and a switch that turns it off.
CACHE_DIR_VARIABLE, NO_CACHE_VARIABLE = "UFM_CACHE_DIR", "UFM_NO_CACHE"
#: Each of the two caches (this toolkit's modules, JAX's executables) is kept under this many bytes
#: (least recently used entries removed first).
CACHE_MAX_BYTES = 2 * 2 ** 30

_lock = threading.Lock()
_state: dict = {"dir": None, "warned": False}


class CompileCacheWarning(UserWarning):
    """The compile cache could not be used (read, written or created); the run goes on without it."""


def default_cache_dir() -> Path:
    """``$UFM_CACHE_DIR``, else ``$XDG_CACHE_HOME/ufm-scl``, else ``~/.cache/ufm-scl``."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ufm-scl"


def cache_disabled_by_environment() -> bool:
    """Whether ``UFM_NO_CACHE`` is set (to anything but empty or ``0``)."""
    return os.environ.get(NO_CACHE_VARIABLE, "") not in ("", "0")


def enable_compile_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Keep compiled programs under ``path`` (default :func:`default_cache_dir`) so that later processes
    load them instead of compiling: this toolkit's programs in ``path/programs``, and every JAX
    executable of this process in JAX's persistent compilation cache, ``path/xla``. Returns the
    directory, or None (with one :class:`CompileCacheWarning`) where it cannot be created or written:
    the run then compiles as usual."""
    root = Path(default_cache_dir() if path is None else path).expanduser()
    try:
        for sub in ("programs", "xla"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root / "programs", prefix=".probe-"):
            pass
    except OSError as err:
        warn(f"the compile cache directory {root} cannot be written ({err.strerror or err}); compiling "
             f"without it (set {CACHE_DIR_VARIABLE} to a writable directory, or {NO_CACHE_VARIABLE}=1)")
        return None
    settings = {"jax_compilation_cache_dir": str(root / "xla"),
                "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": 0,
                "jax_compilation_cache_max_size": CACHE_MAX_BYTES}
    jax = sys.modules.get("jax")
    if jax is None:
        for name, value in settings.items():
            os.environ[name.upper()] = str(value)
    else:
        for name, value in settings.items():
            jax.config.update(name, value)
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()      # JAX decides at its first compile whether it uses its cache
    with _lock:
        _state["dir"] = root / "programs"
    return root


def disable_compile_cache() -> None:
    """Stop reading and writing this toolkit's kept programs (JAX's own setting is left as it is)."""
    with _lock:
        _state["dir"] = None


def cache_dir() -> Path | None:
    """Where this toolkit's programs are kept (None: in memory only)."""
    return _state["dir"]


def warn(message: str) -> None:
    """One :class:`CompileCacheWarning` per process (a cache that fails once fails for every program)."""
    with _lock:
        if _state["warned"]:
            return
        _state["warned"] = True
    warnings.warn(message, CompileCacheWarning, stacklevel=3)
