from pathlib import Path

import networkx as nx
import pandas as pd
import pytest
import torch

import graphcore as gc
from graphcore.testing import edge_case_graphs

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "hetero"


def test_pyg_round_trip():
    g = edge_case_graphs()["mixed"]
    g.x = g.check_features({"a": torch.randn(7, 3)})
    data = gc.to_pyg(g)
    assert data["a"].num_nodes == 7 and data[("b", "r3", "c")].edge_index.shape == (2, 10)
    back = gc.from_pyg(data)
    assert back.equals(g)
    assert torch.equal(back.x["a"], g.x["a"]) and "b" not in back.x


def test_from_networkx_types_and_mapping():
    G = nx.MultiDiGraph()
    G.add_node("p1", ntype="paper", x=[1.0, 2.0])
    G.add_node("p2", ntype="paper", x=[3.0, 4.0])
    G.add_node("alice", ntype="author")
    G.add_edge("alice", "p1", etype="writes")
    G.add_edge("alice", "p2", etype="writes")
    G.add_edge("p2", "p1", etype="cites")
    G.add_edge("p2", "p1", etype="cites")  # a duplicate edge is kept
    g, mapping = gc.from_networkx(G, return_mapping=True)
    assert g.num_nodes("paper") == 2 and g.num_nodes("author") == 1
    assert mapping["p2"] == ("paper", 1)
    assert g.edge_index(("author", "writes", "paper")).tolist() == [[0, 0], [0, 1]]
    assert g.edge_index(("paper", "cites", "paper")).tolist() == [[1, 1], [0, 0]]
    assert torch.equal(g.x["paper"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert "author" not in g.x


def test_from_networkx_missing_attributes():
    G = nx.DiGraph()
    G.add_node(0)
    with pytest.raises(ValueError, match="node 0 has no 'ntype' attribute"):
        gc.from_networkx(G)
    G.nodes[0]["ntype"] = "n"
    G.add_node(1, ntype="n")
    G.add_edge(0, 1)
    with pytest.raises(ValueError, match=r"edge \(0, 1\) has no 'etype' attribute"):
        gc.from_networkx(G)


class FakeDGLGraph:
    """The slice of DGL's DGLGraph API that from_dgl reads."""

    class _Nodes(dict):
        def __getitem__(self, ntype):
            return self.get(ntype)

    class _View:
        def __init__(self, data):
            self.data = data

    def __init__(self, graph: gc.HeteroGraph, feats):
        self._g = graph
        self.ntypes = list(graph.node_types)
        self.canonical_etypes = list(graph.relations)
        self.nodes = self._Nodes({t: self._View(feats.get(t, {})) for t in self.ntypes})

    def num_nodes(self, ntype):
        return self._g.num_nodes(ntype)

    def edges(self, etype):
        index = self._g.edge_index(etype)
        return index[0].int(), index[1].int()  # DGL may hand out int32 ids


def test_from_dgl_duck_typed():
    g = edge_case_graphs()["dense"]
    feat = torch.randn(4, 2)
    back = gc.from_dgl(FakeDGLGraph(g, {"a": {"feat": feat}}))
    assert back.equals(g) and torch.equal(back.x["a"], feat)
    with pytest.raises(ValueError, match="expects a DGL graph"):
        gc.from_dgl(object())


def test_graphcore_never_imports_dgl():
    import sys
    assert "dgl" not in sys.modules


def test_load_npz_bundled_aifb_statistics():
    from graphcore.datasets import DATA_DIR
    g = gc.load_npz(DATA_DIR / "aifb.npz")
    assert (g.num_nodes(), g.num_edges(), g.num_node_types, g.num_relations) == (7262, 24405, 7, 52)
    full = g.add_reverse_edges()
    assert (full.num_edges(), full.num_relations) == (48810, 104)  # DGL's AIFBDataset


def write_ogb_layout(root: Path, g: gc.HeteroGraph, labels: dict, split: dict):
    """Write ``g`` in OGB's heterograph raw layout (as ogbn-mag unpacks)."""
    raw = root / "raw"
    (raw / "relations").mkdir(parents=True)
    pd.DataFrame({t: [g.num_nodes(t)] for t in g.node_types}).to_csv(raw / "num-node-dict.csv.gz", index=False)
    pd.DataFrame(list(g.relations)).to_csv(raw / "triplet-type-list.csv.gz", index=False, header=False)
    for rel in g.relations:
        folder = raw / "relations" / "___".join(rel)
        folder.mkdir()
        pd.DataFrame(g.edge_index(rel).t().numpy()).to_csv(folder / "edge.csv.gz", index=False, header=False)
        pd.DataFrame([g.num_edges(rel)]).to_csv(folder / "num-edge-list.csv.gz", index=False, header=False)
    for t, x in g.x.items():
        (raw / "node-feat" / t).mkdir(parents=True)
        pd.DataFrame(x.numpy()).to_csv(raw / "node-feat" / t / "node-feat.csv.gz", index=False, header=False)
    target = next(iter(labels))
    pd.DataFrame({t: [t == target] for t in g.node_types}).to_csv(raw / "nodetype-has-label.csv.gz", index=False)
    (raw / "node-label" / target).mkdir(parents=True)
    pd.DataFrame(labels[target]).to_csv(raw / "node-label" / target / "node-label.csv.gz", index=False, header=False)
    folder = root / "split" / "random"
    (folder / target).mkdir(parents=True)
    pd.DataFrame({t: [t == target] for t in g.node_types}).to_csv(folder / "nodetype-has-split.csv.gz", index=False)
    for part, idx in split.items():
        pd.DataFrame(idx).to_csv(folder / target / f"{part}.csv.gz", index=False, header=False)


def test_ogb_layout_round_trip_on_bundled_mutag(tmp_path):
    from graphcore.datasets import hetero
    ds = hetero.load("mutag")
    g = ds.graph
    g.x = g.check_features({"bond": torch.randn(g.num_nodes("bond"), 3)})
    write_ogb_layout(tmp_path / "mutag_ogb", g, {ds.target: ds.labels.numpy()},
                     {"train": ds.train_idx.numpy(), "valid": ds.test_idx.numpy()[:10], "test": ds.test_idx.numpy()})
    back = hetero.load(tmp_path / "mutag_ogb")
    assert back.graph.num_nodes() == g.num_nodes() and back.graph.num_edges() == g.num_edges()
    for rel in g.relations:  # ogb sorts relations; content is identical
        assert torch.equal(back.graph.edge_index(rel), g.edge_index(rel))
    torch.testing.assert_close(back.graph.x["bond"], g.x["bond"], rtol=1e-6, atol=1e-6)
    assert back.target == "d" and torch.equal(back.labels, ds.labels)
    assert torch.equal(back.train_idx, ds.train_idx) and torch.equal(back.test_idx, ds.test_idx)


def test_from_ogb_rejects_other_folders(tmp_path):
    with pytest.raises(ValueError, match="not an OGB heterograph raw folder"):
        gc.from_ogb(tmp_path)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets/hetero")
def test_real_ogb_heco_acm_equals_npz():
    ogb = gc.from_ogb(SHARED / "ogb_format" / "heco_acm")
    npz = gc.load_npz(SHARED / "heco_acm.npz")
    assert ogb.num_nodes_dict == dict(sorted(npz.num_nodes_dict.items()))
    for rel in npz.relations:
        assert torch.equal(ogb.edge_index(rel), npz.edge_index(rel))
    dense = npz.x["paper"].to_dense()
    torch.testing.assert_close(ogb.x["paper"], dense)


def test_npz_round_trip(tmp_path):
    g = edge_case_graphs()["mixed"]
    g.x = g.check_features({"b": torch.randn(5, 2)})
    back = gc.load_npz(gc.save_npz(g, tmp_path / "g.npz"))
    assert back.equals(g) and torch.equal(back.x["b"], g.x["b"])
    bad = gc.HeteroGraph({"a__b": 1}, {})
    with pytest.raises(ValueError, match="contains '__'"):
        gc.save_npz(bad, tmp_path / "bad.npz")
