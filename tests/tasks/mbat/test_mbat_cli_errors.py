"""The mbat command line under the error policy: every bad input exits 2 with one line naming it."""
import gzip
import json
import re

import pytest

from graphcore.datasets import DATA_DIR
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.mbat.cli import main

CORPUS = str(DATA_DIR / "countries.jsonl.gz")


def run(argv, capsys):
    """Exit code and stderr of ``main(argv)``."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


def one_line_error(err, pattern):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(r"error: " + pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    out = tmp_path_factory.mktemp("mbat_err") / "c.npy"
    main(["encode", CORPUS, "-o", str(out), "--dim", "256", "--limit", "20", "--no-progress"])
    return out


def _jsonl(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


BAD_CORPORA = {
    "deep": (b'{"a": 1}\n' + b"[" * 10000 + b"]" * 10000 + b"\n",
             r".*deep\.jsonl:2: JSON nested too deeply for the parser \(Python's recursion limit, \d+\); flatten the document"),
    "deep70": (b'{"a": 1}\n\n' + b'{"x": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}\n",
               r".*deep70\.jsonl:3: record 3: nesting deeper than max_depth=64 at x(\[0\]){63}; raise max_depth or "
               r"flatten the input"),
    "bigint": (b'{"a": 1}\n{"n": ' + b"9" * 5000 + b"}\n",
               r".*bigint\.jsonl:2: an integer has more than 4300 digits, more than Python converts; write it as a string"),
    "latin1": ('{"a": "ok"}\n\n{"name": "café"}\n'.encode("latin-1"),
               r".*latin1\.jsonl:3: not UTF-8 text \(byte 0xe9 at column 14\); save the file as UTF-8, .*"),
    "empty": (b"\n\n",
              r".*empty\.jsonl: no records \(the file is empty or holds only blank lines\); give a JSONL file .*"),
    "allempty": (b"{}\n[]\n{}\n",
                 r".*allempty\.jsonl: fit: all 3 documents are empty \(\{\} or \[\]\): there is nothing to encode; .*"),
    "nan": (b'{"a": NaN}\n', r".*nan\.jsonl:1: NaN is not valid JSON \(JSON has no NaN/Infinity\); write null or a string"),
}


@pytest.mark.parametrize("name", list(BAD_CORPORA))
def test_encode_rejects_bad_corpora(name, tmp_path, capsys):
    data, pattern = BAD_CORPORA[name]
    path = _jsonl(tmp_path, f"{name}.jsonl", data)
    code, err = run(["encode", path, "-o", str(tmp_path / "o.npy"), "--no-progress"], capsys)
    assert code == 2
    one_line_error(err, pattern)


def test_encode_rejects_broken_gzip_and_bad_dim(tmp_path, capsys):
    path = tmp_path / "broken.jsonl.gz"
    whole = gzip.compress("".join(f'{{"a": {i * 7919 % 10007}}}\n' for i in range(3000)).encode())
    path.write_bytes(whole[: len(whole) // 2])
    code, err = run(["encode", str(path), "-o", str(tmp_path / "o.npy"), "--no-progress"], capsys)
    assert code == 2
    one_line_error(err, r".*broken\.jsonl\.gz: broken gzip data after line \d+ \(.*\); re-compress the file .*")
    code, err = run(["encode", CORPUS, "-o", str(tmp_path / "o.npy"), "--dim", "1000", "--family", "hadamard"], capsys)
    assert code == 2
    one_line_error(err, r"family 'hadamard' needs D = 2\^k, got D=1000; use D=512 or 1024, or family 'perm'")


BAD_VECTORS = {
    "empty.npy": (b"", r"vector file .*empty\.npy is empty; re-run `python -m tasks.mbat encode` to write it"),
    "garbage.npy": (b"not numpy at all\n" * 8, r"vector file .*garbage\.npy is not a \.npy file \(no \.npy header\); .*"),
    "garbage.npz": (b"PK\x03\x04garbage", r"vector file .*garbage\.npz is a zip/\.npz archive; give the \.npy written by encode"),
    "truncated.npy": (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (20, 256), }" + b" " * 40 + b"\n",
                      r"vector file .*truncated\.npy is truncated or damaged \(.*\); re-run .*"),
}


@pytest.mark.parametrize("name", list(BAD_VECTORS))
@pytest.mark.parametrize("command", ["search", "query"])
def test_bad_vector_files(name, command, tmp_path, capsys):
    data, pattern = BAD_VECTORS[name]
    path = tmp_path / name
    path.write_bytes(data)
    extra = ["--path", "capital[0]"] if command == "query" else []
    code, err = run([command, str(path), "--id", "AFG", *extra], capsys)
    assert code == 2
    one_line_error(err, pattern)


@pytest.mark.parametrize("argv, pattern", [
    (["query", "{v}", "--id", "AFG", "--path", "capital[0]", "--top", "0"], r"--top must be >= 1, got 0"),
    (["search", "{v}", "--id", "AFG", "-k", "0"], r"-k must be >= 1, got 0"),
    (["search", "{v}", "--id", "AFG", "-k", "-3"], r"-k must be >= 1, got -3"),
    (["encode", CORPUS, "-o", "{v}.x.npy", "--limit", "0"], r"--limit must be >= 1, got 0"),
    (["search", "{v}", "--json", "[" * 10000], r"--json: JSON nested too deeply for the parser .*; flatten the document"),
    (["search", "{v}", "--json", '{"a": ' + "[" * 70 + "1" + "]" * 70 + "}"],
     r"--json: nesting deeper than max_depth=64 at a(\[0\])+; raise max_depth or flatten the input"),
    (["search", "{v}", "--id", "XXX"], r"id 'XXX' is not among the 20 stored vectors of .*c\.npy"),
    (["search", "{v}"], r"give --id ID or --json DOCUMENT"),
    (["query", "{v}", "--id", "AFG", "--path", "capital..x"], r"cannot parse path 'capital\.\.x' at character 7: .*"),
    (["query", "{v}", "--id", "AFG", "--path", "latlng"], r"query: nothing to compare latlng with: .*"),
])
def test_bad_options_and_documents(argv, pattern, vectors, capsys):
    code, err = run([a.replace("{v}", str(vectors)) for a in argv], capsys)
    assert code == 2
    one_line_error(err, pattern)


def test_lightning_fit_errors_follow_the_policy(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run(["fit", "--data.corpus", CORPUS, "--data.label", "nope", "--data.limit", "10",
                     "--trainer.accelerator", "cpu"], capsys)
    assert code == 2
    one_line_error(err, r"corpus .*countries\.jsonl\.gz has no label 'nope' in its records' 'labels'")


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    path = _jsonl(tmp_path, "empty.jsonl", b"")
    with pytest.raises(UsageError, match="no records"):  # re-raised: Python prints the traceback
        main(["--debug", "encode", path, "-o", str(tmp_path / "o.npy")])
    monkeypatch.setenv("GRAPHCORE_DEBUG", "1")
    with pytest.raises(UsageError, match="no records"):
        main(["encode", path, "-o", str(tmp_path / "o.npy")])
