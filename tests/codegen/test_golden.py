"""Golden snapshots of generated code: every change to the IR, the kernel specs or the printed
C++/CUDA of the layer zoo shows up as a diff in review.

For each zoo layer on one fixed small graph, the training plan's files are compared with the
committed copies in ``tests/codegen/golden/<layer>/``: the level-1 IR after every pass that
fired, the level-2 specs of forward and backward, and the CPU (``module.cpp``) and CUDA
(``module.cu``) translation units. Nothing is compiled: this is about text.

Regenerate after an intended change (then review the diff)::

    make golden        # = GRAPHCORE_UPDATE_GOLDEN=1 python -m pytest tests/codegen/test_golden.py
"""
import difflib
import os
import tempfile
from pathlib import Path

import pytest
import torch

import graphcore as gc
from graphcore.codegen.backends.cpu.executable import module_source as cpu_source
from graphcore.codegen.backends.cuda.executable import module_source as cuda_source
from graphcore.testing import edge_case_graphs, layer_zoo

GOLDEN = Path(__file__).resolve().parent / "golden"
ROOT = Path(__file__).resolve().parents[2]  # source lines in the IR are written relative to it
GRAPH = edge_case_graphs()["mixed"]
LAYERS = list(layer_zoo(GRAPH))


def update_requested() -> bool:
    return os.environ.get("GRAPHCORE_UPDATE_GOLDEN", "") not in ("", "0")


def render(layer: str) -> dict[str, str]:
    """The generated files of ``layer``'s training plan on :data:`GRAPH`, by file name."""
    model = layer_zoo(GRAPH)[layer]
    with tempfile.TemporaryDirectory() as tmp:
        compiled = gc.compile(model, backend="torch", dump_dir=tmp)
        x = torch.randn(GRAPH.num_nodes(), model.in_channels, dtype=torch.float64, requires_grad=True)
        compiled(GRAPH, x).sum().backward()
        (folder,) = Path(tmp).iterdir()
        files = {p.name: p.read_text() for p in sorted(folder.iterdir())}
    plan = compiled._graphcore_last
    programs = {"forward": plan.forward, "backward": plan.backward}
    files["module.cpp"] = cpu_source(programs)[0]
    files["module.cu"] = cuda_source(programs)[0]
    return {name: text.replace(f"{ROOT}{os.sep}", "") for name, text in files.items()}


@pytest.mark.parametrize("layer", LAYERS)
def test_generated_code_matches_the_snapshot(layer):
    files = render(layer)
    folder = GOLDEN / layer
    if update_requested():
        folder.mkdir(parents=True, exist_ok=True)
        for stale in set(p.name for p in folder.iterdir()) - set(files):
            (folder / stale).unlink()
        for name, text in files.items():
            (folder / name).write_text(text)
        return
    assert folder.is_dir(), f"no snapshot for {layer}: run `make golden`"
    committed = sorted(p.name for p in folder.iterdir())
    assert committed == sorted(files), f"{layer}: files differ from the snapshot; run `make golden` and review"
    for name, text in files.items():
        expected = (folder / name).read_text()
        if text != expected:
            diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                                f"golden/{layer}/{name}", f"generated/{layer}/{name}", n=2))
            pytest.fail(f"generated {name} of {layer} changed (run `make golden` if intended):\n{diff[:6000]}")
