"""The installed distribution: one top-level import name (``graphcore``), and it works next to
HuggingFace ``datasets`` in a fresh virtual environment.

In a checkout, ``codegen/``, ``datasets/`` and ``tasks/`` are top-level folders (``python -m
tasks.traffic fit`` works from the repository root); ``graphcore/{codegen,datasets,tasks}`` are
links to them, so the wheel installs them as ``graphcore.codegen``, ``graphcore.datasets`` and
``graphcore.tasks``, and every import in the code names them that way (``codegen`` itself uses
relative imports, so it stands alone under either name).
"""
import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

QUICK_TOUR = """
import datasets, torch
import graphcore as gc
from graphcore.datasets import hetero
assert hasattr(datasets, "load_dataset"), datasets.__file__  # HuggingFace's, not ours
g = hetero.load("aifb").graph.add_reverse_edges()
model = gc.nn.RGCN(16, 8, g.num_relations)
x = torch.randn(g.num_nodes(), 16)
with torch.no_grad():
    torch.testing.assert_close(gc.compile(model, backend="cpu")(g, x), model(g, x), rtol=1e-4, atol=1e-5)
import graphcore.tasks.mbat.cli, graphcore.tasks.traffic.cli  # the tasks import from the wheel
print("tour ok", g.num_nodes(), datasets.__name__)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=600)
    (path,) = out.glob("graphcore-*.whl")
    return path


def test_the_wheel_has_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"graphcore"}, tops
    for path in ("graphcore/codegen/ir/ops/base.py", "graphcore/codegen/backends/cpu/prelude.h",
                 "graphcore/datasets/data/aifb.npz", "graphcore/tasks/traffic/cli.py",
                 "graphcore/tasks/tabsim/pretrained/pmc_tabsim.ckpt.gz"):
        assert path in names, path
    assert not any("pmc_pairs" in n or "pmc_tables" in n for n in names)  # research-only corpus stays out


def test_fresh_venv_beside_huggingface_datasets(wheel, tmp_path):
    """Install the wheel and HuggingFace ``datasets`` into a new environment (torch and the other
    dependencies come from this one through a ``.pth`` file, so nothing large is installed
    again), then import both and run the quick tour there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = [p for p in site.getsitepackages() if "site-packages" in p] or [sysconfig.get_paths()["purelib"]]
    (Path(purelib) / "outer_env.pth").write_text("\n".join(ours) + "\n")
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*install, "datasets"], check=True, capture_output=True, text=True, timeout=900)
    # --ignore-installed: the outer environment has graphcore too (editable); never touch it
    subprocess.run([*install, "--no-deps", "--ignore-installed", str(wheel)], check=True, capture_output=True, text=True,
                   timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    result = subprocess.run([str(python), "-c", QUICK_TOUR], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("tour ok 7262 datasets")
    where = subprocess.run([str(python), "-c", "import graphcore; print(graphcore.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env=env).stdout
    assert where.startswith(purelib), where  # the installed copy, not the checkout
