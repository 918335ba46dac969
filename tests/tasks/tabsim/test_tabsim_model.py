"""Tests of the Siamese network: masks, symmetry, maximum at identical tables, monotone head, calibration."""
import pytest
import torch

from graphcore.datasets.tables import load_tables
from graphcore.tasks.tabsim.data import make_pair_batch
from graphcore.tasks.tabsim.encode import TableEncoder, collate_chunks
from graphcore.tasks.tabsim.model import AxialAttention, Calibration, MonotoneHead, TabSimNet


@pytest.fixture(scope="module")
def corpus():
    tables = list(load_tables().values())
    picked = tables[:24] + [t for t in tables if t.table_id == "PMC6034220:Tab4"]  # includes the ragged table
    picked.append(max(tables, key=lambda t: t.n_rows * t.n_cols))
    encoder = TableEncoder.fit(tables, vocab_size=200, n_buckets=64)
    return encoder, [encoder.encode(t) for t in picked]


def _net(encoder, head="bce", seed=0):
    torch.manual_seed(seed)
    return TabSimNet(encoder.vocab_size, 64, dim=16, heads=2, layers=1, head=head).eval()


def test_padding_does_not_change_an_embedding(corpus):
    encoder, enc = corpus
    net = _net(encoder)
    with torch.no_grad():
        alone = net.embed(collate_chunks([enc[0]]))
        padded = net.embed(collate_chunks([enc[0], enc[-1]], max_cells=10 ** 6))  # padded to the largest grid
    assert padded.joint.shape[0] == 2
    for a, p in zip(alone, padded):
        torch.testing.assert_close(a[0], p[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("head", ["bce", "contrastive"])
def test_score_is_symmetric_and_maximal_for_identical_tables(corpus, head):
    encoder, enc = corpus
    net = _net(encoder, head)
    n = len(enc)
    for i in (0, n - 2, n - 1):
        forward = make_pair_batch(enc, [(i, j) for j in range(n)])
        backward = make_pair_batch(enc, [(j, i) for j in range(n)])
        with torch.no_grad():
            s_ab = net.calibration(net(forward.tables, forward.a, forward.b, forward.lexical))
            s_ba = net.calibration(net(backward.tables, backward.a, backward.b, backward.lexical))
        assert torch.equal(s_ab, s_ba)
        assert ((s_ab >= 0) & (s_ab <= 1)).all()
        assert s_ab[i] == s_ab.max() and (s_ab[i] > s_ab[torch.arange(n) != i]).all()


def test_monotone_head_is_non_decreasing_in_every_feature():
    torch.manual_seed(1)
    head = MonotoneHead(5)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()  # any weights: monotonicity must not depend on training
        x = torch.randn(200, 5)
        for k in range(5):
            bumped = x.clone()
            bumped[:, k] += torch.rand(200) * 3
            assert (head(bumped) >= head(x) - 1e-6).all()


def test_calibration_recovers_platt_parameters():
    torch.manual_seed(2)
    logits = torch.randn(20000) * 2
    labels = torch.bernoulli(torch.sigmoid(2.0 * logits - 1.0))
    calib = Calibration()
    calib.fit(logits, labels)
    assert float(calib.log_scale.exp()) == pytest.approx(2.0, rel=0.08)
    assert float(calib.bias) == pytest.approx(-1.0, abs=0.08)
    p = calib(torch.tensor([-100.0, 0.0, 100.0]))
    assert p[0] < 1e-6 and p[1] == pytest.approx(torch.sigmoid(calib.bias).item()) and p[2] > 1 - 1e-6


def test_bad_configurations_are_rejected(corpus):
    encoder, _ = corpus
    with pytest.raises(ValueError, match="dim 10 is not divisible by heads 3"):
        AxialAttention(10, 3, axis=1)
    with pytest.raises(ValueError, match="head must be 'bce' or 'contrastive'"):
        TabSimNet(encoder.vocab_size, 64, head="cosine")
