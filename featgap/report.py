"""``featgap report``: one standalone HTML page per experiment, to mail, attach or open years later.

A widget needs a running kernel; this page does not. It is a single HTML file that opens offline
in any browser: plotly.js is embedded once (no CDN), every figure is a JSON spec drawn by
``Plotly.newPlot`` from the page itself, and there is nothing to install or start::

    featgap report runs/demo/standard runs/demo/pgd_at runs/demo/afd -o report.html
    featgap report runs/demo/* -o report.html --compute --n 200     # measure what the runs lack

    from featgap import report
    report.write(["runs/demo/standard", "runs/demo/pgd_at"], "report.html", compute=True)

What the page holds, section by section (:func:`write`):

1. **Results**: an HTML table, one row per run — clean, PGD-k (worst of CE and margin), AutoAttack,
   Avg = (clean + PGD + AA) / 3, robust (worst of every attack), the mean feature gap (L2, L∞,
   cosine) — with the run's sanity checks *in the same row*: ``8/8 passed``, or each failed
   check with its numbers in red. A run without an evaluation keeps its row: "not evaluated".
   Under it, :func:`featgap.plots.gap_vs_robust` (does a smaller gap buy robustness?).
2. **Training**: :func:`featgap.plots.training_curves` of every run — accuracies and the
   feature-gap trajectory from ``metrics.jsonl``.
3. **Feature gap per layer** with 95 % bootstrap CIs, and 4. **the gap against ε**, from the
   per-sample table of :func:`featgap.probes.gap_vs_eps`.
5. **Embeddings** of natural and adversarial features (PCA of the last layer, one frame per
   map); a run fine-tuned from another run of the report (``--init``) is drawn *before / after*
   in one shared frame (:func:`featgap.probes.embed_sequence`).
6. **AFD component norms** ‖f1‖, ‖f2‖, cos(f1, f2) of runs whose model has ``components()``.
7. **Alignment** measures of :func:`featgap.probes.geometry_table` (centroid misalignment,
   alignment, uniformity, kNN and linear-probe accuracy) for every run.
8. **Configuration** of each run (method, options, seed, versions, git commit; the whole
   ``config.json``) in a collapsible section; the date and the featgap version at the top.

**What is read, what is computed.** Without ``compute`` nothing is measured: the page shows
what the run directories hold (``config.json``, ``metrics.jsonl``, ``summary.json``,
``eval.json``, and the per-layer gap of a ``probe.csv`` written by ``featgap probe``) and says
"not measured — rerun with --compute" where a section needs the model's features. With
``compute=True`` (``--compute``) each run's model is loaded and probed on a stratified test
subset of ``n`` images (seeded): PGD-10 at ``ε·{0, ¼, ½, ¾, 1}`` for the gap tables, its
features for the maps, ``geometry_table`` with a same-sized training subset as the reference
for kNN and the linear probe, and the AFD student's components; a run without an evaluation is
first evaluated like ``featgap eval --n n`` (AutoAttack included) and its evaluation kept (``eval-n{n}.json``).
Progress bars show each step. The PCA maps are cached on disk (:mod:`featgap.cache`).

**Bad input** is a one-line :class:`~featgap.errors.FeatgapError` before anything is computed
or written: a folder that is not a run, a run still training (no ``summary.json`` yet), an
output path in a folder that does not exist. Runs of different datasets may be mixed: the page
and stderr then carry a warning line. The file is written atomically (a temporary file in the
same folder, then renamed), so a failure never leaves half a page behind.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import sys
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import plotly.graph_objects as go

import featgap
from featgap import cache, runs
from featgap.errors import FeatgapError
from featgap.plots import (alignment_bars, component_norms, embedding_maps, gap_by_layer_runs, gap_vs_eps_runs,
                           gap_vs_robust, load_results, training_curves)
from featgap.plots.results import wilson_interval
from featgap.plots.training import RUN_COLORS
from featgap.probes import summarize
from featgap.progress import progress

DEFAULT_N = 200
"""Test images probed per run with ``compute=True`` (``featgap report --n``)."""
EPS_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The radii of the gap-vs-ε sweep, as fractions of each run's ε."""
FIGURE_HEIGHT = 430
"""Pixels, for a figure that sets no height of its own."""
NOT_MEASURED = "not measured — rerun with --compute"
NOT_EVALUATED = "not evaluated"
LAYER_METRIC = "rel_l2"
"""The gap measure of the per-layer figure: relative L2 compares layers of different scale."""
MAP_METHOD = "pca"
"""How the embeddings are made: PCA is exact, fast and deterministic (UMAP would add seconds per map)."""


