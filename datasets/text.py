"""Where undecodable bytes are: the one helper the text readers of ``datasets`` share."""
from __future__ import annotations

from pathlib import Path


def undecodable_at(path: str | Path, data: bytes, err: UnicodeDecodeError) -> str:
    """``"<path>, line <n>: byte 0x<b> at offset <i>"`` for the first byte ``err`` could not decode,
    so a message names the place a user can open in an editor."""
    line = data.count(b"\n", 0, err.start) + 1
    return f"{path}, line {line}: byte 0x{data[err.start]:02x} at offset {err.start}"
