"""Structure tokens and the structure term: presence, order-insensitivity, fitted balance, own role."""
import pytest
import torch

from graphcore.datasets import DATA_DIR
from graphcore.datasets.json_corpora import iter_records
from graphcore.tasks.mbat.encoder import EncoderConfigError, JsonEncoder, JsonInputError, structure_balance, walk
from graphcore.tasks.mbat.query import ItemMemory, query
from graphcore.tasks.mbat.structure import leaf_type, structure_tokens


def tokens(doc, arrays=True):
    return structure_tokens(((l.path, leaf_type(l.value, type(l.value).__name__ == "Atom")) for l in walk(doc)), arrays)


def test_tokens_name_paths_prefixes_types_and_length_classes():
    t = tokens({"a": {"b": "x", "c": [1.5, True]}, "d": None})
    assert t == {"p:a", "p:a.b", "p:a.c", "p:a.c[*]", "p:d",
                 "t:a.b=str", "t:a.c[*]=num", "t:a.c[*]=true", "t:d=null", "n:a.c=1"}
    assert tokens({"a": {"b": "x"}}, arrays=False) == {"p:a", "p:a.b"}


def test_tokens_ignore_key_order_values_and_close_array_lengths():
    assert tokens({"a": 1, "b": [1, 2]}) == tokens({"b": [3, 4], "a": 7})
    assert tokens({"a": 1}) != tokens({"a": "1"})  # the type is part of the structure
    assert tokens({"b": [1, 2], "a": 1}) == tokens({"a": 5, "b": [3, 4, 5]})  # lengths 2 and 3: one class
    assert tokens({"b": [1]}) != tokens({"b": list(range(500))})


def _fitted(docs, dim=2048, **kw):
    return JsonEncoder(dim=dim, **kw).fit(docs)


def test_same_structure_is_similar_only_with_the_structure_term():
    # eight schemas of five documents, every value distinct: only structure tells the schemas apart
    docs = [{f"s{j}a": str(40 * j + i), f"s{j}b": {"x": str(1000 + 40 * j + i), "y": [2000 + 40 * j + i, True]}}
            for j in range(8) for i in range(5)]
    on, off = _fitted(docs), _fitted(docs, structure=False)
    assert on.structure_beta > 0.8  # unrelated schemas: fit gives the structure term full weight
    gaps = []
    for enc in (on, off):
        g = enc.encode_batch(docs) @ enc.encode_batch(docs).T
        same = torch.block_diag(*[torch.ones(5, 5)] * 8).bool() & ~torch.eye(40, dtype=torch.bool)
        gaps.append(float(g[same].mean() - g[~same].mean()))
    assert gaps[0] > 0.15 and abs(gaps[1]) < 0.03


def test_fit_balance_is_small_for_one_structure_and_large_for_many():
    one = [{"a": f"x{i}", "b": f"y{i}"} for i in range(30)]
    many = [{f"k{i}": "v", f"j{i}": {"z": 1}} for i in range(30)]
    assert _fitted(one).structure_beta == pytest.approx(0.0, abs=0.05)
    assert _fitted(many).structure_beta > 0.8
    assert structure_balance(1.2) == 0.0 and structure_balance(-0.5) == 1.0
    assert _fitted(one, structure_weight=0.7).structure_beta == 0.7  # a given weight is kept
    assert JsonEncoder(dim=256).structure_beta == 0.0  # never fitted: no structure term


def test_structure_term_keeps_exact_unbinding():
    docs = [r.record for r in iter_records(DATA_DIR / "countries.jsonl.gz", ("region", "subregion"), limit=20)]
    for enc in (_fitted(docs, structure_weight=1.0, dim=4096), _fitted(docs, structure=False, dim=4096)):
        mem, x = ItemMemory(enc).fit(docs), enc.encode_batch(docs)
        hits = [query(enc, x[i], "name.common", mem).value == d["name"]["common"] for i, d in enumerate(docs)]
        assert sum(hits) == len(docs)


def test_state_round_trip_and_old_state_without_structure():
    docs = [{"a": f"x{i}", "b": [1, 2][: i % 2 + 1]} for i in range(10)] + [{"c": {"d": i}} for i in range(10)]
    enc = _fitted(docs)
    again = JsonEncoder.from_state(enc.state())
    assert again.structure_beta == enc.structure_beta
    torch.testing.assert_close(again.encode_batch(docs), enc.encode_batch(docs))
    old = enc.state()
    del old["structure_idf"], old["structure_beta"]
    for key in ("structure", "structure_weight", "structure_arrays", "structure_idf"):
        del old["config"][key]
    plain = _fitted(docs, structure=False)
    torch.testing.assert_close(JsonEncoder.from_state(old).encode_batch(docs), plain.encode_batch(docs))


def test_bad_input_errors():
    with pytest.raises(JsonInputError, match="fit: got zero documents"):
        JsonEncoder(dim=256).fit([])
    with pytest.raises(JsonInputError, match=r"fit: all 3 documents are empty \(\{\} or \[\]\)"):
        JsonEncoder(dim=256).fit([{}, [], {}])
    with pytest.raises(EncoderConfigError, match=r"family 'hadamard' needs D = 2\^k, got D=1000; use D=512 or 1024"):
        JsonEncoder(dim=1000, family="hadamard")
    with pytest.raises(EncoderConfigError, match="family 'dense' stores a D x D matrix"):
        JsonEncoder(dim=16384, family="dense")
    with pytest.raises(EncoderConfigError, match="dim must be an integer >= 2"):
        JsonEncoder(dim=0)
    with pytest.raises(EncoderConfigError, match="structure_weight must be >= 0"):
        JsonEncoder(dim=256, structure_weight=-1.0)
