"""The ``featgap`` command (also ``python -m featgap``).

    featgap train --dataset mnist5k --model smallcnn --method pgd_at --out runs/pgd_at
    featgap train --preset cifar10-resnet18-afd --init runs/natural --out runs/afd
    featgap eval runs/pgd_at --n 500
    featgap probe runs/pgd_at --layers stage2 pool --eps 0.1 0.3
    featgap report runs/demo/standard runs/demo/pgd_at -o report.html --compute
    featgap data list | featgap data download cifar10
    featgap demo

Flags mean the same in every sub-command. Bad input (an unknown name, ε outside [0, 1], a
checkpoint of another architecture, a missing data folder) prints one line to stderr and
exits with code 2, before anything is written.

A method's options are ``featgap train`` flags generated from its declaration
(:attr:`featgap.methods.Method.options`; :func:`method_flags`), so adding a method never
touches this file. The module imports nothing heavy: :func:`main` builds only the sub-command
it runs, and ``featgap --help`` imports no torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from featgap.errors import FeatgapError

if TYPE_CHECKING:
    from featgap.methods import Option
    from featgap.train.config import TrainConfig


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus the exit code 2 argparse already uses)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"featgap: error: {message} (see {self.prog} --help)\n")


def _config_default(name: str) -> object:
    """``TrainConfig``'s default for field ``name`` (train's help texts quote it, so they cannot drift)."""
    from featgap.train.config import field_default

    return field_default(name)


def _common(p: argparse.ArgumentParser, *, training: bool, several_eps: bool = False, batch_size: int = 0,
            eps_help: str = "L∞/L2 radius in pixel units (default: the dataset's for --norm: L∞ 0.3 MNIST, "
                            "8/255 CIFAR; L2 2.0 MNIST, 0.5 CIFAR)") -> None:
    """Flags every sub-command shares. For ``train`` every default is ``None`` ("not given"):
    :func:`train_config_from_args` fills it from ``--preset``, then from ``TrainConfig``.
    ``batch_size``: the default of ``--batch-size`` in the other sub-commands."""
    g = p.add_argument_group("common")

    def add(flag: str, literal: object, help: str, field: str | None = None, **kw: object) -> None:
        shown = _config_default(field or flag[2:].replace("-", "_")) if training else literal
        g.add_argument(flag, default=None if training else literal, help=f"{help} (default {shown})", **kw)

    if training:
        add("--dataset", None, "dataset name (featgap data list)")
        add("--model", None, "smallcnn | preact_resnet18 | resnet18 | wrn34_10")
    if several_eps:
        g.add_argument("--eps", type=float, nargs="+", default=None,
                       help="one or more L∞/L2 radii in pixel units (default: the run's training ε when --norm is "
                       "the run's, else the dataset's for --norm)")
    else:
        g.add_argument("--eps", type=float, default=None, help=eps_help.replace("%", "%%"))
    add("--device", "auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    add("--seed", 0, "random seed", type=int)
    add("--data-root", "data", "where datasets live")
    g.add_argument("--download", action="store_true", default=None if training else False,
                   help="download the dataset if it is missing (default: off)")
    if training:
        add("--batch-size", None, "images per batch", type=int)
    else:
        g.add_argument("--batch-size", type=int, default=None, help=f"images per batch (default {batch_size})")
    _add_threads(g)


THREADS_HELP = ("CPU threads for torch: a number, or auto = the cores this process may use minus those busy "
                "with other work now (default: $FEATGAP_THREADS, else $OMP_NUM_THREADS if set, else auto; "
                "recorded in a run's config.json)")


def _add_threads(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--threads", default=None, metavar="N|auto", help=THREADS_HELP)


PROBE_METRICS_HELP = """\
metrics (f = features of the natural image, f' = of its adversarial example, per layer):
  l2           ‖f − f'‖₂: how far the attack moves the features
  linf         max_i |f_i − f'_i|: the largest change of one feature (the AFD paper's measure)
  cosine       1 − cos(f, f'): change of direction, blind to scale (0 same, 1 orthogonal, 2 opposite)
  rel_l2       ‖f − f'‖₂ / ‖f‖₂: the L2 gap relative to the natural feature's size (compare layers)
  outcome      robust (right before and after the attack), flipped (right, then wrong), wrong (wrong already)
  nat_correct  the natural image is classified correctly; adv_correct: the adversarial one is
  lo, hi       95% percentile-bootstrap confidence interval of the mean
Every CSV column is explained in featgap.probes.COLUMNS; pandas.read_csv reads the file back.
"""


def _add_train(t: argparse.ArgumentParser) -> None:
    from featgap import methods
    from featgap.presets import PRESETS
    from featgap.train.config import FINETUNE_METHODS

    t.description = ("Train with one of the methods; writes --out (config.json, metrics.jsonl, "
                     "checkpoints/*.safetensors, summary.json). Rerunning an interrupted command resumes it. "
                     "Settings come from the flags you give, then from --preset, then from the defaults below.")
    _common(t, training=True)
    d = _config_default
    registry = methods.METHODS
    t.add_argument("--preset", default=None, metavar="NAME",
                   help="named recipe (featgap/presets.py) used as the base; flags you give override it "
                   "(its lr milestones are absolute epochs: --epochs does not rescale them; default: none): "
                   + ", ".join(PRESETS))
    fine_tuners = [n for n, m in registry.items() if m.needs_init]
    staged = [n for n, m in registry.items() if m.pretrains]
    t.add_argument("--method", default=None, metavar="NAME",
                   help=f"training method, one of: {', '.join(registry)}. {', '.join(fine_tuners)} fine-tune "
                   f"(--init); {', '.join(staged)} pre-train{'s' if len(staged) == 1 else ''}, then --finetune "
                   f"(featgap/methods/; default {d('method')})")
    t.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {d('epochs')})")
    t.add_argument("--out", required=True, help="run directory to create (or resume); required")
    t.add_argument("--lr", type=float, default=None,
                   help=f"base learning rate (SGD, momentum {d('momentum')}; default {d('lr')})")
    t.add_argument("--weight-decay", type=float, default=None, help=f"SGD weight decay (default {d('weight_decay')})")
    t.add_argument("--schedule", default=None,
                   help=f"piecewise (×0.1 at 50%%, 75%%, or a preset's steps) | cosine | constant "
                   f"(default {d('schedule')})")
    t.add_argument("--norm", default=None, help=f"linf | l2 (training attack; its default --eps is the dataset's "
                   f"for this norm; default {d('norm')})")
    t.add_argument("--attack-steps", type=int, default=None,
                   help=f"PGD steps in training (default {d('attack_steps')})")
    t.add_argument("--attack-step-size", type=float, default=None,
                   help="PGD step size in training, pixel units (default: 2.5·ε/steps)")
    t.add_argument("--eps-warmup", type=float, default=None,
                   help=f"epochs over which ε ramps up from 0 (default {d('eps_warmup_epochs')})")
    t.add_argument("--finetune", default=None, choices=FINETUNE_METHODS,
                   help="afa's second stage: alf (linear head on the frozen encoder) or aff (whole model), both "
                   "PGD-AT; trained into --out, stage 1 into OUT-pretrain (default alf)")
    t.add_argument("--finetune-epochs", type=int, default=None, help="epochs of the second stage (default: --epochs)")
    t.add_argument("--finetune-lr", type=float, default=None, help="learning rate of the second stage (default: --lr)")
    t.add_argument("--finetune-eps-warmup", type=float, default=None, metavar="EPOCHS",
                   help="epochs over which the second stage ramps ε up (default: --eps-warmup)")
    t.add_argument("--extra-data", default=None, metavar="NPZ",
                   help="extra training images and labels (.npz with 'image' and 'label'), e.g. generated data "
                   "(default: none)")
    t.add_argument("--extra-fraction", type=float, default=None,
                   help=f"share of each batch drawn from --extra-data (default {d('extra_fraction')})")
    t.add_argument("--ema", type=float, default=None, help="weight-EMA decay, e.g. 0.999 (default: off)")
    t.add_argument("--init", default=None,
                   help=f"run directory or .safetensors to start from ({', '.join(fine_tuners)} need it; "
                   "default: none)")
    t.add_argument("--val-fraction", type=float, default=None,
                   help="carve a validation split from train for per-epoch monitoring (tune on it; "
                   f"default {d('val_fraction')})")
    t.add_argument("--monitor-n", type=int, default=None,
                   help=f"images for per-epoch accuracy/feature gap (default {d('monitor_n')})")
    t.add_argument("--probe-n", type=int, default=None,
                   help="record the per-layer feature-gap trajectory (with CIs) on this many images each epoch "
                   f"(default {d('probe_n')})")
    t.add_argument("--probe-layers", nargs="+", default=None, help="layers for --probe-n (default: all layer_names)")
    t.add_argument("--keep-checkpoints", type=int, default=None, metavar="EVERY",
                   help="every EVERY epochs keep that epoch's model as checkpoints/epoch_K.safetensors, e.g. for "
                   f"the TrainingScrubber (runs.load(run, epoch=K); default {d('keep_checkpoints')}: none)")
    t.add_argument("--detect-anomaly", action="store_true", default=None,
                   help="debugging: train under torch.autograd.detect_anomaly, so a NaN fails at the operation that "
                   "made it, with its traceback (several times slower; a rerun with it resumes the same run; "
                   "default False: off)")
    g = t.add_argument_group("method options", "Generated from each method's declared options "
                             "(featgap/methods/). A flag applies only to the methods it names; "
                             "left out, the option is the preset's, else the method's default.")
    for flag, (option, owners) in method_flags().items():
        defaults = {registry[m].defaults[option.name] for m in owners}
        shown = (f"default {_show(next(iter(defaults)))}" if len(defaults) == 1 else
                 "defaults " + ", ".join(f"{m} {_show(registry[m].defaults[option.name])}" for m in owners))
        kw: dict = {"type": _boolean, "metavar": "{true,false}"} if option.type is bool else {"type": option.type}
        if option.choices is not None and option.type is not bool:
            kw["choices"] = option.choices
        else:
            kw.setdefault("metavar", option.name.upper())
        g.add_argument(flag, dest=_dest(flag), default=None, **kw,
                       help=f"{option.help} (--method {' or '.join(owners)}; {shown})".replace("%", "%%"))


def _add_eval(e: argparse.ArgumentParser) -> None:
    e.description = ("Evaluate a run on its dataset's test split (the protocol of docs/evaluation.md: clean, PGD, "
                     "AutoAttack, sanity checks); keeps every evaluation in its own file named by its settings, "
                     "e.g. RUN_DIR/eval-n150.json, and prints which file it wrote.")
    e.add_argument("run_dir", help="a run directory written by featgap train")
    _common(e, training=False, batch_size=250,
            eps_help="attack radius in pixel units (default: the run's training ε when --norm is the run's norm, "
                     "else the dataset's for --norm)")
    e.add_argument("--n", type=int, default=None, help="stratified test subset size (default: whole test split)")
    e.add_argument("--norm", default=None, help="threat model: linf | l2 (default: the run's, from its config.json)")
    e.add_argument("--pgd-steps", type=int, default=20, help="steps of the PGD evaluation attack (default 20)")
    e.add_argument("--pgd-step-size", type=float, default=None, metavar="ALPHA",
                   help="PGD step size in pixel units, e.g. 0.003 as in the AFD paper (default: 2.5·ε/steps)")
    e.add_argument("--no-autoattack", action="store_true",
                   help="the quick path: skip AutoAttack (most of an evaluation's time: e.g. ~1 min per robust "
                        "smallcnn on 2 CPU cores, printed as an estimate before it starts); PGD accuracy is then "
                        "only an upper bound on robust accuracy (default: AutoAttack runs)")
    e.add_argument("--aa-version", choices=("standard", "rand"), default="standard",
                   help="AutoAttack's version: standard, or rand (APGD-CE and APGD-DLR with 20-sample EOT) for a "
                        "model that is random at inference (default standard)")


def _add_probe(p: argparse.ArgumentParser) -> None:
    p.description = ("Attack --n test images of a run with PGD at each --eps, measure the gap between natural\n"
                     "and adversarial features at each layer, write one row per (eps, sample, layer) to --out\n"
                     "and print the per-layer means with bootstrap 95% CIs.")
    p.epilog = PROBE_METRICS_HELP
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", help="a run directory written by featgap train")
    _common(p, training=False, several_eps=True, batch_size=500)
    p.add_argument("--layers", nargs="+", default=None, help="layers to probe (default: the model's layer_names)")
    p.add_argument("--n", type=int, default=1000,
                   help="stratified test images (default 1000; fewer if the split is smaller)")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    p.add_argument("--norm", default=None, help="linf | l2 (default: the run's, from its config.json)")
    p.add_argument("--pool", default="avg", help="avg (global average of feature maps) | flatten (default avg)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    p.add_argument("--out", default=None, help="CSV to write (default RUN_DIR/probe.csv)")


def _add_data(d: argparse.ArgumentParser) -> None:
    d.description = "List the datasets featgap knows, or download one."
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    dl = dsub.add_parser("list", help="datasets, their sizes and whether they are on disk",
                         description="List the datasets, their sizes and whether they are on disk.")
    dl.add_argument("--data-root", default="data", help="where datasets live (default data)")
    dd = dsub.add_parser("download", help="download a dataset into --data-root (needs network access)",
                         description="Download a dataset into --data-root (needs network access).")
    dd.add_argument("name", help="dataset name (featgap data list)")
    dd.add_argument("--data-root", default="data", help="where datasets live (default data)")


def _add_demo(m: argparse.ArgumentParser) -> None:
    from featgap.demo import DEFAULT_RUNS, DEMO_N, DEMO_RUNS

    m.description = ("Train smallcnn on the bundled MNIST digits with standard training and PGD-AT, fine-tune the "
                     "standard model with AFD (with --runs, also vAFT, AFD's baseline, and AFA), evaluate each (clean, "
                     "PGD-20, AutoAttack, sanity checks) and print their feature gap and AFD's component norms.")
    m.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), choices=list(DEMO_RUNS), metavar="RUN",
                   help=f"which runs to train and evaluate, of {' '.join(DEMO_RUNS)} (default {' '.join(DEFAULT_RUNS)}: "
                        "each of vaft and afa adds about a minute of AutoAttack on 2 CPU cores, afa one of training too)")
    m.add_argument("--out", default="runs/demo", help="folder for the demo's runs (default runs/demo)")
    m.add_argument("--n", type=int, default=DEMO_N, help=f"test images to evaluate on (stratified; default {DEMO_N}; "
                   "AutoAttack's time grows with it)")
    m.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps (default auto)")
    m.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_threads(m)
    m.add_argument("--fresh", action="store_true",
                   help="retrain even if finished demo runs exist (default: off, finished runs are reused)")


REPORT_N = 200
"""``featgap report --n``'s default (:data:`featgap.report.DEFAULT_N`; repeated here so that
``featgap report --help`` imports no torch; a test keeps the two equal)."""


def _add_report(r: argparse.ArgumentParser) -> None:
    r.description = ("Write one standalone HTML page about RUN_DIRs: the results table with each run's sanity "
                     "checks, training curves and gap trajectory, gap per layer and against eps, feature maps, "
                     "AFD component norms, alignment measures and each run's configuration. It embeds plotly.js and "
                     "opens offline in any browser. Without --compute only what the run directories hold is shown.")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories written by featgap train")
    r.add_argument("-o", "--out", default="report.html",
                   help="the HTML file to write; its folder must exist (default report.html)")
    r.add_argument("--compute", action="store_true",
                   help="measure what the runs lack on --n test images: featgap eval for runs without an evaluation "
                        "(writes it), then the probes (default: off, the page says what was not measured)")
    r.add_argument("--n", type=int, default=REPORT_N,
                   help=f"stratified test images probed per run with --compute (default {REPORT_N})")
    r.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps (default auto)")
    r.add_argument("--seed", type=int, default=0, help="seed of the test subset and the attacks (default 0)")
    r.add_argument("--data-root", default="data", help="where datasets live (default data)")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "train": ("train a model; writes a run directory", _add_train),
    "eval": ("clean / PGD-20 / AutoAttack accuracy of a run, with sanity checks", _add_eval),
    "probe": ("feature gap per sample and layer; writes a CSV, prints a per-layer summary", _add_probe),
    "report": ("one standalone HTML page about runs: results, curves, gap, maps, configs", _add_report),
    "data": ("list or download datasets", _add_data),
    "demo": ("the main job: standard, PGD-AT, vAFT, AFD and AFA on mnist5k, evaluated, in minutes", _add_demo),
}
"""Sub-command -> (its line in ``featgap --help``, the function that adds its flags)."""


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``featgap`` parser, with the flags of ``commands`` (default: every sub-command).

    A sub-command left out keeps its name and its line of help, which is all ``featgap --help``
    shows; :func:`main` builds only the one it runs, so that no other's imports (torch, the
    methods) are paid for.
    """
    wanted = set(COMMANDS) if commands is None else set(commands)
    parser = _Parser(prog="featgap", description="See and close the feature gap between natural and "
                     "adversarial inputs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help, add) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        if name in wanted:
            add(p)
    return parser


def method_flags() -> dict[str, tuple[Option, tuple[str, ...]]]:
    """``featgap train`` flag -> (the option it sets, the methods that declare it), read from the
    method registry (``featgap.methods.METHODS``).

    Methods that declare the same :class:`~featgap.methods.Option` (or options with one flag)
    share the flag. One flag must mean one option name and type everywhere.
    """
    from featgap import methods

    found: dict[str, tuple[Option, list[str]]] = {}
    for name, cls in methods.METHODS.items():
        for option in cls.options:
            first, owners = found.setdefault(option.flag, (option, []))
            if (first.name, first.type, first.choices) != (option.name, option.type, option.choices):
                raise TypeError(f"{option.flag} is option {first.name} of {', '.join(owners)} but option "
                                f"{option.name} of {name}; give one of them another flag")
            owners.append(name)
    return {flag: (option, tuple(owners)) for flag, (option, owners) in found.items()}


def _dest(flag: str) -> str:
    """The argparse destination of a method flag (its own namespace: never clashes with a TrainConfig flag)."""
    return "method_option" + flag


def _show(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _boolean(text: str) -> bool:
    """``true`` / ``false`` (also yes/no, on/off, 1/0) for a bool option."""
    words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
    try:
        return words[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


_TRAIN_FIELDS = {
    "dataset": "dataset", "model": "model", "eps": "eps", "device": "device", "seed": "seed",
    "data_root": "data_root", "download": "download", "batch_size": "batch_size", "method": "method",
    "epochs": "epochs", "lr": "lr", "weight_decay": "weight_decay", "schedule": "schedule", "norm": "norm",
    "attack_steps": "attack_steps", "attack_step_size": "attack_step_size", "eps_warmup": "eps_warmup_epochs",
    "ema": "ema_decay", "init": "init", "val_fraction": "val_fraction",
    "monitor_n": "monitor_n", "probe_n": "probe_n", "probe_layers": "probe_layers",
    "extra_data": "extra_data", "extra_fraction": "extra_fraction", "keep_checkpoints": "keep_checkpoints",
    "detect_anomaly": "detect_anomaly",
}
"""``featgap train`` flag (argparse dest) -> the :class:`TrainConfig` field it sets."""


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The (unresolved) :class:`TrainConfig` of a parsed ``featgap train`` command line.

    ``{**TrainConfig defaults, **preset, **flags given}``: a flag given explicitly wins over
    ``--preset``, which wins over ``TrainConfig``'s defaults (a flag left out is ``None``).
    Method flags (:func:`method_flags`) are merged over the preset's ``extra`` and need a method
    that declares them; ``--finetune*`` are merged over the preset's ``finetune`` (method afa).
    A ``--method`` other than the preset's drops the preset's ``extra`` and ``finetune`` (they belong to
    the preset's method). Unknown preset or misplaced method flags: one-line :class:`FeatgapError`.
    """
    from featgap.presets import preset
    from featgap.train.config import TrainConfig

    values = preset(args.preset) if args.preset is not None else {}
    given = {field: getattr(args, dest) for dest, field in _TRAIN_FIELDS.items() if getattr(args, dest) is not None}
    if "probe_layers" in given:
        given["probe_layers"] = tuple(given["probe_layers"])
    if "method" in given and given["method"] != values.get("method", given["method"]):
        values.pop("extra", None)
        values.pop("finetune", None)
    values.update(given)
    method = values.get("method", _config_default("method"))
    options, misplaced = {}, {}
    for flag, (option, owners) in method_flags().items():
        value = getattr(args, _dest(flag), None)
        if value is None:
            continue
        if method in owners:
            options[option.name] = value
        else:
            misplaced.setdefault(owners, []).append(flag)
    for owners, flags in misplaced.items():
        _only_for(method, owners, flags)
    if options:
        values["extra"] = {**values.get("extra", {}), **options}
    stage2 = {"method": args.finetune, "epochs": args.finetune_epochs, "lr": args.finetune_lr,
              "eps_warmup_epochs": args.finetune_eps_warmup}
    stage2 = {k: v for k, v in stage2.items() if v is not None}
    if stage2:
        flags = {"method": "--finetune", "epochs": "--finetune-epochs", "lr": "--finetune-lr",
                 "eps_warmup_epochs": "--finetune-eps-warmup"}
        from featgap import methods

        _only_for(method, tuple(n for n, m in methods.METHODS.items() if m.pretrains), [flags[k] for k in stage2])
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
    from featgap.train.distributed import is_main_process

    cfg = train_config_from_args(args)
    _, trainers = fit(cfg, args.out)
    last = getattr(trainers[-1], "last_record", {})
    if is_main_process():  # under torchrun (README, "Multi-GPU / multi-node"), rank 0 alone prints
        print(f"finished {args.out}: " + ", ".join(f"{k} {last[k]:.4g}" for k in
              ("train_loss", "monitor_clean_acc", "monitor_pgd_acc", "gap_l2") if k in last))


def _eval(args: argparse.Namespace) -> None:
    from featgap import data, runs
    from featgap.evaluate import autoattack_estimate, evaluate
    from featgap.train import resolve_device

    if args.n is not None and args.n < 1:
        raise FeatgapError(f"--n must be at least 1; got {args.n}")
    if args.pgd_steps < 1:
        raise FeatgapError(f"--pgd-steps must be at least 1; got {args.pgd_steps}")
    if args.pgd_step_size is not None and not args.pgd_step_size > 0:
        raise FeatgapError(f"--pgd-step-size must be positive (pixel units, e.g. 0.003); got {args.pgd_step_size}")
    config = runs.read_settings(args.run_dir)
    norm, eps = eval_threat_model(config, args.norm, args.eps)
    device = resolve_device(args.device)
    model = runs.load(args.run_dir, device=device)
    test = data.load(config["dataset"], "test", args.data_root, args.download)
    batch_size = 250 if args.batch_size is None else args.batch_size
    if not args.no_autoattack:
        subset = test.stratified_subset(args.n, args.seed) if args.n is not None and args.n < len(test) else test
        x, y = subset.tensors(device)
        seconds = autoattack_estimate(model, x, y, batch_size)
        print(f"AutoAttack on {len(y)} images: at most ~{_duration(seconds)} on this machine (if every image stays "
              "robust; fewer survivors, less time). --no-autoattack skips it: PGD numbers only.", flush=True)
    result = evaluate(model, test, eps=eps, norm=norm, n=args.n, pgd_steps=args.pgd_steps,
                      pgd_step_size=args.pgd_step_size, autoattack=not args.no_autoattack, seed=args.seed,
                      aa_version=args.aa_version,
                      batch_size=batch_size)
    path = runs.eval_path(args.run_dir, **runs.eval_settings(result.as_dict()))
    replaced = path.exists()
    runs.write_eval(args.run_dir, result.as_dict())
    print(result.report())
    if args.no_autoattack:
        print("AutoAttack skipped (--no-autoattack): PGD accuracy is only an upper bound on robust accuracy; "
              "AutoAttack is typically a few points lower, far lower on a gradient-masked model.")
    print(f"{'replaced' if replaced else 'wrote'} {path}" + (" (an evaluation with the same settings)" if replaced
                                                              else ""))


def _duration(seconds: float) -> str:
    """``42 s`` or ``3.5 min``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def eval_threat_model(config: dict, norm: str | None = None, eps: float | None = None) -> tuple[str, float]:
    """The ``(norm, ε)`` ``featgap eval`` attacks a run with: the run's own unless overridden.

    ``norm`` defaults to the run's training norm (``config.json``; ``linf`` for a run that
    records none). ``eps`` defaults to the run's training ε when the norm is the run's, else to
    the dataset's default radius for that norm (:meth:`featgap.data.DatasetInfo.default_eps`):
    an L∞ ε means nothing for an L2 attack. A bad norm or radius is a one-line :class:`FeatgapError`.

    Arguments:
        config (dict): a run's ``config.json["config"]``.
        norm (str | None): ``--norm`` (``None``: not given).
        eps (float | None): ``--eps`` (``None``: not given).

    Examples::
        >>> eval_threat_model({"dataset": "cifar10", "norm": "l2", "eps": 0.5})
        ('l2', 0.5)
        >>> eval_threat_model({"dataset": "cifar10", "norm": "l2", "eps": 0.5}, norm="linf")
        ('linf', 0.03137254901960784)
    """
    from featgap import data
    from featgap.attacks import check_eps

    run_norm = config.get("norm") or "linf"
    norm = run_norm if norm is None else norm
    if norm not in ("linf", "l2"):
        raise FeatgapError(f"unknown norm {norm!r}; choose linf or l2")
    if eps is None:
        recorded = config.get("eps")
        eps = recorded if norm == run_norm and recorded is not None else data.info(config["dataset"]).default_eps(norm)
    check_eps(float(eps), norm)
    return norm, float(eps)


def _probe(args: argparse.Namespace) -> None:
    from pathlib import Path

    from featgap import data, runs
    from featgap.probes import gap_vs_eps, to_csv
    from featgap.train import resolve_device

    config = runs.read_settings(args.run_dir)
    from featgap.attacks import check_eps

    norm, default_eps = eval_threat_model(config, args.norm, None if args.eps is None else args.eps[0])
    eps_values = args.eps if args.eps is not None else [default_eps]
    for e in eps_values:
        check_eps(e, norm)
    if args.n < 1:
        raise FeatgapError(f"--n must be at least 1; got {args.n}")
    if args.steps < 0:
        raise FeatgapError(f"--steps must be non-negative; got {args.steps}")
    if args.n_boot < 0:
        raise FeatgapError(f"--n-boot must be non-negative; got {args.n_boot}")
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "probe.csv"
    if out.is_dir():
        raise FeatgapError(f"--out {out} is a directory; give a .csv file name")
    device = resolve_device(args.device)
    model = runs.load(args.run_dir, device=device)
    test = data.load(config["dataset"], "test", args.data_root, args.download)
    subset = test.stratified_subset(args.n, args.seed) if args.n < len(test) else test
    x, y = subset.tensors()
    table = gap_vs_eps(model, x, y, eps=eps_values, layers=args.layers, pool=args.pool, steps=args.steps,
                       norm=norm, batch_size=500 if args.batch_size is None else args.batch_size, seed=args.seed)
    to_csv(table, out)
    print(format_probe_summary(table, n_boot=args.n_boot, seed=args.seed))
    print(f"wrote {len(table)} rows ({table['sample'].nunique()} samples × layers × eps) to {out}")


def format_probe_summary(table: object, n_boot: int = 1000, seed: int = 0) -> str:
    """Per (eps, layer) of a :func:`featgap.probes.gap_vs_eps` DataFrame: accuracies, the gap means
    (CIs for L2 and relative L2), flipped vs robust L2."""
    from featgap.probes import GAP_METRICS, summarize

    overall = summarize(table, by=("eps", "layer"), metrics=[*GAP_METRICS, "nat_correct", "adv_correct"],
                        n_boot=n_boot, seed=seed)
    by_outcome = summarize(table, by=("eps", "layer", "outcome"), metrics=["l2"], n_boot=0)
    l2_of = {(r["eps"], r["layer"], r["outcome"]): r["l2_mean"] for r in by_outcome.to_dict("records")}
    width = max(5, *(len(str(v)) for v in overall["layer"]))
    lines = [f"{'eps':>7} {'layer':<{width}} {'nat%':>6} {'adv%':>6}  {'l2 [95% CI]':<26}{'rel_l2 [95% CI]':<26}"
             f"{'linf':>9} {'cosine':>9}  l2 flipped / robust"]
    for r in overall.to_dict("records"):
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


def _report(args: argparse.Namespace) -> None:
    from featgap import report

    result = report.write(args.run_dirs, args.out, compute=args.compute, n=args.n, seed=args.seed,
                          device=args.device, data_root=args.data_root)
    for line in result.not_measured:
        print(f"  {line}")
    print(result.line())


def _data(args: argparse.Namespace) -> None:
    from pathlib import Path

    from featgap import data

    if args.data_command == "download":
        data.info(args.name)
        data.download(args.name, args.data_root)
        print(f"{args.name} is ready under {args.data_root}")
        return
    print(f"{'name':15} {'classes':>7} {'shape':>9} {'eps L∞':>7} {'eps L2':>7}  {'where':9} source")
    for name, meta in data.DATASETS.items():
        where = "bundled" if meta.offline else ("on disk" if _on_disk(name, Path(args.data_root)) else "missing")
        print(f"{name:15} {meta.num_classes:>7} {meta.in_channels}×{meta.image_size}×{meta.image_size:<3} "
              f"{meta.eps:>7.4g} {meta.eps_l2:>7.4g}  {where:9} {meta.source}")


def _on_disk(name: str, root: object) -> bool:
    from featgap import data

    try:
        data.load(name, "test", root)  # type: ignore[arg-type]
        return True
    except FeatgapError:
        return False


SEED_LIMIT = 2**32
"""Seeds are in ``[0, 2**32)``: what numpy and torch accept."""
_DEVICE = r"auto|cpu|mps|cuda(:\d+)?"


def check_common(args: argparse.Namespace) -> None:
    """One-line :class:`FeatgapError` for a bad value of a flag several sub-commands share, before any
    sub-command imports torch or writes a file: ``--seed`` outside ``[0, 2**32)``, ``--batch-size``
    below 1, a ``--device`` that names no device, ``--n`` below 1 (``docs/errors.md``)."""
    import re

    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise FeatgapError(f"--seed must be in [0, 2**32); got {seed}")
    batch_size = getattr(args, "batch_size", None)
    if batch_size is not None and batch_size < 1:
        raise FeatgapError(f"--batch-size must be at least 1; got {batch_size}")
    device = getattr(args, "device", None)
    if device is not None and not re.fullmatch(_DEVICE, device):
        raise FeatgapError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    n = getattr(args, "n", None)
    if args.command in ("eval", "probe") and n is not None and n < 1:
        raise FeatgapError(f"--n must be at least 1; got {n}")


THREADED = ("train", "eval", "probe", "demo")
"""Sub-commands that run torch on the CPU: they set the thread count first (:mod:`featgap.threads`)."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)  # the sub-command to build
    args = build_parser([command] if command in COMMANDS else []).parse_args(argv)
    try:
        check_common(args)
        if args.command in THREADED:
            from featgap import threads

            threads.apply(args.threads)
        if args.command == "train":
            _train(args)
        elif args.command == "eval":
            _eval(args)
        elif args.command == "probe":
            _probe(args)
        elif args.command == "report":
            _report(args)
        elif args.command == "data":
            _data(args)
        elif args.command == "demo":
            from featgap.demo import run_demo

            run_demo(out=args.out, n=args.n, device=args.device, seed=args.seed, fresh=args.fresh, names=args.runs)
    except FeatgapError as err:
        print(f"featgap: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("featgap: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    return 0
