"""JSONL corpora: both line formats, gzip, masks, strict parsing, bundled data."""
import gzip
import json

import pytest

from graphcore.datasets.json_corpora import (MASKS, JsonFormatError, corpus_path, count_records, delete_field, iter_records,
                                   strict_loads)
from graphcore.datasets import DATA_DIR


def _write(path, lines):
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["c.jsonl", "c.jsonl.gz"])
def test_wrapped_format_and_mask(tmp_path, name):
    rec = {"id": "ABW", "labels": {"region": "Americas"},
           "record": {"name": "Aruba", "region": "Americas", "geo": {"sub": "Caribbean", "lat": 12.5}}}
    path = _write(tmp_path / name, [json.dumps(rec), "", json.dumps({**rec, "id": "AFG"})])
    out = list(iter_records(path, mask=["region", "geo.sub", "missing.field"]))
    assert [r.id for r in out] == ["ABW", "AFG"]
    assert out[0].labels == {"region": "Americas"}
    assert out[0].record == {"name": "Aruba", "geo": {"lat": 12.5}}
    assert count_records(path) == 2
    assert len(list(iter_records(path, limit=1))) == 1


def test_plain_jsonl_gets_line_numbers(tmp_path):
    path = _write(tmp_path / "p.jsonl", ['{"a": 1}', "", "[1, 2]", '"s"'])
    out = list(iter_records(path))
    assert [(r.id, r.record, r.labels) for r in out] == [("1", {"a": 1}, {}), ("3", [1, 2], {}), ("4", "s", {})]


def test_strict_parsing_names_the_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", ['{"a": 1}', '{"a": NaN}'])
    with pytest.raises(JsonFormatError, match=r"bad\.jsonl:2: NaN is not valid JSON"):
        list(iter_records(path))
    with pytest.raises(JsonFormatError, match="x: -Infinity is not valid JSON"):
        strict_loads('[-Infinity]', "x")
    with pytest.raises(JsonFormatError, match="y: not valid JSON"):
        strict_loads('{"a": }', "y")
    path = _write(tmp_path / "lab.jsonl", ['{"id": 1, "labels": [1], "record": {}}'])
    with pytest.raises(JsonFormatError, match="'labels' must be an object"):
        list(iter_records(path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_records(tmp_path / "none.jsonl"))


def test_delete_field_ignores_missing_parts():
    doc = {"a": {"b": 1, "c": 2}, "d": [1]}
    delete_field(doc, "a.b")
    delete_field(doc, "d.x")
    delete_field(doc, "zz.y")
    assert doc == {"a": {"c": 2}, "d": [1]}


def test_bundled_corpora_are_complete():
    assert count_records(DATA_DIR / "countries.jsonl.gz") == 250
    first = next(iter_records(DATA_DIR / "countries.jsonl.gz", mask=MASKS["countries"]))
    assert first.id == "ABW" and first.labels["subregion"] == "Caribbean"
    assert "region" not in first.record and "subregion" not in first.record
    osv = next(iter_records(DATA_DIR / "go_vulndb_osv.jsonl.gz"))
    assert osv.labels["primary_module"] == "github.com/gin-gonic/gin"
    assert corpus_path("countries", DATA_DIR) == DATA_DIR / "countries.jsonl.gz"
    with pytest.raises(ValueError, match="unknown corpus 'cities'"):
        corpus_path("cities")
    with pytest.raises(FileNotFoundError, match="not found in"):
        corpus_path("countries", DATA_DIR / "nowhere")


def test_bundled_pypi_json_is_many_schema_with_provenance():
    recs = list(iter_records(corpus_path("pypi_json")))
    assert corpus_path("pypi_json") == DATA_DIR / "pypi_json.jsonl.gz"
    assert (DATA_DIR / "pypi_json.jsonl.gz").stat().st_size < 400_000
    kinds = {r.labels["kind"] for r in recs}
    assert len(recs) == 3003 and len(kinds) == 118
    assert {r.labels["source"] for r in recs} == {"schemastore", "json-schema-test-suite", "jsonschema-specifications"}
    for r in recs:
        assert r.labels["package"].split("==")[0] in ("check-jsonschema", "jsonschema", "jsonschema-specifications")
        assert r.labels["path"] and r.labels["licence"] and "GPL" not in r.labels["licence"]
    stems = {r.labels["kind"] for r in recs if r.labels["source"] == "schemastore"}
    assert "schemastore:github-workflows" in stems and not stems & {"schemastore:renovate", "schemastore:snapcraft"}
    suite = [r for r in recs if r.labels["source"] == "json-schema-test-suite"]
    assert all("$schema" not in r.record["schema"] for r in suite if isinstance(r.record["schema"], dict))
    assert {"minLength", "format:email", "ref"} <= {r.labels["kind"] for r in suite}


def test_unreadable_lines_name_file_and_line(tmp_path):
    latin = tmp_path / "l.jsonl"
    latin.write_bytes('{"a": 1}\n{"b": "\u00e9t\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(JsonFormatError, match=r"l\.jsonl:2: not UTF-8 text \(byte 0xe9 at column 8\)"):
        list(iter_records(latin))
    with pytest.raises(JsonFormatError, match=r"x: JSON nested too deeply for the parser"):
        strict_loads("[" * 100_000, "x")
    with pytest.raises(JsonFormatError, match=r"y: an integer has more than \d+ digits"):
        strict_loads("9" * 5000, "y")
    recs = list(iter_records(_write(tmp_path / "n.jsonl", ['{"a": 1}', "", '{"b": 2}'])))
    assert [r.line for r in recs] == [1, 3]
    with pytest.raises(IsADirectoryError, match="is a directory"):
        list(iter_records(tmp_path))
