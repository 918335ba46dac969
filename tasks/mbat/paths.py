r"""JSON paths: the tuple form used inside the encoder and the ``a.b[2].c`` text form.

A path is a tuple of segments, ``str`` for an object key and ``int`` for an array
position: ``("affected", 0, "package", "name")`` prints as ``affected[0].package.name``.
Keys that are not plain identifiers print quoted, ``a["x.y"][0]``, so every key
round-trips through :func:`format_path` and :func:`parse_path`.
"""
from __future__ import annotations

import json
import re

from graphcore.codegen.errors import GraphcoreError

Path = tuple[str | int, ...]


class PathError(GraphcoreError, ValueError):
    """Text that is not a JSON path; the message names the offending character."""

_PLAIN_KEY = re.compile(r"[A-Za-z_$][\w$-]*\Z")
_TOKEN = re.compile(r"""\.(?P<key>[A-Za-z_$][\w$-]*)|\[(?P<index>\d+)\]|\[(?P<quoted>"(?:[^"\\]|\\.)*")\]|\[\*\]""")


def format_path(path: Path) -> str:
    """Text form of a path; the root is ``$``."""
    out = []
    for seg in path:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _PLAIN_KEY.match(seg):
            out.append(f".{seg}")
        else:
            out.append(f"[{json.dumps(seg, ensure_ascii=False)}]")
    text = "".join(out)
    return text[1:] if text.startswith(".") else ("$" + text if text else "$")


def pattern(path: Path) -> str:
    """The path with every array position replaced by ``[*]`` (e.g. ``latlng[*]``)."""
    return format_path(tuple(-1 if isinstance(s, int) else s for s in path)).replace("[-1]", "[*]")


def parse_path(text: str) -> Path:
    """Parse ``a.b[2].c`` (or ``a["x.y"][0]``, or ``$`` for the root) into a path tuple.

    Raises:
        PathError: for text that is not a path, naming the offending position.
    """
    if not isinstance(text, str):
        raise PathError(f"a path must be a string like 'a.b[2].c', got {type(text).__name__}")
    body = text[1:] if text.startswith("$") else text
    if body and not body.startswith((".", "[")):
        body = "." + body
    path: list[str | int] = []
    pos = 0
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if m is None:
            raise PathError(
                f"cannot parse path {text!r} at character {pos + (len(text) - len(body))}: expected '.key', '[n]' or "
                "'[\"quoted key\"]'"
            )
        if m.group("key") is not None:
            path.append(m.group("key"))
        elif m.group("index") is not None:
            path.append(int(m.group("index")))
        elif m.group("quoted") is not None:
            path.append(json.loads(m.group("quoted")))
        else:
            raise PathError(f"path {text!r}: '[*]' is a pattern, not a path; give an array position such as [0]")
        pos = m.end()
    return tuple(path)
