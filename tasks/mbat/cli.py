r"""Command line: ``python -m tasks.mbat {encode,search,query,fit} --help``.

* ``encode CORPUS -o vecs.npy``: stream a JSONL corpus (a path, or ``countries`` /
  ``go_vulndb_osv``) through a fitted :class:`~tasks.mbat.encoder.JsonEncoder`; writes the
  vectors (``.npy``, filled batch by batch through a memory map), their ids
  (``vecs.npy.ids.json``) and the encoder (``vecs.npy.encoder.json``).
* ``search vecs.npy --id ID`` (or ``--json DOC``): top-k neighbours, exact or faiss.
* ``query vecs.npy --id ID --path a.b[0].c``: read a field back from a stored vector.
* ``fit | validate | test | predict``: :class:`~tasks.mbat.module.VectorClassifier` with LightningCLI
  (the best and the final checkpoint kept; ``predict`` writes ``id, label, pred, prob_*`` rows).

Every subcommand runs under the tasks' error policy (:mod:`tasks.cli_errors`): a bad input
file, option or document prints one line, ``error: <what>, <where> (file:line for JSONL);
<what to do>``, and exits with code 2; ``--debug`` or ``GRAPHCORE_DEBUG=1`` shows the
traceback. Counts (``-k``, ``--top``, ``--limit``, ``--batch-size``) are checked before any
work is done.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from lightning.pytorch.cli import LightningCLI

from graphcore.datasets.json_corpora import CORPORA, MASKS, corpus_path, count_records, iter_records, strict_loads
from graphcore.tasks.checkpoints import add_checkpoint_arguments, checkpoint_defaults, checkpoint_summary
from graphcore.tasks.cli_errors import UsageError, run_cli
from graphcore.tasks.mbat.encoder import JsonEncoder, JsonInputError, walk
from graphcore.tasks.mbat.index import ExactIndex, FaissIndex, VectorFileError, ids_path, load_vectors
from graphcore.tasks.mbat.module import VectorClassifier
from graphcore.tasks.mbat.orthogonal import FAMILIES
from graphcore.tasks.mbat.query import ItemMemory, query
from graphcore.tasks.mbat.data import JsonVectorDataModule
from graphcore.tasks.predictions import add_prediction_arguments


def _encoder_path(vectors: str | Path) -> Path:
    vectors = Path(vectors)
    return vectors.with_name(vectors.name + ".encoder.json")


def _resolve(corpus: str) -> Path:
    return corpus_path(corpus) if corpus in CORPORA else Path(corpus)


def _locate(err: JsonInputError, path: Path, mask: list[str], limit: int | None, max_depth: int) -> UsageError:
    """The first record of ``path`` the encoder rejects, as a ``file:line`` error (``err`` alone names no record)."""
    for r in iter_records(path, mask, limit):
        try:
            walk(r.record, max_depth)
        except JsonInputError as e:
            return UsageError(f"{path}:{r.line}: record {r.id}: {e}")
    return UsageError(f"{path}: {err}")


def encode(args: argparse.Namespace) -> None:
    path = _resolve(args.corpus)
    mask = args.mask if args.mask is not None else list(MASKS.get(args.corpus, ()))
    enc = JsonEncoder(dim=args.dim, seed=args.seed, family=args.family, array_mode=args.array_mode,
                      number_code=args.number_code, number_weight=args.number_weight,
                      dtype=torch.float64 if args.float64 else torch.float32)
    n = count_records(path) if args.limit is None else min(args.limit, count_records(path))
    if n == 0:
        raise UsageError(f"{path}: no records (the file is empty or holds only blank lines); give a JSONL file "
                         "with one JSON document per line")
    try:
        _encode(args, enc, path, mask, n)
    except JsonInputError as e:
        raise _locate(e, path, mask, args.limit, enc.config.max_depth) from e


def _encode(args: argparse.Namespace, enc: JsonEncoder, path: Path, mask: list[str], n: int) -> None:
    enc.fit((r.record for r in iter_records(path, mask, args.limit)), progress=args.progress)
    out = np.lib.format.open_memmap(args.output, mode="w+", dtype=np.float64 if args.float64 else np.float32,
                                    shape=(n, args.dim))
    ids: list[str] = []

    def docs():
        for r in iter_records(path, mask, args.limit):
            ids.append(r.id)
            yield r.record

    row = 0
    for batch in enc.iter_encode(docs(), args.batch_size, progress=args.progress, total=n):
        out[row : row + len(batch)] = batch.cpu().numpy()
        row += len(batch)
    out.flush()
    ids_path(args.output).write_text(json.dumps(ids))
    _encoder_path(args.output).write_text(json.dumps({"encoder": enc.state(), "corpus": str(path), "mask": mask}))
    print(f"encoded {row} records of {path} -> {args.output} [{row}, {args.dim}] ({enc})")


def _load(vectors: str) -> tuple[torch.Tensor, list[str], JsonEncoder, dict]:
    x, ids = load_vectors(vectors)
    meta_path = _encoder_path(vectors)
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} is missing; vectors must come from `python -m tasks.mbat encode`")
    meta = strict_loads(meta_path.read_text(encoding="utf-8"), str(meta_path))
    if not isinstance(meta, dict) or "encoder" not in meta:
        raise VectorFileError(f"{meta_path} does not hold an encoder; re-run `python -m tasks.mbat encode`")
    enc = JsonEncoder.from_state(meta["encoder"])
    if x.shape[1] != enc.dim:
        raise VectorFileError(f"{vectors} holds {x.shape[1]}-dimensional vectors but {meta_path} a {enc.dim}-dimensional "
                              "encoder; re-run encode")
    return x, ids, enc, meta


def _query_vector(args: argparse.Namespace, x: torch.Tensor, ids: list[str], enc: JsonEncoder) -> tuple[torch.Tensor, int | None]:
    if args.id is not None:
        if args.id not in ids:
            raise UsageError(f"id {args.id!r} is not among the {len(ids)} stored vectors of {args.vectors}")
        i = ids.index(args.id)
        return x[i].to(enc.dtype), i
    if args.json is None:
        raise UsageError("give --id ID or --json DOCUMENT")
    try:
        return enc.encode(strict_loads(args.json, "--json")), None
    except JsonInputError as e:
        raise UsageError(f"--json: {e}") from e


def search(args: argparse.Namespace) -> None:
    x, ids, enc, _ = _load(args.vectors)
    q, self_row = _query_vector(args, x, ids, enc)
    k = args.k + (self_row is not None)
    if args.faiss:
        scores, index = FaissIndex(x).search(q, k)
    else:
        scores, index = ExactIndex(x).search(q, k)
    print(f"{'rank':>4}  {'score':>6}  id")
    rank = 0
    for s, i in zip(scores[0].tolist(), index[0].tolist()):
        if i == self_row or rank == args.k:
            continue
        rank += 1
        print(f"{rank:>4}  {s:6.3f}  {ids[i]}")


def query_cmd(args: argparse.Namespace) -> None:
    x, ids, enc, meta = _load(args.vectors)
    q, _ = _query_vector(args, x, ids, enc)
    corpus = _resolve(args.corpus) if args.corpus else Path(meta["corpus"])
    memory = ItemMemory(enc).fit(r.record for r in iter_records(corpus, meta.get("mask", ())))
    for p in args.path:
        res = query(enc, q, p, memory, top=args.top)
        print(res)
        if args.top > 1 and res.found:
            for value, score in res.candidates[1:]:
                print(f"    {json.dumps(value, ensure_ascii=False)}  (cos {score:.3f})")


CHECKPOINT_DEFAULTS = checkpoint_defaults("val_acc", "max", "epoch{epoch:02d}-val_acc{val_acc:.3f}")


class _CLI(LightningCLI):
    """LightningCLI with the vector size linked, the shared checkpoints and prediction writer."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.dim", "model.in_dim")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        add_checkpoint_arguments(parser, CHECKPOINT_DEFAULTS)
        add_prediction_arguments(parser)

    def after_fit(self) -> None:
        for line in checkpoint_summary(self.trainer):
            print(line)


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def fit(argv: Sequence[str]) -> None:
    _CLI(VectorClassifier, JsonVectorDataModule, args=list(argv), save_config_kwargs={"overwrite": True})


