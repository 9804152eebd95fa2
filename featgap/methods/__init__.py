"""Training methods: ``standard``, ``pgd_at``, ``trades``, ``vaft``, ``afd``, and AFA's ``afa``
(pre-training), ``alf`` / ``aff`` (its fine-tuning stages) and ``afa_trades``.

``create(name, attack, **options)`` builds one; each turns a batch into named loss terms.
"""

from __future__ import annotations

from featgap.errors import FeatgapError
from featgap.methods.afa import AFA, AFF, ALF, AFATrades
from featgap.methods.afd import AFD
from featgap.methods.base import AttackSettings, Method
from featgap.methods.pgd_at import PGDAT
from featgap.methods.standard import Standard
from featgap.methods.trades import TRADES
from featgap.methods.vaft import VAFT

METHODS: dict[str, type[Method]] = {m.name: m for m in (Standard, PGDAT, TRADES, VAFT, AFD, AFA, ALF, AFF,
                                                             AFATrades)}


def get(name: str) -> type[Method]:
    """The method class called ``name``; a one-line :class:`FeatgapError` if unknown."""
    try:
        return METHODS[name]
    except KeyError:
        raise FeatgapError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None


__all__ = ["METHODS", "AttackSettings", "Method", "get"]
