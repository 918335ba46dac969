r"""Tables with captions, their scored pairs, and the splits used to evaluate table similarity.

One object, :class:`Table` (caption, header rows, body rows), is produced by every reader:

* :func:`load_tables` / :func:`load_pairs`: the JSONL corpus of the TabSim paper (Habibi et al.,
  2020: 640 PubMed Central tables, 1,391 hand-scored pairs), bundled gzip-compressed in
  ``datasets/data/``; plain ``.jsonl`` files in the same format are read too.
* :func:`read_table`: a user's CSV, TSV, HTML or Markdown file, with an optional caption.

Splits (lists of ``(train, test)`` index arrays into the pair list):

* :func:`grouped_kfold`: k folds grouped by query table (``table_a``), so no query table is in
  two folds. This is the honest scheme: the published splits below are random over pairs and put
  the same table in training and test.
* :func:`tabsim_split`: TabSim's released code, first 75% of the pairs for training, the rest
  for test.
* :func:`strubert_folds`: StruBERT's 5-fold cross-validation.

Text decoding: files are decoded as UTF-8 with ``errors="strict"`` by default, so undecodable
bytes raise :class:`TableError` naming the file, line and byte offset (a UTF-8 byte-order mark
is dropped). Pass ``errors="replace"`` to turn them into U+FFFD instead, or ``encoding="latin-1"``
for legacy files.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from graphcore.codegen.errors import GraphError
from graphcore.datasets import DATA_DIR
from graphcore.datasets.text import undecodable_at

__all__ = [
    "BUNDLED_PAIRS", "BUNDLED_TABLES", "Table", "TableError", "TablePair", "grouped_kfold",
    "holdout", "load_pairs", "load_tables", "read_table", "strubert_folds", "tabsim_split",
]

BUNDLED_TABLES = DATA_DIR / "pmc_tables.jsonl.gz"
BUNDLED_PAIRS = DATA_DIR / "pmc_pairs.jsonl.gz"

Split = tuple[np.ndarray, np.ndarray]


class TableError(GraphError):
    """A table file or table object that cannot be read or used."""


def _rows(rows: Iterable[Iterable[object]], where: str) -> tuple[tuple[str, ...], ...]:
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)):
            raise TableError(f"{where}: row {i} is a string, expected a list of cells")
        out.append(tuple("" if c is None else str(c).strip() for c in row))
    return tuple(out)


@dataclass(frozen=True)
class Table:
    """A table: a caption, header rows and body rows of cell strings.

    Rows may be ragged (different lengths); :meth:`grid` pads them with empty cells. A table
    with no non-empty cell is rejected, whatever its caption.

    Args:
        caption: the table's caption (may be empty).
        header_rows: the header rows, top to bottom.
        body_rows: the body rows, top to bottom.
        table_id: an identifier, e.g. ``"PMC2736310:T1"`` or the file name.

    Raises:
        TableError: the table has no cell with text.
    """

    caption: str
    header_rows: tuple[tuple[str, ...], ...]
    body_rows: tuple[tuple[str, ...], ...]
    table_id: str = ""

    def __post_init__(self) -> None:
        where = f"table {self.table_id!r}" if self.table_id else "table"
        object.__setattr__(self, "caption", str(self.caption or "").strip())
        object.__setattr__(self, "header_rows", _rows(self.header_rows, where))
        object.__setattr__(self, "body_rows", _rows(self.body_rows, where))
        if not any(c for row in self.rows for c in row):
            raise TableError(f"{where} is empty: it has no row with a non-empty cell. "
                             "Check the file, its delimiter, or the number of header rows.")

    @property
    def rows(self) -> tuple[tuple[str, ...], ...]:
        """Header rows followed by body rows."""
        return self.header_rows + self.body_rows

    @property
    def n_rows(self) -> int:
        """Number of rows, header included."""
        return len(self.rows)

    @property
    def n_cols(self) -> int:
        """Length of the longest row."""
        return max((len(r) for r in self.rows), default=0)

    def grid(self) -> list[list[str]]:
        """The rows padded with ``""`` to :attr:`n_cols` cells each."""
        width = self.n_cols
        return [list(r) + [""] * (width - len(r)) for r in self.rows]

    def to_json(self) -> dict:
        """The JSONL record of this table (the format of :func:`load_tables`)."""
        return {"table_id": self.table_id, "caption": self.caption,
                "header_rows": [list(r) for r in self.header_rows],
                "body_rows": [list(r) for r in self.body_rows]}


@dataclass(frozen=True)
class TablePair:
    """A scored pair of tables from the corpus (see the data README for the fields)."""

    pair_id: int
    table_a: str
    table_b: str
    similar: int
    score_sum: int = -1
    tabsim_label: int = -1
    tabsim_chunk: int = -1
    strubert_test_fold: int = -1


def _read_text(path: Path, encoding: str, errors: str, missing_hint: str = "") -> str:
    """The decoded text of ``path`` (gunzipped for ``.gz``), without a leading byte-order mark.

    Spreadsheet programs save UTF-8 with a BOM; kept, it would be part of the first header cell
    (``'\\ufeffGene'``) or make ``json.loads`` fail on the first line.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise TableError(f"cannot read table file {path}: no such file{missing_hint}") from e
    except OSError as e:
        raise TableError(f"cannot read table file {path}: {e.strerror}") from e
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise TableError(f"{path}: not a readable gzip file ({e}); decompress it or drop the .gz suffix") from None
    try:
        return data.decode(encoding, errors=errors).removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise TableError(
            f"{undecodable_at(path, data, e)} is not valid {encoding}. "
            "Pass errors='replace' (CLI: --errors replace) to substitute U+FFFD, or the file's "
            "real encoding (e.g. encoding='latin-1', CLI: --encoding latin-1).") from e
    except LookupError as e:
        raise TableError(f"{path}: unknown text encoding {encoding!r} (try 'utf-8' or 'latin-1')") from e


