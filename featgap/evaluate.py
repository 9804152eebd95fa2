"""Robustness evaluation: clean, PGD-20 and AutoAttack accuracy, with sanity checks.

The protocol (``docs/evaluation.md``):

* inputs in [0, 1], normalisation inside the model, so ε is in pixel units;
* clean accuracy; PGD-20 accuracy (random start, CE, step 2.5·ε/20); standard AutoAttack
  (APGD-CE → APGD-T → FAB-T → Square, reference implementation ``pyautoattack``), each
  attack run on the points that survived the previous ones;
* ``robust`` = the pointwise worst case over PGD-20 and AutoAttack;
* ``avg`` = (clean + PGD + AA) / 3, as in the AFD paper;
* every result carries sanity checks that flag broken evaluations or gradient masking. Beyond
  the literature's usual list, PGD is rerun on the logit margin (:func:`featgap.attacks.margin`): a
  model whose softmax saturates has exactly zero CE gradients and fools CE-PGD, not the margin.

Usage::

    result = evaluate(model, featgap.data.load("mnist5k", "test"), eps=0.3, n=500)
    print(result.table())
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from featgap.attacks import Objective, cross_entropy, eval_mode, margin, pgd
from featgap.data import ImageSet
from featgap.probes import feature_gap
from featgap.progress import progress

AA_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")


@dataclass
class Check:
    """One sanity check: its name, whether it passed, and the numbers behind it."""

    name: str
    ok: bool
    detail: str


@dataclass
class EvalResult:
    """Accuracies in percent on ``n`` test images (a stratified subset when ``n`` < size)."""

    n: int
    eps: float
    norm: str
    seed: int
    clean: float
    pgd: float
    pgd_steps: int
    autoattack: float | None = None
    robust: float | None = None
    autoattack_by_attack: dict[str, float] = field(default_factory=dict)
    feature_gap: dict[str, float] = field(default_factory=dict)
    """Mean per-sample gap between features of natural inputs and their PGD examples."""
    checks: list[Check] = field(default_factory=list)
    pgd_margin: float | None = None
    """PGD accuracy with the logit-margin objective (same steps), computed with the sanity checks."""
    seconds: float = 0.0

    @property
    def avg(self) -> float | None:
        """(clean + PGD + AA) / 3, or ``None`` when AutoAttack was skipped."""
        if self.autoattack is None:
            return None
        return (self.clean + self.pgd + self.autoattack) / 3

    @property
    def flags(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict:
        out = asdict(self)
        out["avg"] = self.avg
        return out

    def report(self) -> str:
        """A short human-readable block: accuracies, then one line per sanity check."""
        aa = "skipped" if self.autoattack is None else f"{self.autoattack:.2f}"
        lines = [f"n={self.n}  eps={self.eps:g} ({self.norm})  seed={self.seed}  "
                 f"clean {self.clean:.2f}  PGD-{self.pgd_steps} {self.pgd:.2f}  AA {aa}"
                 + (f"  avg {self.avg:.2f}" if self.avg is not None else "")]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.ok else 'FLAG'}] {c.name}: {c.detail}")
        return "\n".join(lines)


def _accuracy_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = []
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(x), batch_size):
            out.append(model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size])
    return torch.cat(out)


def _pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, norm: str,
                batch_size: int, desc: str, step_size: float | None = None,
                objective: Objective = cross_entropy) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD examples and per-sample 'still correct after PGD' flags."""
    advs, ok = [], []
    for i in progress(range(0, len(x), batch_size), desc=desc, leave=False):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        x_adv = pgd(model, xb, yb, eps=eps, steps=steps, norm=norm, step_size=step_size, objective=objective)
        advs.append(x_adv)
        ok.append(_accuracy_mask(model, x_adv, yb, batch_size))
    return torch.cat(advs), torch.cat(ok)


def _pgd_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs: object) -> torch.Tensor:
    return _pgd_attack(model, x, y, **kwargs)[1]  # type: ignore[arg-type]


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
                     seed: int, batch_size: int, start_mask: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, dict[str, float], list[str]]:
    """Run standard AutoAttack attack by attack, each on the points still robust.

    Returns ``(robust_mask, accuracy_after_each_attack, autoattack_warnings)``. Running the
    four attacks one at a time (with the reference parameters of the standard version) gives
    a progress bar, the accuracy after each attack, and tells whether the black-box Square
    attack found points the white-box attacks missed.
    """
    from pyautoattack import AutoAttack

    device = x.device
    adversary = AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version="standard",
                           seed=seed, device=device)
    handler = _CollectWarnings()
    aa_logger = logging.getLogger("auto-attack")
    aa_logger.addHandler(handler)
    robust = _accuracy_mask(model, x, y, batch_size) if start_mask is None else start_mask.clone()
    after: dict[str, float] = {}
    try:
        with eval_mode(model):
            bar = progress(AA_ATTACKS, desc="AutoAttack", leave=False)
            for attack in bar:
                idx = robust.nonzero().flatten()
                if len(idx):
                    adversary.attacks_to_run = [attack]
                    x_adv, _ = adversary.run_standard_evaluation(x[idx], y[idx], batch_size=batch_size)
                    robust[idx] = _accuracy_mask(model, x_adv, y[idx], batch_size)
                after[attack] = _percent(robust)
                bar.set_postfix_str(f"{attack} → {after[attack]:.1f}%")
    finally:
        aa_logger.removeHandler(handler)
    return robust, after, handler.messages


