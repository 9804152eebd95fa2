"""featgap report: the page shows the runs' own numbers and figures, says what it did not measure,
refuses bad input in one line without writing anything, and renders offline in a real browser.

The numbers are checked by reading the page back: the results table's cells (``data-key``,
``data-value`` and the shown text) against each ``eval.json``, and every figure's embedded JSON
spec against the run files or an independent recomputation with the probes.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from featgap import report, runs
from featgap.cli import REPORT_N, main
from featgap.errors import FeatgapError
from featgap.plots.results import wilson_interval

N = 40
"""Test images the computed report probes (the widget_runs fixture's subset size)."""


# ---------------------------------------------------------------- reading a page back
class _Table(HTMLParser):
    """The results table's cells: ``rows[run][key] = (data-value, shown text)``, and each row's text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, tuple[str, str]]] = {}
        self.row_text: list[str] = []
        self._in_table = False
        self._cell: dict | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id") == "results":
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.row_text.append("")
        elif self._in_table and tag == "td":
            self._cell, self._text = a, []
            if self.row_text and self.row_text[-1]:
                self.row_text[-1] += " | "

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag == "td" and self._cell is not None:
            text = "".join(self._text).strip()
            if "data-key" in self._cell:
                self.rows.setdefault(self._cell["data-run"], {})[self._cell["data-key"]] = (
                    self._cell.get("data-value", ""), text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text.append(data)
        if self._in_table and self.row_text:
            self.row_text[-1] += data


def table_of(page: str) -> _Table:
    parser = _Table()
    parser.feed(page)
    return parser


SPEC = re.compile(r'<script type="application/json" class="figure-spec" data-figure="([^"]+)" '
                  r'data-kind="([^"]*)" data-run="([^"]*)">(.*?)</script>', re.S)


def figures_of(page: str) -> list[tuple[str, str, dict]]:
    """``(kind, run, figure spec)`` of every figure embedded in the page, in order."""
    return [(kind, run, json.loads(body)) for _, kind, run, body in SPEC.findall(page)]


def values(v: object) -> np.ndarray:
    """A trace's data array: a plain list, or plotly's typed-array spec ``{"dtype", "bdata", "shape"}``."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape is not None:
            a = a.reshape([int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape)
        return a
    return np.asarray(v, dtype=float)


def trace(fig: dict, name: str) -> dict:
    found = [t for t in fig["data"] if t.get("name") == name]
    assert len(found) == 1, (name, [t.get("name") for t in fig["data"]])
    return found[0]


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def dirs(widget_runs) -> list[Path]:
    return [widget_runs[name] for name in ("standard", "pgd_at", "afd")]


@pytest.fixture(scope="module")
def computed(dirs, tmp_path_factory) -> tuple[str, report.Report]:
    """The report of the three tiny runs with --compute on N images (a few seconds)."""
    out = tmp_path_factory.mktemp("report") / "computed.html"
    result = report.write(dirs, out, compute=True, n=N, device="cpu")
    return out.read_text(), result


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- the table
def test_the_table_shows_each_eval_json_exactly(dirs, tmp_path):
    out = tmp_path / "r.html"
    result = report.write(dirs, out)
    table = table_of(out.read_text())
    digits = {"clean": 1, "pgd": 1, "autoattack": 1, "avg": 1, "robust": 1, "gap_l2": 3, "gap_linf": 3,
              "gap_cosine": 4}
    assert set(table.rows) == {d.name for d in dirs}
    for d in dirs:
        ev = json.loads((d / "eval.json").read_text())
        row = table.rows[d.name]
        assert row["n"] == (str(ev["n"]), str(ev["n"]))
        for key, k in digits.items():
            expected = ev["feature_gap"][key[4:]] if key.startswith("gap_") else ev[key]
            exact, shown = row[key]
            if expected is None:  # e.g. AutoAttack skipped: shown as a dash, never as a made-up number
                assert (exact, shown) == ("", "—"), key
            else:
                assert float(exact) == expected and shown.split("[")[0] == f"{expected:.{k}f}", (d.name, key)
                if key in report.ACCURACY_KEYS:  # each accuracy with its 95 % Wilson interval over n images
                    lo, hi = wilson_interval(expected, ev["n"])
                    assert shown.endswith(f"[{lo:.1f}, {hi:.1f}]"), (d.name, key, shown)
                else:
                    assert "[" not in shown, (d.name, key, shown)
    assert result.bytes == out.stat().st_size and result.bytes < 10e6


def test_the_report_picks_an_evaluation_by_settings(dirs, tmp_path):
    """Three evaluations kept side by side (a legacy eval.json with n = 40, n = 80 and n = 120 without
    AutoAttack): the report shows the one its settings name, by default the largest n."""
    run = _copy_run(dirs[0], tmp_path / "several")
    legacy = json.loads((run / "eval.json").read_text())
    for n, clean in ((80, 12.5), (120, 25.0)):
        assert runs.write_eval(run, {**legacy, "n": n, "clean": clean}).name == f"eval-n{n}-pgd5-no-autoattack.json"
    assert len(runs.eval_files(run)) == 3
    for settings, n, clean in (({}, 120, 25.0), ({"n": 80}, 80, 12.5), ({"n": 40}, 40, legacy["clean"])):
        out = tmp_path / f"r{n}.html"
        report.write([run], out, evaluation=settings)
        row = table_of(out.read_text()).rows["several"]
        assert row["n"][0] == str(n) and float(row["clean"][0]) == clean, settings
    assert 'title="eval-n80-pgd5-no-autoattack.json"' in (tmp_path / "r80.html").read_text()
    out = tmp_path / "none.html"
    report.write([run], out, evaluation={"n": 500})
    assert "not evaluated: no evaluation" in out.read_text()


def test_failed_sanity_checks_sit_in_their_runs_row(dirs, tmp_path):
    flagged = _copy_run(dirs[1], tmp_path / "flagged")
    ev = json.loads((flagged / "eval.json").read_text())
    ev["checks"][1].update(ok=False, detail="CE-PGD at ε/2: 1.00 < CE-PGD at ε: 2.00")
    runs.write_json(flagged / "eval.json", ev)
    out = tmp_path / "r.html"
    report.write([dirs[0], flagged], out)
    table = table_of(out.read_text())
    rows = {text.split(" | ")[0].strip(): text for text in table.row_text}
    total = len(ev["checks"])
    assert f"{total - 1}/{total} passed" in rows["flagged"] and "FLAG" in rows["flagged"]
    assert ev["checks"][1]["name"] in rows["flagged"] and "CE-PGD at ε/2: 1.00" in rows["flagged"]
    assert f"{total}/{total} passed" in rows[dirs[0].name] and "FLAG" not in rows[dirs[0].name]


def test_without_compute_the_page_says_what_was_not_measured(dirs, tmp_path):
    unevaluated = _copy_run(dirs[0], tmp_path / "unevaluated")
    (unevaluated / "eval.json").unlink()
    out = tmp_path / "r.html"
    result = report.write([unevaluated, dirs[2]], out)
    page = out.read_text()
    assert "not evaluated: no evaluation" in page
    assert runs.eval_files(unevaluated) == [], "without --compute nothing is measured or written"
    for section in ("feature gap per layer", "gap vs ε", "embeddings", "AFD component norms", "alignment measures"):
        assert f"{section}: {report.NOT_MEASURED}" in page, section
    assert any("AFD component norms" in line and "afd" in line for line in result.not_measured)
    kinds = [kind for kind, _, _ in figures_of(page)]
    assert kinds == ["gap_vs_robust", "training"], kinds  # only what the directories hold


def test_a_probe_csv_gives_the_per_layer_gap_without_compute(dirs, tmp_path, capsys):
    run = _copy_run(dirs[1], tmp_path / "probed")
    assert main(["probe", str(run), "--n", "30", "--steps", "2", "--eps", "0.1", "0.3", "--n-boot", "0"]) == 0
    capsys.readouterr()
    import pandas as pd

    from featgap.probes import summarize

    table = pd.read_csv(run / "probe.csv")
    out = tmp_path / "r.html"
    report.write([run], out)
    figs = {kind: fig for kind, _, fig in figures_of(out.read_text())}
    expected = summarize(table[table["eps"] == 0.3], by="layer", metrics=["rel_l2"], n_boot=0)
    bars = trace(figs["gap_by_layer"], "probed")
    assert bars["x"] == list(expected["layer"])
    np.testing.assert_allclose(values(bars["y"]), expected["rel_l2_mean"], rtol=1e-12)
    line = trace(figs["gap_vs_eps"], "probed")
    np.testing.assert_allclose(values(line["x"]), [0.1, 0.3])


def test_config_date_and_version_are_in_the_page(dirs, tmp_path):
    import featgap

    out = tmp_path / "r.html"
    report.write(dirs[:1], out)
    page = out.read_text()
    config = runs.read_config(dirs[0])
    assert f"by featgap {featgap.__version__}" in page and re.search(r"written \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    details = re.search(r'<details class="config" data-run="standard">(.*?)</details>', page, re.S).group(1)
    assert "standard" in details and f"<th>seed</th><td>{config['config']['seed']}</td>" in details
    commit = config["environment"]["git_commit"]
    assert commit is None or commit in details
    assert "<th>versions</th><td>python " in details


# ---------------------------------------------------------------- the figures, recomputed
def test_every_computed_figure_comes_from_the_runs(computed, dirs, widget_runs):
    from featgap import data
    from featgap.methods.afd import load_student
    from featgap.probes import adversarial_examples, component_norms, gap_table, geometry_table, summarize

    page, result = computed
    assert result.not_measured == []
    figs = figures_of(page)
    by_kind: dict[str, list] = {}
    for kind, run, fig in figs:
        by_kind.setdefault(kind, []).append((run, fig))
    assert set(by_kind) == {"gap_vs_robust", "training", "gap_by_layer", "gap_vs_eps", "embedding", "components",
                            "alignment"}
    # training curves and the gap trajectory: metrics.jsonl, epoch by epoch
    (_, training), = by_kind["training"]
    for d in dirs:
        metrics = runs.read_metrics(d)
        line = trace(training, f"{d.name} · monitor clean")
        np.testing.assert_allclose(values(line["y"]), [m["monitor_clean_acc"] for m in metrics])
    # gap vs robust: eval.json's feature gap
    (_, scatter), = by_kind["gap_vs_robust"]
    xs = dict(zip(scatter["data"][0]["text"], values(scatter["data"][0]["x"])))
    for d in dirs:
        assert xs[d.name] == json.loads((d / "eval.json").read_text())["feature_gap"]["l2"]
    # per layer, vs ε, components and alignment: the probes recomputed here on the same images
    test = data.load("mnist5k", "test")
    x, y = test.stratified_subset(N, 0).tensors()
    train = data.load("mnist5k", "train")
    reference = train.stratified_subset(N, 0).tensors()
    (_, layers_fig), = by_kind["gap_by_layer"]
    (_, eps_fig), = by_kind["gap_vs_eps"]
    (_, alignment), = by_kind["alignment"]
    align = {t["name"]: dict(zip(t["x"], values(t["y"]))) for t in alignment["data"]}
    for d in dirs:
        model = runs.load(d)
        torch.manual_seed(0)
        x_adv = adversarial_examples(model, x, y, eps=0.3, steps=10, seed=0)
        table = gap_table(model, x, y, x_adv)
        expected = summarize(table, by="layer", metrics=["rel_l2"], n_boot=0)
        np.testing.assert_allclose(values(trace(layers_fig, d.name)["y"]), expected["rel_l2_mean"], rtol=1e-6)
        line = trace(eps_fig, d.name)
        np.testing.assert_allclose(values(line["x"]), [0.0, 0.075, 0.15, 0.225, 0.3])
        assert values(line["y"])[0] == 0.0  # ε = 0: no attack, no gap
        assert values(line["y"])[-1] == pytest.approx(table[table["layer"] == "pool"]["l2"].mean(), rel=1e-6)
        geometry = geometry_table(model, x, y, x_adv, layers=["pool"], reference=reference).iloc[0]
        for metric, bars in align.items():
            assert bars[d.name] == pytest.approx(geometry[metric], rel=1e-6, abs=1e-9), (d.name, metric)
    # AFD's components: the student's, on the same adversarial examples
    (run, comp), = by_kind["components"]
    assert run == "afd"
    afd = widget_runs["afd"]
    torch.manual_seed(0)
    x_adv = adversarial_examples(runs.load(afd), x, y, eps=0.3, steps=10, seed=0)
    norms = component_norms(load_student(str(afd)), x, y, x_adv)
    natural = comp["data"][0]  # the norm bars of the natural inputs (plots.component_norms' first trace)
    assert natural["name"] == "natural"
    nat = norms[norms["input"] == "nat"]
    np.testing.assert_allclose(values(natural["y"]), [nat["f1_norm"].mean(), nat["f2_norm"].mean()], rtol=1e-5)


def test_measurements_made_elsewhere_give_the_same_page(computed, dirs, tmp_path, monkeypatch):
    """``featgap demo`` probes each run in a worker process (report.measure_run) and hands the
    measurements to write(): the figures equal those write(compute=True) measures itself."""
    import pickle

    made = {d: pickle.loads(pickle.dumps(report.measure_run(report.read_runs([d])[0], n=N, device="cpu")))
            for d in dirs}  # through pickle, as a worker sends them back

    def no_second_time(*args, **kwargs):
        raise AssertionError("write() measured a run it was given the measurements of")

    monkeypatch.setattr(report, "measure_run", no_second_time)
    out = tmp_path / "given.html"
    result = report.write(dirs, out, compute=True, n=N, device="cpu", measured=made)
    assert result.not_measured == []
    page, _ = computed
    assert figures_of(out.read_text()) == figures_of(page)


def test_embeddings_one_map_per_run_and_before_after_for_a_fine_tuned_run(computed):
    page, _ = computed
    maps = {run: fig for kind, run, fig in figures_of(page) if kind == "embedding"}
    assert set(maps) == {"standard", "pgd_at", "afd"}
    titles = [a["text"] for a in maps["afd"]["layout"]["annotations"]]
    assert titles == ["before: standard", "after: afd"], titles  # afd was fine-tuned from standard (--init)
    for run, fig in maps.items():
        natural = [t for t in fig["data"] if t.get("name") == "natural"]
        assert len(natural) == (2 if run == "afd" else 1)
        for t in natural:
            assert list(values(t["customdata"]).astype(int)) == list(range(N))  # every probed image, once


# ---------------------------------------------------------------- bad input
def _only_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_input_is_one_line_exit_2_and_no_file(dirs, tmp_path, capsys):
    out = tmp_path / "r.html"
    training = _copy_run(dirs[0], tmp_path / "training")
    (training / runs.SUMMARY).unlink()
    cases = {"not a run": ([str(tmp_path)], "not a featgap run directory"),
             "missing": ([str(tmp_path / "nowhere")], "does not exist"),
             "still training": ([str(training)], "is still training"),
             "compute with too few images": ([str(dirs[0]), "--compute", "--n", "5"], "--n must be at least 10")}
    for case, (argv, message) in cases.items():
        assert main(["report", *argv, "-o", str(out)]) == 2, case
        assert message in _only_line(capsys), case
        assert not out.exists(), case
    missing_folder = tmp_path / "no" / "such" / "r.html"
    assert main(["report", str(dirs[0]), "-o", str(missing_folder)]) == 2
    assert "does not exist" in _only_line(capsys) and not missing_folder.parent.exists()
    assert main(["report", str(dirs[0]), "-o", str(tmp_path)]) == 2
    assert "is a folder" in _only_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training"], "no file left behind"


def test_a_failure_while_building_leaves_no_half_page(dirs, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    out.write_text("the previous report")

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(report, "build_page", broken)
    with pytest.raises(RuntimeError):
        report.write(dirs[:1], out)
    assert out.read_text() == "the previous report" and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_mixed_datasets_warn_on_stderr_and_in_the_page(dirs, tmp_path, capsys):
    other = _copy_run(dirs[0], tmp_path / "other")
    config = runs.read_config(other)
    config["config"]["dataset"] = "digits"
    runs.write_json(other / "config.json", config)
    out = tmp_path / "r.html"
    assert main(["report", str(dirs[1]), str(other), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "different datasets" in warning[0] and "digits: other" in warning[0]
    assert "<p class='warning'>warning: these runs were trained on different datasets" in out.read_text()
    assert f"report: {out}" in captured.out


def test_cli_default_n_is_the_modules():
    assert REPORT_N == report.DEFAULT_N


def test_compute_evaluates_a_run_without_eval_json(dirs, tmp_path, monkeypatch):
    """--compute runs featgap eval first (here with AutoAttack stubbed out: its cost is not the point)."""
    import featgap.evaluate

    run = _copy_run(dirs[0], tmp_path / "fresh")
    (run / "eval.json").unlink()
    real = featgap.evaluate.evaluate
    monkeypatch.setattr(featgap.evaluate, "evaluate",
                        lambda *a, **k: real(*a, **{**k, "autoattack": False, "pgd_steps": 2}))
    out = tmp_path / "r.html"
    report.write([run], out, compute=True, n=20, device="cpu")
    assert runs.eval_files(run) == [run / "eval-n20-pgd2-no-autoattack.json"]  # named by its settings
    ev = json.loads((run / "eval-n20-pgd2-no-autoattack.json").read_text())
    assert ev["n"] == 20 and ev["eps"] == 0.3
    assert table_of(out.read_text()).rows["fresh"]["clean"][0] == repr(ev["clean"])


# ---------------------------------------------------------------- in a real browser
@pytest.mark.browser
@pytest.mark.slow
def test_the_demos_report_renders_offline_in_chromium(widget_runs, tmp_path):
    """The demo's report-writing function on the tiny runs, opened from file:// with the network cut."""
    from jupyter_browser import chromium, unavailable

    if unavailable() is not None and "jupyterlab" not in str(unavailable()):
        pytest.skip(str(unavailable()))
    from featgap.demo import write_report

    root = tmp_path / "demo"
    for name in ("standard", "pgd_at", "afd"):
        _copy_run(widget_runs[name], root / name)
    config = runs.read_config(root / "afd")  # keep afd's --init pointing at its standard run
    config["config"]["init"] = str(root / "standard")
    runs.write_json(root / "afd" / "config.json", config)
    result = write_report(root, ("standard", "pgd_at", "afd"), n=N, device="cpu")
    assert result.path == root / "report.html" and result.bytes <= 10e6
    html_text = result.path.read_text()
    assert re.findall(r"<(?:script|link)[^>]*\b(?:src|href)=", html_text) == [], "nothing loaded from elsewhere"
    assert html_text.count("* plotly.js v") == 1 and html_text.count("Plotly.newPlot") == 1  # embedded once
    expected = len(figures_of(html_text))
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1300, "height": 900}, offline=True)
        outside: list[str] = []

        def only_files(route) -> None:  # noqa: ANN001 - a playwright Route
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(result.path.resolve().as_uri())
        page.wait_for_function("() => [...document.querySelectorAll('div.figure')]"
                               ".every(d => d.querySelector('svg.main-svg, canvas'))", timeout=60_000)
        drawn = page.evaluate("() => [...document.querySelectorAll('div.figure')].map(d => [d.dataset.kind, "
                              "d.querySelectorAll('svg.main-svg, canvas').length, "
                              "d.querySelectorAll('.plot .trace, .plot path, .trace').length])")
        page.screenshot(path=str(tmp_path / "report.png"))
        page.screenshot(path=str(tmp_path / "report-full.png"), full_page=True)
        context.close()
    assert len(drawn) == expected == 9, drawn  # 2 + per-layer + ε + 3 maps + components + alignment
    assert all(svgs > 0 and marks > 0 for _, svgs, marks in drawn), drawn
    assert errors == [], errors
    assert outside == [], f"the page asked the network for {outside}"
    assert (tmp_path / "report.png").stat().st_size > 10_000
    print(f"report {result.bytes / 1e6:.1f} MB in {result.seconds:.1f} s; screenshots in {tmp_path}")


def test_the_init_run_is_found_by_path_or_after_a_move_by_its_name(tmp_path):
    def run(path: Path, init: str | None = None) -> report.RunData:
        return report.RunData(path.name, path, {"config": {"init": init}}, None)

    standard, other = run(tmp_path / "demo" / "standard"), run(tmp_path / "demo" / "pgd_at")
    afd = run(tmp_path / "demo" / "afd", init=str(tmp_path / "demo" / "standard"))
    assert report.init_run(afd, [standard, other, afd]) is standard
    moved = run(tmp_path / "copy" / "afd", init="/somewhere/else/standard")  # the folder was copied elsewhere
    assert report.init_run(moved, [standard, other, moved]) is standard
    twins = [standard, run(tmp_path / "b" / "standard"), moved]
    assert report.init_run(moved, twins) is None  # two folders of that name: no guess
    assert report.init_run(other, [standard, other]) is None