def _missing_hint(path: Path) -> str:
    if path in (BUNDLED_TABLES, BUNDLED_PAIRS):
        return (" (the bundled PMC corpus is for research use and ships in the repository, not in the wheel); "
                "pass your own JSONL files")
    return ""


def _jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    for lineno, line in enumerate(_read_text(path, "utf-8", "strict", _missing_hint(path)).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise TableError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
        except RecursionError:
            raise TableError(f"{path}:{lineno}: JSON nested too deeply to read; a table record is an object "
                             "with lists of rows of cells") from None
        if not isinstance(record, dict):
            raise TableError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        yield lineno, record


def load_tables(path: str | Path = BUNDLED_TABLES) -> dict[str, Table]:
    """Read tables from a JSONL file (``.jsonl`` or ``.jsonl.gz``), keyed by ``table_id``.

    Each line holds ``table_id``, ``caption``, ``header_rows`` and ``body_rows``; other fields
    are ignored.

    Args:
        path: the file; defaults to the bundled PMC corpus (640 tables).

    Raises:
        TableError: a line is not JSON, misses a field, repeats an id or holds an empty table.
    """
    path = Path(path)
    tables: dict[str, Table] = {}
    for lineno, rec in _jsonl(path):
        missing = [k for k in ("table_id", "caption", "header_rows", "body_rows") if k not in rec]
        if missing:
            raise TableError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
        tid = str(rec["table_id"])
        if tid in tables:
            raise TableError(f"{path}:{lineno}: duplicate table_id {tid!r}")
        tables[tid] = Table(rec["caption"], rec["header_rows"], rec["body_rows"], table_id=tid)
    if not tables:
        raise TableError(f"{path} holds no table")
    return tables


def load_pairs(path: str | Path = BUNDLED_PAIRS, tables: dict[str, Table] | None = None) -> list[TablePair]:
    """Read scored pairs from a JSONL file, in file order.

    Args:
        path: the file; defaults to the bundled PMC pairs (1,391 pairs).
        tables: if given, every ``table_a``/``table_b`` must be one of its keys.

    Raises:
        TableError: a line is not JSON, misses a field or names an unknown table.
    """
    path = Path(path)
    fields = {f for f in TablePair.__dataclass_fields__}
    pairs = []
    for lineno, rec in _jsonl(path):
        missing = [k for k in ("pair_id", "table_a", "table_b", "similar") if k not in rec]
        if missing:
            raise TableError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
        pair = TablePair(**{k: v for k, v in rec.items() if k in fields})
        if tables is not None:
            for tid in (pair.table_a, pair.table_b):
                if tid not in tables:
                    raise TableError(f"{path}:{lineno}: pair {pair.pair_id} names table {tid!r}, "
                                     "which is not in the table file")
        pairs.append(pair)
    return pairs


# ---------------------------------------------------------------------------------------------
# Readers for user files


class _HTMLTableParser(HTMLParser):
    """Collects the first ``<table>``: its ``<caption>``, ``<th>``-only rows (and ``<thead>``
    rows) as header, the others as body. ``colspan`` repeats the cell's text."""

    _SECTIONS = {"caption": "_in_caption", "thead": "_in_thead"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.done = False
        self.caption: list[str] = []
        self.rows: list[tuple[list[str], bool]] = []
        self._cell: list[str] | None = None
        self._span = 1
        self._row: list[str] | None = None
        self._row_header = True
        self._in_caption = False
        self._in_thead = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "table":
            self.depth += 1
        elif self.depth != 1:
            return
        elif tag in self._SECTIONS:
            setattr(self, self._SECTIONS[tag], True)
        elif tag == "tr":
            self._row, self._row_header = [], True
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            span = dict(attrs).get("colspan") or "1"
            self._span = int(span) if span.isdigit() and int(span) > 0 else 1
            self._row_header &= tag == "th" or self._in_thead
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self.done or self.depth == 0:
            return
        if tag == "table":
            self.depth -= 1
            self.done = self.depth == 0
        elif self.depth != 1:
            return
        elif tag in self._SECTIONS:
            setattr(self, self._SECTIONS[tag], False)
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.extend([" ".join("".join(self._cell).split())] * self._span)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append((self._row, self._row_header and bool(self._row)))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self.depth == 1 and self._in_caption:
            self.caption.append(data)
        elif self.depth == 1 and self._cell is not None:
            self._cell.append(data)


def _from_html(text: str, source: str) -> tuple[str, list[list[str]], list[list[str]]]:
    parser = _HTMLTableParser()
    parser.feed(text)
    parser.close()
    if not parser.rows and parser.depth == 0 and not parser.done:
        raise TableError(f"{source}: no <table> element found")
    header: list[list[str]] = []
    i = 0
    while i < len(parser.rows) and parser.rows[i][1]:
        header.append(parser.rows[i][0])
        i += 1
    body = [r for r, _ in parser.rows[i:]]
    return " ".join("".join(parser.caption).split()), header, body


_MD_SEPARATOR = re.compile(r"^\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?$")


def _md_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", line)]


def _from_markdown(text: str, source: str) -> tuple[str, list[list[str]], list[list[str]]]:
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("|")), None)
    if start is None:
        raise TableError(f"{source}: no Markdown table found (no line starts with '|')")
    caption = " ".join(ln.strip().lstrip("#").strip() for ln in lines[:start] if ln.strip())
    block = []
    for ln in lines[start:]:
        if not ln.lstrip().startswith("|"):
            break
        block.append(ln)
    sep = next((i for i, ln in enumerate(block) if _MD_SEPARATOR.match(ln.strip())), None)
    rows = [_md_cells(ln) for i, ln in enumerate(block) if i != sep]
    n_header = sep if sep is not None else 0
    return caption, rows[:n_header], rows[n_header:]


