"""Robustness evaluation: clean, PGD-20 (CE and margin) and AutoAttack accuracy, with sanity checks.

The protocol (``docs/evaluation.md``):

* inputs in [0, 1], normalisation inside the model, so ε is in pixel units; the threat model is
  L∞ or L2 with the dataset's default radius for that norm (:meth:`featgap.data.DatasetInfo.default_eps`);
* clean accuracy; PGD-20 twice, once on cross-entropy and once on the logit margin
  (:func:`featgap.attacks.margin`), random start, step 2.5·ε/20 unless given; standard
  AutoAttack (APGD-CE → APGD-T → FAB-T → Square, reference implementation ``pyautoattack``),
  each attack run on the points that survived the previous ones;
* every reported robust number is a **per-image worst case**: an image counts only if it is
  classified correctly at every point any of the attacks tried (the clean image, δ = 0,
  included)::

      pgd    = mean_i [ clean_i ∧ CE-PGD_i ∧ margin-PGD_i ]
      robust = mean_i [ clean_i ∧ CE-PGD_i ∧ margin-PGD_i ∧ AA_i ∧ every check's attack at radius ≤ ε ]
      avg    = (clean + pgd + autoattack) / 3
      avg_paper = (clean + pgd_ce + autoattack) / 3        (the AFD paper's summary: CE-PGD alone)

* every result carries sanity checks that flag broken evaluations or gradient masking, each one
  able to fail (``tests/test_evaluate.py`` builds a model that fails each).

Usage::

    result = evaluate(model, featgap.data.load("mnist5k", "test"), eps=0.3, n=500)
    print(result.report())
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from featgap.attacks import Objective, check_eps, cross_entropy, default_step_size, eval_mode, margin, pgd
from featgap.data import ImageSet
from featgap.errors import FeatgapError
from featgap.probes import feature_gap
from featgap.progress import progress

AA_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
AA_VERSIONS = {"standard": AA_ATTACKS, "rand": ("apgd-ce", "apgd-dlr")}
"""AutoAttack's versions featgap runs, and their attacks in order. ``rand`` is the one for randomised
defences: APGD-CE and APGD-DLR, each averaging the gradient over 20 draws of the model's randomness
(Expectation over Transformation), as Croce & Hein (2020) recommend."""
RESTARTS = 3
"""Restarts of the restart check (check 4): PGD with this many restarts, the first one the main CE-PGD run's."""
EPS_ZERO = 1e-4
"""The radius of check 1's "ε → 0" attack, pixel units: far below one grey level (1/255)."""

CHECK_ZERO = "clean accuracy is reproducible and holds at ε→0"
CHECK_EPS = "robust accuracy does not rise with ε"
CHECK_STEPS = "more PGD steps do not help the model"
CHECK_RESTARTS = "more PGD restarts do not help the model"
CHECK_CLEAN = "clean ≥ PGD"
MARGIN_CHECK = "PGD on the logit margin is within 5 points of CE-PGD (else CE gradients are masked)"
CHECK_AA = "AutoAttack ≤ PGD"
CHECK_GAP = "PGD − AA gap ≤ 10 points (else possible gradient masking)"
CHECK_SQUARE = "black-box Square finds nothing the white-box attacks missed"
CHECK_AA_OWN = "AutoAttack's own checks"
BASE_CHECKS = (CHECK_ZERO, CHECK_EPS, CHECK_STEPS, CHECK_RESTARTS, CHECK_CLEAN, MARGIN_CHECK)
"""The checks every evaluation runs, in order (``docs/evaluation.md`` numbers them 1–6)."""
AA_CHECKS = (CHECK_AA, CHECK_GAP, CHECK_SQUARE)
"""The checks that need AutoAttack (7–9; 10, :data:`CHECK_AA_OWN`, appears only when AutoAttack warned;
9, :data:`CHECK_SQUARE`, only with the standard version, the one that runs Square)."""


@dataclass
class Check:
    """One sanity check: its name, whether it passed, and the numbers behind it."""

    name: str
    ok: bool
    detail: str


