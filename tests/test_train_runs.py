"""End to end: train → checkpoint → load → evaluate, exact resume, and the run directory."""

from __future__ import annotations

import json

import pytest
import torch

from featgap import data, runs
from featgap.errors import FeatgapError
from featgap.evaluate import evaluate
from featgap.train import TrainConfig, Trainer

pytestmark = pytest.mark.slow

# A small, fast configuration: 1,000 digits would be nicer, but mnist5k is the real data.
FAST = dict(dataset="mnist5k", model="smallcnn", batch_size=256, lr=0.05, monitor_n=100, monitor_pgd_steps=3,
            attack_steps=3)


def test_train_checkpoint_load_eval(tmp_path):
    out = tmp_path / "std"
    trainer = Trainer(TrainConfig(method="standard", epochs=2, **FAST), out=out)
    model = trainer.fit()
    # the run directory has every promised file
    for name in (runs.CONFIG, runs.METRICS, runs.SUMMARY, runs.FINAL, runs.LAST, runs.STATE):
        assert (out / name).exists(), name
    config = runs.read_config(out)
    assert config["config"]["eps"] == 0.3  # resolved from the dataset
    assert config["model_card"]["name"] == "smallcnn"
    assert config["environment"]["torch"] == torch.__version__
    metrics = runs.read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2]
    for key in ("train_loss", "train_acc", "monitor_clean_acc", "monitor_pgd_acc", "gap_l2", "gap_linf",
                "gap_cosine", "lr", "seconds"):
        assert key in metrics[-1], key
    assert metrics[-1]["monitor_clean_acc"] > 60.0  # two epochs of real MNIST learn something
    # load returns the same function as the trained model
    loaded = runs.load(out)
    x, _ = data.load("mnist5k", "test").stratified_subset(50).tensors()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    result = evaluate(loaded, data.load("mnist5k", "test"), n=100, autoattack=False)
    assert result.clean > 60.0 and result.pgd < result.clean
    assert not list((out).glob("**/*.tmp")), "no temporary files left behind"


def test_resume_is_exact(tmp_path):
    """Interrupting after epoch 1 and rerunning gives the same weights as one straight run."""
    cfg = TrainConfig(method="pgd_at", epochs=2, **FAST)
    straight = Trainer(cfg, out=tmp_path / "straight").fit()

    class Stop(Exception):
        pass

    def stop_after_first_epoch(model, epoch):
        if epoch == 1:
            raise Stop
        return {}

    with pytest.raises(Stop):
        Trainer(cfg, out=tmp_path / "resumed", callbacks=[stop_after_first_epoch]).fit()
    assert not (tmp_path / "resumed" / runs.SUMMARY).exists()
    assert len(runs.read_metrics(tmp_path / "resumed")) == 1
    resumed = Trainer(cfg, out=tmp_path / "resumed").fit()
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert len(runs.read_metrics(tmp_path / "resumed")) == 2


def test_finished_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    Trainer(TrainConfig(method="standard", epochs=1, **FAST), out=out).fit()
    before = (out / runs.FINAL).read_bytes()
    with pytest.raises(FeatgapError, match="finished run"):
        Trainer(TrainConfig(method="standard", epochs=1, **FAST), out=out)
    assert (out / runs.FINAL).read_bytes() == before


def test_unfinished_run_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    runs.write_json(out / runs.CONFIG, {"config": TrainConfig(method="standard", epochs=3, **FAST).resolved().as_dict()})
    with pytest.raises(FeatgapError, match="other settings"):
        Trainer(TrainConfig(method="pgd_at", epochs=3, **FAST), out=out)


def test_vaft_starts_from_checkpoint_and_checks_architecture(tmp_path):
    natural = tmp_path / "natural"
    Trainer(TrainConfig(method="standard", epochs=1, **FAST), out=natural).fit()
    with pytest.raises(FeatgapError, match="--init"):
        Trainer(TrainConfig(method="vaft", epochs=1, **FAST))
    with pytest.raises(FeatgapError, match="smallcnn model, but --model is resnet18"):
        Trainer(TrainConfig(method="vaft", epochs=1, **{**FAST, "model": "resnet18"}, init=str(natural)))
    trainer = Trainer(TrainConfig(method="vaft", epochs=1, **FAST, init=str(natural)))
    start = runs.load(natural)
    for a, b in zip(start.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a, b)
    # a bare safetensors file of another architecture is refused too
    from featgap import models

    other = tmp_path / "other.safetensors"
    runs.write_tensors(other, models.create("resnet18", 10, 1).state_dict())
    with pytest.raises(FeatgapError, match="does not fit"):
        Trainer(TrainConfig(method="vaft", epochs=1, **FAST, init=str(other)))


