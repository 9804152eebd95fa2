"""Training methods: ``standard``, ``pgd_at``, ``trades``, ``mart``, ``vaft``, ``afd``, and AFA's
``afa`` (pre-training), ``alf`` / ``aff`` (its fine-tuning stages) and ``afa_trades``.

``get(name)`` gives a method's class; each turns a batch into a loss and named metrics, and
declares its options (:class:`Option`), which become ``featgap train`` flags. A new method is
one file here plus one entry in ``METHODS`` (CONTRIBUTING.md, "Adding a method").
"""

from __future__ import annotations

from featgap.errors import FeatgapError
from featgap.methods.afa import AFA, AFF, ALF, AFATrades
from featgap.methods.afd import AFD
from featgap.methods.base import AttackSettings, Method, Option
from featgap.methods.mart import MART
from featgap.methods.pgd_at import PGDAT
from featgap.methods.standard import Standard
from featgap.methods.trades import TRADES
from featgap.methods.vaft import VAFT

METHODS: dict[str, type[Method]] = {m.name: m for m in (
    Standard, PGDAT, TRADES, VAFT, AFD, AFA, ALF, AFF, AFATrades,
    MART,
)}
"""Method name -> class: the registry ``featgap train --method`` and its flags are generated from."""


def get(name: str) -> type[Method]:
    """The method class called ``name``; a one-line :class:`FeatgapError` if unknown."""
    try:
        return METHODS[name]
    except KeyError:
        raise FeatgapError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None


__all__ = ["METHODS", "AttackSettings", "Method", "Option", "get"]
