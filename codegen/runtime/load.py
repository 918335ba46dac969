"""Loading built libraries with ctypes, memoised per process, rebuilding a broken one once."""
from __future__ import annotations

import ctypes
from pathlib import Path

from ..errors import BuildError
from . import build
from .cache import Toolchain, build_cached

_LOADED: dict[Path, ctypes.CDLL] = {}


def load_library(source: str, toolchain: Toolchain, abi_version: int) -> ctypes.CDLL:
    """Build (or find in the cache) and load the library for ``source``."""
    path = build_cached(source, toolchain, abi_version, build.compile_shared)
    if path in _LOADED:
        return _LOADED[path]
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:
        path = build_cached(source, toolchain, abi_version, build.compile_shared, force=True)
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as err:
            raise BuildError(f"cannot load {path} even after rebuilding it: {err}", source_path=str(path)) from err
    _LOADED[path] = lib
    return lib
