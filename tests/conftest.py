"""Shared pytest configuration: deterministic seeds and thread counts for every test."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