# ---------------------------------------------------------------- what the page is made of
@dataclass
class RunData:
    """One run as the report sees it: what its directory holds, plus what ``compute`` measured.

    ``gap`` is a :func:`featgap.probes.gap_vs_eps` table (``eps, sample, layer, l2, …``),
    ``geometry`` a one-row :func:`~featgap.probes.geometry_table`, ``components`` a
    :func:`~featgap.probes.component_norms` table, ``features`` the last layer's natural and
    adversarial features ``(N, D)`` at the run's ε; each ``None`` when not measured.
    """

    name: str
    path: Path
    config: dict
    eval: dict | None
    gap: pd.DataFrame | None = None
    gap_source: str = ""
    geometry: pd.DataFrame | None = None
    components: pd.DataFrame | None = None
    features: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def dataset(self) -> str:
        return self.config.get("config", {}).get("dataset") or self.config.get("dataset", {}).get("name", "?")

    @property
    def method(self) -> str:
        return self.config.get("config", {}).get("method", "?")

    def threat_model(self) -> tuple[str, float]:
        """``(norm, ε)`` of the run's evaluation (``eval.json``), else of its training (``config.json``)."""
        if self.eval is not None:
            return str(self.eval["norm"]), float(self.eval["eps"])
        cfg, ds = self.config.get("config", {}), self.config.get("dataset", {})
        norm = cfg.get("norm") or "linf"
        eps = cfg.get("eps")
        if eps is None:
            eps = ds.get("eps_l2") if norm == "l2" else ds.get("eps")
        return norm, float(eps)

    @property
    def layer(self) -> str:
        """The layer the maps and alignment measures use: the model's last named layer (the pooled features)."""
        names = self.config.get("model_card", {}).get("layer_names") or ["pool"]
        return str(names[-1])

    def gap_layer(self) -> str:
        """:attr:`layer` when the gap table holds it, else the table's last layer (a probe.csv of other layers)."""
        layers = list(dict.fromkeys(self.gap["layer"].astype(str))) if self.gap is not None else []
        return self.layer if self.layer in layers or not layers else layers[-1]


@dataclass
class Report:
    """What :func:`write` produced: the file, its size, the time it took, and what the page warns about."""

    path: Path
    bytes: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    not_measured: list[str] = field(default_factory=list)

    def line(self) -> str:
        """``report: PATH (4.9 MB, 6 s)``."""
        return f"report: {self.path} ({self.bytes / 1e6:.1f} MB, {self.seconds:.0f} s)"


# ---------------------------------------------------------------- reading and checking the input
def _display_names(paths: Sequence[Path]) -> list[str]:
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def read_runs(run_dirs: Sequence[str | Path], evaluation: dict | None = None) -> list[RunData]:
    """The runs of a report, checked: each must be a finished run directory (one-line errors otherwise).

    Each run's evaluation is the one :func:`featgap.runs.read_eval` picks with the settings
    ``evaluation`` (e.g. ``{"n": 150, "autoattack": True}``; ``None``: the largest, AutoAttack
    preferred). A run without one is accepted (its row says "not evaluated"); a ``probe.csv``
    written by ``featgap probe`` is read as the run's gap table.
    """
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise FeatgapError("give at least one run directory")
    out = []
    for path, name in zip(paths, _display_names(paths)):
        if not path.exists():
            raise FeatgapError(f"{path} does not exist (give run directories written by featgap train)")
        if not path.is_dir():
            raise FeatgapError(f"{path} is a file, not a run directory (give folders written by featgap train)")
        config = runs.read_config(path)  # not a run: one line
        if not (path / runs.SUMMARY).is_file():
            raise FeatgapError(f"{path} is still training (no {runs.SUMMARY} yet): wait until it finishes, or "
                               "resume it with its featgap train command")
        run = RunData(name, path, config, runs.read_eval(path, **(evaluation or {})))
        probe_csv = path / "probe.csv"
        if probe_csv.is_file():
            run.gap, run.gap_source = pd.read_csv(probe_csv), "probe.csv (featgap probe)"
        out.append(run)
    return out


