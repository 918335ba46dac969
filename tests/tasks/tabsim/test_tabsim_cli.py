"""End-to-end: `fit` and `test` through LightningCLI, then `score` and `search` on bundled tables."""
import csv
import re

import lightning as L
import numpy as np
import pytest
import torch

from graphcore.datasets.tables import TableError, load_pairs, load_tables
from graphcore.tasks.tabsim.cli import cli_main, tools_main
from graphcore.tasks.tabsim.data import TabSimDataModule, split_pairs
from graphcore.tasks.tabsim.metrics import binary_metrics
from graphcore.tasks.tabsim.model import Calibration
from graphcore.tasks.tabsim.module import TabSimModule
from graphcore.tasks.tabsim.scorer import PRETRAINED, Scorer

TINY = ["--data.vocab_size=500", "--data.n_buckets=256", "--model.dim=16", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false"]


@pytest.fixture(scope="module")
def corpus():
    tables = load_tables()
    return tables, load_pairs(tables=tables)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    cli_main(["fit", "--trainer.max_epochs=3", f"--trainer.default_root_dir={root}", *TINY])
    found = sorted(root.glob("lightning_logs/version_*/checkpoints/*.ckpt"))
    assert len(found) == 1
    return found[0]


def _write_csv(path, table):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(table.rows)
    return str(path)


def _score(capsys, *args):
    assert tools_main(["score", *args]) == 0
    out = capsys.readouterr().out
    match = re.fullmatch(r"(\d\.\d{4})  (similar|not similar) \(threshold (\d\.\d{4})\)\n", out)
    assert match, out
    return float(match.group(1)), match.group(2)


def test_fit_learns_and_checkpoint_carries_encoder_and_threshold(checkpoint, corpus):
    tables, pairs = corpus
    scorer = Scorer.load(checkpoint)
    assert scorer.module.hparams.vocab_size == 500 and scorer.module.hparams.n_buckets == 256  # linked from data
    assert scorer.encoder.vocab_size == 500
    assert 0 < scorer.threshold < 1 and scorer.threshold != 0.5  # chosen on validation
    _, test = split_pairs(pairs, "grouped", 0)
    encoded = scorer.encode(list(tables.values()))
    ids = {tid: i for i, tid in enumerate(tables)}
    scores = scorer.score_embedded(encoded, scorer.embed(encoded),
                                   [(ids[pairs[i].table_a], ids[pairs[i].table_b]) for i in test])
    labels = np.array([pairs[i].similar for i in test])
    assert binary_metrics(scores, labels, scorer.threshold)["macro_f1"] > 0.85


def test_cli_test_subcommand_reports_metrics(checkpoint, tmp_path, capsys):
    cli_main(["test", f"--ckpt_path={checkpoint}", "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}",
              *TINY])
    out = capsys.readouterr().out
    assert "test_macro_f1" in out and "test_map" in out


def test_testing_a_checkpoint_encodes_with_its_own_encoder(checkpoint, tmp_path):
    # the data module fits another vocabulary (400 words); the checkpoint's (500) must win
    dm = TabSimDataModule(vocab_size=400, n_buckets=256)
    module = TabSimModule(vocab_size=500, n_buckets=256, dim=16)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    metrics = trainer.test(module, dm, ckpt_path=str(checkpoint), verbose=False)[0]
    assert dm.encoder.vocab_size == 500 and module.encoder is dm.encoder
    assert dm.encoded[0].caption_words.tolist() == dm.encoder.encode(dm.tables[0]).caption_words.tolist()
    assert metrics["test_macro_f1"] > 0.85


def test_score_cli_is_symmetric_and_maximal_on_identical_tables(checkpoint, corpus, tmp_path, capsys):
    tables, pairs = corpus
    pair = next(p for p in pairs if p.similar)
    ta, tb = tables[pair.table_a], tables[pair.table_b]
    a, b = _write_csv(tmp_path / "a.csv", ta), _write_csv(tmp_path / "b.csv", tb)
    caps = ["--caption-a", ta.caption, "--caption-b", tb.caption]
    ab, verdict = _score(capsys, a, b, "--ckpt", str(checkpoint), *caps)
    ba, _ = _score(capsys, b, a, "--ckpt", str(checkpoint), "--caption-a", tb.caption, "--caption-b", ta.caption)
    aa, same = _score(capsys, a, a, "--ckpt", str(checkpoint), "--caption-a", ta.caption, "--caption-b", ta.caption)
    assert ab == ba and 0 <= ab <= 1
    assert aa >= ab and same == "similar"


def test_search_cli_finds_the_query_table_first(checkpoint, corpus, tmp_path, capsys):
    tables, _ = corpus
    target = tables["PMC2736310:T1"]
    query = _write_csv(tmp_path / "q.csv", target)
    assert tools_main(["search", "--query", query, "--query-caption", target.caption, "-k", "3",
                       "--ckpt", str(checkpoint)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["rank", "score", "distance", "table_id", "caption"]
    assert len(lines) == 4
    rank, score, distance, table_id = lines[1].split()[:4]
    assert (rank, table_id) == ("1", "PMC2736310:T1") and float(distance) < 1e-3
    scores = [float(line.split()[1]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True)
    # ranking by distance alone (shortlist = k) also finds the table itself first
    assert tools_main(["search", "--query", query, "--query-caption", target.caption, "-k", "2", "--shortlist", "2",
                       "--ckpt", str(checkpoint)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    distances = [float(line.split()[2]) for line in lines[1:]]
    assert lines[1].split()[3] == "PMC2736310:T1" and distances == sorted(distances)


def test_tools_report_bad_input_clearly(checkpoint, tmp_path, capsys):
    good = tmp_path / "g.csv"
    good.write_text("Gene,Primer\nIL6,ACGT\n")
    assert tools_main(["score", str(good), str(good), "--ckpt", str(tmp_path / "none.ckpt")]) == 2
    assert "no model checkpoint at" in capsys.readouterr().err
    bad = tmp_path / "latin.csv"
    bad.write_bytes("Gene,Dose\nIL6,5 \u00b5g\n".encode("latin-1"))
    assert tools_main(["score", str(bad), str(good), "--ckpt", str(checkpoint)]) == 2
    assert "is not valid utf-8" in capsys.readouterr().err
    _score(capsys, str(bad), str(good), "--ckpt", str(checkpoint), "--errors", "replace")
    empty = tmp_path / "empty.csv"
    empty.write_text(",,\n")
    assert tools_main(["search", "--query", str(empty), "--ckpt", str(checkpoint)]) == 2
    assert "is empty" in capsys.readouterr().err


def test_pretrained_checkpoint_is_small_and_loads(corpus, tmp_path, capsys):
    assert PRETRAINED.is_file() and PRETRAINED.stat().st_size < 1_000_000
    tables, _ = corpus
    a = _write_csv(tmp_path / "a.csv", tables["PMC2736310:T1"])
    b = _write_csv(tmp_path / "b.csv", tables["PMC3231794:tbl1"])
    ab, _ = _score(capsys, a, b)
    ba, _ = _score(capsys, b, a)
    assert ab == ba


def test_validate_a_checkpoint_reports_its_own_calibration(checkpoint, tmp_path, capsys):
    assert checkpoint.name == "last.ckpt"                  # fit keeps its final model there
    before = torch.load(checkpoint, weights_only=False)["state_dict"]
    cli_main(["validate", f"--ckpt_path={checkpoint}", "--trainer.logger=false",
              f"--trainer.default_root_dir={tmp_path}", *TINY])  # crashed under inference mode (calibration fit)
    assert "val_macro_f1" in capsys.readouterr().out
    scorer = Scorer.load(checkpoint)
    for name in ("log_scale", "bias", "threshold"):
        assert float(scorer.net.calibration.state_dict()[name]) == float(before[f"net.calibration.{name}"])


def test_calibration_fits_under_inference_mode():
    calibration = Calibration()
    logits = torch.linspace(-3, 3, 50)
    with torch.inference_mode():
        calibration.fit(logits, (logits > 0.5).float())
    assert float(calibration.log_scale) > 0.5 and float(calibration.bias) < 0


def test_predict_writes_the_test_pairs_with_ids_and_scores(checkpoint, corpus, tmp_path, capsys):
    tables, pairs = corpus
    cli_main(["predict", f"--ckpt_path={checkpoint}", f"--trainer.default_root_dir={tmp_path}", *TINY])
    path = tmp_path / "lightning_logs" / "version_0" / "predictions.csv"
    _, test = split_pairs(pairs, "grouped", 0)
    assert f"predictions ({len(test)} rows): {path}" in capsys.readouterr().out
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["pair_id"]) for r in rows] == [pairs[i].pair_id for i in test]
    assert [(r["table_a"], r["table_b"]) for r in rows] == [(pairs[i].table_a, pairs[i].table_b) for i in test]
    scorer = Scorer.load(checkpoint)
    used = sorted({t for i in test for t in (pairs[i].table_a, pairs[i].table_b)})
    encoded = scorer.encode([tables[t] for t in used])
    ids = {tid: i for i, tid in enumerate(used)}
    expected = scorer.score_embedded(encoded, scorer.embed(encoded),
                                     [(ids[pairs[i].table_a], ids[pairs[i].table_b]) for i in test])
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-4, atol=1e-5)
    assert [int(r["similar"]) for r in rows] == (expected >= scorer.threshold).astype(int).tolist()


def _error(capsys, argv) -> str:
    assert tools_main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_search_options_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr("graphcore.tasks.tabsim.cli.Scorer.load", no_work)
    q = tmp_path / "q.csv"
    q.write_text("Gene,Dose\nIL6,5\n")
    assert _error(capsys, ["search", "--query", str(q), "-k", "0"]) == \
        "error: -k must be >= 1 (the number of results to print), got 0"
    assert _error(capsys, ["search", "--query", str(q), "-k", "5", "--shortlist", "3"]).startswith(
        "error: --shortlist (3) must be >= -k (5)")
    assert _error(capsys, ["score", str(q), str(q), "--header-rows", "-1"]) == "error: --header-rows must be >= 0, got -1"
    monkeypatch.setattr("graphcore.tasks.tabsim.cli.BUNDLED_TABLES", tmp_path / "pmc_tables.jsonl.gz")  # as in the wheel
    assert _error(capsys, ["search", "--query", str(q)]).endswith("pass the tables to search with --corpus TABLES.jsonl")


def test_bad_table_files_are_one_line_errors(tmp_path, capsys):
    good = tmp_path / "g.csv"
    good.write_text("Gene,Primer\nIL6,ACGT\n")
    quote = tmp_path / "quote.csv"
    quote.write_text('Gene,Note\nIL6,"open\nTNF,3\n')
    assert _error(capsys, ["score", str(quote), str(good)]).startswith(
        f"error: {quote}, line 2: a quoted cell opened on this line is never closed")
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"table_id": "t", "caption": "", "header_rows": [["a"]], "body_rows": [["b"]]}\n'
                    + "[" * 10_000 + "]" * 10_000 + "\n")
    assert _error(capsys, ["search", "--corpus", str(deep), "--query", str(good)]) == \
        f"error: {deep}:2: JSON nested too deeply to read; a table record is an object with lists of rows of cells"
    with pytest.raises(TableError, match="never closed"):
        tools_main(["score", str(quote), str(good), "--debug"])


def test_fit_without_the_bundled_corpus_says_what_to_pass(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("graphcore.tasks.tabsim.data.BUNDLED_TABLES", tmp_path / "pmc_tables.jsonl.gz")
    with pytest.raises(SystemExit) as done:
        cli_main(["fit", "--trainer.fast_dev_run=1", f"--trainer.default_root_dir={tmp_path}", *TINY])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().endswith(
        "pass your own JSONL files with --data.tables TABLES.jsonl --data.pairs PAIRS.jsonl")
