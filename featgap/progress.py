"""One progress-bar helper for the whole package (``tqdm.auto``: a widget in notebooks, text in
terminals). Set ``FEATGAP_PROGRESS=0`` to silence every bar (used by the test suite)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("FEATGAP_PROGRESS", "1") != "0"


def progress(iterable: Iterable[T], desc: str = "", leave: bool = True, **kwargs: Any) -> tqdm:
    """Wrap ``iterable`` in a tqdm bar (disabled when ``FEATGAP_PROGRESS=0``)."""
    return tqdm(iterable, desc=desc, leave=leave, disable=not enabled(), dynamic_ncols=True, **kwargs)
