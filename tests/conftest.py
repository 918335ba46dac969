"""Shared pytest configuration: deterministic seeds and thread counts for every test."""
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
