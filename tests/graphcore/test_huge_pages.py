"""``graphcore.compile`` asks torch for transparent huge pages, and leaves a user's choice alone."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import graphcore as gc
from graphcore.huge_pages import THP_VARIABLE, enable_huge_pages

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


class Tiny(torch.nn.Module):
    def forward(self, g, x):
        return x


def test_compile_sets_the_variable_when_unset(monkeypatch):
    monkeypatch.delenv(THP_VARIABLE, raising=False)
    gc.compile(Tiny())
    assert os.environ[THP_VARIABLE] == "1"


def test_a_users_choice_is_kept(monkeypatch):
    monkeypatch.setenv(THP_VARIABLE, "0")
    assert enable_huge_pages() is False
    assert os.environ[THP_VARIABLE] == "0"


@pytest.mark.skipif(not THP_MODE.is_file() or "[never]" in THP_MODE.read_text(),
                    reason="this kernel has no transparent huge pages")
def test_large_allocations_get_huge_pages_after_compile():
    """In a fresh process (the variable is read per allocation): 256 MiB filled after compile()
    is backed by 2 MiB pages, where without it (THP in madvise mode) none would be."""
    script = f"""
import os, torch, graphcore as gc
os.environ.pop({THP_VARIABLE!r}, None)
def huge_kb():
    return next(int(l.split()[1]) for l in open('/proc/self/smaps_rollup') if l.startswith('AnonHugePages'))
before = huge_kb()
gc.compile(torch.nn.Identity())
x = torch.empty(2 ** 26).fill_(1.0)
print(huge_kb() - before)
"""
    env = {k: v for k, v in os.environ.items() if k != THP_VARIABLE}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert int(out.stdout.split()[-1]) >= 128 * 1024, out.stdout  # at least half of the 256 MiB in huge pages
