"""Attacks in [0, 1] pixel space with pluggable objectives.

* :func:`pgd` — projected gradient descent, L∞ or L2, random start, restarts.
* :func:`fgsm` — one signed-gradient step.
* :func:`pgd_best` — the same ascent, returning per sample the best iterate and its value (for
  quantities that are maxima, like a local Lipschitz constant).
* objectives: :func:`cross_entropy`, :func:`margin`, :func:`trades_kl`, :func:`lipschitz_ratio`.
* building blocks: :func:`l2_norm`, :func:`project`, :func:`step_direction`, :func:`uniform_start`,
  :func:`check_eps` (a one-line error for a radius that cannot be meant).

AutoAttack (the reference implementation, package ``pyautoattack``) is used through
:func:`featgap.evaluate.evaluate`.
"""

from featgap.attacks.ascent import pgd_best
from featgap.attacks.objectives import Objective, cross_entropy, lipschitz_ratio, margin, trades_kl
from featgap.attacks.pgd import (NORMS, check_eps, default_step_size, eval_mode, fgsm, l2_norm, pgd, project,
                                 step_direction, uniform_start)

__all__ = ["NORMS", "Objective", "check_eps", "cross_entropy", "default_step_size", "eval_mode", "fgsm", "l2_norm",
           "lipschitz_ratio", "margin", "pgd", "pgd_best", "project", "step_direction", "trades_kl", "uniform_start"]
