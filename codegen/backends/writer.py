"""``CodeWriter``: the one way graphcore prints source code (indentation and braces)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


class CodeWriter:
    """Accumulates lines with indentation; ``block(header)`` prints ``header {`` ... ``}``."""

    def __init__(self, indent: str = "  "):
        self._lines: list[str] = []
        self._level = 0
        self._indent = indent

    def line(self, text: str = "") -> None:
        self._lines.append(self._indent * self._level + text if text else "")

    def blank(self) -> None:
        self._lines.append("")

    @contextlib.contextmanager
    def block(self, header: str, close: str = "}") -> Iterator[None]:
        self.line(header + " {")
        self._level += 1
        try:
            yield
        finally:
            self._level -= 1
            self.line(close)

    def splice(self, other: CodeWriter) -> None:
        """Append another writer's lines at the current indentation."""
        for row in other._lines:
            self.line(row)

    def getvalue(self) -> str:
        return "\n".join(self._lines) + "\n"