def _delimited_rows(text: str, delimiter: str, source: str) -> list[list[str]]:
    """CSV/TSV rows; a quote left open must not swallow the rest of the file into one cell.

    Read strictly first: ``csv`` then stops with "unexpected end of data" at an unclosed quote,
    which becomes an error naming the line where the quoted cell starts. Any other strict-mode
    complaint (a stray quote inside an unquoted cell) falls back to the lenient reading.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows = []
    try:
        while True:
            start = reader.line_num + 1
            rows.append(next(reader))
    except StopIteration:
        return rows
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            raise TableError(f"{source}, line {start}: a quoted cell opened on this line is never closed, so the "
                             "rest of the file would be one cell; close the quote (write a literal quote as "
                             '"")') from None
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def _from_delimited(text: str, delimiter: str, header_rows: int,
                    source: str = "table") -> tuple[str, list[list[str]], list[list[str]]]:
    rows = [r for r in _delimited_rows(text, delimiter, source) if any(c.strip() for c in r)]
    return "", rows[:header_rows], rows[header_rows:]


_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".html": "html", ".htm": "html",
            ".md": "markdown", ".markdown": "markdown"}


def read_table(path: str | Path, caption: str | None = None, *, fmt: str | None = None,
               header_rows: int = 1, encoding: str = "utf-8", errors: str = "strict") -> Table:
    """Read a CSV, TSV, HTML or Markdown table into a :class:`Table`.

    * CSV / TSV: the first ``header_rows`` non-blank rows are the header; ragged rows are kept
      as they are (see :meth:`Table.grid`); empty cells stay ``""``.
    * HTML: the first top-level ``<table>``; its ``<caption>``, leading rows of ``<th>`` cells
      (or inside ``<thead>``) as header, ``colspan`` cells repeated. Parsed with the standard
      library, so no HTML parser package is needed.
    * Markdown: the first block of lines starting with ``|``; rows above the ``|---|`` line are
      the header; non-blank text lines above the table are the caption.

    Args:
        path: the file; its suffix picks the format unless ``fmt`` is given.
        caption: the caption; overrides one found in the file.
        fmt: ``"csv"``, ``"tsv"``, ``"html"`` or ``"markdown"``.
        header_rows: header rows of a CSV/TSV file.
        encoding: text encoding of the file.
        errors: ``"strict"`` (undecodable bytes raise :class:`TableError`) or ``"replace"``.

    Raises:
        TableError: unknown format, undecodable bytes, no table in the file, or an empty table.
    """
    path = Path(path)
    fmt = fmt or _FORMATS.get(path.suffix.lower())
    if fmt not in ("csv", "tsv", "html", "markdown"):
        raise TableError(f"{path}: cannot tell the table format from suffix {path.suffix!r}; "
                         f"use one of {sorted(_FORMATS)} or pass fmt='csv'|'tsv'|'html'|'markdown'")
    if header_rows < 0:
        raise TableError(f"header_rows must be >= 0, got {header_rows}")
    text = _read_text(path, encoding, errors)
    if fmt == "html":
        found, header, body = _from_html(text, str(path))
    elif fmt == "markdown":
        found, header, body = _from_markdown(text, str(path))
    else:
        found, header, body = _from_delimited(text, "," if fmt == "csv" else "\t", header_rows, str(path))
    return Table(caption if caption is not None else found, header, body, table_id=path.name)


# ---------------------------------------------------------------------------------------------
# Splits


def grouped_kfold(pairs: Sequence[TablePair], n_folds: int = 5, seed: int = 0) -> list[Split]:
    """K folds over pairs, grouped by query table (``table_a``): a query is in one fold only.

    Groups are shuffled with ``seed`` and dealt greedily to the fold with the fewest pairs, so
    fold sizes differ by at most one group. Candidate tables (``table_b``) may still appear in
    several folds: in the PMC corpus the pair graph is one connected component.

    Returns:
        ``n_folds`` pairs of sorted index arrays ``(train, test)``.

    Raises:
        TableError: fewer query tables than folds, or ``n_folds < 2`` (a ``ValueError``).
    """
    if n_folds < 2:
        raise TableError(f"grouped_kfold needs n_folds >= 2, got {n_folds}")
    queries = sorted({p.table_a for p in pairs})
    if len(queries) < n_folds:
        raise TableError(f"grouped_kfold: {len(queries)} query tables cannot fill {n_folds} folds")
    order = np.random.default_rng(seed).permutation(len(queries))
    members: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        members.setdefault(p.table_a, []).append(i)
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for q in order:
        min(folds, key=len).extend(members[queries[q]])
    everything = np.arange(len(pairs))
    return [(np.setdiff1d(everything, f), np.sort(np.asarray(f, dtype=np.int64))) for f in folds]


def tabsim_split(pairs: Sequence[TablePair], train_fraction: float = 0.75) -> list[Split]:
    """TabSim's released split: the first 75% of the pairs (file order) train, the rest test."""
    cut = int(len(pairs) * train_fraction)
    return [(np.arange(cut), np.arange(cut, len(pairs)))]