def evaluate(model: nn.Module, data: ImageSet, *, eps: float | None = None, norm: str = "linf",
             n: int | None = None, pgd_steps: int = 20, pgd_step_size: float | None = None,
             autoattack: bool = True, seed: int = 0, batch_size: int = 250,
             device: torch.device | str | None = None, sanity_checks: bool = True) -> EvalResult:
    """Evaluate ``model`` on ``data`` (a test split) following ``docs/evaluation.md``.

    Args:
        eps: attack radius in pixel units (default: the dataset's, e.g. 0.3 MNIST, 8/255 CIFAR).
        norm: ``"linf"`` or ``"l2"``.
        n: evaluate on a stratified subset of ``n`` images (seeded by ``seed``); all of them
            when ``None``. The same images are used for every number in the result.
        pgd_steps, pgd_step_size: PGD settings (default step 2.5·ε/steps).
        autoattack: run standard AutoAttack (the slow part: ~20–40× one PGD-10 pass).
        sanity_checks: also run the cheap checks of ``docs/evaluation.md`` (ε=0, ε/2, PGD-5) and the
            margin-PGD check (fills ``pgd_margin``).
    """
    start = time.perf_counter()
    eps = data.info.eps if eps is None else eps
    if device is None:
        device = next(model.parameters()).device
    if n is not None:
        data = data.stratified_subset(n, seed)
    x, y = data.tensors(device)
    torch.manual_seed(seed)
    clean_mask = _accuracy_mask(model, x, y, batch_size)
    x_adv, pgd_ok = _pgd_attack(model, x, y, eps=eps, steps=pgd_steps, norm=norm, batch_size=batch_size,
                                desc=f"PGD-{pgd_steps}", step_size=pgd_step_size)
    result = EvalResult(n=len(y), eps=eps, norm=norm, seed=seed, clean=_percent(clean_mask), pgd=_percent(pgd_ok),
                        pgd_steps=pgd_steps)
    if hasattr(model, "features"):
        result.feature_gap = {k: v.mean().item() for k, v in feature_gap(model, x, x_adv, batch_size=batch_size).items()}
    aa_warnings: list[str] = []
    if autoattack:
        aa_ok, result.autoattack_by_attack, aa_warnings = autoattack_masks(
            model, x, y, eps=eps, norm=norm, seed=seed, batch_size=batch_size, start_mask=clean_mask)
        result.autoattack = _percent(aa_ok)
        result.robust = _percent(aa_ok & pgd_ok)
    if sanity_checks:
        result.checks = _sanity_checks(model, x, y, result, clean_mask, eps=eps, norm=norm,
                                       batch_size=batch_size, aa_warnings=aa_warnings)
    result.seconds = time.perf_counter() - start
    return result


MARGIN_CHECK = "PGD on the logit margin is within 5 points of CE-PGD (else CE gradients are masked)"


def _rel(a: float, b: float) -> str:
    """The relation that holds between ``a`` and ``b``, for a check's detail text."""
    return "≥" if a >= b else "<"


def _sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, r: EvalResult, clean_mask: torch.Tensor,
                   *, eps: float, norm: str, batch_size: int, aa_warnings: list[str]) -> list[Check]:
    """The checks of ``docs/evaluation.md``, each computed, none assumed."""
    checks = []
    zero = _percent(_pgd_mask(model, x, y, eps=0.0, steps=2, norm=norm, batch_size=batch_size, desc="check ε=0"))
    checks.append(Check("accuracy at ε=0 equals clean", abs(zero - r.clean) < 1e-9,
                        f"ε=0: {zero:.2f} vs clean {r.clean:.2f}"))
    half = _percent(_pgd_mask(model, x, y, eps=eps / 2, steps=r.pgd_steps, norm=norm, batch_size=batch_size,
                         desc="check ε/2"))
    checks.append(Check("robust accuracy does not rise with ε", half >= r.pgd,
                        f"PGD at ε/2: {half:.2f} {_rel(half, r.pgd)} PGD at ε: {r.pgd:.2f}"))
    few = _percent(_pgd_mask(model, x, y, eps=eps, steps=5, norm=norm, batch_size=batch_size, desc="check PGD-5"))
    checks.append(Check("more PGD steps do not help the model", few >= r.pgd,
                        f"PGD-5: {few:.2f} {_rel(few, r.pgd)} PGD-{r.pgd_steps}: {r.pgd:.2f}"))
    checks.append(Check("clean ≥ PGD", r.clean >= r.pgd, f"{r.clean:.2f} {_rel(r.clean, r.pgd)} {r.pgd:.2f}"))
    r.pgd_margin = _percent(_pgd_mask(model, x, y, eps=eps, steps=r.pgd_steps, norm=norm, batch_size=batch_size,
                                      desc="check margin PGD", objective=margin))
    checks.append(Check(MARGIN_CHECK, r.pgd - r.pgd_margin <= 5.0,
                        f"PGD-{r.pgd_steps} on the margin: {r.pgd_margin:.2f}, on CE: {r.pgd:.2f}"))
    if r.autoattack is not None:
        checks.append(Check("AutoAttack ≤ PGD", r.autoattack <= r.pgd, f"PGD {r.pgd:.2f} {_rel(r.pgd, r.autoattack)} AA {r.autoattack:.2f}"))
        gap = r.pgd - r.autoattack
        checks.append(Check("PGD − AA gap ≤ 10 points (else possible gradient masking)", gap <= 10.0,
                            f"gap {gap:.2f}"))
        by = r.autoattack_by_attack
        white = by.get("fab-t", r.autoattack)
        square_gain = white - by.get("square", white)
        checks.append(Check("black-box Square finds nothing the white-box attacks missed", square_gain <= 0.2 + 1e-9,
                            f"Square lowered accuracy by {square_gain:.2f} points"))
        if aa_warnings:
            checks.append(Check("AutoAttack's own checks", False, " | ".join(aa_warnings)))
    return checks