def _check_counts(args: argparse.Namespace) -> None:
    """Reject counts that cannot work before any file is read."""
    for flag, attr in (("-k", "k"), ("--top", "top"), ("--limit", "limit"), ("--batch-size", "batch_size")):
        value = getattr(args, attr, None)
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tasks.mbat ...`` under the error policy of :mod:`tasks.cli_errors`."""
    return run_cli(_main, argv)


def _main(argv: list[str]) -> None:
    if argv and argv[0] in LIGHTNING_COMMANDS:
        return fit(argv)
    ap = argparse.ArgumentParser(prog="python -m tasks.mbat", description="JSON embeddings with orthogonal MBAT binding.",
                                 epilog="`fit`, `validate`, `test` and `predict` are LightningCLI subcommands: "
                                        "see `python -m tasks.mbat fit --help`.")
    sub = ap.add_subparsers(dest="command", required=True)

    sub.add_parser("fit", help="train a classifier on the vectors (LightningCLI: `fit --help`)", add_help=False)
    e = sub.add_parser("encode", help="encode a JSONL corpus to vectors", description=encode.__doc__ or "Encode a JSONL corpus.")
    e.add_argument("corpus", help="JSONL(.gz) path, or one of: " + ", ".join(CORPORA))
    e.add_argument("-o", "--output", required=True, help="output .npy")
    e.add_argument("--dim", type=int, default=4096)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--family", choices=FAMILIES, default="perm")
    e.add_argument("--array-mode", choices=("position", "bag"), default="position")
    e.add_argument("--number-code", choices=("fpe", "level"), default="fpe")
    e.add_argument("--number-weight", type=float, default=1.0)
    e.add_argument("--mask", nargs="*", default=None, help="record fields to delete (default: the corpus's label mask)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--limit", type=int, default=None, help="encode only the first N records")
    e.add_argument("--float64", action="store_true")
    e.add_argument("--no-progress", dest="progress", action="store_false")
    e.set_defaults(func=encode)

    for name, func, helptext in (("search", search, "nearest stored vectors to a record or a JSON document"),
                                 ("query", query_cmd, "read fields back from a stored vector")):
        s = sub.add_parser(name, help=helptext, description=helptext)
        s.add_argument("vectors", help=".npy written by `encode`")
        s.add_argument("--id", help="id of a stored record")
        s.add_argument("--json", help="a JSON document to encode with the stored encoder")
        s.set_defaults(func=func)
        if name == "search":
            s.add_argument("-k", type=int, default=5)
            s.add_argument("--faiss", action="store_true", help="approximate HNSW index instead of exact search")
        else:
            s.add_argument("--path", nargs="+", required=True, help="paths like name.common or latlng[0]")
            s.add_argument("--corpus", help="corpus for the item memory (default: the encoded one)")
            s.add_argument("--top", type=int, default=1, help="candidates to show")
    args = ap.parse_args(argv)
    _check_counts(args)
    args.func(args)