@dataclass
class EvalResult:
    """Accuracies in percent on ``n`` test images (a stratified subset when ``n`` < size).

    ``pgd`` and ``robust`` are per-image worst cases (an image counts only if it survives every
    attack named, and is classified correctly itself); ``pgd_ce`` and ``pgd_margin`` are the two
    PGD attacks alone. ``avg`` uses the worst-case ``pgd``; ``avg_paper`` is the AFD paper's
    summary with CE-PGD alone, kept only to compare with the paper.
    """

    n: int
    eps: float
    norm: str
    seed: int
    clean: float
    pgd: float
    """PGD-``pgd_steps`` accuracy, worst case per image over the CE and the margin attack (and the clean image)."""
    pgd_steps: int
    autoattack: float | None = None
    robust: float | None = None
    """Worst case per image over every attack run (:attr:`robust_attacks`); ``None`` without AutoAttack."""
    autoattack_by_attack: dict[str, float] = field(default_factory=dict)
    feature_gap: dict[str, float] = field(default_factory=dict)
    """Mean per-sample gap between features of natural inputs and their PGD examples (the margin
    attack's example where it fooled the model and CE's did not, else CE's)."""
    checks: list[Check] = field(default_factory=list)
    pgd_margin: float | None = None
    """PGD accuracy with the logit-margin objective alone (same steps and step size)."""
    seconds: float = 0.0
    pgd_ce: float | None = None
    """PGD accuracy with the cross-entropy objective alone (what PGD-20 means in most papers)."""
    pgd_step_size: float | None = None
    """The PGD step α used, pixel units (2.5·ε/steps unless given)."""
    robust_attacks: list[str] = field(default_factory=list)
    """The attacks :attr:`robust` is the worst case over, by name."""
    aa_version: str = "standard"
    """AutoAttack's version (:data:`AA_VERSIONS`): ``standard``, or ``rand`` for randomised defences."""
    examples: torch.Tensor | None = field(default=None, repr=False, compare=False)
    """``keep_examples=True`` only: the strongest adversarial example per image, ``(n, C, H, W)``
    (:func:`strongest_examples`); not part of :meth:`as_dict`."""

    @property
    def avg(self) -> float | None:
        """(clean + PGD + AA) / 3 with the worst-case ``pgd``, or ``None`` when AutoAttack was skipped."""
        if self.autoattack is None:
            return None
        return (self.clean + self.pgd + self.autoattack) / 3

    @property
    def avg_paper(self) -> float | None:
        """(clean + CE-PGD + AA) / 3, the AFD paper's summary (CE-PGD alone); ``None`` without AutoAttack."""
        if self.autoattack is None or self.pgd_ce is None:
            return None
        return (self.clean + self.pgd_ce + self.autoattack) / 3

    @property
    def flags(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict:
        out = asdict(replace(self, examples=None))
        out.pop("examples")
        out["avg"], out["avg_paper"] = self.avg, self.avg_paper
        return out

    def report(self) -> str:
        """A short human-readable block: accuracies, then one line per sanity check."""
        aa = "skipped" if self.autoattack is None else f"{self.autoattack:.2f}"
        if self.autoattack is not None and self.aa_version != "standard":
            aa += f" ({self.aa_version})"
        k = self.pgd_steps
        alpha = f", α={self.pgd_step_size:.4g}" if self.pgd_step_size is not None else ""
        parts = [f"n={self.n}  eps={self.eps:g} ({self.norm}{alpha})  seed={self.seed}  clean {self.clean:.2f}  "
                 f"PGD-{k} {self.pgd:.2f} (CE {_fmt(self.pgd_ce)}, margin {_fmt(self.pgd_margin)})  AA {aa}"]
        if self.robust is not None:
            parts.append(f"  robust {self.robust:.2f}  avg {self.avg:.2f}  avg (paper: CE-PGD) {_fmt(self.avg_paper)}")
        lines = ["".join(parts)]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.ok else 'FLAG'}] {c.name}: {c.detail}")
        return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _accuracy_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = []
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(x), batch_size):
            out.append(model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size])
    return torch.cat(out)


