r"""JSONL corpora for JSON embedding: a streaming reader, label masks and bundled data.

Two line formats are read, one JSON value per line (blank lines skipped, ``.gz`` read
transparently):

* the wrapped format ``{"id": ..., "labels": {...}, "record": <document>}`` of
  ``shared/datasets/json`` (``record`` is encoded, ``labels`` only evaluate);
* plain JSONL: any value per line; its id is the 1-based line number, its labels empty.

Lines are parsed strictly (``NaN``/``Infinity`` are not JSON) and one at a time, so a
corpus of any size streams in constant memory. Every way a line can be unreadable (not
UTF-8, not JSON, nested too deep for the parser, an integer too long to convert, a broken
gzip stream) raises :class:`JsonFormatError` naming the file and line, so a command line
can print it as one line. Bundled copies (gzip) live in
``datasets/data``:

* ``countries.jsonl.gz`` (250 records, ODbL 1.0, github.com/mledoze/countries);
* ``go_vulndb_osv.jsonl.gz`` (4291 records, CC BY 4.0, "Go Vulnerability Database");
* ``pypi_json.jsonl.gz`` (3003 records of 118 kinds, 268 kB): a many-schema collection of
  real JSON from PyPI artifacts, label ``kind``. 789 subschemas of the SchemaStore schemas
  vendored in the ``check-jsonschema`` 0.39.0 wheel (``check_jsonschema/builtin_schemas/
  vendor/*.json``; Apache-2.0 (SchemaStore) or the MIT / CC BY 4.0 / Apache-2.0 licence of
  the schema's own ``vendor/licenses`` file; the AGPL/GPL ``renovate`` and ``snapcraft``
  schemas left out), 2208 test groups of the JSON-Schema-Test-Suite (MIT) shipped in the
  ``jsonschema`` 4.26.0 sdist (``json/tests/<draft>/*.json``, kind = the keyword file), and
  the 6 meta-schemas of ``jsonschema-specifications`` 2025.9.1 (MIT). Every record's
  ``labels`` names its package, file path and licence; ``$schema`` is removed. Built by
  ``python -m benchmarks.mbat_pypi_corpus`` (its docstring has the download commands).
"""
from __future__ import annotations

import gzip
import json
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

from graphcore.codegen.errors import GraphcoreError
from graphcore.datasets import DATA_DIR

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared" / "datasets" / "json"

CORPORA = ("countries", "go_vulndb_osv", "pypi_json")
MASKS: dict[str, tuple[str, ...]] = {
    "countries": ("region", "subregion"),
    "go_vulndb_osv": (),
    "pypi_json": (),
}
"""Fields to delete before encoding when the label named in the data README is the target."""


class JsonFormatError(GraphcoreError, ValueError):
    """A line of a corpus is not strict JSON, or not in the expected format."""


@dataclass
class Record:
    """One corpus entry: ``id``, evaluation ``labels``, the JSON document ``record`` and its 1-based ``line``."""

    id: str
    record: Any
    labels: dict = field(default_factory=dict)
    line: int = 0


def strict_loads(text: str, where: str) -> Any:
    """``json.loads`` that rejects ``NaN``/``Infinity`` and names ``where`` in every error."""

    def _reject(name: str) -> Any:
        raise JsonFormatError(f"{where}: {name} is not valid JSON (JSON has no NaN/Infinity); write null or a string")

    try:
        return json.loads(text, parse_constant=_reject)
    except json.JSONDecodeError as e:
        raise JsonFormatError(f"{where}: not valid JSON: {e}") from None
    except RecursionError:
        raise JsonFormatError(f"{where}: JSON nested too deeply for the parser (Python's recursion limit, "
                              f"{sys.getrecursionlimit()}); flatten the document") from None
    except ValueError as e:  # e.g. an integer beyond sys.get_int_max_str_digits()
        if "integer string conversion" not in str(e):
            raise
        raise JsonFormatError(f"{where}: an integer has more than {sys.get_int_max_str_digits()} digits, more than "
                              "Python converts; write it as a string") from None


def _open_binary(path: Path) -> BinaryIO:
    if not path.exists():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"corpus path {path} is a directory; give a .jsonl or .jsonl.gz file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every non-blank line of a UTF-8 (optionally gzipped) file.

    Lines are decoded one by one, so an encoding error names its line.

    Raises:
        JsonFormatError: a line that is not UTF-8, or a ``.gz`` file that is not a whole gzip stream.
    """
    path = Path(path)
    line_no = 0
    with _open_binary(path) as f:
        try:
            for line_no, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise JsonFormatError(f"{path}:{line_no}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                          f"{e.start + 1}); save the file as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
                if text.strip():
                    yield line_no, text
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise JsonFormatError(f"{path}: broken gzip data after line {line_no} ({e}); re-compress the file "
                                  "or give the plain .jsonl") from None


def iter_records(path: str | Path, mask: Sequence[str] = (), limit: int | None = None) -> Iterator[Record]:
    """Stream :class:`Record` objects from a JSONL file, one line at a time.

    Args:
        path: ``.jsonl`` or ``.jsonl.gz``.
        mask: dotted field paths (``"region"``, ``"database_specific.url"``) deleted from each
            record before it is returned; missing fields are ignored.
        limit: stop after this many records.
    """
    n = 0
    for line_no, line in iter_lines(path):
        if limit is not None and n >= limit:
            return
        obj = strict_loads(line, f"{path}:{line_no}")
        if isinstance(obj, dict) and "record" in obj and "id" in obj:
            labels = obj.get("labels") or {}
            if not isinstance(labels, dict):
                raise JsonFormatError(f"{path}:{line_no}: 'labels' must be an object, got {type(labels).__name__}")
            rec = Record(str(obj["id"]), obj["record"], labels, line_no)
        else:
            rec = Record(str(line_no), obj, line=line_no)
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
    return sum(1 for _ in iter_lines(path))


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
