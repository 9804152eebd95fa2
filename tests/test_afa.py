"""Tests of AFA's methods (featgap.methods.afa), its two-stage training (featgap.train.stages) and
extra training data (featgap.data.extra). The loss itself is tested in test_contrastive.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from featgap import FeatgapError, data, runs
from featgap.methods import METHODS, AttackSettings
from featgap.methods.afa import AFA, AFATrades, FrozenEncoder, ProjectedModel
from featgap.methods.contrastive import afa_views_loss
from featgap.models import create
from featgap.train import TrainConfig, Trainer, fit, stage_dirs

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"batch_size": 500, "attack_steps": 1, "monitor_n": 0}
"""One mnist5k epoch in 8 steps with a 1-step attack: seconds, enough to move every weight."""


def digits_batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return data.load("mnist5k", "train").subset(range(n)).tensors()


# ---------------------------------------------------------------- methods, one step at a time
def test_afa_loss_trains_encoder_and_projection_and_the_probe_only_through_detached_features():
    torch.manual_seed(0)
    method = AFA(AttackSettings(steps=2))
    model = method.start(create("smallcnn", 10, 1))
    assert isinstance(model, ProjectedModel)
    x, y = digits_batch()
    loss, metrics = method.loss(model.train(), x, y, eps=0.3)
    assert {"l_con", "probe_acc"} <= set(metrics)
    named = dict(model.named_parameters())
    grads = dict(zip(named, torch.autograd.grad(loss, list(named.values()), allow_unused=True)))
    assert all(grads[k] is not None and grads[k].abs().sum() > 0 for k in named if k.startswith("projection."))
    assert grads["head.weight"].abs().sum() > 0  # the online probe learns
    # the probe's CE does not reach the encoder: its gradient equals the contrastive loss's alone
    contrastive_only = AFA(AttackSettings(steps=2), online_probe=False)
    torch.manual_seed(1)
    l1, _ = method.loss(model, x, y, eps=0.3)
    torch.manual_seed(1)
    l2, _ = contrastive_only.loss(model, x, y, eps=0.3)
    g1 = torch.autograd.grad(l1, named["stage1.0.weight"])[0]
    g2 = torch.autograd.grad(l2, named["stage1.0.weight"])[0]
    torch.testing.assert_close(g1, g2)


def test_afa_adversarial_views_raise_the_contrastive_loss():
    torch.manual_seed(0)
    method = AFA(AttackSettings(steps=5))
    model = method.start(create("smallcnn", 10, 1)).eval()
    x, y = digits_batch(64)
    x_adv = method.term.adversarial_views(model, x, y, eps=0.3)
    noise = (x + 0.3 * torch.empty_like(x).uniform_(-1, 1)).clamp(0, 1)
    with torch.no_grad():
        z = model.project(x)
        at_noise = afa_views_loss(z, model.project(noise), y, anchors="adversarial")
        at_adv = afa_views_loss(z, model.project(x_adv), y, anchors="adversarial")
    assert at_adv > at_noise + 0.05
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6


def test_frozen_encoder_keeps_batch_norm_in_eval_and_only_the_head_trainable():
    model = FrozenEncoder(create("preact_resnet18", 10, 3))
    model.train()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert not module.training, name
    assert model.head.training
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    assert set(model.state_dict()) == set(model.plain.state_dict())


def test_afa_trades_sums_trades_and_lambda_times_the_contrastive_term():
    torch.manual_seed(0)
    x, y = digits_batch()
    results = {}
    for lam in (0.0, 1.0, 2.0):
        method = AFATrades(AttackSettings(steps=1), beta=6.0, lam=lam)
        torch.manual_seed(0)
        model = method.start(create("smallcnn", 10, 1))
        torch.manual_seed(3)
        loss, m = method.loss(model.train(), x, y, eps=0.3)
        results[lam] = (loss.item(), m["l_trades"].item(), m["l_con"].item())
    for lam, (total, trades, con) in results.items():
        assert total == pytest.approx(trades + lam * con, rel=1e-5)
    assert results[1.0][2] > 0


def test_options_are_checked_and_all_defaults_are_recorded():
    with pytest.raises(FeatgapError, match="has no option tau"):
        AFA(AttackSettings(), tau=0.5)
    with pytest.raises(FeatgapError, match="anchors must be one of all, adversarial"):
        AFA(AttackSettings(), anchors="clean")
    with pytest.raises(FeatgapError, match="keep online_probe on"):
        AFA(AttackSettings(), attack_objective="ce", online_probe=False)
    cfg = TrainConfig(method="afa", extra={"temperature": 0.2}).resolved()
    assert cfg.extra == {**AFA.defaults, "temperature": 0.2}
    assert cfg.finetune == {"method": "alf"}
    assert TrainConfig(method="afa_trades").resolved().extra["lam"] == 1.0
    with pytest.raises(FeatgapError, match="no fine-tuning stage"):
        TrainConfig(method="pgd_at", finetune={"method": "alf"}).resolved()
    with pytest.raises(FeatgapError, match="finetune method must be one of alf, aff"):
        TrainConfig(method="afa", finetune={"method": "trades"}).resolved()
    with pytest.raises(FeatgapError, match="finetune cannot set init"):
        TrainConfig(method="afa", finetune={"method": "alf", "init": "x"}).resolved()
    assert {"afa", "alf", "aff", "afa_trades"} <= set(METHODS)


# ---------------------------------------------------------------- training runs
@pytest.mark.slow
def test_alf_leaves_every_encoder_weight_and_statistic_untouched(tmp_path):
    start = tmp_path / "start"
    Trainer(TrainConfig(model="preact_resnet18", dataset="digits", epochs=1, **FAST), out=start).fit()
    before = runs.load(start).state_dict()
    cfg = TrainConfig(model="preact_resnet18", dataset="digits", method="alf", init=str(start), epochs=1, lr=0.05,
                      **FAST)
    after = Trainer(cfg, out=tmp_path / "alf").fit().state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}
    assert any("running_mean" in k for k in before)  # the test covers batch-norm statistics


@pytest.mark.slow
def test_afa_trains_two_linked_stages_and_reuses_a_finished_stage_one(tmp_path, capsys):
    out = tmp_path / "afa"
    cfg = TrainConfig(method="afa", epochs=1, lr=0.05, finetune={"method": "aff", "epochs": 1, "lr": 0.02}, **FAST)
    model, trainers = fit(cfg, out)
    pre, fine = stage_dirs(out)
    assert pre.name == "afa-pretrain" and fine == out
    c1, c2 = runs.read_config(pre), runs.read_config(fine)
    assert c1["stages"] == c2["stages"] and [s["run"] for s in c1["stages"]["stages"]] == [str(pre), str(fine)]
    assert c1["config"]["method"] == "afa" and c1["config"]["finetune"] == {"method": "aff", "epochs": 1, "lr": 0.02}
    assert c2["config"]["method"] == "aff" and c2["config"]["lr"] == 0.02 and c2["config"]["extra"] == {}
    assert c2["init"]["run"] == str(pre.resolve())
    assert any(k.startswith("model.projection.") for k in runs.read_tensors(pre / runs.LAST))
    # the checkpoint also holds the exported plain model: runs.load reads stage 1 from it, as any run
    assert type(runs.load(pre, which="last")).__name__ == "SmallCNN"
    assert isinstance(AFA.load_wrapper(pre), ProjectedModel)
    assert not any("projection" in k for k in runs.read_tensors(fine / runs.FINAL))  # exported plain
    assert type(model).__name__ == "SmallCNN" and len(trainers) == 2
    # a rerun with a new --out for stage 2 reuses the finished stage 1 ...
    (fine / runs.SUMMARY).unlink()
    import shutil

    shutil.rmtree(fine)
    _, trainers = fit(cfg, out)
    assert len(trainers) == 1 and "reusing the finished run" in capsys.readouterr().out
    # ... also for another fine-tuning (stage 1 does not depend on it) ...
    shutil.rmtree(fine)
    other = TrainConfig(**{**cfg.as_dict(), "finetune": {"method": "alf", "epochs": 1}})
    _, trainers = fit(other, out)
    assert len(trainers) == 1 and runs.read_config(fine)["config"]["method"] == "alf"
    # ... but not one trained with other settings
    shutil.rmtree(fine)
    with pytest.raises(FeatgapError, match="finished run with other settings"):
        fit(TrainConfig(**{**cfg.as_dict(), "lr": 0.01}), out)


def test_two_stage_errors_come_before_anything_is_written(tmp_path):
    out = tmp_path / "afa"
    with pytest.raises(FeatgapError, match="finetune method must be one of"):
        fit(TrainConfig(method="afa", finetune={"method": "pgd_at"}), out)
    with pytest.raises(FeatgapError, match="--lr must be positive"):
        fit(TrainConfig(method="afa", finetune={"method": "alf", "lr": -1.0}), out)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FeatgapError, match="not a featgap run"):
        fit(TrainConfig(method="afa"), out)
    assert not stage_dirs(out)[0].exists()


# ---------------------------------------------------------------- extra data
def write_npz(path, images: np.ndarray, labels: np.ndarray, keys: tuple[str, str] = ("image", "label")) -> None:
    np.savez(path, **{keys[0]: images, keys[1]: labels})


def test_load_extra_reads_nhwc_and_nchw_and_checks_everything(tmp_path):
    info = data.info("cifar10")
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(6) % 10
    write_npz(tmp_path / "a.npz", nhwc, labels)
    extra = data.load_extra(tmp_path / "a.npz", info)
    assert extra.images.shape == (6, 3, 32, 32) and extra.images.dtype == torch.uint8
    assert torch.equal(extra.images[2, 1], torch.from_numpy(nhwc[2, :, :, 1]))
    assert extra.labels.tolist() == labels.tolist()
    write_npz(tmp_path / "b.npz", nhwc.transpose(0, 3, 1, 2) / 255.0, labels, keys=("images", "labels"))
    assert torch.equal(data.load_extra(tmp_path / "b.npz", info).images, extra.images)
    bad = {"missing": (tmp_path / "none.npz", "not found"),
           "keys": (tmp_path / "k.npz", "no 'image' or 'images'"),
           "shape": (tmp_path / "s.npz", "do not fit cifar10"),
           "labels": (tmp_path / "l.npz", r"labels must be integers in \[0, 10\)"),
           "count": (tmp_path / "c.npz", "6 images but 5 labels"),
           "text": (tmp_path / "t.npz", "not a readable .npz")}
    np.savez(bad["keys"][0], pixels=nhwc, label=labels)
    write_npz(bad["shape"][0], nhwc[:, :28, :28], labels)
    write_npz(bad["labels"][0], nhwc, labels + 5)
    write_npz(bad["count"][0], nhwc, labels[:5])
    bad["text"][0].write_text("not a zip")
    for path, message in bad.values():
        with pytest.raises(FeatgapError, match=message):
            data.load_extra(path, info)


def test_batches_mix_in_the_extra_fraction(tmp_path):
    train = data.load("mnist5k", "train").subset(range(200))
    extra = data.ImageSet(torch.full((30, 1, 28, 28), 255, dtype=torch.uint8), torch.full((30,), 7), train.info)
    loader = data.BatchLoader(train, 40, shuffle=True, drop_last=True, extra=extra, extra_fraction=0.25)
    batches = list(loader)
    assert len(batches) == 5  # as many batches as without extra data
    for x, y in batches:
        from_extra = (x.flatten(1).min(1).values == 1.0)
        assert x.shape[0] == 40 and int(from_extra.sum()) == 10
        assert (y[from_extra] == 7).all()
    with pytest.raises(ValueError, match="extra_fraction"):
        data.BatchLoader(train, 40, extra_fraction=0.5)


@pytest.mark.slow
def test_training_with_extra_data_records_it(tmp_path):
    train = data.load("mnist5k", "train")
    write_npz(tmp_path / "gen.npz", train.images[:100, 0].numpy(), train.labels[:100].numpy())
    cfg = TrainConfig(epochs=1, extra_data=str(tmp_path / "gen.npz"), extra_fraction=0.5, **FAST)
    Trainer(cfg, out=tmp_path / "run").fit()
    recorded = runs.read_config(tmp_path / "run")["config"]
    assert recorded["extra_data"].endswith("gen.npz") and recorded["extra_fraction"] == 0.5
    with pytest.raises(FeatgapError, match="needs --extra-data"):
        TrainConfig(extra_fraction=0.5).resolved()
    with pytest.raises(FeatgapError, match="not found"):
        Trainer(TrainConfig(extra_data=str(tmp_path / "nope.npz"), extra_fraction=0.5), out=tmp_path / "r2")
    assert not (tmp_path / "r2").exists()
    assert json.loads((tmp_path / "run" / runs.SUMMARY).read_text())["epochs"] == 1


def test_the_online_probe_learns_at_probe_lr_scale_times_the_lr_through_the_trainer():
    """The real Trainer's optimiser: the head's group runs at lr × probe_lr_scale at every step,
    across a piecewise milestone (the ratio holds), and every trainable parameter is in one group."""
    seen: list[list[tuple[float, float]]] = []  # per epoch: (lr, lr_scale) of every group
    cfg = TrainConfig(method="afa", dataset="digits", epochs=2, lr=0.05, lr_steps=((1.0, 0.1),),
                      extra={"probe_lr_scale": 0.25}, **FAST)
    trainer = Trainer(cfg, out=None, callbacks=[lambda model, epoch: seen.append(
        [(g["lr"], g.get("lr_scale", 1.0)) for g in trainer.optimizer.param_groups]) or {}])
    trainer.fit()
    groups = trainer.optimizer.param_groups
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    head = [g for g in groups if any(names[id(p)].startswith("head.") for p in g["params"])]
    assert len(head) == 1 and {names[id(p)] for p in head[0]["params"]} == {"head.weight", "head.bias"}
    assert sum(len(g["params"]) for g in groups) == len(list(trainer.model.parameters()))
    # the optimiser's parameter order is model.parameters()' order (resume reads state by index)
    assert [id(p) for g in groups for p in g["params"]] == [id(p) for p in trainer.model.parameters()]
    is_head = [g is head[0] for g in groups]
    for epoch, base in enumerate((0.05, 0.005)):  # the milestone at epoch 1 multiplies every group by 0.1
        assert [lr for lr, _ in seen[epoch]] == pytest.approx([base * (0.25 if h else 1.0) for h in is_head])
    with pytest.raises(FeatgapError, match="probe_lr_scale must be positive"):
        AFA(AttackSettings(), probe_lr_scale=0.0)
    assert len(AFA(AttackSettings(), online_probe=False).param_groups(AFA(AttackSettings()).start(
        create("smallcnn", 10, 1)))) == 1