def _stream(seed: int, name: str, batch: int) -> torch.Generator:
    """The random starts of attack ``name`` on batch ``batch``: one seeded CPU generator each, so an
    attack run twice (the restart check) starts exactly where it started the first time."""
    tag = sum((i + 1) * ord(c) for i, c in enumerate(name))
    return torch.Generator().manual_seed((seed * 1_000_003 + tag * 10_007 + batch) % (2 ** 63))


def _pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, norm: str,
                batch_size: int, desc: str, step_size: float | None = None, objective: Objective = cross_entropy,
                seed: int = 0, stream: str = "ce", restarts: int = 1, keep: bool = True,
                on_batch: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """PGD examples (``None`` unless ``keep``) and per-sample 'still correct after PGD' flags; random
    starts from ``stream``.

    Streamed: one batch of examples exists at a time, plus, with ``keep``, one preallocated tensor
    shaped like ``x`` that receives them (no list of batches concatenated at the end, which would
    hold every example twice). ``on_batch(start, x_adv_batch, ok_batch)`` sees each batch's examples.
    """
    advs = torch.empty_like(x) if keep else None
    ok = torch.empty(len(x), dtype=torch.bool, device=x.device)
    for b, i in enumerate(progress(range(0, len(x), batch_size), desc=desc, leave=False)):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        x_adv = pgd(model, xb, yb, eps=eps, steps=steps, norm=norm, step_size=step_size, objective=objective,
                    restarts=restarts, generator=_stream(seed, stream, b))
        ok_b = _accuracy_mask(model, x_adv, yb, batch_size)
        ok[i:i + len(yb)] = ok_b
        if advs is not None:
            advs[i:i + len(yb)] = x_adv
        if on_batch is not None:
            on_batch(i, x_adv, ok_b)
    return advs, ok


def _percent(mask: torch.Tensor) -> float:
    """Share of True entries in percent, from exact integer counts (no float32 rounding)."""
    return 100.0 * int(mask.sum().item()) / max(mask.numel(), 1)


class _CollectWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def autoattack_masks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
                     seed: int, batch_size: int, start_mask: torch.Tensor | None = None,
                     examples: torch.Tensor | None = None,
                     version: str = "standard") -> tuple[torch.Tensor, dict[str, float], list[str]]:
    """Run AutoAttack (``version``: ``standard`` or ``rand``, :data:`AA_VERSIONS`) attack by attack,
    each on the points still robust.

    Returns ``(robust_mask, accuracy_after_each_attack, autoattack_warnings)``. Running the
    attacks one at a time (with the reference parameters of the version) gives
    a progress bar, the accuracy after each attack, and tells whether the black-box Square
    attack found points the white-box attacks missed.

    ``examples`` (a tensor shaped like ``x``, e.g. ``x.clone()``), if given, receives in place
    the adversarial example of every image an attack fooled (the attack that fooled it first);
    the other rows are left as they are.
    """
    from pyautoattack import AutoAttack

    device = x.device
    if version not in AA_VERSIONS:
        raise FeatgapError(f"unknown AutoAttack version {version!r}; choose one of: {', '.join(AA_VERSIONS)}")
    adversary = AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version=version,
                           seed=seed, device=device)
    handler = _CollectWarnings()
    aa_logger = logging.getLogger("auto-attack")
    aa_logger.addHandler(handler)
    robust = _accuracy_mask(model, x, y, batch_size) if start_mask is None else start_mask.clone()
    after: dict[str, float] = {}
    try:
        with eval_mode(model):
            bar = progress(AA_VERSIONS[version], desc="AutoAttack", leave=False)
            for attack in bar:
                idx = robust.nonzero().flatten()
                if len(idx):
                    adversary.attacks_to_run = [attack]
                    x_adv, _ = adversary.run_standard_evaluation(x[idx], y[idx], batch_size=batch_size)
                    still = _accuracy_mask(model, x_adv, y[idx], batch_size)
                    robust[idx] = still
                    if examples is not None:
                        examples[idx[~still]] = x_adv[~still].to(examples.dtype)
                after[attack] = _percent(robust)
                bar.set_postfix_str(f"{attack} → {after[attack]:.1f}%")
    finally:
        aa_logger.removeHandler(handler)
    return robust, after, handler.messages


