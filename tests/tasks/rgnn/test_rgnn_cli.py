"""``python -m tasks.rgnn``: help, fast_dev_run per model, checkpoint round trip, configs."""
import csv
import re
import subprocess
import sys

import pytest
import torch

from graphcore.tasks.rgnn.cli import CONFIG_DIR, expand_shorthands, main
from graphcore.tasks.rgnn.module import RGNNClassifier

pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_expand_shorthands():
    assert expand_shorthands(["fit", "--data", "aifb", "--model=rgat", "--model.hidden", "8"]) == [
        "fit", "--data.name", "aifb", "--model.model=rgat", "--model.hidden", "8"]
    # configurations keep LightningCLI's meaning
    assert expand_shorthands(["--data", "d.yaml", "--model={hidden: 4}"]) == ["--data", "d.yaml", "--model={hidden: 4}"]


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--data.name", "--data.valid_fraction", "--data.batch_size", "--data.num_neighbors",
                   "--data.num_workers", "--data.eval_num_neighbors", "--data.eval_chunk_size", "--data.root", "--model.model", "--model.hidden", "--model.num_bases",
                   "--model.lr", "--test_after_fit", "--checkpoint.monitor", "--trainer.max_epochs"):
        assert option in text, option
    assert "--model.num_nodes" not in text  # linked from the data, not a user option
    assert "evaluates layer-wise with full" in text  # the mini-batch evaluation protocol is documented


def test_module_help_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "tasks.rgnn", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "fit" in out.stdout and "--data NAME" in out.stdout


@pytest.mark.parametrize("model", ["rgcn", "rgat", "hgt"])
def test_fast_dev_run_prints_test_accuracy(model, tmp_path, capsys):
    cli = main(["fit", "--data", "aifb", "--model", model, "--model.hidden", "8", "--trainer.fast_dev_run", "1",
                f"--trainer.default_root_dir={tmp_path}", *QUIET])
    assert cli.model.hparams.model == model and cli.model.hparams.num_relations == 104
    assert "test/acc" in capsys.readouterr().out
    assert 0.0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1.0


def test_checkpoint_is_saved_and_reloads_alone(tmp_path, capsys):
    cli = main(["fit", "--data", "aifb", "--trainer.max_epochs", "2", f"--trainer.default_root_dir={tmp_path}",
                f"--trainer.logger.init_args.save_dir={tmp_path}", *QUIET])
    last = tmp_path / "rgnn" / "version_0" / "checkpoints" / "last.ckpt"
    assert last.is_file() and f"checkpoint: {last}" in capsys.readouterr().out
    restored = RGNNClassifier.load_from_checkpoint(last).eval()  # schema comes from the saved hyper-parameters
    graph = cli.datamodule.graph
    torch.testing.assert_close(restored(graph), cli.model.eval()(graph))
    assert restored.hparams.num_nodes == cli.datamodule.num_nodes


LARGE = {"ogbn-mag": "ogbn-mag", "mag-like": "mag_like:1.0"}  # configs of graphs too big to load in a test


@pytest.mark.parametrize("config", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_configs_build(config, capsys):
    dataset, model = config.stem.split("_")
    if dataset in LARGE:  # parsed, not loaded
        with pytest.raises(SystemExit) as done:
            main(["fit", "--config", str(config), "--print_config"])
        text = capsys.readouterr().out
        assert done.value.code == 0 and f"name: {LARGE[dataset]}" in text and "batch_size: 1024" in text
        return
    cli = main(["--config", str(config)], run=False)
    assert cli.datamodule.hparams.name == dataset and cli.model.hparams.model == model


def test_the_mag_recipe_trains_on_sampled_batches(tmp_path, capsys):
    """The ogbn-mag recipe, on a small synthetic MAG-like graph: sampled batches, sampling workers,
    sparse embeddings, compiled layers, then test layer-wise on the full graph (the default), or
    on sampled batches with ``eval_num_neighbors``."""
    cli = main(["fit", "--config", str(CONFIG_DIR / "mag-like_rgcn.yaml"), "--data.name=mag_like:0.002",
                "--data.batch_size=64", "--data.num_neighbors=[4, 3]", "--data.num_workers=1", "--model.hidden=8",
                "--model.sparse_embeddings=true", "--model.compile=true", "--trainer.max_steps=3",
                "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=2", f"--trainer.default_root_dir={tmp_path}",
                f"--trainer.logger.init_args.save_dir={tmp_path}", *QUIET])
    assert cli.trainer.global_step == 3 and "test/acc" in capsys.readouterr().out
    assert cli.datamodule.in_features == {"paper": 128}
    data = cli.datamodule
    whole = next(iter(data.val_dataloader()))  # layer-wise: one batch of the full graph, all val nodes
    assert whole.graph is data.graph and whole.chunk_size == 8192 and torch.equal(whole.node, data.splits["val"])
    data.hparams.eval_num_neighbors = [4, 3]
    batch = next(iter(data.val_dataloader()))
    assert type(batch.graph).__name__ == "SampledGraph" and len(batch) == 64 and batch.chunk_size is None
    assert torch.equal(batch.y, data.dataset.labels[batch.node])
    again = next(iter(data.val_dataloader()))  # sampled evaluation batches are repeatable
    assert again.graph.equals(batch.graph)


def test_minibatch_options_are_checked(tmp_path, capsys):
    for option, message in (("--data.batch_size=0", "batch_size must be >= 1"),
                            ("--data.num_neighbors=[5, -2]", "num_neighbors: fan-out -2 is not allowed"),
                            ("--data.num_workers=-1", "num_workers must be >= 0"),
                            ("--data.eval_chunk_size=0", "eval_chunk_size must be >= 1")):
        with pytest.raises(SystemExit) as done:
            main(["fit", "--data", "aifb", option, "--trainer.fast_dev_run=1", f"--trainer.default_root_dir={tmp_path}",
                  *QUIET])
        assert done.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["fit", "--data", "ogbn-mag", "--trainer.fast_dev_run=1", *QUIET])
    assert done.value.code == 2 and "--data ogbn-mag needs --data.root DIR" in capsys.readouterr().err


def test_bad_model_name_is_rejected():
    with pytest.raises(SystemExit):
        main(["fit", "--data", "aifb", "--model", "gcn", "--trainer.fast_dev_run", "1"])


def test_compiled_model_trains_and_matches_eager(tmp_path, recwarn):
    cli = main(["fit", "--data", "aifb", "--model", "rgat", "--model.hidden", "8", "--model.heads", "2",
                "--model.dropout", "0.5", "--model.compile", "true", "--trainer.fast_dev_run", "1",
                f"--trainer.default_root_dir={tmp_path}", *QUIET])
    assert not [w for w in recwarn if "fell back to eager" in str(w.message)]
    compiled = cli.model.eval()
    assert type(compiled.net.stack).__name__ == "CompiledRelationalStack"
    hparams = {k: v for k, v in compiled.hparams.items() if k not in ("compile", "_instantiator")}
    eager = RGNNClassifier(**hparams).eval()
    eager.load_state_dict(compiled.state_dict())  # same parameter names as the eager model
    graph = cli.datamodule.graph
    torch.testing.assert_close(compiled(graph), eager(graph), rtol=1e-4, atol=1e-5)


def test_last_checkpoint_is_the_final_model_and_predict_writes_the_test_nodes(tmp_path, capsys):
    root = [f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}", *QUIET]
    # best = lowest epoch: the best checkpoint is epoch 0's, last.ckpt must still hold epoch 2's model
    cli = main(["fit", "--data", "aifb", "--model.hidden", "8", "--trainer.max_epochs", "3", "--test_after_fit=false",
                "--checkpoint.monitor=epoch", "--checkpoint.mode=min", *root])
    folder = tmp_path / "rgnn" / "version_0" / "checkpoints"
    out = capsys.readouterr().out
    assert f"best checkpoint: {folder / 'epoch00-val_acc'}" in out
    assert f"last checkpoint: {folder / 'last.ckpt'} (final model, step 3)" in out
    last = torch.load(folder / "last.ckpt", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 3)
    for name, value in cli.model.state_dict().items():
        torch.testing.assert_close(last["state_dict"][name], value, rtol=0, atol=0)

    main(["predict", "--data", "aifb", "--model.hidden", "8", f"--ckpt_path={folder / 'last.ckpt'}",
          f"--predictions.path={tmp_path / 'p.csv'}", *root])
    assert f"predictions (36 rows): {tmp_path / 'p.csv'}" in capsys.readouterr().out
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = cli.datamodule
    assert [int(r["node"]) for r in rows] == data.splits["test"].tolist()
    probs = torch.tensor([[float(r[f"prob_{c}"]) for c in range(data.num_classes)] for r in rows])
    expected = cli.model.eval()(data.graph).index_select(0, data.batch("test").index).softmax(-1)
    torch.testing.assert_close(probs, expected)
    assert [int(r["pred"]) for r in rows] == expected.argmax(-1).tolist()


def test_user_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["fit", "--data", "aifb", "--data.valid_fraction=1.5", "--trainer.fast_dev_run=1",
              f"--trainer.default_root_dir={tmp_path}", *QUIET])
    assert done.value.code == 2
    assert capsys.readouterr().err == "error: valid_fraction must be in [0, 1), got 1.5\n"
    with pytest.raises(SystemExit) as done:
        main(["fit", "--data", str(tmp_path / "nothing.npz"), "--trainer.fast_dev_run=1", *QUIET])
    assert done.value.code == 2
    assert re.fullmatch(r"error: dataset '\S*nothing.npz' not found: looked for .*\n", capsys.readouterr().err)
