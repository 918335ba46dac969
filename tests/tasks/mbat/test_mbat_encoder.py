"""JsonEncoder: structure, soft codes, input errors, determinism (also across processes)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from graphcore.tasks.mbat.encoder import JsonEncoder, JsonInputError, walk
from graphcore.tasks.mbat.vsa import cosine

REPO = Path(__file__).resolve().parents[3]
D = 2048


@pytest.fixture(scope="module")
def enc():
    return JsonEncoder(dim=D)


def cos(enc, a, b):
    x = enc.encode_batch([a, b])
    return float(x[0] @ x[1])


@pytest.mark.parametrize("family", ["perm", "hadamard", "householder", "dense"])
def test_nested_keys_do_not_commute(family):
    enc = JsonEncoder(dim=256 if family == "dense" else D, family=family)
    assert abs(cos(enc, {"a": {"b": "x"}}, {"b": {"a": "x"}})) < 0.1
    assert cos(enc, {"a": {"b": "x"}}, {"a": {"b": "x"}}) == pytest.approx(1.0, abs=1e-5)


def test_fast_path_equals_generic_path():
    # the signed-permutation scatter path must equal binding dense leaf rows path by path
    docs = [{"a": [1.5, "x y", True, None, {}, []], "b": {"c": "hello world", "d": [[2, 3], "z"]}}, "root", 7, {"e": False}]
    fast = JsonEncoder(dim=512, dtype=torch.float64)
    slow = JsonEncoder(dim=512, dtype=torch.float64)
    slow.sparse_scatter = False  # same roles, generic code path
    torch.testing.assert_close(fast.encode_batch(docs), slow.encode_batch(docs))


def test_output_is_unit_norm_and_batched_equals_single(enc):
    docs = [{"a": 1}, {"b": ["x", "y"]}, [1, 2, 3]]
    x = enc.encode_batch(docs)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(torch.stack([enc.encode(d) for d in docs]), x)
    assert x.dtype == torch.float32
    assert JsonEncoder(dim=256, dtype=torch.float64).encode({"a": 1}).dtype == torch.float64


def test_soft_strings_similar_beat_dissimilar(enc):
    base = {"module": "github.com/gin-gonic/gin"}
    near = cos(enc, base, {"module": "github.com/gin-gonic/gin/render"})
    far = cos(enc, base, {"module": "golang.org/x/crypto"})
    assert near > far + 0.2
    # normalisation policy: case, NFC and whitespace do not matter for values
    assert cos(enc, {"k": "Crème  Brûlée"}, {"k": "crème brûlée"}) == pytest.approx(1.0, abs=1e-5)
    assert cos(enc, {"k": "Cre\u0300me"}, {"k": "Crème"}) == pytest.approx(1.0, abs=1e-5)
    # keys keep their case
    assert cos(enc, {"Name": "x"}, {"name": "x"}) < 0.1


def test_soft_numbers_similarity_decreases_with_distance():
    enc = JsonEncoder(dim=D).fit([{"x": float(v)} for v in range(100)])
    sims = [cos(enc, {"x": 50}, {"x": 50 + d}) for d in (0, 2, 5, 15, 40)]
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    assert all(a > b for a, b in zip(sims, sims[1:])), sims
    assert sims[-1] < 0.1


def test_heavy_tailed_key_gets_log_scale():
    enc = JsonEncoder(dim=256).fit([{"area": v} for v in (-1, 0.5, 3, 40, 700, 9_000, 120_000, 5e6, 1.7e7)])
    assert enc.scaler.scales["area"].log
    # on a log scale 1e6 is nearer 2e6 than 1e3 is to 1e5
    assert cos(enc, {"area": 1e6}, {"area": 2e6}) > cos(enc, {"area": 1e3}, {"area": 1e5})


def test_arrays_positional_and_bag(enc):
    assert cos(enc, {"a": ["x", "y"]}, {"a": ["y", "x"]}) < 0.2
    bag = JsonEncoder(dim=D, array_mode="bag")
    assert cos(bag, {"a": ["x", "y"]}, {"a": ["y", "x"]}) == pytest.approx(1.0, abs=1e-5)
    # an array of one is not the bare value
    assert cos(enc, {"a": ["x"]}, {"a": "x"}) < 0.1


def test_atoms_and_empty_containers_are_distinct(enc):
    values = [True, False, None, {}, [], "true", 0, ""]
    x = enc.encode_batch([{"k": v} for v in values])
    sims = x @ x.T - torch.eye(len(values))
    assert sims.abs().max() < 0.15


def test_container_weighting():
    # with sqrt weighting a long array does not drown a sibling scalar
    doc = {"long": [f"w{i}" for i in range(100)], "short": "s"}
    sq, flat = JsonEncoder(dim=D), JsonEncoder(dim=D, weighting="none")
    probe = {"short": "s"}
    assert cos(sq, doc, probe) == pytest.approx(2**-0.5, abs=0.05)
    assert cos(flat, doc, probe) == pytest.approx(100**-0.5 * (100 / 101) ** 0.5, abs=0.05)


@pytest.mark.parametrize("doc,match", [
    ({"a": [1.0, float("nan")]}, r"nan at a\[1\] is not a JSON number"),
    ({"a": {"b": float("inf")}}, r"inf at a\.b is not a JSON number"),
    ({"a": {1: "x"}}, r"key 1 \(int\) at a is not a string"),
    ({"a": {"b": {1, 2}}}, r"set at a\.b is not a JSON type"),
    ({"a": b"x"}, r"bytes at a is not a JSON type"),
    ({"a": 10**400}, r"number at a is too large"),
])
def test_bad_input_errors_name_the_path(enc, doc, match):
    with pytest.raises(JsonInputError, match=match):
        enc.encode(doc)


def test_cycles_and_depth_are_rejected():
    cyc = {"a": {"b": []}}
    cyc["a"]["b"].append(cyc)
    with pytest.raises(JsonInputError, match=r"cycle: the container at a\.b\[0\] contains itself"):
        JsonEncoder(dim=256).encode(cyc)
    deep = "leaf"
    for _ in range(10):
        deep = {"k": deep}
    with pytest.raises(JsonInputError, match=r"nesting deeper than max_depth=5 at k\.k\.k\.k\.k"):
        JsonEncoder(dim=256, max_depth=5).encode(deep)
    assert len(walk(deep, max_depth=11)) == 1
    # a shared (non-cyclic) sub-object is fine
    shared = {"x": 1}
    assert len(walk({"a": shared, "b": shared})) == 2


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="unknown family 'qr'"):
        JsonEncoder(family="qr")
    with pytest.raises(ValueError, match="array_mode must be"):
        JsonEncoder(array_mode="set")
    with pytest.raises(ValueError, match="dtype must be"):
        JsonEncoder(dtype=torch.float16)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(JsonEncoder(dim=64).iter_encode([{}], batch_size=0))


def test_fit_idf_downweights_common_tokens():
    docs = [{"eco": "Go", "name": f"module{i}"} for i in range(50)]
    enc = JsonEncoder(dim=D).fit(docs)
    assert enc.token_idf.n_docs == 50
    w_common = enc.token_idf.weights(["=go"])[0]
    w_rare = enc.token_idf.weights(["=module1"])[0]
    assert w_common == pytest.approx(1.0) and w_rare == pytest.approx(enc.token_idf.max)
    # two docs differing only in the rare field are less alike than without idf
    plain = JsonEncoder(dim=D, idf=False).fit(docs)
    assert cos(enc, docs[0], docs[1]) < cos(plain, docs[0], docs[1]) - 0.2


def test_streaming_matches_batch_and_state_round_trip(tmp_path):
    docs = [{"i": i, "s": f"text {i}", "l": [i, "a"]} for i in range(23)]
    enc = JsonEncoder(dim=512).fit(docs)
    streamed = torch.cat(list(enc.iter_encode(iter(docs), batch_size=5, progress=False)))
    torch.testing.assert_close(streamed, enc.encode_batch(docs))
    enc.save(tmp_path / "enc.json")
    again = JsonEncoder.load(tmp_path / "enc.json")
    torch.testing.assert_close(again.encode_batch(docs), streamed)
    assert "JsonEncoder(dim=512" in repr(again)


def test_same_vector_in_another_process():
    doc = {"name": "Aruba", "latlng": [12.5, -69.97], "tags": ["x", True, None], "nested": {"a": {"b": 3}}}
    code = ("import json, sys; from tasks.mbat.encoder import JsonEncoder; "
            f"print(json.dumps(JsonEncoder(dim=256, seed=7).encode(json.loads({json.dumps(json.dumps(doc))})).tolist()))")
    env = {"PYTHONHASHSEED": "123", "PATH": "", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    theirs = torch.tensor(json.loads(out.stdout))
    ours = JsonEncoder(dim=256, seed=7).encode(doc)
    assert torch.equal(theirs, ours)
    assert not torch.equal(JsonEncoder(dim=256, seed=8).encode(doc), ours)