def check_output(path: str | Path) -> Path:
    """The output file, checked before any work: its folder must exist and it must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise FeatgapError(f"-o {path} is a folder; give a file name such as {path / 'report.html'}")
    if not path.parent.is_dir():
        raise FeatgapError(f"cannot write {path}: the folder {path.parent} does not exist (create it first)")
    return path


def dataset_warning(report_runs: Sequence[RunData]) -> str | None:
    """A warning line when the runs were trained on different datasets (their numbers do not compare)."""
    by: dict[str, list[str]] = {}
    for r in report_runs:
        by.setdefault(r.dataset, []).append(r.name)
    if len(by) < 2:
        return None
    parts = "; ".join(f"{ds}: {', '.join(names)}" for ds, names in by.items())
    return f"these runs were trained on different datasets ({parts}); compare their numbers within a dataset only"


# ---------------------------------------------------------------- measuring (compute=True only)
def _has_components(method: str) -> bool:
    """Whether the module a method trains offers ``components(x)`` (AFD's student does)."""
    from featgap.methods import METHODS

    cls = METHODS.get(method)
    if cls is None:
        return False
    try:
        wrapper = typing.get_type_hints(cls.start).get("return")
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved: no components known
        return False
    return isinstance(wrapper, type) and hasattr(wrapper, "components")


@dataclass
class Measurement:
    """What :func:`measure_run` measured on one run's model: the :class:`RunData` fields it fills.

    Plain tables and arrays, so a worker process can compute it and send it back (``featgap demo``
    probes each run in its job graph while AutoAttack runs on the other core)."""

    gap: pd.DataFrame
    gap_source: str
    features: tuple[np.ndarray, np.ndarray]
    geometry: pd.DataFrame
    components: pd.DataFrame | None

    def apply(self, run: RunData) -> RunData:
        """``run`` with these measurements filled in (the same object, changed in place)."""
        run.gap, run.gap_source, run.features = self.gap, self.gap_source, self.features
        run.geometry, run.components = self.geometry, self.components
        return run


def measure_run(run: RunData, *, n: int = DEFAULT_N, seed: int = 0, device: str = "auto",
                data_root: str | Path = "data", splits: tuple[Any, Any] | None = None) -> Measurement:
    """Probe one run's model on a stratified test subset of ``n`` images (see :func:`measure`).

    At the run's ε and norm (:meth:`RunData.threat_model`): PGD-10 examples (seeded), the gap table
    at ``ε·EPS_FRACTIONS``, the last layer's natural and adversarial features, ``geometry_table``
    with a stratified training subset of ``n`` images as the reference, and for a method whose
    model has ``components()`` the component norms. ``splits`` is the run's dataset as
    ``(test, train)`` :class:`~featgap.data.ImageSet` objects when the caller has loaded it already
    (:func:`measure` loads each dataset once for all its runs); otherwise it is loaded from ``data_root``.

    >>> m = measure_run(read_runs(["runs/demo/afd"])[0], n=150)
    >>> m.gap.groupby("layer").l2.mean()
    """
    import torch

    from featgap import data
    from featgap.methods import METHODS
    from featgap.probes import adversarial_examples, component_norms as components_probe, extract_features
    from featgap.probes import gap_vs_eps, geometry_table
    from featgap.train import resolve_device

    if n < 10:
        raise FeatgapError(f"--n must be at least 10 (every class needs images); got {n}")
    dev = resolve_device(str(device))
    test, train = splits or (data.load(run.dataset, "test", data_root), data.load(run.dataset, "train", data_root))
    x, y = (test.stratified_subset(n, seed) if n < len(test) else test).tensors(dev)
    model = runs.load(run.path, device=dev)
    norm, eps = run.threat_model()
    torch.manual_seed(seed)
    x_adv = adversarial_examples(model, x, y, eps=eps, steps=10, norm=norm, seed=seed)
    radii = list(dict.fromkeys(round(eps * f, 12) for f in EPS_FRACTIONS))
    gap = gap_vs_eps(model, x, y, {radii[-1]: x_adv}, eps=radii, norm=norm, seed=seed)
    feats = extract_features(model, torch.cat([x, x_adv]), [run.layer], desc="features")[run.layer].cpu().numpy()
    reference = (train.stratified_subset(n, seed) if n < len(train) else train).tensors(dev)
    geometry = geometry_table(model, x, y, x_adv, layers=[run.layer], reference=reference).assign(run=run.name)
    components = None
    if _has_components(run.method):
        student = METHODS[run.method].load_wrapper(run.path, dev)
        # the exported model's logits are the student's, so its PGD examples are the student's too
        components = components_probe(student, x, y, x_adv)
    return Measurement(gap, f"computed: {len(y)} test images, PGD-10, seed {seed}",
                       (feats[:len(y)], feats[len(y):]), geometry, components)


def measure(report_runs: Sequence[RunData], *, n: int = DEFAULT_N, seed: int = 0, device: str = "auto",
            data_root: str | Path = "data", evaluate_missing: bool = True) -> None:
    """Probe each run's model on a stratified test subset of ``n`` images and fill in the run's tables
    (:func:`measure_run`, one run after the other, with a progress bar).

    A run without an evaluation is evaluated first (``featgap eval --n n``, AutoAttack included)
    and its evaluation kept (``eval-n{n}.json``), when ``evaluate_missing``.
    """
    from featgap import data
    from featgap.evaluate import evaluate
    from featgap.train import resolve_device

    if n < 10:
        raise FeatgapError(f"--n must be at least 10 (every class needs images); got {n}")
    sets: dict[str, tuple[Any, Any]] = {}  # dataset → (test, train), each loaded once for all runs
    for run in progress(report_runs, desc="report: measuring runs"):
        if run.dataset not in sets:
            sets[run.dataset] = (data.load(run.dataset, "test", data_root), data.load(run.dataset, "train", data_root))
        if run.eval is None and evaluate_missing:
            norm, eps = run.threat_model()
            model = runs.load(run.path, device=resolve_device(str(device)))
            result = evaluate(model, sets[run.dataset][0], eps=eps, norm=norm, n=n, seed=seed)
            run.eval = result.as_dict()
            run.eval["file"] = runs.write_eval(run.path, run.eval).name
        measure_run(run, n=n, seed=seed, device=device, splits=sets[run.dataset]).apply(run)


# ---------------------------------------------------------------- figures
def _gap_at_eps(run: RunData) -> pd.DataFrame:
    """The rows of the run's gap table at its ε (the radius nearest to it, for a probe.csv)."""
    table = run.gap
    if "eps" not in table.columns:
        return table
    _, eps = run.threat_model()
    values = np.array(sorted(table["eps"].unique()), dtype=float)
    return table[table["eps"] == values[np.argmin(np.abs(values - eps))]]


def init_run(run: RunData, report_runs: Sequence[RunData]) -> RunData | None:
    """The run of the report that ``run`` was fine-tuned from (its ``--init``), if it is among them.

    Matched by path; for runs that were moved or copied together (a demo folder mailed as a
    whole), where the recorded path no longer leads to a report run, by the folder's name when
    exactly one report run has it.
    """
    init = run.config.get("config", {}).get("init")
    if not init:
        return None
    init = Path(init)
    for other in report_runs:
        if other is not run and other.path.resolve() == init.resolve():
            return other
    named = [o for o in report_runs if o is not run and o.path.name == init.name]
    return named[0] if len(named) == 1 else None


def _embedding_figures(report_runs: Sequence[RunData]) -> list[tuple[str, go.Figure]]:
    """One map per run; a run whose ``--init`` run is in the report: that run before, this one after."""
    from featgap.probes import embed, embed_sequence

    out = []
    for run in report_runs:
        if run.features is None:
            continue
        before = init_run(run, report_runs)
        preds = _gap_at_eps(run)
        preds = preds[preds["layer"] == run.layer]
        if before is not None and before.features is not None and before is not run:
            maps = embed_sequence([before.features, run.features], method=MAP_METHOD)
            before_preds = _gap_at_eps(before)
            before_preds = before_preds[before_preds["layer"] == before.layer]
            fig = embedding_maps([maps[0].table, maps[1].table], [before_preds, preds],
                                 names=[f"before: {before.name}", f"after: {run.name}"],
                                 title=f"{run.name}: features before and after fine-tuning from {before.name} "
                                       f"({run.layer}, one PCA frame)")
        else:
            emb = embed(*run.features, method=MAP_METHOD)
            fig = embedding_maps([emb.table], [preds], names=[""],
                                 title=f"{run.name}: natural (○) and adversarial (×) features ({run.layer}, PCA)")
        out.append((run.name, fig))
    return out


@dataclass
class _Page:
    """The page as it is assembled: HTML blocks in order, figures numbered as they are added."""

    blocks: list[str] = field(default_factory=list)
    figures: int = 0

    def add(self, text: str) -> None:
        self.blocks.append(text)

    def figure(self, fig: go.Figure, kind: str, run: str = "") -> None:
        """A div for the figure and its JSON spec in a ``<script type="application/json">`` beside it."""
        self.figures += 1
        fid = f"figure-{self.figures}"
        if fig.layout.height is None:  # in a div of automatic height plotly.js would draw it squashed
            fig.update_layout(height=FIGURE_HEIGHT)
        spec = fig.to_json().replace("</", "<\\/")  # a "</script>" inside a string must not end the block
        self.add(f'<div class="figure" id="{fid}" data-kind="{html.escape(kind)}" data-run="{html.escape(run)}"></div>'
                 f'\n<script type="application/json" class="figure-spec" data-figure="{fid}" '
                 f'data-kind="{html.escape(kind)}" data-run="{html.escape(run)}">{spec}</script>')

    def missing(self, text: str) -> None:
        self.add(f'<p class="missing">{html.escape(text)}</p>')


def _num(v: Any, digits: int) -> tuple[str, str]:
    """(shown text, exact value) of a number of eval.json; ``—`` for a missing one."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—", ""
    return f"{float(v):.{digits}f}", repr(float(v))


ACCURACY_KEYS = ("clean", "pgd", "autoattack", "robust")
"""Columns of the results table that are accuracies over the run's n images: shown with a 95 % interval."""


def results_table_html(report_runs: Sequence[RunData]) -> str:
    """The results as an HTML table: the numbers of each ``eval.json``, the sanity checks beside them.

    Every number cell carries ``data-run``, ``data-key`` (the ``eval.json`` key; ``gap_l2`` for
    ``feature_gap.l2``) and ``data-value`` (the exact value), so the page can be checked against
    the files. A run without an evaluation says "not evaluated".
    """
    steps = sorted({int(r.eval.get("pgd_steps") or 0) for r in report_runs if r.eval})
    pgd = "PGD-" + "/".join(map(str, steps)) if steps else "PGD"
    cols = [("clean", "clean %", 1), ("pgd", f"{pgd} %<br><small>worst of CE, margin</small>", 1),
            ("autoattack", "AutoAttack %", 1), ("avg", "Avg %<br><small>(clean+PGD+AA)/3</small>", 1),
            ("robust", "robust %<br><small>every attack</small>", 1),
            ("gap_l2", "gap L2", 3), ("gap_linf", "gap L∞", 3), ("gap_cosine", "gap cos", 4)]
    head = "".join(f"<th>{h}</th>" for h in ("run", "method", "dataset", "n", "ε (norm)")) + "".join(
        f"<th>{label}</th>" for _, label, _ in cols) + "<th>sanity checks</th>"
    rows = []
    for r in report_runs:
        cells = [f"<td>{html.escape(r.name)}</td>", f"<td>{html.escape(r.method)}</td>",
                 f"<td>{html.escape(r.dataset)}</td>"]
        ev = r.eval
        if ev is None:
            cells += [f'<td class="missing" colspan="{2 + len(cols) + 1}" data-run="{html.escape(r.name)}" '
                      f'data-key="eval">{NOT_EVALUATED}: no evaluation (run <code>featgap eval '
                      f"{html.escape(str(r.path))}</code>, or add --compute)</td>"]
            rows.append(f'<tr class="not-evaluated">{"".join(cells)}</tr>')
            continue
        source = f' title="{html.escape(str(ev["file"]))}"' if ev.get("file") else ""
        cells += [f'<td data-run="{html.escape(r.name)}" data-key="n" data-value="{int(ev["n"])}"{source}>'
                  f'{int(ev["n"])}</td>',
                  f'<td class="eps">{float(ev["eps"]):.4g} ({html.escape(str(ev.get("norm", "")))})</td>']
        gaps = ev.get("feature_gap") or {}
        for key, _, digits in cols:
            value = gaps.get(key[4:]) if key.startswith("gap_") else ev.get(key)
            text, exact = _num(value, digits)
            if key in ACCURACY_KEYS and exact:  # every accuracy with its 95 % Wilson interval over n images
                lo, hi = wilson_interval(float(value), int(ev["n"]))
                text += f'<br><small class="ci">[{lo:.1f}, {hi:.1f}]</small>'
            cells.append(f'<td class="num" data-run="{html.escape(r.name)}" data-key="{key}" '
                         f'data-value="{exact}">{text}</td>')
        checks = ev.get("checks") or []
        failed = [c for c in checks if not c.get("ok", False)]
        if not checks:
            check_cell = '<td class="checks none">not run</td>'
        elif not failed:
            check_cell = f'<td class="checks ok">{len(checks)}/{len(checks)} passed</td>'
        else:
            items = "".join(f"<li><b>FLAG</b> {html.escape(c.get('name', '?'))}: {html.escape(c.get('detail', ''))}"
                            "</li>" for c in failed)
            check_cell = (f'<td class="checks flag" data-run="{html.escape(r.name)}" data-failed="{len(failed)}">'
                          f"{len(checks) - len(failed)}/{len(checks)} passed<ul>{items}</ul></td>")
        cells.append(check_cell)
        rows.append(f'<tr class="{"flagged" if failed else "clean"}">{"".join(cells)}</tr>')
    return f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _config_html(run: RunData) -> str:
    cfg = run.config.get("config", {})
    env = run.config.get("environment", {})
    facts = {"method": cfg.get("method"), "options": json.dumps(cfg.get("extra") or {}), "seed": cfg.get("seed"),
             "dataset": cfg.get("dataset"), "model": cfg.get("model"), "epochs": cfg.get("epochs"),
             "ε (norm)": f"{cfg.get('eps')} ({cfg.get('norm')})", "init": cfg.get("init"),
             "versions": ", ".join(f"{k} {v}" for k, v in env.items() if k != "git_commit" and v),
             "git commit": env.get("git_commit")}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    return (f'<details class="config" data-run="{html.escape(run.name)}"><summary>{html.escape(run.name)} — '
            f"{html.escape(str(cfg.get('method')))}, seed {html.escape(str(cfg.get('seed')))}, "
            f"{html.escape(str(run.path))}</summary><table>{rows}</table>"
            f"<pre>{html.escape(json.dumps(run.config, indent=2, default=str))}</pre></details>")


def build_page(report_runs: Sequence[RunData], warnings: Sequence[str], *, computed: bool) -> tuple[str, list[str]]:
    """The whole HTML page, and the list of "not measured" lines it shows."""
    page = _Page()
    not_measured: list[str] = []
    names = [r.name for r in report_runs]
    colors = {name: RUN_COLORS[i % len(RUN_COLORS)] for i, name in enumerate(names)}  # training_curves' colours

    def missing(section: str, lacking: Sequence[str]) -> None:
        if lacking:
            line = f"{section}: {NOT_MEASURED} ({', '.join(lacking)})"
            not_measured.append(line)
            page.missing(line)

    page.add("<h2 id='results-section'>Results</h2>")
    page.add(results_table_html(report_runs))
    page.add("<p class='legend'>Accuracies in percent on the evaluation's stratified test subset of n images (the run's eval-*.json file), "
             "each with its 95 % Wilson interval below it. "
             "PGD is per image the worst of CE- and margin-PGD; robust the worst of every attack run; the gap is the "
             "mean distance between the pooled features of a test image and of its PGD example. A failed sanity "
             "check (docs/evaluation.md) is listed beside the numbers it questions.</p>")
    results = load_results([r.path for r in report_runs], evaluations=[r.eval for r in report_runs])
    results["run"] = names
    if results["clean"].notna().any():
        page.figure(gap_vs_robust(results, "l2", colors), "gap_vs_robust")

    page.add("<h2 id='training-section'>Training curves and the gap trajectory</h2>")
    page.figure(training_curves([r.path for r in report_runs], names=names,
                                title="Accuracy and feature gap per epoch (metrics.jsonl)"), "training")

    with_gap = [r for r in report_runs if r.gap is not None]
    page.add("<h2 id='layers-section'>Feature gap per layer (95 % CI)</h2>")
    if with_gap:
        summaries = {r.name: summarize(_gap_at_eps(r), by="layer", metrics=[LAYER_METRIC], n_boot=1000)
                     for r in with_gap}
        page.figure(gap_by_layer_runs(summaries, LAYER_METRIC, colors=colors,
                                      title="Feature gap per layer at each run's ε: mean relative L2 "
                                            "‖f − f′‖₂ / ‖f‖₂ with 95% bootstrap CI"), "gap_by_layer")
        page.add("<p class='legend'>" + "; ".join(f"{html.escape(r.name)}: {html.escape(r.gap_source)}"
                                                  for r in with_gap) + "</p>")
    missing("feature gap per layer", [r.name for r in report_runs if r.gap is None])

    page.add("<h2 id='eps-section'>Feature gap against ε</h2>")
    swept = [r for r in with_gap if "eps" in r.gap.columns and r.gap["eps"].nunique() > 1]
    if swept:
        summaries = {r.name: summarize(r.gap[r.gap["layer"].astype(str) == r.gap_layer()], by=("eps", "layer"),
                                       metrics=["l2"], n_boot=1000) for r in swept}
        page.figure(gap_vs_eps_runs(summaries, "l2", colors=colors,
                                    title="Feature gap vs ε at the last layer: mean L2 with 95% CI"), "gap_vs_eps")
    missing("gap vs ε", [r.name for r in report_runs if r not in swept])

    page.add("<h2 id='embedding-section'>Natural and adversarial features</h2>")
    for name, fig in _embedding_figures(report_runs):
        page.figure(fig, "embedding", name)
    missing("embeddings", [r.name for r in report_runs if r.features is None])

    page.add("<h2 id='components-section'>AFD component norms</h2>")
    afd_like = [r for r in report_runs if r.components is not None or _has_components(r.method)]
    if not afd_like:
        page.add("<p class='legend'>No run of a method with disentangled components (AFD) in this report.</p>")
    for r in afd_like:
        if r.components is not None:
            title = f"{r.name}: AFD components ‖f1‖, ‖f2‖, cos(f1, f2)"
            page.figure(component_norms(r.components, title=title), "components", r.name)
    missing("AFD component norms", [r.name for r in afd_like if r.components is None])

    page.add("<h2 id='alignment-section'>Alignment of natural and adversarial features</h2>")
    measured = [r.geometry for r in report_runs if r.geometry is not None]
    if measured:
        page.figure(alignment_bars(pd.concat(measured, ignore_index=True), colors=colors), "alignment")
        page.add("<p class='legend'>misaligned: share of features nearer another class's centroid; alignment: mean "
                 "squared distance of unit-normalised natural and adversarial features; uniformity: log mean Gaussian "
                 "potential; knn / linear: accuracy of classifiers fitted on training features.</p>")
    missing("alignment measures", [r.name for r in report_runs if r.geometry is None])

    page.add("<h2 id='config-section'>Configuration of each run</h2>")
    for r in report_runs:
        page.add(_config_html(r))

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [f"<h1>featgap report</h1><p class='meta'>{len(report_runs)} run(s): {html.escape(', '.join(names))} · "
              f"written {now} by featgap {html.escape(featgap.__version__)}"
              f"{' · measured with --compute' if computed else ''}</p>"]
    header += [f"<p class='warning'>warning: {html.escape(w)}</p>" for w in warnings]
    if not_measured:
        header.append("<p class='missing'>Some sections were not measured (they need the models' features): "
                      "rerun with --compute.</p>")
    body = "\n".join(header + page.blocks)
    from plotly.offline import get_plotlyjs

    text = _TEMPLATE.format(title=html.escape(f"featgap report: {', '.join(names)}"), style=_STYLE,
                            plotlyjs=get_plotlyjs(), body=body, script=_DRAW)
    return text, not_measured


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1250px;
       color: #222; padding: 0 16px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; } .legend { color: #555; font-size: 13px; }
.warning { color: #8a4b00; background: #fff4e0; padding: 6px 10px; border-left: 4px solid #e69500; }
.missing { color: #777; font-style: italic; }
table#results { border-collapse: collapse; font-size: 13px; width: 100%; }
#results th, #results td { border-bottom: 1px solid #e4e4e4; padding: 5px 7px; text-align: left; vertical-align: top; }
#results th { background: #f2f2f2; }
#results td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#results td.eps { white-space: nowrap; }
#results td.checks.ok { color: #1b7f3b; } #results td.checks.flag { color: #b00020; min-width: 300px; }
#results td.checks ul { margin: 4px 0 0 0; padding-left: 16px; }
#results tr.flagged td:first-child { border-left: 4px solid #b00020; }
.figure { margin: 12px 0; min-height: 200px; }
details.config { margin: 6px 0; } details.config summary { cursor: pointer; font-weight: 600; }
details.config table { font-size: 13px; border-collapse: collapse; margin: 6px 0; }
details.config th { text-align: left; padding: 2px 10px 2px 0; color: #555; }
details.config pre { background: #f7f7f7; padding: 8px; font-size: 12px; max-height: 360px; overflow: auto; }
"""

_DRAW = """
for (const spec of document.querySelectorAll('script.figure-spec')) {
  const fig = JSON.parse(spec.textContent);
  Plotly.newPlot(document.getElementById(spec.dataset.figure), fig.data, fig.layout,
                 {responsive: true, displaylogo: false});
}
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
<script type="text/javascript">{plotlyjs}</script>
</head>
<body>
{body}
<script type="text/javascript">{script}</script>
</body>
</html>
"""


# ---------------------------------------------------------------- the one entry point
def write(run_dirs: Sequence[str | Path], path: str | Path, *, compute: bool = False, n: int = DEFAULT_N,
          seed: int = 0, device: str = "auto", data_root: str | Path = "data",
          stderr: TextIO | None = None, evaluation: dict | None = None,
          measured: Mapping[str | Path, Measurement] | None = None) -> Report:
    """Write the standalone HTML report of ``run_dirs`` to ``path`` (see the module docstring).

    Arguments:
        run_dirs (list[path]): finished run directories (``featgap train``), in the order shown.
        path (path): the HTML file to write; its folder must exist. Written atomically.
        compute (bool): probe the models for what the runs lack (and evaluate runs without
            ``eval.json``); otherwise only what the directories hold is shown. (Default: False)
        n (int): test images probed per run with ``compute``. (Default: :data:`DEFAULT_N`)
        seed (int): the subsets' and attacks' seed. (Default: 0)
        device (str): where the models run with ``compute``: auto (cuda > mps > cpu), cpu, cuda, …
            (Default: ``"auto"``)
        data_root (path): where datasets live. (Default: ``"data"``)
        stderr (file | None): where warning lines go. (Default: ``sys.stderr``)
        evaluation (dict | None): which evaluation of each run to show, by settings: keywords of
            :func:`featgap.runs.read_eval`, e.g. ``{"n": 150, "autoattack": True}``. (Default:
            ``None``, the largest evaluation of each run, AutoAttack preferred)
        measured (dict | None): run directory → its :class:`Measurement`, already computed with
            :func:`measure_run` (e.g. in a worker process); with ``compute`` only the other runs are
            measured here. (Default: ``None``)

    Returns:
        a :class:`Report`: the path, its size in bytes, seconds taken, the warnings and the
        "not measured" lines the page shows.

    Examples::
        >>> r = write(["runs/demo/standard", "runs/demo/pgd_at"], "report.html", compute=True, n=200)
        >>> print(r.line())     # report: report.html (5.1 MB, 9 s)
    """
    start = time.perf_counter()
    out = check_output(path)
    report_runs = read_runs(run_dirs, evaluation)
    if compute and n < 10:
        raise FeatgapError(f"--n must be at least 10 (every class needs images); got {n}")
    warnings = [w for w in (dataset_warning(report_runs),) if w]
    for w in warnings:
        print(f"featgap: warning: {w}", file=stderr or sys.stderr)
    done = {Path(k): m for k, m in (measured or {}).items()}
    for run in report_runs:
        if run.path in done:
            done[run.path].apply(run)
    todo = [r for r in report_runs if r.path not in done]
    if compute and todo:
        measure(todo, n=n, seed=seed, device=device, data_root=data_root)
    text, not_measured = build_page(report_runs, warnings, computed=compute)
    cache.write_text(out, text)
    return Report(out, out.stat().st_size, time.perf_counter() - start, warnings, not_measured)
