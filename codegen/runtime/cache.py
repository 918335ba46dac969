"""The build cache: native libraries keyed by a hash of everything that shapes them.

Key: sha256 of the source, the headers it includes, the compiler's path and ``--version``,
the flags and :data:`~codegen.backends.cfamily.ABI_VERSION`. Entry: ``<root>/<key[:2]>/<key>/``
holding ``source``, the library and ``manifest.json`` (key, size, sha256 of the library). The root
is ``$GRAPHCORE_CACHE_DIR`` or ``~/.cache/graphcore`` (read only in :func:`cache_root`).

A miss takes a per-key file lock, checks again, compiles to ``tmp.<pid>.<tid>`` and publishes with
``os.replace`` (library first, manifest last), so a crashed or concurrent build never leaves a
half-written library where a reader would take it. A library whose size or hash disagrees with
its manifest is treated as missing and rebuilt.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ..errors import BuildError


def cache_root() -> Path:
    """Where built libraries live: ``$GRAPHCORE_CACHE_DIR`` or ``~/.cache/graphcore``."""
    return Path(os.environ.get("GRAPHCORE_CACHE_DIR") or Path.home() / ".cache" / "graphcore")


@dataclass(frozen=True)
class Toolchain:
    """A compiler and its flags; ``headers`` are files the source includes (hashed into the key)."""

    compiler: str
    flags: tuple[str, ...]
    headers: tuple[Path, ...] = ()
    suffix: str = ".so"
    source_name: str = "source.cpp"

    def executable(self) -> str:
        path = shutil.which(self.compiler)
        if path is None:
            raise BuildError(f"compiler '{self.compiler}' not found on PATH; install it or choose backend='torch'")
        return path


@functools.lru_cache(maxsize=None)
def compiler_version(path: str) -> str:
    try:
        return subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise BuildError(f"cannot run '{path} --version': {err}") from err


def cache_key(source: str, toolchain: Toolchain, abi_version: int) -> str:
    digest = hashlib.sha256()
    path = toolchain.executable()
    for part in (source, path, compiler_version(path), " ".join(toolchain.flags), str(abi_version)):
        digest.update(part.encode())
        digest.update(b"\0")
    for header in toolchain.headers:
        digest.update(header.read_bytes())
    return digest.hexdigest()


def entry_dir(key: str) -> Path:
    return cache_root() / key[:2] / key


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_valid(entry: Path, toolchain: Toolchain) -> bool:
    """The library exists and matches its manifest (size and sha256)."""
    lib, manifest = entry / f"lib{toolchain.suffix}", entry / "manifest.json"
    try:
        meta = json.loads(manifest.read_text())
        return lib.stat().st_size == meta["size"] and _sha256(lib) == meta["sha256"]
    except (OSError, ValueError, KeyError):
        return False


def build_cached(source: str, toolchain: Toolchain, abi_version: int,
                 compile_fn: Callable[[Path, Path, Toolchain], None], force: bool = False) -> Path:
    """Path of the library for ``source``, compiling it (under a lock) on a miss or if ``force``."""
    key = cache_key(source, toolchain, abi_version)
    entry = entry_dir(key)
    lib = entry / f"lib{toolchain.suffix}"
    if not force and is_valid(entry, toolchain):
        return lib
    entry.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry / "build.lock")):
        if not force and is_valid(entry, toolchain):
            return lib  # another process built it while we waited
        src = entry / toolchain.source_name
        tag = f"{os.getpid()}.{threading.get_ident()}"
        tmp_src = entry / f"tmp.{tag}.{toolchain.source_name}"
        tmp_src.write_text(source)
        os.replace(tmp_src, src)
        tmp_lib = entry / f"tmp.{tag}{toolchain.suffix}"
        compile_fn(src, tmp_lib, toolchain)
        manifest = {"key": key, "size": tmp_lib.stat().st_size, "sha256": _sha256(tmp_lib)}
        os.replace(tmp_lib, lib)
        tmp_manifest = entry / f"tmp.{tag}.json"
        tmp_manifest.write_text(json.dumps(manifest))
        os.replace(tmp_manifest, entry / "manifest.json")
    return lib
