"""Lightning DDP on CPU (gloo): two processes, each sampling its half of the seeds, end with
identical weights, and their loss curve follows a single process with the same global batch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


def fit(folder: Path, batch_size: int, *extra: str) -> None:
    command = [sys.executable, "-m", "tasks.rgnn", "fit", "--data", "aifb", f"--data.batch_size={batch_size}",
               "--data.num_neighbors=[4, 4]", "--model.hidden=8", "--trainer.max_epochs=2", "--test_after_fit=false",
               "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
               "--trainer.callbacks+=rank_record.RecordRank", f"--trainer.callbacks.folder={folder / 'ranks'}",
               f"--trainer.default_root_dir={folder}", f"--trainer.logger.init_args.save_dir={folder}", *extra]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def epoch_means(losses: list[float], epochs: int = 2) -> list[float]:
    per = len(losses) // epochs
    return [sum(losses[i * per:(i + 1) * per]) / per for i in range(epochs)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_two_process_ddp_matches_one_process(tmp_path):
    fit(tmp_path / "ddp", 8, "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu")
    fit(tmp_path / "one", 16)
    ranks = [torch.load(tmp_path / "ddp" / "ranks" / f"rank{r}.pt") for r in (0, 1)]
    single = torch.load(tmp_path / "one" / "ranks" / "rank0.pt")
    assert [r["world_size"] for r in ranks] == [2, 2] and single["world_size"] == 1
    for name, value in ranks[0]["state"].items():  # DDP keeps the replicas bit-identical
        torch.testing.assert_close(ranks[1]["state"][name], value, rtol=0, atol=0, msg=name)
    # each rank sampled its own half of the 112 training seeds in every epoch
    steps = len(ranks[0]["seeds"]) // 2
    for epoch in range(2):
        mine = [sum(r["seeds"][epoch * steps:(epoch + 1) * steps], []) for r in ranks]
        assert len(mine[0]) == len(mine[1]) == 56 and not set(mine[0]) & set(mine[1])
    # the same global batch (2 x 8 seeds against 16), 7 steps an epoch: the global loss follows the
    # single process within sampling noise, and both learn
    ddp = [(a + b) / 2 for a, b in zip(ranks[0]["losses"], ranks[1]["losses"])]
    assert len(ddp) == len(single["losses"]) == 14
    for a, b in zip(epoch_means(ddp), epoch_means(single["losses"])):
        assert abs(a - b) < 0.1, (epoch_means(ddp), epoch_means(single["losses"]))
    assert epoch_means(ddp)[1] < epoch_means(ddp)[0] - 0.2
