"""Reading fields back: clean-up against item memories, number decoding, membership, capacity."""
import numpy as np
import pytest
import torch

from graphcore.datasets import DATA_DIR
from graphcore.datasets.json_corpora import MASKS, iter_records
from graphcore.tasks.mbat.capacity import capacity_curves, plot, recall
from graphcore.tasks.mbat.encoder import JsonEncoder
from graphcore.tasks.mbat.query import ItemMemory, QueryError, contains, noise_threshold, query


def _corpus(n=40, seed=0):
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]
    return [{"name": f"item {i}", "kind": str(rng.choice(words)), "ok": bool(rng.integers(2)),
             "loc": [float(rng.uniform(-60, 60)), float(rng.uniform(-170, 170))],
             "tags": [str(t) for t in rng.choice(words, 3, replace=False)], "meta": {"owner": {"id": f"u{i % 7}"}},
             "size": float(10 ** rng.uniform(0, 6))} for i in range(n)]


@pytest.fixture(scope="module", params=[None, 0.5], ids=["fitted-balance", "structure-0.5"])
def setup(request):
    # every query test runs twice: with the balance fit chooses, and with a strong structure term
    docs = _corpus()
    enc = JsonEncoder(dim=4096, structure_weight=request.param).fit(docs)
    return docs, enc, ItemMemory(enc).fit(docs), enc.encode_batch(docs)


def test_query_strings_and_atoms_within_capacity(setup):
    docs, enc, mem, x = setup
    for i in range(0, 40, 4):
        d = docs[i]
        assert query(enc, x[i], "name", mem).value == d["name"]
        assert query(enc, x[i], "kind", mem).value == d["kind"]
        assert query(enc, x[i], "ok", mem).value is d["ok"]
        assert query(enc, x[i], "tags[2]", mem).value == d["tags"][2]
        assert query(enc, x[i], ("meta", "owner", "id"), mem).value == d["meta"]["owner"]["id"]


def test_query_numbers_read_back_from_level_code(setup):
    docs, enc, mem, x = setup
    for i in range(0, 40, 5):
        lat = query(enc, x[i], "loc[0]", mem).value
        assert lat == pytest.approx(docs[i]["loc"][0], abs=6.0)
        size = query(enc, x[i], "size").value
        assert np.log10(size) == pytest.approx(np.log10(docs[i]["size"]), abs=0.4)


def test_query_result_and_candidates(setup):
    docs, enc, mem, x = setup
    res = query(enc, x[0], "kind", mem, top=3)
    assert len(res.candidates) == 3 and res.candidates[0] == (res.value, res.score)
    assert res.score > res.candidates[1][1]
    assert str(res).startswith(f'kind = "{docs[0]["kind"]}"')


def test_membership(setup):
    docs, enc, _, x = setup
    present, absent = docs[3]["tags"][1], next(w for w in ["alpha", "beta", "gamma", "delta"] if w not in docs[3]["tags"])
    assert contains(enc, x[3], "tags", present, any_position=3) > 0.15
    assert abs(contains(enc, x[3], "tags", absent, any_position=3)) < 0.1
    assert contains(enc, x[3], "kind", docs[3]["kind"]) > contains(enc, x[3], "kind", "no such kind") + 0.1


@pytest.fixture(scope="module")
def countries():
    # the whole corpus fits the encoder and the clean-up memory; only the queried records are encoded
    recs = list(iter_records(DATA_DIR / "countries.jsonl.gz", MASKS["countries"]))
    docs = [r.record for r in recs]
    enc = JsonEncoder(dim=4096).fit(docs)
    ids = ["JPN", "ATA"]
    x = enc.encode_batch([r.record for r in recs if r.id in ids])
    return enc, ItemMemory(enc).fit(docs), dict(zip(sorted(ids), x))


def test_absent_fields_are_not_found(countries):
    enc, mem, vec = countries
    beyond = query(enc, vec["JPN"], "latlng[99]", mem)  # latlng has two entries
    assert not beyond.found and beyond.score < beyond.threshold
    assert str(beyond).startswith("latlng[99]: not found  (best ") and "< threshold" in str(beyond)
    no_capital = query(enc, vec["ATA"], "capital[0]", mem)  # Antarctica: "capital": []
    assert not no_capital.found and no_capital.score < no_capital.threshold
    assert 0.03 < no_capital.threshold < 0.1  # about 4 noise deviations at D=4096


def test_present_fields_are_found(countries):
    enc, mem, vec = countries
    capital = query(enc, vec["JPN"], "capital[0]", mem)
    assert capital.found and capital.value == "Tokyo" and capital.score > 2 * capital.threshold
    lat = query(enc, vec["JPN"], "latlng[0]", mem)
    assert lat.found and lat.value == pytest.approx(36, abs=3)
    assert query(enc, vec["ATA"], "name.common", mem).found


def test_noise_threshold_is_mean_plus_z_sd():
    m = torch.tensor([0.01, 0.02, 0.03, 0.04])
    assert noise_threshold(m, 3.0) == pytest.approx(0.025 + 3 * float(m.std()))


def test_query_errors(setup):
    _, enc, mem, x = setup
    with pytest.raises(ValueError, match=r"nothing to compare nowhere\.x with"):
        query(enc, x[0], "nowhere.x", mem)
    with pytest.raises(ValueError, match="need one 4096-dimensional vector"):
        query(enc, x[:2], "kind", mem)
    with pytest.raises(QueryError, match="need top >= 1"):
        query(enc, x[0], "kind", mem, top=0)
    with pytest.raises(ValueError, match="cannot parse path"):
        query(enc, x[0], "kind..x", mem)


def test_item_memory_save_load(setup, tmp_path):
    docs, enc, mem, x = setup
    mem.save(tmp_path / "mem.json.gz")
    again = ItemMemory.load(tmp_path / "mem.json.gz", enc)
    assert again.values.keys() == mem.values.keys()
    assert query(enc, x[5], "ok", again).value is docs[5]["ok"]
    assert query(enc, x[5], "tags[0]", again).value == docs[5]["tags"][0]


def test_capacity_recall_falls_with_pairs_and_rises_with_dim():
    assert recall(512, 8, trials=4, codebook=200) == 1.0
    assert recall(512, 256, trials=2, codebook=200) < 0.5
    assert recall(2048, 64, trials=2, codebook=200) > recall(512, 64, trials=2, codebook=200)
    with pytest.raises(ValueError, match="need n_pairs >= 1"):
        recall(512, 0)


def test_capacity_curves_and_plot(tmp_path):
    res = capacity_curves(dims=(128, 256), trials=2, codebook=100, progress=False)
    caps = [res["curves"][d]["capacity"] for d in ("128", "256")]
    assert 0 < caps[0] <= caps[1]
    plot(res, tmp_path / "cap.png")
    assert (tmp_path / "cap.png").read_bytes()[:4] == b"\x89PNG"