def test_trades_and_ema_train(tmp_path):
    out = tmp_path / "trades"
    Trainer(TrainConfig(method="trades", epochs=1, ema_decay=0.99, **FAST), out=out).fit()
    last = runs.read_tensors(out / runs.LAST)
    assert any(k.startswith("ema.") for k in last) and any(k.startswith("optim.") for k in last)
    summary = json.loads((out / runs.SUMMARY).read_text())
    assert summary["exported"] == "ema"
    final = runs.read_tensors(out / runs.FINAL)
    ema = {k[4:]: v for k, v in last.items() if k.startswith("ema.")}
    assert all(torch.equal(final[k], ema[k]) for k in final)
    assert "train_kl" in runs.read_metrics(out)[-1]


def test_validation_split_monitors_held_out_training_data(tmp_path):
    trainer = Trainer(TrainConfig(method="standard", epochs=1, val_fraction=0.1, **FAST))
    assert len(trainer.train_set) == 3600
    record = trainer.callbacks[0](trainer.model, 0)
    assert record["monitor_split"] == "val" and record["monitor_n"] == 100


# ---------------------------------------------------------------- --keep-checkpoints
def _same_numbers(a: list[dict], b: list[dict]) -> bool:
    """metrics.jsonl records equal in everything but the wall-clock seconds."""
    strip = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    return strip(a) == strip(b)


KEEP_FAST = {**FAST, "val_fraction": 0.8}
"""900 training images: the keep-checkpoints tests compare runs with each other, not with a target accuracy."""


def test_keep_checkpoints_keeps_each_epochs_export_and_changes_no_number(tmp_path):
    """keep 1 over 3 epochs, interrupted after epoch 1 and resumed: epochs [1, 2, 3], the last one is the
    final model, and weights and metrics are bit-identical to a run that keeps nothing."""
    plain_cfg = TrainConfig(method="standard", epochs=3, **KEEP_FAST)
    plain = Trainer(plain_cfg, out=tmp_path / "plain").fit()
    assert runs.checkpoint_epochs(tmp_path / "plain") == []
    with pytest.raises(FeatgapError, match="kept none.*--keep-checkpoints") as err:
        runs.load(tmp_path / "plain", epoch=1)
    assert "\n" not in str(err.value)

    class Stop(Exception):
        pass

    def stop_in_second_epoch(model, epoch):
        if epoch == 1:
            raise Stop
        return {}

    kept_cfg = TrainConfig(method="standard", epochs=3, keep_checkpoints=1, **KEEP_FAST)
    out = tmp_path / "kept"
    with pytest.raises(Stop):
        Trainer(kept_cfg, out=out, callbacks=[stop_in_second_epoch]).fit()
    assert runs.checkpoint_epochs(out) == [1]
    kept = Trainer(kept_cfg, out=out).fit()
    assert runs.checkpoint_epochs(out) == [1, 2, 3]
    for (k, a), b in zip(plain.state_dict().items(), kept.state_dict().values()):
        assert torch.equal(a, b), k
    assert _same_numbers(runs.read_metrics(tmp_path / "plain"), runs.read_metrics(out))
    # epoch 3's kept file is the final model (no EMA), and loads as such
    assert runs.read_tensors(runs.epoch_checkpoint(out, 3)).keys() == runs.read_tensors(out / runs.FINAL).keys()
    final = runs.read_tensors(out / runs.FINAL)
    for k, v in runs.read_tensors(runs.epoch_checkpoint(out, 3)).items():
        assert torch.equal(v, final[k]), k
    x, _ = data.load("mnist5k", "test").stratified_subset(20).tensors()
    with torch.no_grad():
        assert torch.equal(runs.load(out, epoch=3)(x), kept(x))
        assert not torch.equal(runs.load(out, epoch=1)(x), kept(x))
    with pytest.raises(FeatgapError, match="no checkpoint of epoch 7: it kept epochs 1, 2, 3") as err:
        runs.load(out, epoch=7)
    assert "\n" not in str(err.value)
    with pytest.raises(FeatgapError, match="not both"):
        runs.load(out, "last", epoch=3)


def test_keep_checkpoints_keeps_the_ema_export_every_n_epochs(tmp_path):
    out = tmp_path / "ema"
    Trainer(TrainConfig(method="standard", epochs=2, ema_decay=0.9, keep_checkpoints=2, **KEEP_FAST), out=out).fit()
    assert runs.checkpoint_epochs(out) == [2]
    final, kept = runs.read_tensors(out / runs.FINAL), runs.read_tensors(runs.epoch_checkpoint(out, 2))
    raw = runs.load(out, which="last").state_dict()
    assert all(torch.equal(kept[k], final[k]) for k in final)
    assert not all(torch.equal(kept[k], raw[k]) for k in raw)  # the EMA weights, not the raw ones


def test_keep_checkpoints_flag_reaches_the_config():
    from featgap.cli import build_parser, train_config_from_args

    args = build_parser().parse_args(["train", "--out", "x", "--keep-checkpoints", "2"])
    assert train_config_from_args(args).keep_checkpoints == 2
    with pytest.raises(FeatgapError, match="--keep-checkpoints must be non-negative"):
        TrainConfig(keep_checkpoints=-1).resolved()
