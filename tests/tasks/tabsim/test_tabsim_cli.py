"""End-to-end: `fit` and `test` through LightningCLI, then `score` and `search` on bundled tables."""
import csv
import re

import lightning as L
import numpy as np
import pytest

from datasets.tables import load_pairs, load_tables
from tasks.tabsim.cli import cli_main, tools_main
from tasks.tabsim.data import TabSimDataModule, split_pairs
from tasks.tabsim.metrics import binary_metrics
from tasks.tabsim.module import TabSimModule
from tasks.tabsim.scorer import PRETRAINED, Scorer

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