AA_PASSES = {"forward_backward": 100 + 9 * 100 + 9 * 100, "forward": 5000}
"""Passes standard AutoAttack makes per batch of images that stay robust: APGD-CE 100 iterations,
APGD-T 9 target classes × 100, FAB-T 9 × 100 (each one forward and backward), Square 5,000
queries (one forward each). Images an attack fools leave the batch, so this is the worst case."""


def autoattack_estimate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> float:
    """Seconds standard AutoAttack takes at most on ``x`` (N images) with this model on this machine.

    Times one forward+backward and one forward pass on a batch (median of 3) and multiplies by
    :data:`AA_PASSES` and the number of batches: the cost if every image survived every attack,
    which a robust model nearly does (a non-robust one is much cheaper: APGD-CE fools it in its
    first iterations). On a 2-core CPU this matched a measured run within 5 % (smallcnn, PGD-AT,
    67 robust digits: 136 s estimated, 131 s measured). ``featgap eval`` prints it before it starts.

    >>> autoattack_estimate(model, x[:150], y[:150])     # e.g. 41.7
    """
    import statistics

    b = min(len(x), batch_size)
    xb, yb = x[:b], y[:b]
    with eval_mode(model):
        fb, f = [], []
        for _ in range(3):
            start = time.perf_counter()
            xg = xb.clone().requires_grad_(True)
            torch.autograd.grad(nn.functional.cross_entropy(model(xg), yb), xg)
            fb.append(time.perf_counter() - start)
            start = time.perf_counter()
            with torch.no_grad():
                model(xb)
            f.append(time.perf_counter() - start)
    batches = -(-len(x) // b)
    return batches * (AA_PASSES["forward_backward"] * statistics.median(fb) + AA_PASSES["forward"] * statistics.median(f))


def check_inputs(model: nn.Module, data: ImageSet, *, n: int | None, seed: int, batch_size: int) -> None:
    """One-line :class:`FeatgapError` for an evaluation that cannot work (``docs/errors.md``): ``data``
    not an :class:`~featgap.data.ImageSet` or empty, ``n`` or ``batch_size`` below 1, a seed outside
    ``[0, 2**32)``, or a model whose input channels or classes do not fit the data."""
    if not isinstance(data, ImageSet):
        raise FeatgapError(f"evaluate takes an ImageSet (featgap.data.load(name, 'test')); got {type(data).__name__}")
    if len(data) == 0:
        raise FeatgapError(f"the {data.info.name} {data.split} set is empty: nothing to evaluate")
    if n is not None and n < 1:
        raise FeatgapError(f"n must be at least 1; got {n}")
    if batch_size < 1:
        raise FeatgapError(f"batch_size must be at least 1; got {batch_size}")
    if not 0 <= seed < 2**32:
        raise FeatgapError(f"seed must be in [0, 2**32); got {seed}")
    channels, classes = getattr(model, "in_channels", None), getattr(model, "num_classes", None)
    if channels is not None and channels != data.images.shape[1]:
        raise FeatgapError(f"the model takes {channels}-channel images, but {data.info.name} has "
                           f"{data.images.shape[1]} (a model of another dataset?)")
    if classes is not None and int(data.labels.max()) >= classes:
        raise FeatgapError(f"the model has {classes} classes, but {data.info.name} has labels up to "
                           f"{int(data.labels.max())} (a model of another dataset?)")


def evaluate(model: nn.Module, data: ImageSet, *, eps: float | None = None, norm: str = "linf",
             n: int | None = None, pgd_steps: int = 20, pgd_step_size: float | None = None,
             autoattack: bool = True, seed: int = 0, batch_size: int = 250,
             device: torch.device | str | None = None, sanity_checks: bool = True,
             keep_examples: bool = False, aa_version: str = "standard") -> EvalResult:
    """Evaluate ``model`` on ``data`` (a test split) following ``docs/evaluation.md``.

    Accuracy under attack is a per-image worst case: ``pgd`` counts an image only if it survives
    both PGD attacks (CE and logit margin) and is classified correctly itself, ``robust`` only if
    it survives every attack of the evaluation (PGD, AutoAttack's four, and the sanity checks'
    attacks at radius ≤ ε)::

        pgd = mean_i [clean_i ∧ CE-PGD_i ∧ margin-PGD_i]      avg = (clean + pgd + AA) / 3

    Args:
        model: maps images in [0, 1] to logits (normalisation inside).
        data: the test split (an :class:`~featgap.data.ImageSet`).
        eps: attack radius in pixel units (default: the dataset's for ``norm``:
            :meth:`~featgap.data.DatasetInfo.default_eps`, e.g. L∞ 0.3 MNIST, 8/255 CIFAR; L2 2.0
            MNIST, 0.5 CIFAR).
        norm: ``"linf"`` or ``"l2"``.
        n: evaluate on a stratified subset of ``n`` images (seeded by ``seed``); all of them
            when ``None``. The same images are used for every number in the result.
        pgd_steps, pgd_step_size: PGD settings (default step α = 2.5·ε/steps; the AFD paper
            evaluates with 0.003). The checks that rerun PGD scale α with what they change.
        autoattack: run standard AutoAttack (the slow part: ~20–40× one PGD-10 pass).
        seed: the subset, every random start and AutoAttack's seed.
        batch_size: images per forward pass.
        device: where to attack (default: the model's).
        sanity_checks: also run the cheap checks of ``docs/evaluation.md`` (ε → 0, ε/2, PGD-5,
            restarts, clean ≥ PGD, margin vs CE).
        keep_examples: keep the strongest adversarial example per image of CE-PGD, margin-PGD
            and AutoAttack in ``result.examples`` (:func:`strongest_examples`), e.g. to measure
            features on the points that hurt the model most.
        aa_version: AutoAttack's version, ``"standard"`` (APGD-CE, APGD-T, FAB-T, Square) or
            ``"rand"`` (APGD-CE and APGD-DLR with 20-sample EOT) for a model that is random at
            inference, e.g. one that adds noise to its input (:data:`AA_VERSIONS`).

    Returns:
        an :class:`EvalResult`; ``result.report()`` prints it, ``result.flags`` are the failed checks.

    Memory: every attack runs in batches of ``batch_size``; beyond one batch's activations the
    evaluation holds, for all images, their float copy, one set of adversarial examples (for the
    feature gap; both PGD attacks' with ``keep_examples``) and per-image flags
    (``benchmarks/bench_memory.py``, ``tests/test_memory.py``).

    Example::

        >>> r = evaluate(model, featgap.data.load("cifar10", "test"), norm="l2", n=1000)  # ε = 0.5
        >>> r.pgd, r.pgd_ce, r.robust, r.avg, r.avg_paper
    """
    start = time.perf_counter()
    if norm not in ("linf", "l2"):
        raise FeatgapError(f"unknown norm {norm!r}; choose linf or l2")
    eps = data.info.default_eps(norm) if eps is None else float(eps)
    check_eps(eps, norm, flag="eps")
    if pgd_steps < 1:
        raise FeatgapError(f"pgd_steps must be at least 1; got {pgd_steps}")
    if aa_version not in AA_VERSIONS:
        raise FeatgapError(f"unknown AutoAttack version {aa_version!r}; choose one of: {', '.join(AA_VERSIONS)}")
    if pgd_step_size is not None and not pgd_step_size > 0:
        raise FeatgapError(f"pgd_step_size must be positive (pixel units, e.g. 0.003); got {pgd_step_size}")
    check_inputs(model, data, n=n, seed=seed, batch_size=batch_size)
    alpha = default_step_size(eps, pgd_steps) if pgd_step_size is None else float(pgd_step_size)
    if device is None:
        device = next(model.parameters()).device
    if n is not None:
        data = data.stratified_subset(n, seed)
    x, y = data.tensors(device)
    torch.manual_seed(seed)
    clean_mask = _accuracy_mask(model, x, y, batch_size)
    attack = dict(eps=eps, steps=pgd_steps, norm=norm, batch_size=batch_size, step_size=alpha, seed=seed)
    has_features = hasattr(model, "features")
    # Streamed in batches: the examples are kept only where they are needed (the feature gap, or
    # keep_examples), and without keep_examples the margin attack's are written straight into the
    # CE attack's tensor where only the margin attack fools the model (the example of the gap).
    x_ce, ce_ok = _pgd_attack(model, x, y, desc=f"PGD-{pgd_steps} CE", stream="ce",
                              keep=keep_examples or has_features, **attack)
    x_adv = x_ce if has_features and not keep_examples else None

    def take_margin(i: int, xb_margin: torch.Tensor, margin_ok_b: torch.Tensor) -> None:
        use = ce_ok[i:i + len(margin_ok_b)] & ~margin_ok_b
        x_adv[i:i + len(margin_ok_b)][use] = xb_margin[use]

    x_m, margin_ok = _pgd_attack(model, x, y, desc=f"PGD-{pgd_steps} margin", objective=margin, stream="margin",
                                 keep=keep_examples, on_batch=take_margin if x_adv is not None else None, **attack)
    pgd_mask = clean_mask & ce_ok & margin_ok
    result = EvalResult(n=len(y), eps=eps, norm=norm, seed=seed, clean=_percent(clean_mask), pgd=_percent(pgd_mask),
                        pgd_steps=pgd_steps, pgd_ce=_percent(ce_ok), pgd_margin=_percent(margin_ok),
                        pgd_step_size=alpha, aa_version=aa_version)
    masks = {"clean": clean_mask, f"PGD-{pgd_steps} CE": ce_ok, f"PGD-{pgd_steps} margin": margin_ok}
    if has_features:
        if x_adv is None:  # keep_examples: both attacks' examples are kept, combined here
            use_margin = (ce_ok & ~margin_ok).view(-1, *([1] * (x.ndim - 1)))
            x_adv = torch.where(use_margin, x_m, x_ce)  # the example that fools the model, if one does
        result.feature_gap = {k: v.mean().item() for k, v in feature_gap(model, x, x_adv, batch_size=batch_size).items()}
    x_adv = None  # the checks and AutoAttack need no examples: free them (x_ce too, unless keep_examples)
    if not keep_examples:
        x_ce = x_m = None
    aa_warnings: list[str] = []
    x_aa = x.clone() if keep_examples and autoattack else None
    if autoattack:
        aa_ok, result.autoattack_by_attack, aa_warnings = autoattack_masks(
            model, x, y, eps=eps, norm=norm, seed=seed, batch_size=batch_size, start_mask=clean_mask,
            examples=x_aa, version=aa_version)
        result.autoattack = _percent(aa_ok)
        masks["AutoAttack (" + ", ".join(AA_VERSIONS[aa_version]) + ")"] = aa_ok
    if sanity_checks:
        result.checks = _sanity_checks(model, x, y, result, clean_mask, ce_ok, masks, alpha=alpha, seed=seed,
                                       batch_size=batch_size, aa_warnings=aa_warnings)
    if autoattack:
        robust = torch.ones_like(clean_mask)
        for mask in masks.values():
            robust &= mask
        result.robust, result.robust_attacks = _percent(robust), list(masks)
    if keep_examples:
        result.examples = strongest_examples(model, y, [x_ce, x_m] + ([x_aa] if x_aa is not None else []),
                                             batch_size=batch_size)
    result.seconds = time.perf_counter() - start
    return result


def strongest_examples(model: nn.Module, y: torch.Tensor, candidates: list[torch.Tensor], *,
                       batch_size: int = 250) -> torch.Tensor:
    """Per image, the strongest of several adversarial examples: the rule of ``docs/evaluation.md``.

    Among the candidates that the model misclassifies, the one with the highest cross-entropy
    loss; when none fools the model, the one with the highest loss overall::

        pick_i = argmax_k [ CE(model(x_k,i), y_i) + BIG · 1[model(x_k,i) ≠ y_i] ]

    ``evaluate(..., keep_examples=True)`` passes CE-PGD's, margin-PGD's and AutoAttack's
    examples (AutoAttack's row is the clean image where it did not fool the model, or where the
    image was misclassified already).

    Arguments:
        model (nn.Module): the classifier, images in [0, 1] → logits.
        y (Tensor): labels ``(N,)``.
        candidates (list[Tensor]): ``K`` tensors of examples, each ``(N, C, H, W)``.
        batch_size (int): images per forward pass.

    Shape:
        - output: ``(N, C, H, W)``, each row one of the candidates' rows.

    Example::
        >>> x_worst = strongest_examples(model, y, [x_ce, x_margin, x_aa])
    """
    if not candidates:
        raise FeatgapError("strongest_examples needs at least one candidate")
    scores = []
    with torch.no_grad(), eval_mode(model):
        for xk in candidates:
            parts = []
            for i in range(0, len(y), batch_size):
                logits = model(xk[i:i + batch_size]).float()
                yb = y[i:i + batch_size]
                loss = torch.nn.functional.cross_entropy(logits, yb, reduction="none")
                parts.append(loss + 1e6 * (logits.argmax(1) != yb).float())
            scores.append(torch.cat(parts))
    pick = torch.stack(scores).argmax(0)
    out = candidates[0].clone()
    for k in range(1, len(candidates)):
        out[pick == k] = candidates[k][pick == k]
    return out


def _rel(a: float, b: float) -> str:
    """The relation that holds between ``a`` and ``b``, for a check's detail text."""
    return "≥" if a >= b else "<"


def _sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, r: EvalResult, clean_mask: torch.Tensor,
                   ce_ok: torch.Tensor, masks: dict[str, torch.Tensor], *, alpha: float, seed: int, batch_size: int,
                   aa_warnings: list[str]) -> list[Check]:
    """The checks of ``docs/evaluation.md``, each computed, none assumed, each able to fail.

    Every attack a check runs at a radius ≤ ε is also an attack on the model: its per-image
    result is added to ``masks``, so ``robust`` is the worst case over it too.
    """
    eps, norm, k, n = r.eps, r.norm, r.pgd_steps, r.n
    run = dict(norm=norm, batch_size=batch_size, seed=seed)
    checks = []

    # 1. Determinism and stability: the clean accuracy recomputed in other batches (reversed
    # order, half the batch size) must agree image by image, and an attack at a radius far
    # below one grey level, from a random start, must change (almost) no prediction.
    order = torch.arange(len(y) - 1, -1, -1, device=y.device)
    half = max(1, (min(batch_size, len(y)) + 1) // 2)
    again = torch.empty_like(clean_mask)
    for i in range(0, len(y), half):  # the batches of x[order], without copying all of x in that order
        idx = order[i:i + half]
        again[idx] = _accuracy_mask(model, x[idx], y[idx], half)
    disagree = int((again != clean_mask).sum())
    eps0 = min(eps, EPS_ZERO)
    _, zero_ok = _pgd_attack(model, x, y, eps=eps0, steps=2, desc="check ε→0", stream="zero", keep=False, **run)
    masks[f"PGD-2 CE at ε={eps0:g}"] = zero_ok
    changed = int((zero_ok != clean_mask).sum())
    allowed = max(1, n // 1000)
    checks.append(Check(CHECK_ZERO, disagree == 0 and changed <= allowed,
                        f"recomputed in other batches: {_percent(again):.2f} ({disagree} images differ); "
                        f"PGD-2 at ε={eps0:g} from a random start: {_percent(zero_ok):.2f} ({changed} images changed, "
                        f"≤ {allowed} allowed) vs clean {r.clean:.2f}"))

    # 2. The same CE attack at half the radius (half the step) must not leave fewer images correct.
    _, half_ok = _pgd_attack(model, x, y, eps=eps / 2, steps=k, step_size=alpha / 2, desc="check ε/2",
                             stream="half", keep=False, **run)
    masks[f"PGD-{k} CE at ε/2"] = half_ok
    at_half = _percent(half_ok)
    checks.append(Check(CHECK_EPS, at_half >= r.pgd_ce,
                        f"CE-PGD at ε/2: {at_half:.2f} {_rel(at_half, r.pgd_ce)} CE-PGD at ε: {r.pgd_ce:.2f}"))

    # 3. Fewer steps (5, or k // 2 for k < 10; the same total path k·α) must not find more.
    few_steps = max(1, min(5, k // 2))
    _, few_ok = _pgd_attack(model, x, y, eps=eps, steps=few_steps, step_size=alpha * k / few_steps,
                            desc=f"check PGD-{few_steps}", stream="few", keep=False, **run)
    masks[f"PGD-{few_steps} CE"] = few_ok
    few = _percent(few_ok)
    checks.append(Check(CHECK_STEPS, few >= r.pgd_ce,
                        f"CE-PGD-{few_steps}: {few:.2f} {_rel(few, r.pgd_ce)} CE-PGD-{k}: {r.pgd_ce:.2f}"))

    # 4. Restarts: the main CE run again with RESTARTS restarts, the first from the same random
    # start. For a deterministic model every image the single run fooled stays fooled.
    _, restart_ok = _pgd_attack(model, x, y, eps=eps, steps=k, step_size=alpha, desc=f"check {RESTARTS} restarts",
                                stream="ce", restarts=RESTARTS, keep=False, **run)
    masks[f"PGD-{k} CE × {RESTARTS} restarts"] = restart_ok
    revived = int((~ce_ok & restart_ok).sum())
    with_restarts = _percent(restart_ok)
    checks.append(Check(CHECK_RESTARTS, with_restarts <= r.pgd_ce and revived <= n // 1000,
                        f"CE-PGD-{k} × {RESTARTS} restarts: {with_restarts:.2f} vs × 1: {r.pgd_ce:.2f}; "
                        f"images fooled by × 1 but not by × {RESTARTS}: {revived}"))

    # 5. No single attack may leave more images correct than there are clean-correct ones.
    top = max(r.pgd_ce, r.pgd_margin)
    checks.append(Check(CHECK_CLEAN, r.clean >= top,
                        f"clean {r.clean:.2f} {_rel(r.clean, top)} CE-PGD {r.pgd_ce:.2f}, margin-PGD {r.pgd_margin:.2f}"))

    # 6. CE-PGD must not be far weaker than margin-PGD (saturated softmax: exactly zero CE gradients).
    checks.append(Check(MARGIN_CHECK, r.pgd_ce - r.pgd_margin <= 5.0,
                        f"PGD-{k} on the margin: {r.pgd_margin:.2f}, on CE: {r.pgd_ce:.2f}"))

    if r.autoattack is not None:
        checks.append(Check(CHECK_AA, r.autoattack <= r.pgd,
                            f"PGD {r.pgd:.2f} {_rel(r.pgd, r.autoattack)} AA {r.autoattack:.2f}"))
        gap = r.pgd - r.autoattack
        checks.append(Check(CHECK_GAP, gap <= 10.0, f"gap {gap:.2f} (PGD = worst of CE and margin)"))
        by = r.autoattack_by_attack
        if "square" in by:  # the standard version (rand has no black-box attack)
            white = by.get("fab-t", r.autoattack)
            square_gain = white - by["square"]
            checks.append(Check(CHECK_SQUARE, square_gain <= 0.2 + 1e-9,
                                f"Square lowered accuracy by {square_gain:.2f} points"))
        if aa_warnings:
            checks.append(Check(CHECK_AA_OWN, False, " | ".join(dict.fromkeys(aa_warnings))))  # each once
    return checks
