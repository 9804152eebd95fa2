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
      .lock                while a process writes the run: its PID and host (:class:`RunLock`)
      eval-n150.json, eval-n1000-no-autoattack.json, ...
                           one file per evaluation, named by its settings (:func:`eval_path`);
                           :func:`read_eval` picks one by settings (a legacy ``eval.json`` is read too)

Weights are stored with safetensors and never unpickled. Every file is written atomically
(temporary file + rename) and flushed to disk, so an interrupted run never leaves a half-written
file; a write that fails (disk full, no permission) is a one-line :class:`WriteError` and leaves
the file as it was. One process at a time writes a run directory (:class:`RunLock`).

Keys of ``last.safetensors``: ``model.*`` and ``ema.*`` hold the module the method trains
(for AFD a student with a disentangler, for AFA a model with a projection head), ``optim.*``
and ``rng.*`` the rest of the training state, ``state.epoch`` and ``state.step`` where it stands
(what resume reads; ``state.json`` repeats them for people). When that module is not the plain model, the
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
import os
import platform
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from featgap.errors import FeatgapError
from featgap.cache import atomic_write

CONFIG, METRICS, SUMMARY, LOCK = "config.json", "metrics.jsonl", "summary.json", ".lock"
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


class WriteError(FeatgapError):
    """A file of a run directory could not be written (disk full, no permission); the file as it was is kept."""


def _write(path: Path, write: Callable[[str], None]) -> None:
    """:func:`featgap.cache.atomic_write`, flushed to disk; a failed write (disk full, no permission) is a
    one-line :class:`WriteError` naming the file, and the file as it was before is left in place."""
    try:
        atomic_write(Path(path), write, durable=True)
    except (OSError, SafetensorError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else (str(err).splitlines() or ["?"])[0]
        raise WriteError(f"cannot write {path}: {reason}") from None


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    _write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, atomically (a reader never sees half a file)."""
    _write(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save tensors with safetensors, atomically (contiguous CPU copies)."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _write(Path(path), lambda tmp: save_file(cpu, tmp))


def append_jsonl(path: Path, obj: dict) -> None:
    """Append one line; the whole file is rewritten atomically so a crash never cuts a line."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    _write(path, lambda tmp: Path(tmp).write_text(old + json.dumps(obj, default=str) + "\n"))


def truncate_metrics(run_dir: str | Path, epochs: int) -> list[dict]:
    """Keep in ``metrics.jsonl`` only the records of epochs ``1 .. epochs`` (each once, the first kept); return them.

    Resume calls it with the epoch of the training state it restores: a record written after
    that state (a process killed between an epoch's metrics line and its checkpoint) is
    dropped, and the epoch it describes is trained again and recorded once.
    """
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    kept: dict[int, dict] = {}
    lines = path.read_text().splitlines()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if isinstance(epoch, int) and 1 <= epoch <= epochs:
            kept.setdefault(epoch, record)
    records = [kept[e] for e in sorted(kept)]
    if len(records) != len([line for line in lines if line.strip()]):
        write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in records))
    return records


