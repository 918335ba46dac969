"""Tests of datasets.tables: the JSONL corpus, the file readers, and the splits."""
import json

import numpy as np
import pytest

from graphcore.datasets.tables import (Table, TableError, TablePair, grouped_kfold, holdout, load_pairs, load_tables,
                             read_table, strubert_folds, tabsim_split)


@pytest.fixture(scope="module")
def corpus():
    tables = load_tables()
    return tables, load_pairs(tables=tables)


def test_bundled_corpus_counts_and_ragged_table(corpus):
    tables, pairs = corpus
    assert len(tables) == 640 and len(pairs) == 1391
    assert sum(p.similar for p in pairs) == 496
    ragged = tables["PMC6034220:Tab4"]
    assert {len(r) for r in ragged.rows} == {5, 10}
    assert ragged.n_cols == 10 and all(len(r) == 10 for r in ragged.grid())
    assert ragged.grid()[1][5:] == [""] * 5


def test_table_json_round_trip(tmp_path):
    t = Table("Primers used", [["Gene", "Primer"]], [["GAPDH", "ACCA"], ["IL6", ""]], table_id="x:T1")
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(t.to_json()) + "\n")
    assert load_tables(path)["x:T1"] == t


@pytest.mark.parametrize("line, message", [
    ("{not json", r"t\.jsonl:1: not valid JSON"),
    ('{"table_id": "a", "caption": ""}', r"missing field\(s\) header_rows, body_rows"),
    ('[1, 2]', "expected a JSON object"),
    ('{"table_id": "a", "caption": "c", "header_rows": [], "body_rows": [["", ""]]}', "is empty"),
])
def test_load_tables_errors(tmp_path, line, message):
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(TableError, match=message):
        load_tables(path)


def test_load_tables_duplicate_and_pairs_unknown_table(tmp_path):
    rec = json.dumps({"table_id": "a", "caption": "", "header_rows": [["x"]], "body_rows": []})
    (tmp_path / "t.jsonl").write_text(rec + "\n" + rec + "\n")
    with pytest.raises(TableError, match=r":2: duplicate table_id 'a'"):
        load_tables(tmp_path / "t.jsonl")
    (tmp_path / "p.jsonl").write_text(json.dumps({"pair_id": 0, "table_a": "a", "table_b": "zz", "similar": 1}))
    tables = {"a": Table("", [["x"]], [])}
    with pytest.raises(TableError, match="names table 'zz'"):
        load_pairs(tmp_path / "p.jsonl", tables)


def test_csv_ragged_rows_and_empty_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("Gene,Fold change,p\nIL6,2.5\nTNF,,0.01,extra\n\n")
    t = read_table(path, caption="Expression")
    assert t.caption == "Expression" and t.table_id == "t.csv"
    assert t.header_rows == (("Gene", "Fold change", "p"),)
    assert t.body_rows == (("IL6", "2.5"), ("TNF", "", "0.01", "extra"))
    assert t.grid() == [["Gene", "Fold change", "p", ""], ["IL6", "2.5", "", ""], ["TNF", "", "0.01", "extra"]]


def test_header_only_and_empty_tables(tmp_path):
    (tmp_path / "h.csv").write_text("A,B,C\n")
    t = read_table(tmp_path / "h.csv")
    assert t.header_rows == (("A", "B", "C"),) and t.body_rows == () and t.n_rows == 1
    (tmp_path / "e.csv").write_text("\n , \n,,\n")
    with pytest.raises(TableError, match=r"table 'e.csv' is empty"):
        read_table(tmp_path / "e.csv")
    with pytest.raises(TableError, match="is empty"):
        Table("a caption alone is not a table", [], [])


