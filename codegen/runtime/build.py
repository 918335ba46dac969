"""Running the native compiler; failures become :class:`~codegen.errors.BuildError`."""
from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import BuildError
from .cache import Toolchain

BUILD_TIMEOUT_S = 600


def compile_shared(source: Path, output: Path, toolchain: Toolchain) -> None:
    """Compile ``source`` into the shared library ``output``."""
    command = [toolchain.executable(), *toolchain.flags, "-o", str(output), str(source)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise BuildError("the compiler timed out", command=command, source_path=str(source)) from err
    if result.returncode != 0:
        raise BuildError("the native compiler failed", command=command, returncode=result.returncode,
                         stderr=result.stderr, source_path=str(source))
