"""A callback for the DDP test's subprocesses: every rank saves its final weights, its training
losses and the seeds it trained on (``rank<r>.pt`` in ``folder``)."""
from pathlib import Path

import lightning as L
import torch


class RecordRank(L.Callback):
    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.losses: list[float] = []
        self.seeds: list[list[int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        self.seeds.append(batch.node.tolist())

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save({"state": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                    "losses": self.losses, "seeds": self.seeds, "world_size": trainer.world_size},
                   self.folder / f"rank{trainer.global_rank}.pt")