def test_non_utf8_bytes_error_or_replacement(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("Dose,Effect\n5 \u00b5g,ok\n".encode("latin-1"))
    with pytest.raises(TableError, match=r"byte 0xb5 at offset 14 is not valid utf-8.*errors='replace'"):
        read_table(path)
    replaced = read_table(path, errors="replace")
    assert replaced.body_rows[0][0] == "5 \ufffdg"
    assert read_table(path, encoding="latin-1").body_rows[0][0] == "5 \u00b5g"
    with pytest.raises(TableError, match="unknown text encoding 'klingon'"):
        read_table(path, encoding="klingon")


def test_tsv_and_header_rows_option(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("Group\tn\nsub\tcount\nA\t10\n")
    t = read_table(path, header_rows=2)
    assert t.header_rows == (("Group", "n"), ("sub", "count")) and t.body_rows == (("A", "10"),)
    with pytest.raises(TableError, match="header_rows must be >= 0"):
        read_table(path, header_rows=-1)


def test_html_caption_header_colspan_and_nested_table(tmp_path):
    path = tmp_path / "t.html"
    path.write_text("""<html><body><p>intro</p>
      <table><caption>Baseline <b>characteristics</b></caption>
        <thead><tr><th colspan="2">Patient</th><th>Age</th></tr></thead>
        <tr><td>A &amp; B</td><td>x<br>y</td><td>54</td></tr>
        <tr><td>C</td><td><table><tr><td>inner</td></tr></table></td></tr>
      </table><table><tr><td>second</td></tr></table></body></html>""")
    t = read_table(path)
    assert t.caption == "Baseline characteristics"
    assert t.header_rows == (("Patient", "Patient", "Age"),)
    assert t.body_rows == (("A & B", "x y", "54"), ("C", ""))
    (tmp_path / "none.html").write_text("<p>no table here</p>")
    with pytest.raises(TableError, match="no <table> element"):
        read_table(tmp_path / "none.html")


def test_markdown_caption_and_separator(tmp_path):
    path = tmp_path / "t.md"
    path.write_text("Table 2: Primers used\n\n| Gene | Primer |\n|:---|---:|\n| IL6 | AC\\|GT |\n| TNF | |\n\nafter\n")
    t = read_table(path)
    assert t.caption == "Table 2: Primers used"
    assert t.header_rows == (("Gene", "Primer"),)
    assert t.body_rows == (("IL6", "AC|GT"), ("TNF", ""))
    (tmp_path / "x.md").write_text("just text\n")
    with pytest.raises(TableError, match="no Markdown table"):
        read_table(tmp_path / "x.md")


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(TableError, match=r"cannot tell the table format from suffix '.xls'"):
        read_table(tmp_path / "t.xls")
    with pytest.raises(TableError, match="cannot read table file"):
        read_table(tmp_path / "missing.csv")


def test_grouped_kfold_never_shares_a_query(corpus):
    _, pairs = corpus
    folds = grouped_kfold(pairs, n_folds=5, seed=3)
    tests = [set(te.tolist()) for _, te in folds]
    assert sorted(i for t in tests for i in t) == list(range(len(pairs)))
    for train, test in folds:
        assert not set(train.tolist()) & set(test.tolist())
        assert not {pairs[i].table_a for i in train} & {pairs[i].table_a for i in test}
    queries = [{pairs[i].table_a for i in t} for t in tests]
    assert all(not (queries[i] & queries[j]) for i in range(5) for j in range(i + 1, 5))
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 10
    assert [len(t) for _, t in grouped_kfold(pairs, 5, seed=3)] == sizes  # deterministic
    with pytest.raises(ValueError, match="n_folds >= 2"):
        grouped_kfold(pairs, 1)
    with pytest.raises(ValueError, match="2 query tables cannot fill 5 folds"):
        grouped_kfold([TablePair(0, "a", "b", 1), TablePair(1, "c", "b", 0)], 5)


def test_published_splits(corpus):
    _, pairs = corpus
    assert [len(t) for _, t in strubert_folds(pairs)] == [279, 278, 278, 278, 278]
    (train, test), = tabsim_split(pairs)
    assert (len(train), len(test)) == (1043, 348) and train[-1] + 1 == test[0]
    leaky = {pairs[i].table_a for i in train} & {pairs[i].table_a for i in test}
    assert leaky  # the published split shares query tables: why grouped folds exist
    with pytest.raises(ValueError, match="no strubert_test_fold"):
        strubert_folds([TablePair(0, "a", "b", 1)])


def test_holdout_grouped_and_random(corpus):
    _, pairs = corpus
    idx = np.arange(400)
    fit, val = holdout(idx, pairs, 0.2, seed=1)
    assert len(fit) + len(val) == 400 and not {pairs[i].table_a for i in fit} & {pairs[i].table_a for i in val}
    fit, val = holdout(idx, pairs, 0.25, seed=1, grouped=False)
    assert len(val) == 100 and sorted(np.concatenate([fit, val]).tolist()) == idx.tolist()
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        holdout(idx, pairs, 1.0)


def test_unclosed_quote_is_an_error_with_its_line(tmp_path):
    (tmp_path / "q.csv").write_text('Gene,Note\nIL6,ok\nTNF,"open\nX,4\n')
    with pytest.raises(TableError, match=r"q.csv, line 3: a quoted cell opened on this line is never closed"):
        read_table(tmp_path / "q.csv")
    (tmp_path / "fine.csv").write_text('Gene,Note\nIL6,"two\nlines"\nTNF,5 "in" 2\n')    # closed; stray quotes
    assert read_table(tmp_path / "fine.csv").body_rows == (("IL6", "two\nlines"), ("TNF", '5 "in" 2'))


def test_byte_order_mark_is_dropped(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffGene,Dose\nIL6,5\n".encode("utf-8"))
    assert read_table(tmp_path / "bom.csv").header_rows == (("Gene", "Dose"),)
    (tmp_path / "bom.jsonl").write_bytes(("\ufeff" + json.dumps(
        {"table_id": "t", "caption": "", "header_rows": [["a"]], "body_rows": [["b"]]}) + "\n").encode("utf-8"))
    assert list(load_tables(tmp_path / "bom.jsonl")) == ["t"]


def test_undecodable_byte_names_the_line(tmp_path):
    (tmp_path / "l.csv").write_bytes("Gene,Dose\nIL6,5\nTNF,5 \u00b5g\n".encode("latin-1"))
    with pytest.raises(TableError, match=r"l.csv, line 3: byte 0xb5 at offset 22 is not valid utf-8"):
        read_table(tmp_path / "l.csv")


def test_deeply_nested_json_is_an_error_with_its_line(tmp_path):
    (tmp_path / "deep.jsonl").write_text("\n" + "[" * 10_000 + "]" * 10_000 + "\n")
    with pytest.raises(TableError, match=r"deep.jsonl:2: JSON nested too deeply"):
        load_tables(tmp_path / "deep.jsonl")


def test_missing_bundled_corpus_says_it_is_not_in_the_wheel(tmp_path, monkeypatch):
    missing = tmp_path / "pmc_tables.jsonl.gz"
    monkeypatch.setattr("graphcore.datasets.tables.BUNDLED_TABLES", missing)
    with pytest.raises(TableError, match=r"no such file \(the bundled PMC corpus .* not in the wheel\); pass your own"):
        load_tables(missing)
    with pytest.raises(TableError, match=r"cannot read table file \S*other.jsonl: no such file$"):
        load_tables(tmp_path / "other.jsonl")
