"""The exceptions of graphcore, in one place.

Users catch :class:`GraphcoreError`; bad input is also a :class:`ValueError` so code written
against PyG/DGL conventions keeps working. Messages say what happened, where, and what to do.
"""
from __future__ import annotations


class GraphcoreError(Exception):
    """Base class of every error graphcore raises on purpose."""


class GraphError(GraphcoreError, ValueError):
    """A graph, feature tensor or dataset file that graphcore cannot accept."""


class OptionError(GraphcoreError, ValueError):
    """An option graphcore does not know (a pass, a backend mode); the message lists the known ones."""


class CompileError(GraphcoreError):
    """The compiler met something it cannot handle (an op, a shape, a backend).

    Args:
        message: what went wrong.
        op: the op kind or callable that could not be compiled, if known.
        source_line: ``file:line`` of the user's code that produced it, if known.
    """

    def __init__(self, message: str, *, op: str | None = None, source_line: str | None = None):
        self.op = op
        self.source_line = source_line
        parts = [message]
        if op is not None:
            parts.append(f"op: {op}")
        if source_line is not None:
            parts.append(f"at: {source_line}")
        super().__init__("\n  ".join(parts))


class VerifyError(CompileError):
    """The IR broke an invariant after a pass: a graphcore bug, named after the pass."""

    def __init__(self, message: str, *, pass_name: str | None = None):
        self.pass_name = pass_name
        prefix = f"after pass '{pass_name}': " if pass_name else ""
        super().__init__(prefix + message)


class BuildError(CompileError):
    """The native compiler failed or its output could not be loaded.

    Keeps the command, return code and the tail of stderr so the failure can be reproduced.
    """

    def __init__(self, message: str, *, command: list[str] | None = None, returncode: int | None = None,
                 stderr: str = "", source_path: str | None = None):
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.source_path = source_path
        details = [message]
        if command:
            details.append("command: " + " ".join(command))
        if returncode is not None:
            details.append(f"return code: {returncode}")
        if source_path:
            details.append(f"source: {source_path}")
        if stderr:
            details.append("stderr (tail):\n" + stderr[-4000:])
        super().__init__("\n  ".join(details))
