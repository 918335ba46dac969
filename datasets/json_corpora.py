r"""JSONL corpora for JSON embedding: a streaming reader, label masks and bundled data.

Two line formats are read, one JSON value per line (blank lines skipped, ``.gz`` read
transparently):

* the wrapped format ``{"id": ..., "labels": {...}, "record": <document>}`` of
  ``shared/datasets/json`` (``record`` is encoded, ``labels`` only evaluate);
* plain JSONL: any value per line; its id is the 1-based line number, its labels empty.

Lines are parsed strictly (``NaN``/``Infinity`` are not JSON) and one at a time, so a
corpus of any size streams in constant memory. Bundled copies (gzip) of the two corpora,
``countries.jsonl.gz`` (250 records, ODbL 1.0, github.com/mledoze/countries) and
``go_vulndb_osv.jsonl.gz`` (4291 records, CC BY 4.0, "Go Vulnerability Database"),
live in ``datasets/data``.
"""
from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from codegen.errors import GraphcoreError
from datasets import DATA_DIR

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared" / "datasets" / "json"

CORPORA = ("countries", "go_vulndb_osv")
MASKS: dict[str, tuple[str, ...]] = {
    "countries": ("region", "subregion"),
    "go_vulndb_osv": (),
}
"""Fields to delete before encoding when the label named in the data README is the target."""


class JsonFormatError(GraphcoreError, ValueError):
    """A line of a corpus is not strict JSON, or not in the expected format."""


@dataclass
class Record:
    """One corpus entry: ``id``, evaluation ``labels`` and the JSON document ``record``."""

    id: str
    record: Any
    labels: dict = field(default_factory=dict)


def strict_loads(text: str, where: str) -> Any:
    """``json.loads`` that rejects ``NaN``/``Infinity`` and names ``where`` in every error."""

    def _reject(name: str) -> Any:
        raise JsonFormatError(f"{where}: {name} is not valid JSON (JSON has no NaN/Infinity); write null or a string")

    try:
        return json.loads(text, parse_constant=_reject)
    except json.JSONDecodeError as e:
        raise JsonFormatError(f"{where}: not valid JSON: {e}") from None


def open_text(path: str | Path) -> TextIO:
    """Open a UTF-8 text file, gunzipping ``*.gz``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_records(path: str | Path, mask: Sequence[str] = (), limit: int | None = None) -> Iterator[Record]:
    """Stream :class:`Record` objects from a JSONL file, one line at a time.

    Args:
        path: ``.jsonl`` or ``.jsonl.gz``.
        mask: dotted field paths (``"region"``, ``"database_specific.url"``) deleted from each
            record before it is returned; missing fields are ignored.
        limit: stop after this many records.
    """
    with open_text(path) as f:
        n = 0
        for line_no, line in enumerate(f, 1):
            if limit is not None and n >= limit:
                return
            if not line.strip():
                continue
            obj = strict_loads(line, f"{path}:{line_no}")
            if isinstance(obj, dict) and "record" in obj and "id" in obj:
                labels = obj.get("labels") or {}
                if not isinstance(labels, dict):
                    raise JsonFormatError(f"{path}:{line_no}: 'labels' must be an object, got {type(labels).__name__}")
                rec = Record(str(obj["id"]), obj["record"], labels)
            else:
                rec = Record(str(line_no), obj)
            for field_path in mask:
                delete_field(rec.record, field_path)
            n += 1
            yield rec


def delete_field(doc: Any, dotted: str) -> None:
    """Delete ``a.b.c`` from nested objects in place (no-op when any part is missing)."""
    *parents, last = dotted.split(".")
    for key in parents:
        if not isinstance(doc, dict) or key not in doc:
            return
        doc = doc[key]
    if isinstance(doc, dict):
        doc.pop(last, None)


def count_records(path: str | Path) -> int:
    """Number of non-blank lines (a cheap streaming pass)."""
    with open_text(path) as f:
        return sum(1 for line in f if line.strip())


def corpus_path(name: str, data_dir: str | Path | None = None) -> Path:
    """Where corpus ``name`` lives: ``data_dir`` if given, else ``../shared/datasets/json``, else the bundled copy."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    candidates = [Path(data_dir)] if data_dir is not None else [SHARED_DIR, DATA_DIR]
    for d in candidates:
        for fname in (f"{name}.jsonl", f"{name}.jsonl.gz"):
            if (d / fname).exists():
                return d / fname
    raise FileNotFoundError(f"corpus {name!r} not found in {', '.join(map(str, candidates))}")
