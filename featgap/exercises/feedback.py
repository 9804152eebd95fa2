"""What a check returns: pass or fail, and a message written for the student who reads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Feedback:
    """The verdict of one exercise check.

    ``ok`` says whether the answer is right; ``message`` says why, and on a wrong answer what
    to look at next (never a bare ``AssertionError``). In a notebook the last line of a cell
    shows it: ``✓ FGSM: ...`` or ``✗ FGSM: ...``. ``bool(feedback)`` is ``ok``, so
    ``assert check.fgsm(my_fgsm)`` works in a script.

    Examples::
        >>> fb = Feedback("FGSM", True, "matches the library on 32 digits")
        >>> fb
        ✓ FGSM: matches the library on 32 digits
    """

    exercise: str
    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.exercise}: {self.message}"

    __str__ = __repr__


NOT_YET = ("not solved yet: your function still raises NotImplementedError. Replace the "
           "`raise NotImplementedError` line with your code and run the cell again.")


def call_student(exercise: str, fn: Callable[..., Any], *args: Any, signature: str) -> tuple[Any, Feedback | None]:
    """Call the student's ``fn(*args)``; on an exception, the :class:`Feedback` that explains it.

    ``signature`` is how the check calls ``fn`` (shown when the call itself fails).
    """
    if not callable(fn):
        return None, Feedback(exercise, False, f"expected a function, got {type(fn).__name__}; pass the function "
                                               f"itself (no parentheses): the check calls {signature}")
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, Feedback(exercise, False, NOT_YET)
    except Exception as e:  # noqa: BLE001 - any error of the student's code becomes a message
        return None, Feedback(exercise, False, f"your function raised {type(e).__name__}: {e}. The check calls it "
                                               f"as {signature}.")