# ---------------------------------------------------------------- one writer per run directory
class RunLock:
    """``RUN_DIR/.lock``: at most one process writes a run directory at a time.

    The lock file holds the owner's PID and host name (JSON). It is created atomically
    (``O_CREAT | O_EXCL``), so of two processes starting at once exactly one gets it; the other
    gets a one-line :class:`FeatgapError`. A lock left by a process that died without releasing
    it (killed, power cut) is *stale*: when its PID no longer runs on this host it is taken
    over. A lock written on another host (a shared file system) cannot be checked and is
    respected; delete the file by hand if its owner is gone. Use it as a context manager::

        with runs.RunLock("runs/pgd_at"):
            ...  # write the run directory

    The folder is created if needed, and removed again on release if it is still empty.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._content: str | None = None
        self._created_dir = False

    def acquire(self) -> RunLock:
        if self._content is not None:
            return self
        if not self.run_dir.exists():
            try:
                self.run_dir.mkdir(parents=True)
                self._created_dir = True
            except FileExistsError:
                pass
            except OSError as err:
                raise FeatgapError(f"cannot create {self.run_dir}: {err.strerror or err}") from None
        content = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                              "token": uuid.uuid4().hex}) + "\n"
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                seen = self._read()
                if seen is not None and not self._stale(seen):
                    self._refuse(seen)
                self._take_over(seen)
                continue
            except OSError as err:
                raise FeatgapError(f"cannot create the lock file {self.path}: {err.strerror or err}") from None
            try:
                os.write(fd, content.encode())
            finally:
                os.close(fd)
            self._content = content
            return self
        raise FeatgapError(f"cannot take the lock {self.path}: other processes keep taking it; try again")

    def release(self) -> None:
        """Remove the lock file if it is still this lock's (never another process's)."""
        if self._content is None:
            return
        try:
            if self.path.read_text() == self._content:
                self.path.unlink()
        except OSError:
            pass
        self._content = None
        if self._created_dir:
            try:
                self.run_dir.rmdir()  # only succeeds when nothing was written
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -------------------------------------------------------------- helpers
    def _read(self) -> str | None:
        """The lock file's text, or None when it is gone."""
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return ""

    @staticmethod
    def _parse(text: str) -> dict:
        try:
            owner = json.loads(text)
        except ValueError:
            return {}
        return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else {}

    def _stale(self, text: str) -> bool:
        owner = self._parse(text)
        if not owner:  # empty or garbage: a lock being written, or stale once older than that takes
            try:
                return time.time() - self.path.stat().st_mtime > 10.0
            except OSError:
                return True
        if owner.get("host") != socket.gethostname():
            return False
        return not pid_alive(owner["pid"])

    def _refuse(self, text: str) -> None:
        owner = self._parse(text)
        if owner:
            who = f"featgap process {owner['pid']} on {owner.get('host', '?')}"
            if isinstance(owner.get("since"), (int, float)):
                who += f" (since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(owner['since']))})"
        else:
            who = "another featgap process (its lock is being created)"
        raise FeatgapError(f"{self.run_dir} is being written by {who}; wait for it to finish or choose another "
                           f"--out (if that process is gone, delete {self.path})")

    def _take_over(self, seen: str | None) -> None:
        """Remove the stale lock whose text is ``seen`` (None: already gone), never a fresh one."""
        if seen is None:
            return
        aside = self.path.with_name(f"{LOCK}.stale.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = aside.read_text()
        except OSError:
            moved = seen
        if moved != seen:  # another process replaced the stale lock in between: give its lock back
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "w") as fh:
                    fh.write(moved)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, killed and not yet reaped, counts as dead)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there; no safe check: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, as another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _not_safetensors(path: Path) -> str | None:
    """What a weights file is when it is not safetensors (``None`` when it looks like one): decided
    from its first bytes alone, before any loader sees it."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return None  # the loader's own one-line error says why
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (what torch.save writes: pickled Python objects)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    if len(head) == 9 and head[8:9] == b"{":
        return None
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"):
        return f"a {suffix} file (torch.save / pickle)"
    return None


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file. Nothing is ever unpickled: a pickle or a ``torch.save``
    file (``.pt``/``.pth``), whatever its name, is refused from its first bytes with a one-line
    :class:`FeatgapError`, and a corrupt file is one too."""
    path = Path(path)
    kind = _not_safetensors(path)
    if kind is not None:
        raise FeatgapError(f"refusing {path}: it is {kind}, not safetensors; featgap reads weights only from "
                           ".safetensors files and never unpickles (for a trusted third-party state_dict use "
                           "featgap.runs.read_torch_state_dict)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        detail = " ".join(str(err).split())
        raise FeatgapError(f"cannot read weights {path}: {detail}") from None


def read_torch_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A third-party PyTorch ``state_dict`` saved with ``torch.save`` (``.pt``/``.pth``), for bring-your-own-model.

    Read with ``torch.load(path, map_location="cpu", weights_only=True)``: PyTorch's restricted
    unpickler, which builds tensors and plain containers only and refuses any other Python
    object *before* creating it, so a file that hides code (a pickled object whose loading
    calls a function) is refused and nothing in it runs. featgap's own weights never take this
    path: they are safetensors (:func:`read_tensors`). A ``{"state_dict": {...}}`` checkpoint is
    unwrapped.

    Arguments:
        path (str | Path): the ``torch.save`` file.

    Returns:
        ``{name: tensor}`` on the CPU. A file that is refused, unreadable, or holds anything but
        tensors is a one-line :class:`FeatgapError`.

    Example::
        >>> resnet.load_state_dict(featgap.runs.read_torch_state_dict("resnet18.pth"))
    """
    import pickle

    path = Path(path)
    if not path.is_file():
        raise FeatgapError(f"{path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = (str(err).strip().splitlines() or ["?"])[0]
        raise FeatgapError(f"refusing {path}: it holds more than tensors, and torch.load(weights_only=True) "
                           f"stopped before running any of it ({first})") from None
    except (OSError, RuntimeError, ValueError, EOFError) as err:
        first = (str(err).strip().splitlines() or ["?"])[0]
        raise FeatgapError(f"cannot read {path} as a torch state_dict: {first}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FeatgapError(f"{path} is not a state_dict ({{name: tensor}}); got {type(state).__name__}")
    return dict(state)


# ---------------------------------------------------------------- provenance
def _package_version(name: str) -> str | None:
    """A package's version without importing it (importing torchvision just for this cost 0.37 s per run):
    the imported module's ``__version__``, else its ``version.py`` (torchvision's holds the local
    build tag, e.g. ``0.29.1+cu130``, that the installed metadata lacks), else the installed metadata."""
    import importlib.metadata
    import importlib.util
    import re
    import sys

    module = sys.modules.get(name)
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or ():
        text = (Path(folder) / "version.py").read_text() if (Path(folder) / "version.py").is_file() else ""
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        if found:
            return found.group(1)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_info() -> dict[str, Any]:
    """Versions of Python and the main packages, and the featgap git commit if known."""
    import featgap

    info: dict[str, Any] = {"python": platform.python_version(), "featgap": featgap.__version__,
                            "torch": torch.__version__}
    for name in ("torchvision", "numpy", "pyautoattack"):
        info[name] = _package_version(name)
    try:
        repo = Path(featgap.__file__).resolve().parent.parent
        info["git_commit"] = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                            text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


# ---------------------------------------------------------------- reading runs
def read_config(run_dir: str | Path) -> dict:
    """A run's ``config.json``: the resolved ``config``, the ``model_card`` and provenance.

    A folder without one, or a file that is not a JSON object (cut short, hand-edited), is a
    one-line :class:`FeatgapError`. :func:`read_settings` and :func:`read_model_card` also check
    the part they return.
    """
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FeatgapError(f"{run_dir} is not a featgap run directory (no {CONFIG})")
    loaded = read_json(path)
    if not isinstance(loaded, dict):
        raise FeatgapError(f"{path} is not a featgap run configuration (a JSON object); the file is damaged")
    return loaded


def read_settings(run_dir: str | Path) -> dict:
    """The training settings of a run (``config.json["config"]``); one without them, or without a
    dataset, is a one-line :class:`FeatgapError`."""
    config = read_config(run_dir).get("config")
    if not isinstance(config, dict) or not isinstance(config.get("dataset"), str):
        raise FeatgapError(f"{Path(run_dir) / CONFIG} lacks its config (or its dataset): the file is damaged or "
                           "not written by featgap train")
    return config


def read_model_card(run_dir: str | Path) -> dict:
    """The model card of a run (``config.json["model_card"]``: architecture, classes, channels,
    normalisation); one that is missing or incomplete is a one-line :class:`FeatgapError`."""
    card = read_config(run_dir).get("model_card")
    lacking = ["model_card"] if not isinstance(card, dict) else [
        f"model_card.{k}" for k in ("name", "num_classes", "in_channels", "mean", "std") if k not in card]
    if lacking:
        raise FeatgapError(f"{Path(run_dir) / CONFIG} lacks {', '.join(lacking)}: the file is damaged or not "
                           "written by featgap train")
    return card


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run, in order."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_summary(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / SUMMARY
    return read_json(path) if path.exists() else None


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
    model = build_model(read_model_card(run_dir))
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
        card = read_model_card(path)
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
    """A JSON file; one that is not valid JSON (e.g. cut short) is a one-line :class:`FeatgapError`."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FeatgapError(f"{path} is not valid JSON ({err}); the file is damaged") from None


