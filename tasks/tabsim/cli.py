"""Command line of ``python -m tasks.tabsim``.

* ``fit | validate | test | predict``: :class:`~lightning.pytorch.cli.LightningCLI` over
  :class:`TabSimModule` and :class:`TabSimDataModule` (the data module's sizes are linked to
  the model's).
* ``score A B``: prints the calibrated similarity of two table files (CSV, TSV, HTML, Markdown).
* ``search --corpus tables.jsonl --query q.csv -k 5``: embeds the corpus once, shortlists the
  tables nearest to the query by embedding distance, and prints the ``k`` of them with the
  highest calibrated score (``--shortlist k`` ranks by distance alone).

``score`` and ``search`` use ``--ckpt`` (default: the small model trained on the bundled corpus,
:data:`~tasks.tabsim.scorer.PRETRAINED`). ``fit`` keeps its final model in ``last.ckpt``;
``predict --ckpt_path RUN.ckpt`` writes the test pairs' scores to ``predictions.csv``
(``--predictions.path`` elsewhere). User errors print one line and exit with code 2
(:mod:`tasks.cli_errors`; ``--debug`` shows the traceback); options are checked before any work.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from graphcore.datasets.tables import BUNDLED_TABLES, load_tables, read_table
from graphcore.tasks.checkpoints import add_checkpoint_arguments, checkpoint_defaults, checkpoint_summary
from graphcore.tasks.cli_errors import UsageError, run_cli
from graphcore.tasks.predictions import add_prediction_arguments
from graphcore.tasks.tabsim.data import TabSimDataModule
from graphcore.tasks.tabsim.module import TabSimModule
from graphcore.tasks.tabsim.scorer import PRETRAINED, Scorer

TOOLS = ("score", "search")


#: tabsim keeps its final model (the calibration is refitted every epoch): only ``last.ckpt``.
CHECKPOINT_DEFAULTS = checkpoint_defaults(None)


class TabSimCLI(LightningCLI):
    """LightningCLI with the encoder sizes of data and model linked, a ``last.ckpt`` and a
    prediction file."""

    def add_arguments_to_parser(self, parser) -> None:
        for name in ("vocab_size", "n_buckets", "max_rows", "max_cols"):
            parser.link_arguments(f"data.{name}", f"model.{name}")
        add_checkpoint_arguments(parser, CHECKPOINT_DEFAULTS)
        add_prediction_arguments(parser)

    def after_fit(self) -> None:
        for line in checkpoint_summary(self.trainer):
            print(line)


def _tool_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tasks.tabsim", description="Score or search tables with a "
                                     "trained TabSim model (train one with `python -m tasks.tabsim fit`).")
    sub = parser.add_subparsers(dest="tool", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ckpt", default=str(PRETRAINED), help="model checkpoint (.ckpt or .ckpt.gz; default: "
                        "the model trained on the bundled PMC corpus)")
    common.add_argument("--format", dest="fmt", choices=["csv", "tsv", "html", "markdown"],
                        help="table file format (default: from the file suffix)")
    common.add_argument("--header-rows", type=int, default=1, help="header rows of CSV/TSV files (default 1)")
    common.add_argument("--encoding", default="utf-8", help="text encoding of table files (default utf-8)")
    common.add_argument("--errors", choices=["strict", "replace"], default="strict",
                        help="undecodable bytes: 'strict' stops with an error, 'replace' substitutes U+FFFD")
    score = sub.add_parser("score", parents=[common], help="print the similarity of two tables")
    score.add_argument("a", help="first table file")
    score.add_argument("b", help="second table file")
    score.add_argument("--caption-a", help="caption of the first table (overrides one in the file)")
    score.add_argument("--caption-b", help="caption of the second table (overrides one in the file)")
    search = sub.add_parser("search", parents=[common], help="top-k tables of a corpus nearest to a query table")
    search.add_argument("--corpus", default=str(BUNDLED_TABLES), help="JSONL table file (default: bundled corpus)")
    search.add_argument("--query", required=True, help="query table file")
    search.add_argument("--query-caption", help="caption of the query (overrides one in the file)")
    search.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    search.add_argument("--shortlist", type=int, default=50, help="tables nearest by embedding distance that the "
                        "head scores and ranks (default 50; set it to k to rank by distance alone)")
    return parser


def _read(path: str, caption: str | None, args: argparse.Namespace):
    return read_table(path, caption, fmt=args.fmt, header_rows=args.header_rows, encoding=args.encoding,
                      errors=args.errors)


def check_tool_options(args: argparse.Namespace) -> None:
    """Reject option values that would fail only after the work (embedding a corpus) is done.

    Raises:
        UsageError: ``--header-rows < 0``; for ``search``: ``-k < 1``, ``--shortlist < k``, or the
            default corpus missing (the wheel does not ship it).
    """
    if args.header_rows < 0:
        raise UsageError(f"--header-rows must be >= 0, got {args.header_rows}")
    if args.tool != "search":
        return
    if args.k < 1:
        raise UsageError(f"-k must be >= 1 (the number of results to print), got {args.k}")
    if args.shortlist < args.k:
        raise UsageError(f"--shortlist ({args.shortlist}) must be >= -k ({args.k}): the results are chosen "
                         "among the shortlisted tables")
    if args.corpus == str(BUNDLED_TABLES) and not BUNDLED_TABLES.is_file():
        raise UsageError("the bundled PMC corpus is not installed (research use only: it ships in the repository, "
                         "not in the wheel); pass the tables to search with --corpus TABLES.jsonl")


def _run_tool(argv: Sequence[str]) -> int:
    args = _tool_parser().parse_args(list(argv))
    check_tool_options(args)
    scorer = Scorer.load(args.ckpt)
    if args.tool == "score":
        a, b = _read(args.a, args.caption_a, args), _read(args.b, args.caption_b, args)
        value = scorer.score(a, b)
        verdict = "similar" if value >= scorer.threshold else "not similar"
        print(f"{value:.4f}  {verdict} (threshold {scorer.threshold:.4f})")
        return 0
    query = _read(args.query, args.query_caption, args)
    tables = list(load_tables(args.corpus).values())
    corpus = scorer.encode(tables)
    emb = scorer.embed(corpus, progress=True)
    print(f"{'rank':>4}  {'score':>6}  {'distance':>8}  table_id  caption")
    for rank, hit in enumerate(scorer.search(corpus, emb, query, args.k, args.shortlist), start=1):
        t = tables[hit.index]
        caption = t.caption if len(t.caption) <= 70 else t.caption[:69] + "…"
        print(f"{rank:>4}  {hit.score:6.4f}  {hit.distance:8.4f}  {t.table_id}  {caption}")
    return 0


def tools_main(argv: Sequence[str]) -> int:
    """Run ``score`` or ``search`` under the CLI error policy; returns the exit status (2 with a
    one-line message on bad input or bad usage; ``--debug`` raises instead)."""
    try:
        return run_cli(_run_tool, argv)
    except SystemExit as done:     # argparse's --help and usage errors, and the policy's exit 2
        return done.code if isinstance(done.code, int) else 1


def _lightning_main(argv: list[str]) -> None:
    TabSimCLI(TabSimModule, TabSimDataModule, args=argv, trainer_defaults={"max_epochs": 6, "log_every_n_steps": 5},
              parser_kwargs={"description": "Table similarity (TabSim). Subcommands fit/validate/test/predict "
                             "train and evaluate; `score A B` and `search --query Q` use a trained model "
                             "(see `python -m tasks.tabsim score --help`)."})


def cli_main(args: Sequence[str] | None = None) -> None:
    """Entry point: ``score``/``search`` tools, else LightningCLI (``fit``, ``test``, ...), both under
    the CLI error policy (:mod:`tasks.cli_errors`)."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in TOOLS:
        raise SystemExit(tools_main(argv))
    run_cli(_lightning_main, argv)
