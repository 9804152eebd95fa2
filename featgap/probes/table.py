"""`Table`: the tidy table every probe returns.

A tidy table has one row per observation and one column per variable: for the feature gap,
one row per (sample, layer) with columns ``sample, label, layer, l2, linf, …``. Columns are
NumPy arrays of equal length, so a student can compute with them directly::

    t = gap_table(model, x, y, eps=0.3)
    t["l2"][t["layer"] == "pool"].mean()
    t.where(t["outcome"] == "flipped")          # the rows the attack flipped
    t.to_pandas()                               # when pandas is installed
    t.to_csv("gap.csv")

featgap does not depend on pandas; :meth:`Table.to_pandas` converts when it is available,
and plotly accepts ``dict(t)`` (column name → array) as it is. In a notebook a table shows as
an HTML table of its first rows.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from featgap.errors import FeatgapError


class Table:
    """Named, equal-length NumPy columns: ``t["l2"]``, ``t.columns``, ``dict(t)``; ``len(t)`` counts rows."""

    def __init__(self, columns: Mapping[str, Iterable[Any]]) -> None:
        cols = {str(k): _as_column(v) for k, v in columns.items()}
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise FeatgapError(f"table columns differ in length: {lengths}")
        self._cols = cols

    # -- columns
    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._cols[name]
        except KeyError:
            raise KeyError(f"no column {name!r}; columns: {', '.join(self._cols)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._cols

    def keys(self) -> list[str]:
        """Column names (so that ``dict(table)`` works, e.g. for plotly express)."""
        return list(self._cols)

    @property
    def columns(self) -> list[str]:
        return list(self._cols)

    # -- rows
    def __len__(self) -> int:
        return self.num_rows

    @property
    def num_rows(self) -> int:
        return len(next(iter(self._cols.values()))) if self._cols else 0

    def where(self, mask: np.ndarray | Iterable[bool]) -> Table:
        """The rows where ``mask`` is true (a boolean array of ``num_rows``)."""
        m = np.asarray(mask, dtype=bool)
        if m.shape != (self.num_rows,):
            raise FeatgapError(f"mask has shape {m.shape}; the table has {self.num_rows} rows")
        return Table({k: v[m] for k, v in self._cols.items()})

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dictionaries of Python scalars."""
        cols = {k: v.tolist() for k, v in self._cols.items()}
        return [{k: cols[k][i] for k in cols} for i in range(self.num_rows)]

    def with_columns(self, **columns: Iterable[Any] | Any) -> Table:
        """A copy with columns added or replaced; a scalar is repeated on every row."""
        new = dict(self._cols)
        for k, v in columns.items():
            new[k] = np.full(self.num_rows, v) if np.isscalar(v) or v is None else v
        return Table(new)

    @staticmethod
    def concat(tables: Iterable[Table]) -> Table:
        """Stack tables with the same columns, one under the other."""
        tables = list(tables)
        if not tables:
            return Table({})
        names = tables[0].columns
        for t in tables[1:]:
            if t.columns != names:
                raise FeatgapError(f"cannot stack tables with columns {names} and {t.columns}")
        return Table({k: np.concatenate([t[k] for t in tables]) for k in names})

    # -- output
    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (pandas is not a featgap dependency; install it to use this)."""
        try:
            import pandas as pd
        except ImportError:
            raise FeatgapError("to_pandas() needs pandas: pip install pandas") from None
        return pd.DataFrame(dict(self._cols))

    def to_csv(self, path: str | Path | None = None, digits: int = 6) -> str:
        """CSV text (floats to ``digits`` significant digits); written atomically to ``path`` if given."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for row in self.rows():
            w.writerow([_fmt(v, digits) for v in row.values()])
        text = buf.getvalue()
        if path is not None:
            from featgap.runs import write_text

            write_text(Path(path), text)
        return text

    def __repr__(self) -> str:
        return f"Table({self.num_rows} rows × {len(self._cols)} columns: {', '.join(self._cols)})"

    def _repr_html_(self, max_rows: int = 20) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self._cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v, 4))}</td>" for v in row.values()) + "</tr>"
                       for row in self.where(np.arange(self.num_rows) < max_rows).rows())
        more = f"<p>… {self.num_rows - max_rows} more rows</p>" if self.num_rows > max_rows else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _as_column(values: Iterable[Any]) -> np.ndarray:
    arr = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if arr.ndim != 1:
        raise FeatgapError(f"a table column must be one-dimensional; got shape {arr.shape}")
    return arr


def _fmt(v: Any, digits: int) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.{digits}g}"
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)
