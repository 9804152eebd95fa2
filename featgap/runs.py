"""Run directories: the one unit that training writes and everything else reads.

::

    RUN_DIR/
      config.json          resolved TrainConfig, model card, package versions, seed, git commit
      metrics.jsonl        one JSON object per epoch (loss, accuracies, feature gap, lr, time)
      checkpoints/
        last.safetensors   latest training state (model, EMA, optimiser buffers, RNG) for resume
        state.json         epoch and step of last.safetensors
        model.safetensors  final weights (the EMA weights when EMA is on), written at the end
        epoch_001.safetensors, epoch_002.safetensors, ...
                           kept epochs (``featgap train --keep-checkpoints EVERY``): the plain
                           model exported after epoch K, like model.safetensors; never overwritten
                           by later epochs, and untouched by resume
      summary.json         final numbers; present only once training has finished
      eval.json            written by ``featgap eval``

Weights are stored with safetensors and never unpickled. Every file is written atomically
(temporary file + rename), so an interrupted run never leaves a half-written file.

Keys of ``last.safetensors``: ``model.*`` and ``ema.*`` hold the module the method trains
(for AFD a student with a disentangler, for AFA a model with a projection head), ``optim.*``
and ``rng.*`` the rest of the training state. When that module is not the plain model, the
method's export of it (``Method.export``: the plain model the run deploys) is stored beside it
as ``export.model.*`` and ``export.ema.*``. So :func:`load` reads the plain model of any run,
finished or not, without knowing its method; the method itself rebuilds its training-time
module (``Method.load_wrapper``, e.g. ``featgap.methods.afd.load_student``).

Kept epochs are read with ``load(run_dir, epoch=K)``; :func:`checkpoint_epochs` lists them.

>>> model = featgap.runs.load("runs/demo/pgd_at")       # ready to use, in eval mode
>>> featgap.runs.checkpoint_epochs("runs/demo/pgd_at")   # e.g. [2, 4, 6, 8] with --keep-checkpoints 2
>>> featgap.runs.load("runs/demo/pgd_at", epoch=4)       # the model as it was after epoch 4
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from featgap.errors import FeatgapError
from featgap.cache import atomic_write

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
FINAL, LAST, STATE = "checkpoints/model.safetensors", "checkpoints/last.safetensors", "checkpoints/state.json"
_KEPT = re.compile(r"epoch_(\d+)\.safetensors")


def epoch_checkpoint(run_dir: str | Path, epoch: int) -> Path:
    """Where the model kept after ``epoch`` lives: ``RUN_DIR/checkpoints/epoch_{epoch:03d}.safetensors``."""
    return Path(run_dir) / "checkpoints" / f"epoch_{int(epoch):03d}.safetensors"


def checkpoint_epochs(run_dir: str | Path) -> list[int]:
    """The epochs whose model a run kept (``--keep-checkpoints``), ascending; ``[]`` when it kept none.

    A folder that is not a run directory is a one-line :class:`FeatgapError`.
    """
    read_config(run_dir)
    folder = Path(run_dir) / "checkpoints"
    found = (_KEPT.fullmatch(p.name) for p in folder.iterdir()) if folder.is_dir() else ()
    return sorted(int(m.group(1)) for m in found if m)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, atomically (a reader never sees half a file)."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save tensors with safetensors, atomically (contiguous CPU copies)."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(cpu, tmp))


def append_jsonl(path: Path, obj: dict) -> None:
    """Append one line; the whole file is rewritten atomically so a crash never cuts a line."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    atomic_write(path, lambda tmp: Path(tmp).write_text(old + json.dumps(obj, default=str) + "\n"))


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise FeatgapError(f"cannot read weights {path}: {err}") from None


