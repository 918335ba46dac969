r"""The error policy of every task's command line.

A user error (a bad file, a bad option value, input graphcore cannot accept) prints one line,
``error: <what happened, where, what to do>``, to stderr and exits with code 2, the code
argparse uses for bad usage. Anything else is a bug and keeps its traceback. ``--debug`` on
the command line, or ``GRAPHCORE_DEBUG=1`` in the environment, shows the traceback of user
errors too.

Why a policy and not ``try``/``except`` in each command: the tasks' commands are LightningCLI
subcommands and argparse tools side by side, and a clear message raised deep in a data loader
used to arrive as the last line of a 45-line traceback.
"""
from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from graphcore.codegen.errors import GraphcoreError

EXIT_USER_ERROR = 2
DEBUG_FLAG = "--debug"
DEBUG_ENV = "GRAPHCORE_DEBUG"

# Exceptions that mean "the input is wrong", not "graphcore is wrong".
USER_ERRORS: tuple[type[BaseException], ...] = (GraphcoreError, FileNotFoundError, IsADirectoryError,
                                                PermissionError, UnicodeDecodeError)

R = TypeVar("R")


class UsageError(GraphcoreError, ValueError):
    """A command-line option or input file that a task cannot use; the message says what to do."""


def one_line(err: BaseException) -> str:
    """The message of ``err`` folded onto one line (multi-line details joined with ``; ``)."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)) and err.filename:
        text = f"{err.strerror or type(err).__name__}: {err.filename}"
    if isinstance(err, UnicodeDecodeError):
        text = f"cannot decode the input as {err.encoding} at byte {err.start}: save the file as UTF-8"
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def decoding_source(err: UnicodeDecodeError, argv: Sequence[str]) -> str | None:
    """``"FILE, line L"`` for the file named in ``argv`` whose bytes ``err`` failed to decode.

    A codec error carries the bytes but no file name (jsonargparse reading a ``--config``, a
    reader deep in a library); the file given on the command line with exactly those bytes is the
    one, and the line is counted up to the bad byte.
    """
    data = err.object if isinstance(err.object, bytes) else b""
    for arg in argv:
        candidate = Path(arg.partition("=")[2] if arg.startswith("-") else arg)
        try:
            if candidate.is_file() and candidate.stat().st_size == len(data) and candidate.read_bytes() == data:
                line = data.count(b"\n", 0, err.start) + 1
                return f"{candidate}, line {line}"
        except (OSError, ValueError):
            continue
    return None


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def without_debug_flag(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--debug``, so the task's own parser never sees it."""
    return [a for a in argv if a != DEBUG_FLAG]


def run_cli(main: Callable[[list[str]], R], argv: Sequence[str] | None = None) -> R:
    """Call ``main(argv)`` under the error policy (see module doc); ``argv`` defaults to
    ``sys.argv[1:]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    try:
        return main(without_debug_flag(argv))
    except USER_ERRORS as err:
        if debug:
            raise
        where = decoding_source(err, argv) if isinstance(err, UnicodeDecodeError) else None
        print(f"error: {where + ': ' if where else ''}{one_line(err)}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None


def guarded(main: Callable[[list[str]], R]) -> Callable[[Sequence[str] | None], R]:
    """Decorator form of :func:`run_cli` for a task's ``main(argv)``."""

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> R:
        return run_cli(main, argv)

    return wrapper


__all__ = ["EXIT_USER_ERROR", "USER_ERRORS", "UsageError", "guarded", "one_line", "run_cli"]