def strubert_folds(pairs: Sequence[TablePair]) -> list[Split]:
    """StruBERT's 5-fold cross-validation, from each pair's ``strubert_test_fold``.

    Raises:
        TableError: a pair has no StruBERT fold (``strubert_test_fold < 0``; a ``ValueError``).
    """
    fold = np.asarray([p.strubert_test_fold for p in pairs])
    if (fold < 0).any():
        raise TableError(f"strubert_folds: {(fold < 0).sum()} pairs have no strubert_test_fold; "
                         "these folds exist only for the bundled PMC pairs")
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(fold.max() + 1)]


def holdout(indices: np.ndarray, pairs: Sequence[TablePair], fraction: float = 0.2, seed: int = 0,
            grouped: bool = True) -> Split:
    """Split ``indices`` into (fit, validation), by query table when ``grouped``.

    Raises:
        TableError: ``fraction`` is not in (0, 1) (a ``ValueError``).
    """
    if not 0 < fraction < 1:
        raise TableError(f"holdout fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    indices = np.asarray(indices)
    if not grouped:
        perm = rng.permutation(indices)
        n_val = max(1, int(round(len(indices) * fraction)))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    queries = sorted({pairs[i].table_a for i in indices})
    n_val = max(1, int(round(len(queries) * fraction)))
    val_q = {queries[i] for i in rng.permutation(len(queries))[:n_val]}
    in_val = np.asarray([pairs[i].table_a in val_q for i in indices], dtype=bool)
    return indices[~in_val], indices[in_val]
