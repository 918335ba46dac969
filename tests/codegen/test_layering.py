"""codegen stands on its own: every module imports alone in a fresh interpreter, and none of
them pulls in graphcore (imports point down only; see README, How it is built)."""
import subprocess
import sys
from pathlib import Path

import pytest

from graphcore import codegen

ROOT = Path(codegen.__file__).resolve().parent.parent
PACKAGE = ROOT / "codegen"
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for p in PACKAGE.rglob("*.py"))

_PROBE = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "codegen" or m.startswith("codegen.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as err:
        failed.append(f"{name}: {type(err).__name__}: {err}")
    leaked = sorted(m for m in sys.modules if m == "graphcore" or m.startswith("graphcore."))
    if leaked:
        failed.append(f"{name} imports {leaked}")
print("\\n".join(failed))
"""


def test_the_module_list_is_complete():
    assert {"codegen.ir.layout", "codegen.passes.pipeline", "codegen.driver.runner", "codegen.ir.ops.base",
            "codegen.backends.cpu.executable", "codegen.numerics.segment"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_each_module_imports_alone_without_graphcore(name):
    """One fresh interpreter per module: import order in the test process cannot hide a cycle."""
    result = subprocess.run([sys.executable, "-c", _PROBE, name], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout
