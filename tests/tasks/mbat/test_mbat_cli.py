"""The `python -m tasks.mbat` dispatcher: encode, search, query, fit, and --help for each."""
import json
import re

import numpy as np
import pytest
import torch

from graphcore.datasets import DATA_DIR
from graphcore.tasks.mbat.cli import main
from graphcore.tasks.mbat.data import JsonVectorDataModule
from graphcore.tasks.mbat.module import VectorClassifier

CORPUS = str(DATA_DIR / "countries.jsonl.gz")


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    out = tmp_path_factory.mktemp("mbat") / "c.npy"
    main(["encode", CORPUS, "-o", str(out), "--dim", "1024", "--limit", "60", "--mask", "region", "subregion",
          "--no-progress"])
    return out


def test_encode_writes_vectors_ids_and_encoder(vectors):
    x = np.load(vectors)
    assert x.shape == (60, 1024) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    ids = json.loads(vectors.with_name("c.npy.ids.json").read_text())
    assert ids[:2] == ["ABW", "AFG"] and len(ids) == 60
    meta = json.loads(vectors.with_name("c.npy.encoder.json").read_text())
    assert meta["mask"] == ["region", "subregion"] and meta["encoder"]["config"]["dim"] == 1024


def test_search_by_id_and_by_json(vectors, capsys):
    main(["search", str(vectors), "--id", "AUT", "-k", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "id"] and len(lines) == 4
    assert "AUT" not in " ".join(lines[1:])
    main(["search", str(vectors), "--json", json.dumps({"name": {"common": "Austria"}}), "-k", "1"])
    assert capsys.readouterr().out.splitlines()[1].split()[2] == "AUT"
    main(["search", str(vectors), "--id", "AUT", "-k", "3", "--faiss"])
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_query_reads_fields_back(vectors, capsys):
    main(["query", str(vectors), "--id", "AFG", "--path", "capital[0]", "independent", "latlng[0]"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('capital[0] = "Kabul"')  # found: "(cos ..., threshold ...)" follows
    assert out[1].startswith("independent = true")
    assert abs(float(out[2].split("=")[1].split()[0]) - 33.0) < 6


def test_cli_errors(vectors, capsys):
    # user errors exit 2 with the message on stderr (tasks.cli_errors), no longer SystemExit("error: ...")
    for argv, message in ((["search", str(vectors), "--id", "XXX"], "id 'XXX' is not among the 60"),
                          (["search", str(vectors)], "give --id ID or --json"),
                          (["query", str(vectors), "--id", "AFG", "--path", "latlng"], "nothing to compare latlng with"),
                          (["search", str(vectors.with_name("none.npy")), "--id", "AFG"], "does not exist")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert re.match(r"error: .*" + re.escape(message), capsys.readouterr().err)


def test_query_says_not_found(vectors, capsys):
    main(["query", str(vectors), "--id", "ATA", "--path", "capital[0]", "latlng[99]", "--top", "2"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2  # no runner-up lines for fields not found
    assert re.fullmatch(r'capital\[0\]: not found  \(best ".*" cos 0\.\d+ < threshold 0\.\d+\)', out[0])
    assert out[1].startswith("latlng[99]: not found  (best ")
    main(["query", str(vectors), "--id", "AFG", "--path", "capital[0]", "--top", "2"])
    out = capsys.readouterr().out.splitlines()
    m = re.fullmatch(r'capital\[0\] = "Kabul"  \(cos (0\.\d+), threshold (0\.\d+)\)', out[0])
    assert m and float(m[1]) > float(m[2]) and len(out) == 2


@pytest.mark.parametrize("cmd", [[], ["encode"], ["search"], ["query"], ["fit"]])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_fit_runs_with_lightning_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "--data.limit", "120", "--data.dim", "512", "--trainer.fast_dev_run", "true",
          "--trainer.accelerator", "cpu"])


def test_datamodule_and_classifier_learn():
    dm = JsonVectorDataModule(corpus=CORPUS, label="region", dim=512, limit=150, mask=["region", "subregion"])
    dm.setup("fit")
    assert dm.num_classes >= 4 and len(dm.train_set) + len(dm.val_set) + len(dm.test_set) <= 150
    x, y = dm.train_set.tensors
    model = VectorClassifier(in_dim=512, num_classes=dm.num_classes, hidden=0, lr=0.05)
    opt = model.configure_optimizers()
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    assert (model(x).argmax(1) == y).float().mean() > 0.95  # separable in D=512
    vx, vy = dm.val_set.tensors
    assert (model(vx).argmax(1) == vy).float().mean() > 1.5 / dm.num_classes
    with pytest.raises(ValueError, match="no label 'nope'"):
        JsonVectorDataModule(corpus=CORPUS, label="nope", limit=5)
    with pytest.raises(ValueError, match="val_fraction"):
        JsonVectorDataModule(corpus=CORPUS, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        VectorClassifier(num_classes=1)


def test_fit_keeps_the_final_model_and_predict_writes_the_test_rows(tmp_path, monkeypatch, capsys):
    """last.ckpt is the final epoch even when the best came first; predict writes one row per test
    record with its id, and probabilities equal the checkpoint's model."""
    import csv

    monkeypatch.chdir(tmp_path)
    common = ["--data.limit", "120", "--data.dim", "256", "--trainer.accelerator", "cpu",
              "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path)]
    main(["fit", *common, "--trainer.max_epochs", "3", "--checkpoint.dirpath", str(tmp_path / "ckpt"),
          "--checkpoint.monitor", "epoch", "--checkpoint.mode", "min"])  # epoch 0 is the "best"
    out = capsys.readouterr().out
    assert "best checkpoint:" in out and "last checkpoint:" in out and "(final model, step" in out
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2
    main(["predict", *common, "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt"),
          "--predictions.path", str(tmp_path / "pred.csv")])
    rows = list(csv.DictReader((tmp_path / "pred.csv").open()))
    dm = JsonVectorDataModule(corpus="countries", dim=256, limit=120)  # the CLI's defaults (label mask included)
    dm.setup("predict")
    assert [r["id"] for r in rows] == dm.test_ids and len(rows) == len(dm.test_set)
    model = VectorClassifier.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt", map_location="cpu")
    model.eval()
    with torch.no_grad():
        prob = model(dm.test_set.tensors[0]).softmax(-1)
    got = torch.tensor([[float(r[f"prob_{c}"]) for c in range(prob.size(1))] for r in rows])
    torch.testing.assert_close(got, prob, rtol=1e-5, atol=1e-6)
    assert [r["pred"] for r in rows] == [dm.classes[i] for i in prob.argmax(-1).tolist()]
    assert [r["label"] for r in rows] == [dm.classes[i] for i in dm.test_set.tensors[1].tolist()]