# ---------------------------------------------------------------- evaluations
LEGACY_EVAL = "eval.json"
"""Where ``featgap eval`` wrote before evaluations were named by their settings; still read."""
EVAL_DEFAULTS = {"pgd_steps": 20, "seed": 0, "autoattack": True, "aa_version": "standard"}
"""The settings an evaluation's file name leaves out when they hold (``featgap eval``'s defaults)."""


def run_threat_model(run_dir: str | Path) -> tuple[str, float | None]:
    """``(norm, ε)`` the run was trained with (``config.json``; ``linf`` when it records none)."""
    config = read_config(run_dir)
    cfg = config.get("config", {})
    eps = cfg.get("eps") if cfg.get("eps") is not None else config.get("dataset", {}).get("eps")
    return cfg.get("norm") or "linf", None if eps is None else float(eps)


def eval_path(run_dir: str | Path, *, n: int, norm: str | None = None, eps: float | None = None,
              pgd_steps: int = 20, pgd_step_size: float | None = None, seed: int = 0, autoattack: bool = True,
              aa_version: str = "standard") -> Path:
    """The file an evaluation with these settings is kept in: one file per settings, never overwritten
    by an evaluation with other settings.

    ``RUN_DIR/eval-n{n}[-{norm}-eps{ε}][-pgd{steps}][-alpha{α}][-seed{seed}][-no-autoattack|-aa-{version}].json``:
    a part appears only when it differs from the default, so ``featgap eval RUN --n 150`` writes
    ``eval-n150.json`` and ``--n 1000 --no-autoattack`` writes ``eval-n1000-no-autoattack.json``.
    ``norm``/``eps`` default to the run's training threat model (:func:`run_threat_model`);
    ``pgd_step_size`` is left out when it is the default 2.5·ε/steps. ``n`` is the number of
    images evaluated. :func:`read_eval` finds the file again by settings.

    Example::
        >>> eval_path("runs/demo/afd", n=1000, autoattack=False)   # runs/demo/afd/eval-n1000-no-autoattack.json
    """
    run_norm, run_eps = run_threat_model(run_dir)
    norm = norm or run_norm
    parts = [f"n{int(n)}"]
    if eps is not None and (norm != run_norm or run_eps is None or abs(float(eps) - run_eps) > 1e-9):
        parts += [norm, f"eps{float(eps):.6g}"]
    elif norm != run_norm:
        parts.append(norm)
    if int(pgd_steps) != EVAL_DEFAULTS["pgd_steps"]:
        parts.append(f"pgd{int(pgd_steps)}")
    if pgd_step_size is not None:
        radius = run_eps if eps is None else float(eps)
        if radius is None or abs(float(pgd_step_size) - 2.5 * radius / int(pgd_steps)) > 1e-9:
            parts.append(f"alpha{float(pgd_step_size):.6g}")
    if int(seed) != EVAL_DEFAULTS["seed"]:
        parts.append(f"seed{int(seed)}")
    if not autoattack:
        parts.append("no-autoattack")
    elif aa_version != EVAL_DEFAULTS["aa_version"]:
        parts.append(f"aa-{aa_version}")
    return Path(run_dir) / ("eval-" + "-".join(parts) + ".json")


