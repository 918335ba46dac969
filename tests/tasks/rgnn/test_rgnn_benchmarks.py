"""benchmarks.common helpers and the two RGNN benchmarks' measuring and summarising code."""
import json
import operator
import os
import subprocess
import time

import pytest

import benchmarks.common as common
from benchmarks import rgnn_accuracy, rgnn_layers
from benchmarks.rgnn_minibatch import DGL_PYTHON


class FakeClock:
    """``perf_counter`` replacement: each call of ``work(s)`` advances time by ``s``."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float) -> None:
        self.now += seconds


def test_median_time_excludes_warmup_and_takes_the_median(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(common.time, "perf_counter", clock)
    durations = iter([9.0, 3.0, 1.0, 2.0, 5.0, 4.0])
    timing = common.median_time(lambda: clock.work(next(durations)), repeats=5, warmup=1)
    assert timing.runs == (3.0, 1.0, 2.0, 5.0, 4.0) and timing.median == 3.0


def test_median_time_gives_up_when_the_budget_cannot_hold(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(common.time, "perf_counter", clock)
    calls = []
    with pytest.raises(common.TimeBudgetExceeded, match="one run takes 10.00 s") as info:
        common.median_time(lambda: (calls.append(1), clock.work(10.0)), repeats=5, warmup=1, budget_s=30)
    assert len(calls) == 1 and info.value.seconds_per_run == 10.0
    with pytest.raises(ValueError, match="need repeats >= 1"):
        common.median_time(lambda: None, repeats=0)


def test_format_table_aligns_numbers_right_and_writes_markdown():
    rows = [{"name": "a", "ms": 1.5, "n": 3}, {"name": "long name", "ms": 1234.5, "n": None}]
    text = common.format_table(rows, {"name": "impl", "ms": "median ms", "n": "n"}).splitlines()
    assert text[0].split() == ["impl", "median", "ms", "n"]
    assert text[2].endswith("1.50  3") and text[3].startswith("long name") and "1,234.50" in text[3]
    assert len({len(line) for line in text[:3]}) == 1
    md = common.format_table(rows, ["name", "ms"], markdown=True).splitlines()
    assert md[0].startswith("| name") and md[1] == "|-----------|---------:|" and md[3].endswith("| 1,234.50 |")


def test_write_json_defaults_to_results(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    path = common.write_json("x.json", {"a": 1, "p": tmp_path})
    assert path == tmp_path / "results" / "x.json" and json.loads(path.read_text())["a"] == 1
    nested = common.write_json(tmp_path / "d" / "y.json", [1])
    assert json.loads(nested.read_text()) == [1]


def test_environment_names_machine_and_versions():
    env = common.environment("pytest", "no-such-package-xyz")
    assert env["machine"]["cpu_count"] >= 1 and env["machine"]["cpu"]
    assert env["versions"]["pytest"][0].isdigit() and env["versions"]["no-such-package-xyz"] == "not installed"


def test_run_isolated_reports_each_outcome():
    assert common.run_isolated(operator.mul, b"ab", 2, timeout_s=60).value == b"abab"
    slow = common.run_isolated(time.sleep, 60, timeout_s=1.5)
    assert slow.status == common.TIMEOUT and "killed after" in slow.message
    oom = common.run_isolated(bytearray, 2**34, timeout_s=60, memory_limit_bytes=2**28)
    assert oom.status == common.OOM
    bad = common.run_isolated(int, "x", timeout_s=60)
    assert bad.status == common.ERROR and "invalid literal" in bad.message


def test_peak_memory_sees_a_large_allocation():
    peak = common.peak_memory(operator.mul, b"x", 100 * common.MB, timeout_s=60)
    assert 100 * common.MB <= peak < 140 * common.MB


@pytest.mark.parametrize("layer, impl", [("rgcn", "graphcore"), ("rgat", "pyg"), ("hgt", "pyg")])
def test_layer_cell_measures_time_and_memory(layer, impl):
    # in a fresh process, as the benchmark runs it: memory a worker freed earlier would hide the peak
    out = common.run_isolated(rgnn_layers.measure_cell, "aifb", layer, impl, "fwd+bwd", 8, 2, 2, 1, 60, 1,
                              timeout_s=120)
    assert out.status == common.OK, out.message
    cell = out.value
    assert len(cell["runs_s"]) == 2 and cell["median_s"] > 0 and cell["peak_bytes"] > 0
    assert cell["num_edges"] == 48810 and cell["num_relations"] == 104


def test_layer_ratios_and_failures():
    def cell(impl, status="ok", **kw):
        return {"graph": "g", "layer": "rgcn", "pass": "fwd", "impl": impl, "status": status,
                "name": rgnn_layers.implementation_name("rgcn", impl), **kw}

    cells = [cell("graphcore", median_s=0.5, peak_bytes=100), cell("pyg", median_s=2.0, peak_bytes=300),
             cell("pyg_fast", status="TIMEOUT", seconds_per_run=50.0)]
    ratios = rgnn_layers.ratio_rows(cells)
    assert ratios[0]["peer"] == "PyG RGCNConv" and ratios[0]["speedup"] == 4.0 and ratios[0]["memory_ratio"] == 3.0
    assert ratios[1]["speedup"] == ">= 100 (peer TIMEOUT)"
    assert rgnn_layers.display(cells[2])["ms"] == "TIMEOUT (>= 50.0 s/run)"


def test_layers_from_json_reprints_and_plots(tmp_path, capsys):
    cells = [{"graph": "aifb", "layer": layer, "pass": mode, "impl": impl, "status": "ok", "median_s": t,
              "peak_bytes": 2**20, "prep_s": 0.01, "name": rgnn_layers.implementation_name(layer, impl)}
             for layer, impl, t in [("rgat", "graphcore", 0.1), ("rgat", "pyg", 0.8)] for mode in ("fwd", "fwd+bwd")]
    cells.append({**cells[-1], "status": "OOM"})
    saved = tmp_path / "layers.json"
    saved.write_text(json.dumps({"cells": cells}))
    png = tmp_path / "layers.png"
    rgnn_layers.main(["--from-json", str(saved), "--plot", str(png)])
    out = capsys.readouterr().out
    assert "PyG RGATConv" in out and "8.00" in out and "OOM" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_accuracy_summary_and_goal():
    runs = [{"test_acc": a, "seconds": 1.0} for a in (0.9, 1.0, 0.95)]
    row = rgnn_accuracy.summarise("aifb", "rgcn", runs)
    assert row["test_mean"] == pytest.approx(0.95) and row["test_std"] == pytest.approx(0.05)
    assert row["met"] is True and row["paper"] == 0.9583
    assert rgnn_accuracy.display(row)["test"] == "95.00 ± 5.00"
    rgat = rgnn_accuracy.summarise("aifb", "rgat", runs)
    assert rgat["met"] is None and rgat["min_met"] is True  # worst seed 90 % >= 80 %
    assert rgnn_accuracy.summarise("mutag", "rgat", [{"test_acc": a, "seconds": 1.0} for a in (0.7, 0.34)])["min_met"] is False
    with pytest.raises(ValueError, match="no configuration .*nope_rgcn.yaml"):
        rgnn_accuracy.train_once("nope", "rgcn", 0, 0.0)


def test_minibatch_benchmark_reports_each_part(tmp_path, monkeypatch):
    from benchmarks import rgnn_minibatch

    monkeypatch.setattr(rgnn_minibatch, "DGL_PYTHON", tmp_path / "no-venv-dgl" / "python")
    out = rgnn_minibatch.main(["--graphs", "mag_like:0.001", "--models", "rgcn", "--systems", "eager", "pyg", "dgl",
                               "--batch-size", "32", "--steps", "1", "--warmup", "1", "--hidden", "8", "--threads", "1",
                               "--output", str(tmp_path / "mb.json")])
    batches = out["batches"][0]
    assert batches["sample_ms"] > 0 and batches["build_ms"] > 0 and batches["batch_nodes"] > 32
    cells = {c["system"]: c for c in out["cells"]}
    assert cells["eager"]["status"] == cells["pyg"]["status"] == "ok"
    assert cells["dgl"]["status"] == f"not run: DGL's sampler and layers need {tmp_path}/no-venv-dgl/python (make dgl-env)"
    eager = cells["eager"]
    step = eager["step_ms"] / 1e3
    assert abs(eager["seeds_per_s"] - 32 / step) < 1e-6 and 0 < eager["build_share"] < 1
    assert json.loads((tmp_path / "mb.json").read_text())["cells"][0]["graph"] == "mag_like:0.001"


@pytest.mark.parametrize("model", ["rgcn", "hgt"])
@pytest.mark.parametrize("system", ["pyg", "eager"])
def test_minibatch_benchmark_trims_layers_without_changing_the_seeds_outputs(model, system):
    import torch

    from benchmarks import rgnn_minibatch

    graph, target, labels, seeds, classes = rgnn_minibatch.load("mag_like:0.001", 8)
    batch = rgnn_minibatch.sample_batches(graph, target, seeds, [4, 3], 16, 1)["batches"][0]
    torch.manual_seed(0)
    net = (rgnn_minibatch.PyGStack if system == "pyg" else rgnn_minibatch.graphcore_stack)(model, batch, 8, 5, 2)
    layers = rgnn_minibatch.stack_layers(system, net)
    x = torch.cat([batch.x[t] for t in batch.node_types])
    assert batch.trimmed(1).num_nodes() < batch.num_nodes()
    torch.testing.assert_close(rgnn_minibatch.seed_outputs(layers, batch, x, trim=True),
                               rgnn_minibatch.seed_outputs(layers, batch, x, trim=False), rtol=1e-5, atol=1e-6)


HAS_DGL = pytest.mark.skipif(not DGL_PYTHON.exists(), reason="needs .venv-dgl (make dgl-env)")


@HAS_DGL
def test_minibatch_benchmark_runs_dgl_with_its_own_sampler(tmp_path):
    from benchmarks import rgnn_minibatch

    out = rgnn_minibatch.main(["--graphs", "mag_like:0.001", "--systems", "dgl", "--batch-size", "32", "--steps", "2",
                               "--warmup", "1", "--hidden", "8", "--heads", "2", "--threads", "2", "--processes", "2",
                               "--output", str(tmp_path / "mb.json")])
    for cell in out["cells"]:
        assert cell["status"] == "ok", cell
        assert cell["seeds_per_s"] == pytest.approx(32 / (cell["sample_s"] + cell["train_s"]))
        assert cell["batch_nodes"] > 32 and cell["batch_edges"] > 0 and cell["loss"] > 0
    assert [c["model"] for c in out["cells"]] == ["rgcn", "rgat", "hgt"]
    for row in out["processes"]:  # DDP: two processes of one thread, each its share of the seeds
        assert (row["system"], row["processes"], row["threads_each"], row["status"]) == ("dgl", 2, 1, "ok")
        assert row["seeds_per_s"] == pytest.approx(2 * 32 / (row["sample_ms"] + row["train_ms"]) * 1e3)
    assert len(out["processes"]) == 3


DGL_BLOCK_CHECK = """
import dgl, torch
from benchmarks.dgl_minibatch_runner import homogeneous_block
torch.manual_seed(0)
hg = dgl.heterograph({("a", "r0", "b"): (torch.randint(0, 30, (90,)), torch.randint(0, 20, (90,))),
                      ("b", "r1", "a"): (torch.randint(0, 20, (70,)), torch.randint(0, 30, (70,))),
                      ("a", "r2", "a"): (torch.randint(0, 30, (50,)), torch.randint(0, 30, (50,)))},
                     num_nodes_dict={"a": 30, "b": 20})
