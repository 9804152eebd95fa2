"""Exercises for the tutorials in ``notebooks/``: checks a student runs on their own answer.

Each tutorial ends with two to four exercises. You write a small function (FGSM, the feature
gap, AFD's confusing target, a Wilson interval, a safe checkpoint loader ...) and check it in the
notebook::

    from featgap.exercises import check

    def my_fgsm(model, x, y, eps):
        ...                                  # your code
    check.fgsm(my_fgsm)                      # ✓ FGSM: matches ... | ✗ FGSM: sign error: ...

A check runs your function on a fixed batch, compares it with featgap's own implementation and,
on a wrong answer, says which usual mistake it looks like (a :class:`Feedback`, never a bare
assert). :mod:`featgap.exercises.check` lists the checks; the solutions are in
``notebooks/solutions/``.

:func:`tutorial_run` gives the tutorials their shared models: trained once, on first use, by
featgap's own ``Trainer``, kept under ``runs/`` next to the tutorials and reused by every later
tutorial (:data:`TUTORIAL_RUNS` holds the recipes); :func:`tutorial_runs` trains several missing
runs two at a time on a 2-core CPU, and :func:`evaluate_once_each` attacks several runs side by side.
"""

from featgap.exercises import check
from featgap.exercises.feedback import Feedback
from featgap.exercises.tutorial import (TUTORIAL_RUNS, describe, evaluate_once, evaluate_once_each, tutorial_run,
                                        tutorial_runs)

__all__ = ["TUTORIAL_RUNS", "Feedback", "check", "describe", "evaluate_once", "evaluate_once_each", "tutorial_run",
           "tutorial_runs"]