def eval_settings(evaluation: dict) -> dict:
    """The settings of an evaluation (``EvalResult.as_dict()`` or a file's JSON), as :func:`eval_path` takes them."""
    return {"n": int(evaluation.get("n") or 0), "norm": evaluation.get("norm"), "eps": evaluation.get("eps"),
            "pgd_steps": int(evaluation.get("pgd_steps") or EVAL_DEFAULTS["pgd_steps"]),
            "pgd_step_size": evaluation.get("pgd_step_size"), "seed": int(evaluation.get("seed") or 0),
            "autoattack": evaluation.get("autoattack") is not None,
            "aa_version": evaluation.get("aa_version") or "standard"}


def write_eval(run_dir: str | Path, evaluation: dict) -> Path:
    """Keep an evaluation (``EvalResult.as_dict()``) in its own file (:func:`eval_path`), atomically;
    returns the path. Only an evaluation with the very same settings is replaced."""
    path = eval_path(run_dir, **eval_settings(evaluation))
    write_json(path, evaluation)
    return path


def eval_files(run_dir: str | Path) -> list[Path]:
    """Every evaluation file of a run: ``eval-*.json`` and a legacy ``eval.json``, sorted by name."""
    folder = Path(run_dir)
    found = [p for p in folder.glob("eval-*.json") if p.is_file()]
    if (folder / LEGACY_EVAL).is_file():
        found.append(folder / LEGACY_EVAL)
    return sorted(found)


def find_eval(run_dir: str | Path, *, n: int | None = None, autoattack: bool | None = None,
              norm: str | None = None, eps: float | None = None, pgd_steps: int | None = None,
              seed: int | None = None, aa_version: str | None = None) -> Path | None:
    """The evaluation file of a run that matches the given settings (``None``: any), or ``None``.

    Among several matches: the largest ``n``, then one with AutoAttack, then the newest file.
    A file that is not valid JSON is skipped.

    Example::
        >>> find_eval("runs/demo/afd")                  # the largest evaluation, AutoAttack preferred
        >>> find_eval("runs/demo/afd", n=150, autoattack=True)
    """
    want = {"n": n, "autoattack": autoattack, "norm": norm, "pgd_steps": pgd_steps, "seed": seed,
            "aa_version": aa_version}
    best, best_key = None, None
    for path in eval_files(run_dir):
        try:
            ev = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(ev, dict):
            continue
        have = eval_settings(ev)
        if any(v is not None and have[k] != v for k, v in want.items()):
            continue
        if eps is not None and (have["eps"] is None or abs(float(have["eps"]) - float(eps)) > 1e-9):
            continue
        key = (have["n"], have["autoattack"], path.stat().st_mtime)
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best


def read_eval(run_dir: str | Path, **settings: Any) -> dict | None:
    """The evaluation of a run chosen by :func:`find_eval` (same keyword settings), or ``None``.

    The returned dict is the file's JSON with ``"file"`` (its name) added.

    Example::
        >>> runs.read_eval("runs/demo/afd", n=150)["robust"]
    """
    path = find_eval(run_dir, **settings)
    if path is None:
        return None
    return {**json.loads(path.read_text()), "file": path.name}