sampler = dgl.dataloading.NeighborSampler([3, 2])
for block in sampler.sample_blocks(hg, {"a": torch.arange(6)})[2]:
    ntypes, canonical = list(hg.ntypes), list(hg.canonical_etypes)
    homogeneous, src_type, etype = homogeneous_block(block, ntypes, canonical)
    ids = torch.cat([block.srcnodes[t].data[dgl.NID][:block.num_dst_nodes(t)] for t in ntypes] +
                    [block.srcnodes[t].data[dgl.NID][block.num_dst_nodes(t):] for t in ntypes])
    dst_ids = torch.cat([block.dstnodes[t].data[dgl.NID] for t in ntypes])
    assert homogeneous.num_dst_nodes() == dst_ids.numel() and torch.equal(ids[:dst_ids.numel()], dst_ids)
    assert [ntypes[i] for i in src_type.tolist()] == [t for t in ntypes for _ in range(block.num_dst_nodes(t))] + \
        [t for t in ntypes for _ in range(block.num_src_nodes(t) - block.num_dst_nodes(t))]
    assert torch.equal(etype, etype.sort().values)  # presorted by relation
    u, v = homogeneous.edges()
    got = sorted(zip(etype.tolist(), ids[u].tolist(), dst_ids[v].tolist()))
    want = []
    for r, rel in enumerate(canonical):
        bu, bv = block.edges(etype=rel)
        want += zip([r] * bu.numel(), block.srcnodes[rel[0]].data[dgl.NID][bu].tolist(),
                    block.dstnodes[rel[2]].data[dgl.NID][bv].tolist())
    assert got == sorted(want) and len(got) > 0
print("ok")
"""


@HAS_DGL
def test_dgl_homogeneous_blocks_keep_every_edge_and_put_destinations_first():
    done = subprocess.run([str(DGL_PYTHON), "-c", DGL_BLOCK_CHECK], capture_output=True, text=True, timeout=300,
                          cwd=DGL_PYTHON.parents[2], env={**os.environ, "DGLBACKEND": "pytorch"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
