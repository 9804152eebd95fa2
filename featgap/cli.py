"""The ``featgap`` command (also ``python -m featgap``).

    featgap train --dataset mnist5k --model smallcnn --method pgd_at --out runs/pgd_at
    featgap train --preset cifar10-resnet18-afd --init runs/natural --out runs/afd
    featgap eval runs/pgd_at --n 500
    featgap probe runs/pgd_at --layers stage2 pool --eps 0.1 0.3
    featgap data list | featgap data download cifar10
    featgap demo

Flags mean the same in every sub-command. Bad input (an unknown name, ε outside [0, 1], a
checkpoint of another architecture, a missing data folder) prints one line to stderr and
exits with code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from featgap.errors import FeatgapError
from featgap.demo import DEMO_N
from featgap.methods.afa import AFA, AFATrades
from featgap.presets import AFD_CIFAR10_WEIGHTS, PRESETS, preset
from featgap.train.config import FINETUNE_METHODS

if TYPE_CHECKING:
    from featgap.train.config import TrainConfig


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus the exit code 2 argparse already uses)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _config_default(name: str) -> object:
    """``TrainConfig``'s default for field ``name`` (train's help texts quote it, so they cannot drift)."""
    from dataclasses import fields

    from featgap.train.config import TrainConfig

    return next(f.default for f in fields(TrainConfig) if f.name == name)


def _common(p: argparse.ArgumentParser, *, training: bool, several_eps: bool = False) -> None:
    """Flags every sub-command shares. For ``train`` every default is ``None`` ("not given"):
    :func:`train_config_from_args` fills it from ``--preset``, then from ``TrainConfig``."""
    g = p.add_argument_group("common")

    def add(flag: str, literal: object, help: str, field: str | None = None, **kw: object) -> None:
        shown = _config_default(field or flag[2:].replace("-", "_")) if training else literal
        g.add_argument(flag, default=None if training else literal, help=f"{help} (default {shown})", **kw)

    if training:
        add("--dataset", None, "dataset name (featgap data list)")
        add("--model", None, "smallcnn | preact_resnet18 | resnet18 | wrn34_10")
    if several_eps:
        g.add_argument("--eps", type=float, nargs="+", default=None,
                       help="one or more L∞/L2 radii in pixel units (default: the run's training ε)")
    else:
        g.add_argument("--eps", type=float, default=None, help="L∞/L2 radius in pixel units (default: the dataset's)")
    add("--device", "auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    add("--seed", 0, "random seed", type=int)
    add("--data-root", "data", "where datasets live")
    g.add_argument("--download", action="store_true", default=None if training else False,
                   help="download the dataset if it is missing")
    if training:
        add("--batch-size", None, "images per batch", type=int)
    else:
        g.add_argument("--batch-size", type=int, default=None, help="images per batch")


PROBE_METRICS_HELP = """\
metrics (f = features of the natural image, f' = of its adversarial example, per layer):
  l2           ‖f − f'‖₂: how far the attack moves the features
  linf         max_i |f_i − f'_i|: the largest change of one feature (the AFD paper's measure)
  cosine       1 − cos(f, f'): change of direction, blind to scale (0 same, 1 orthogonal, 2 opposite)
  rel_l2       ‖f − f'‖₂ / ‖f‖₂: the L2 gap relative to the natural feature's size (compare layers)
  outcome      robust (right before and after the attack), flipped (right, then wrong), wrong (wrong already)
  nat_correct  the natural image is classified correctly; adv_correct: the adversarial one is
  lo, hi       95% percentile-bootstrap confidence interval of the mean
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="featgap", description="See and close the feature gap between natural and "
                     "adversarial inputs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model; writes a run directory",
                       description="Train with one of the methods; writes --out (config.json, metrics.jsonl, "
                       "checkpoints/*.safetensors, summary.json). Rerunning an interrupted command resumes it. "
                       "Settings come from the flags you give, then from --preset, then from the defaults below.")
    _common(t, training=True)
    d = _config_default
    t.add_argument("--preset", default=None, metavar="NAME",
                   help="named recipe (featgap/presets.py) used as the base; flags you give override it "
                   "(its lr milestones are absolute epochs: --epochs does not rescale them): "
                   + ", ".join(PRESETS))
    t.add_argument("--method", default=None,
                   help="standard | pgd_at | trades | vaft | afd | afa (pre-training, then --finetune) | "
                   f"afa_trades; alf and aff are afa's second stages (default {d('method')})")
    t.add_argument("--epochs", type=int, default=None, help=f"default {d('epochs')}")
    t.add_argument("--out", required=True, help="run directory to create (or resume)")
    t.add_argument("--lr", type=float, default=None,
                   help=f"base learning rate (SGD, momentum {d('momentum')}; default {d('lr')})")
    t.add_argument("--weight-decay", type=float, default=None, help=f"default {d('weight_decay')}")
    t.add_argument("--schedule", default=None,
                   help=f"piecewise (×0.1 at 50%%, 75%%, or a preset's steps) | cosine | constant "
                   f"(default {d('schedule')})")
    t.add_argument("--norm", default=None, help=f"linf | l2 (training attack; default {d('norm')})")
    t.add_argument("--attack-steps", type=int, default=None,
                   help=f"PGD steps in training (default {d('attack_steps')})")
    t.add_argument("--attack-step-size", type=float, default=None,
                   help="PGD step size in training, pixel units (default: 2.5·ε/steps)")
    t.add_argument("--eps-warmup", type=float, default=None,
                   help=f"epochs over which ε ramps up from 0 (default {d('eps_warmup_epochs')})")
    t.add_argument("--trades-beta", type=float, default=None, help=f"TRADES β (default {d('trades_beta')})")
    for key, symbol, what in (("alpha", "α", "weight of the confused branch's loss"),
                              ("beta", "β", "weight of the intrinsic/confused cosine (elimination) loss"),
                              ("gamma", "γ", "weight of the alignment with the natural teacher")):
        t.add_argument(f"--afd-{key}", type=float, default=None,
                       help=f"AFD {symbol}, {what}; only with --method afd (default: the preset's, else the "
                       f"method's own; the paper's CIFAR-10 value is {AFD_CIFAR10_WEIGHTS[key]:g})")
    for flag, key, kw, what in AFA_FLAGS:
        t.add_argument(flag, default=None, **kw, help=f"{what} (afa, afa_trades; default {AFA.defaults[key]})")
    t.add_argument("--afa-lambda", type=float, default=None,
                   help=f"λ, weight of the AFA term in afa_trades (default {AFATrades.defaults['lam']})")
    t.add_argument("--finetune", default=None, choices=FINETUNE_METHODS,
                   help="afa's second stage: alf (linear head on the frozen encoder) or aff (whole model), both "
                   "PGD-AT; trained into --out, stage 1 into OUT-pretrain (default alf)")
    t.add_argument("--finetune-epochs", type=int, default=None, help="epochs of the second stage (default: --epochs)")
    t.add_argument("--finetune-lr", type=float, default=None, help="learning rate of the second stage (default: --lr)")
    t.add_argument("--finetune-eps-warmup", type=float, default=None, metavar="EPOCHS",
                   help="epochs over which the second stage ramps ε up (default: --eps-warmup)")
    t.add_argument("--extra-data", default=None, metavar="NPZ",
                   help="extra training images and labels (.npz with 'image' and 'label'), e.g. generated data")
    t.add_argument("--extra-fraction", type=float, default=None,
                   help=f"share of each batch drawn from --extra-data (default {d('extra_fraction')})")
    t.add_argument("--ema", type=float, default=None, help="weight-EMA decay, e.g. 0.999 (default: off)")
    t.add_argument("--init", default=None, help="run directory or .safetensors to start from (vaft and afd need it)")
    t.add_argument("--val-fraction", type=float, default=None,
                   help="carve a validation split from train for per-epoch monitoring (tune on it; "
                   f"default {d('val_fraction')})")
    t.add_argument("--monitor-n", type=int, default=None,
                   help=f"images for per-epoch accuracy/feature gap (default {d('monitor_n')})")
    t.add_argument("--probe-n", type=int, default=None,
                   help="record the per-layer feature-gap trajectory (with CIs) on this many images each epoch "
                   f"(default {d('probe_n')})")
    t.add_argument("--probe-layers", nargs="+", default=None, help="layers for --probe-n (default: all layer_names)")

    e = sub.add_parser("eval", help="clean / PGD-20 / AutoAttack accuracy of a run, with sanity checks",
                       description="Evaluate a run on its dataset's test split (EVALUATION.md protocol); "
                       "writes RUN_DIR/eval.json.")
    e.add_argument("run_dir", help="a run directory written by featgap train")
    _common(e, training=False)
    e.add_argument("--n", type=int, default=None, help="stratified test subset size (default: whole test split)")
    e.add_argument("--norm", default="linf", help="linf | l2")
    e.add_argument("--pgd-steps", type=int, default=20)
    e.add_argument("--no-autoattack", action="store_true", help="skip AutoAttack (much faster)")

    p = sub.add_parser("probe", help="feature gap per sample and layer; writes a CSV, prints a per-layer summary",
                       description="Attack --n test images of a run with PGD at each --eps, measure the gap "
                       "between natural and adversarial features at each layer, write one row per "
                       "(eps, sample, layer) to --out and print the per-layer means with bootstrap 95%% CIs.",
                       epilog=PROBE_METRICS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by featgap train")
    _common(p, training=False, several_eps=True)
    p.add_argument("--layers", nargs="+", default=None, help="layers to probe (default: the model's layer_names)")
    p.add_argument("--n", type=int, default=1000, help="stratified test images (default 1000; fewer if the split is smaller)")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    p.add_argument("--norm", default="linf", help="linf | l2")
    p.add_argument("--pool", default="avg", help="avg (global average of feature maps) | flatten")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    p.add_argument("--out", default=None, help="CSV to write (default RUN_DIR/probe.csv)")

    d = sub.add_parser("data", help="list or download datasets")
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    dsub.add_parser("list", help="datasets, their sizes and whether they are on disk").add_argument(
        "--data-root", default="data")
    dl = dsub.add_parser("download", help="download a dataset into --data-root (needs network access)")
    dl.add_argument("name")
    dl.add_argument("--data-root", default="data")

    m = sub.add_parser("demo", help="the main job: standard, PGD-AT, vAFT, AFD and AFA on mnist5k, evaluated, in minutes",
                       description="Train smallcnn on the bundled MNIST digits with standard training and PGD-AT, "
                       "fine-tune the standard model with vAFT and AFD, train AFA (contrastive pre-training, then "
                       "ALF), evaluate all five (clean, PGD-20, AutoAttack) and print their feature gap and AFD's "
                       "component norms.")
    m.add_argument("--out", default="runs/demo", help="folder for the demo's runs (default runs/demo)")
    m.add_argument("--n", type=int, default=DEMO_N, help=f"test images to evaluate on (stratified; default {DEMO_N}; "
                   "AutoAttack's time grows with it)")
    m.add_argument("--device", default="auto")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--fresh", action="store_true", help="retrain even if finished demo runs exist")
    return parser


_TRAIN_FIELDS = {
    "dataset": "dataset", "model": "model", "eps": "eps", "device": "device", "seed": "seed",
    "data_root": "data_root", "download": "download", "batch_size": "batch_size", "method": "method",
    "epochs": "epochs", "lr": "lr", "weight_decay": "weight_decay", "schedule": "schedule", "norm": "norm",
    "attack_steps": "attack_steps", "attack_step_size": "attack_step_size", "eps_warmup": "eps_warmup_epochs",
    "trades_beta": "trades_beta", "ema": "ema_decay", "init": "init", "val_fraction": "val_fraction",
    "monitor_n": "monitor_n", "probe_n": "probe_n", "probe_layers": "probe_layers",
    "extra_data": "extra_data", "extra_fraction": "extra_fraction",
}
"""``featgap train`` flag (argparse dest) -> the :class:`TrainConfig` field it sets."""
_AFD_OPTIONS = ("alpha", "beta", "gamma")
"""``--afd-KEY`` sets ``TrainConfig.extra[KEY]``."""
AFA_FLAGS = (
    ("--afa-temperature", "temperature", {"type": float}, "AFA τ of the supervised contrastive loss"),
    ("--afa-anchors", "anchors", {"choices": ("all", "adversarial")}, "AFA anchors: all views or adversarial only"),
    ("--afa-attack", "attack_objective", {"choices": ("supcon", "ce")},
     "what AFA's PGD maximises: the contrastive loss or CE through the linear head"),
)
"""``featgap train`` flags for AFA's options: (flag, ``TrainConfig.extra`` key, argparse kwargs, help)."""


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The (unresolved) :class:`TrainConfig` of a parsed ``featgap train`` command line.

    ``{**TrainConfig defaults, **preset, **flags given}``: a flag given explicitly wins over
    ``--preset``, which wins over ``TrainConfig``'s defaults (a flag left out is ``None``).
    ``--afd-alpha/beta/gamma`` are merged over the preset's ``extra`` and need method ``afd``.
    ``--afa-*`` flags likewise (methods afa, afa_trades), and ``--finetune*`` are merged over the
    preset's ``finetune`` (method afa).
    A ``--method`` other than the preset's drops the preset's ``extra`` and ``finetune`` (they belong to
    the preset's method). Unknown preset or misplaced AFD flags: one-line :class:`FeatgapError`.
    """
    from featgap.train.config import TrainConfig

    values = preset(args.preset) if args.preset is not None else {}
    given = {field: getattr(args, dest) for dest, field in _TRAIN_FIELDS.items() if getattr(args, dest) is not None}
    if "probe_layers" in given:
        given["probe_layers"] = tuple(given["probe_layers"])
    if "method" in given and given["method"] != values.get("method", given["method"]):
        values.pop("extra", None)
        values.pop("finetune", None)
    values.update(given)
    afd = {key: getattr(args, f"afd_{key}") for key in _AFD_OPTIONS if getattr(args, f"afd_{key}") is not None}
    method = values.get("method", _config_default("method"))
    if afd:
        _only_for(method, ("afd",), [f"--afd-{key}" for key in afd])
        values["extra"] = {**values.get("extra", {}), **afd}
    afa = {key: getattr(args, flag[2:].replace("-", "_")) for flag, key, _, _ in AFA_FLAGS
           if getattr(args, flag[2:].replace("-", "_")) is not None}
    if args.afa_lambda is not None:
        _only_for(method, ("afa_trades",), ["--afa-lambda"])
        afa["lam"] = args.afa_lambda
    if afa:
        _only_for(method, ("afa", "afa_trades"), [f for f, k, _, _ in AFA_FLAGS if k in afa])
        values["extra"] = {**values.get("extra", {}), **afa}
    stage2 = {"method": args.finetune, "epochs": args.finetune_epochs, "lr": args.finetune_lr,
              "eps_warmup_epochs": args.finetune_eps_warmup}
    stage2 = {k: v for k, v in stage2.items() if v is not None}
    if stage2:
        flags = {"method": "--finetune", "epochs": "--finetune-epochs", "lr": "--finetune-lr",
                 "eps_warmup_epochs": "--finetune-eps-warmup"}
        _only_for(method, ("afa",), [flags[k] for k in stage2])
        values["finetune"] = {**(values.get("finetune") or {"method": "alf"}), **stage2}
    return TrainConfig(**values)


def _only_for(method: str, allowed: tuple[str, ...], flags: list[str]) -> None:
    """One-line error when method-specific ``flags`` are given for another method."""
    if flags and method not in allowed:
        verb = "applies" if len(flags) == 1 else "apply"
        raise FeatgapError(f"{', '.join(flags)} {verb} only to --method {' or '.join(allowed)}; "
                           f"this run's method is {method}")


def _train(args: argparse.Namespace) -> None:
    from featgap.train import fit

    cfg = train_config_from_args(args)
    _, trainers = fit(cfg, args.out)
    last = getattr(trainers[-1], "last_record", {})
    print(f"finished {args.out}: " + ", ".join(f"{k} {last[k]:.4g}" for k in
          ("train_loss", "monitor_clean_acc", "monitor_pgd_acc", "gap_l2") if k in last))


def _eval(args: argparse.Namespace) -> None:
    from pathlib import Path

    from featgap import data, runs
    from featgap.evaluate import evaluate
    from featgap.train import resolve_device

    if args.eps is not None and not 0.0 <= args.eps <= 1.0:
        raise FeatgapError(f"--eps must be in [0, 1] (pixel units); got {args.eps}")
    if args.n is not None and args.n < 1:
        raise FeatgapError(f"--n must be at least 1; got {args.n}")
    config = runs.read_config(args.run_dir)
    device = resolve_device(args.device)
    model = runs.load(args.run_dir, device=device)
    test = data.load(config["config"]["dataset"], "test", args.data_root, args.download)
    result = evaluate(model, test, eps=args.eps, norm=args.norm, n=args.n, pgd_steps=args.pgd_steps,
                      autoattack=not args.no_autoattack, seed=args.seed, batch_size=args.batch_size or 250)
    runs.write_json(Path(args.run_dir) / "eval.json", result.as_dict())
    print(result.report())


def _probe(args: argparse.Namespace) -> None:
    from pathlib import Path

    import numpy as np

    from featgap import data, runs
    from featgap.probes import gap_vs_eps
    from featgap.train import resolve_device

    config = runs.read_config(args.run_dir)["config"]
    eps_values = args.eps if args.eps is not None else [config["eps"]]
    for e in eps_values:
        if not 0.0 <= e <= 1.0:
            raise FeatgapError(f"--eps must be in [0, 1] (pixel units); got {e}")
    if args.n < 1:
        raise FeatgapError(f"--n must be at least 1; got {args.n}")
    if args.steps < 0:
        raise FeatgapError(f"--steps must be non-negative; got {args.steps}")
    if args.n_boot < 0:
        raise FeatgapError(f"--n-boot must be non-negative; got {args.n_boot}")
    if args.norm not in ("linf", "l2"):
        raise FeatgapError(f"unknown norm {args.norm!r}; choose linf or l2")
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "probe.csv"
    if out.is_dir():
        raise FeatgapError(f"--out {out} is a directory; give a .csv file name")
    device = resolve_device(args.device)
    model = runs.load(args.run_dir, device=device)
    test = data.load(config["dataset"], "test", args.data_root, args.download)
    subset = test.stratified_subset(args.n, args.seed) if args.n < len(test) else test
    x, y = subset.tensors()
    table = gap_vs_eps(model, x, y, eps_values, layers=args.layers, pool=args.pool, steps=args.steps,
                       norm=args.norm, batch_size=args.batch_size or 500, seed=args.seed)
    table.to_csv(out)
    print(format_probe_summary(table, n_boot=args.n_boot, seed=args.seed))
    print(f"wrote {table.num_rows} rows ({len(np.unique(table['sample']))} samples × layers × eps) to {out}")


def format_probe_summary(table: object, n_boot: int = 1000, seed: int = 0) -> str:
    """Per (eps, layer): accuracies, the gap means (CIs for L2 and relative L2), flipped vs robust L2."""
    from featgap.probes import GAP_METRICS, summarize

    overall = summarize(table, by=("eps", "layer"), metrics=[*GAP_METRICS, "nat_correct", "adv_correct"],
                        n_boot=n_boot, seed=seed)
    by_outcome = summarize(table, by=("eps", "layer", "outcome"), metrics=["l2"], n_boot=0)
    l2_of = {(r["eps"], r["layer"], r["outcome"]): r["l2_mean"] for r in by_outcome.rows()}
    width = max(5, *(len(str(v)) for v in overall["layer"]))
    lines = [f"{'eps':>7} {'layer':<{width}} {'nat%':>6} {'adv%':>6}  {'l2 [95% CI]':<26}{'rel_l2 [95% CI]':<26}"
             f"{'linf':>9} {'cosine':>9}  l2 flipped / robust"]
    for r in overall.rows():
        flip = l2_of.get((r["eps"], r["layer"], "flipped"))
        rob = l2_of.get((r["eps"], r["layer"], "robust"))
        lines.append(f"{r['eps']:>7.4g} {r['layer']:<{width}} {100 * r['nat_correct_mean']:>6.1f} "
                     f"{100 * r['adv_correct_mean']:>6.1f}  {_ci(r['l2_mean'], r['l2_lo'], r['l2_hi']):<26}"
                     f"{_ci(r['rel_l2_mean'], r['rel_l2_lo'], r['rel_l2_hi']):<26}"
                     f"{r['linf_mean']:>9.4g} {r['cosine_mean']:>9.4g}  {_num(flip)} / {_num(rob)}")
    return "\n".join(lines)


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


def _ci(mean: float, lo: float, hi: float) -> str:
    return f"{mean:.4g}" if lo != lo else f"{mean:.4g} [{lo:.4g}, {hi:.4g}]"


def _data(args: argparse.Namespace) -> None:
    from pathlib import Path

    from featgap import data

    if args.data_command == "download":
        data.info(args.name)
        data.download(args.name, args.data_root)
        print(f"{args.name} is ready under {args.data_root}")
        return
    print(f"{'name':15} {'classes':>7} {'shape':>9} {'eps':>7}  {'where':9} source")
    for name, meta in data.DATASETS.items():
        where = "bundled" if meta.offline else ("on disk" if _on_disk(name, Path(args.data_root)) else "missing")
        print(f"{name:15} {meta.num_classes:>7} {meta.in_channels}×{meta.image_size}×{meta.image_size:<3} "
              f"{meta.eps:>7.4g}  {where:9} {meta.source}")


def _on_disk(name: str, root: object) -> bool:
    from featgap import data

    try:
        data.load(name, "test", root)  # type: ignore[arg-type]
        return True
    except FeatgapError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "eval":
            _eval(args)
        elif args.command == "probe":
            _probe(args)
        elif args.command == "data":
            _data(args)
        elif args.command == "demo":
            from featgap.demo import run_demo

            run_demo(out=args.out, n=args.n, device=args.device, seed=args.seed, fresh=args.fresh)
    except FeatgapError as err:
        print(f"featgap: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("featgap: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    return 0