# ---------------------------------------------------------------- provenance
def environment_info() -> dict[str, Any]:
    """Versions of Python and the main packages, and the featgap git commit if known."""
    import featgap

    info: dict[str, Any] = {"python": platform.python_version(), "featgap": featgap.__version__,
                            "torch": torch.__version__}
    for name in ("torchvision", "numpy", "pyautoattack"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - absent optional package
            info[name] = None
    try:
        repo = Path(featgap.__file__).resolve().parent.parent
        info["git_commit"] = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                            text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


# ---------------------------------------------------------------- reading runs
def read_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FeatgapError(f"{run_dir} is not a featgap run directory (no {CONFIG})")
    return json.loads(path.read_text())


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run, in order."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_summary(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.exists() else None


def build_model(card: dict) -> nn.Module:
    """An untrained model of the architecture a config's ``model_card`` describes."""
    from featgap import models

    return models.create(card["name"], num_classes=card["num_classes"], in_channels=card["in_channels"],
                         mean=card["mean"], std=card["std"])


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with a one-line error when the weights belong to another architecture."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shape:
        what = (f"{len(missing)} missing" if missing else "") + (f" {len(unexpected)} unexpected" if unexpected else "")
        what += f" {len(shape)} of another shape (e.g. {shape[0]})" if shape else ""
        raise FeatgapError(f"{source} does not fit model {type(model).__name__}: {what.strip()} tensors "
                           f"(a checkpoint of another architecture or dataset?)")
    model.load_state_dict(state)


def load(run_dir: str | Path, which: str = "final", device: torch.device | str = "cpu", *,
         epoch: int | None = None) -> nn.Module:
    """The trained (plain) model of a run, the same way for every method, in eval mode on ``device``.

    ``which="final"`` gives the exported weights (EMA weights when EMA was on); while a run is
    still unfinished it falls back to the latest checkpoint. ``which="last"`` always reads the
    latest training checkpoint (the raw, non-EMA weights). From a checkpoint, the exported
    weights ``export.*`` are read when the method stored them (it trains a wrapper), else the
    trained module's own. ``epoch=K`` reads the model kept after epoch ``K`` instead
    (:func:`checkpoint_epochs`; exported like the final one); an epoch that was not kept is a
    one-line :class:`FeatgapError`.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    model = build_model(config["model_card"])
    final, last = run_dir / FINAL, run_dir / LAST
    if which not in ("final", "last"):
        raise FeatgapError(f"which must be 'final' or 'last', got {which!r} (for a kept epoch pass epoch=K)")
    if epoch is not None:
        if which != "final":
            raise FeatgapError("give which='last' or epoch=K, not both")
        path = epoch_checkpoint(run_dir, epoch)
        if not path.is_file():
            kept = checkpoint_epochs(run_dir)
            have = (f"it kept epochs {', '.join(map(str, kept))}" if kept else
                    "it kept none (train with --keep-checkpoints EVERY to keep them)")
            raise FeatgapError(f"{run_dir} has no checkpoint of epoch {epoch}: {have}")
        state = read_tensors(path)
    elif which == "final" and final.exists():
        state = read_tensors(final)
    elif last.exists():
        full = read_tensors(last)
        kind = "ema" if which == "final" and any(k.startswith("ema.") for k in full) else "model"
        prefix = f"export.{kind}." if any(k.startswith(f"export.{kind}.") for k in full) else f"{kind}."
        state = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
        if not prefix.startswith("export.") and set(state) - set(model.state_dict()):
            raise FeatgapError(f"{run_dir} is unfinished and its checkpoint holds only the training-time model of "
                               f"method {config['config']['method']} (written by an older featgap); resume it with "
                               "the same featgap train command, or read it with the method's load_wrapper")
    else:
        raise FeatgapError(f"{run_dir} has no checkpoint yet")
    load_state_into(model, state, str(run_dir))
    return model.to(device).eval()


def load_init_weights(model: nn.Module, source: str | Path, model_name: str) -> dict:
    """Load starting weights for fine-tuning from a run directory or a ``.safetensors`` file.

    Returns a short description of the source for ``config.json``. A run of another
    architecture, or a file whose tensors do not fit, is a one-line :class:`FeatgapError`.
    """
    path = Path(source)
    if path.is_dir():
        card = read_config(path)["model_card"]
        if card["name"] != model_name:
            raise FeatgapError(f"--init {path} holds a {card['name']} model, but --model is {model_name}")
        trained = load(path)
        load_state_into(model, trained.state_dict(), str(path))
        return {"run": str(path.resolve()), "model": card["name"]}
    if path.is_file():
        load_state_into(model, read_tensors(path), str(path))
        return {"file": str(path.resolve())}
    raise FeatgapError(f"--init {path} not found (give a run directory or a .safetensors file)")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
