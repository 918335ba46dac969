"""Dumps of a compilation: numbered text files of the IR and the kernel specs (``dump_dir``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Dumper:
    """Writes numbered IR/spec text files into ``root`` (nothing when ``root`` is None)."""

    root: Path | None
    counter: int = 0

    def write(self, stage: str, text: str) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"{self.counter:02d}_{stage}.txt").write_text(text + "\n")
        self.counter += 1
