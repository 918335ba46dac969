"""Shared pytest configuration: deterministic seeds and thread counts for every test."""
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture
def fp64():
    """Run a test with float64 as the default dtype (the compiler's fp64 equality checks)."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty native build cache, nothing loaded, and a list of every compiler run of a model
    (the layouts' counting-sort helper of graphcore.grouping is not one): ``(cache root, calls)``."""
    from graphcore.codegen.runtime import build, load
    from graphcore.grouping import NATIVE_SYMBOL

    monkeypatch.setenv("GRAPHCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(load, "_LOADED", {})
    calls = []
    real = build.compile_shared

    def counting(source, *rest):
        if NATIVE_SYMBOL not in Path(source).read_text():  # the layouts' sort helper is not a model
            calls.append((source, *rest))
        return real(source, *rest)

    monkeypatch.setattr(build, "compile_shared", counting)
    return tmp_path / "cache", calls
