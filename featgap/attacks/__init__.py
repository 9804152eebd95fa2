"""Attacks in [0, 1] pixel space with pluggable objectives.

* :func:`pgd` — projected gradient descent, L∞ or L2, random start, restarts.
* :func:`fgsm` — one signed-gradient step.
* objectives: :func:`cross_entropy`, :func:`margin`, :func:`trades_kl`.

AutoAttack (the reference implementation, package ``pyautoattack``) is used through
:func:`featgap.evaluate.evaluate`.
"""

from featgap.attacks.objectives import Objective, cross_entropy, margin, trades_kl
from featgap.attacks.pgd import NORMS, default_step_size, eval_mode, fgsm, pgd

__all__ = ["NORMS", "Objective", "cross_entropy", "default_step_size", "eval_mode", "fgsm", "margin", "pgd", "trades_kl"]
