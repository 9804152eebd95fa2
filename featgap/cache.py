"""The disk cache: results stored under a hash of everything that determines them.

A slow, deterministic computation (a UMAP embedding, a widget's precomputed frames, a report's
figures) is stored as ``<folder>/<hash>.<ext>``, where the hash is the sha256 of its inputs'
bytes and of every setting that changes the result. Asking again with the same inputs finds the
file; changing one input value, one setting or a library version gives another hash, so a stale
result is never returned and nothing ever needs invalidating::

    from featgap import cache

    key = cache.content_hash({"kind": "embed", "method": "pca", "settings": {"n_components": 2}},
                             [f_nat, f_adv])
    path = cache.folder("embeddings") / f"{key}.npz"
    arrays = cache.load_arrays(path, {"nat": (n, 2)})      # None on a miss (or a damaged file)
    if arrays is None:
        arrays = {"nat": compute()}
        cache.save_arrays(path, arrays)

Where: ``$FEATGAP_CACHE`` if set, else ``~/.cache/featgap``; each user of the cache keeps one
sub-folder of it (``embeddings``, ``numba``, …). Files are written atomically — to a temporary
file in the same folder, then renamed with ``os.replace`` — so a reader never sees half a file,
and two processes writing the same entry both leave a complete one. A cache is an optimisation:
an unreadable entry is a miss (with a warning), and a failed write is a warning, never an error.

This module sits on the lowest tier of featgap (it imports nothing of featgap), so that any
layer can share it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

ENV = "FEATGAP_CACHE"
"""The environment variable that moves the whole cache."""


def root() -> Path:
    """The cache's top folder: ``$FEATGAP_CACHE``, else ``~/.cache/featgap`` (not created here)."""
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "featgap"


def folder(name: str, override: str | Path | None = None) -> Path:
    """``override`` if given (``~`` expanded), else ``root() / name``: one user's part of the cache."""
    return Path(override).expanduser() if override is not None else root() / name


# ---------------------------------------------------------------- keys
def canonical(value: Any) -> Any:
    """A JSON-able stand-in for a setting's value: NumPy arrays by content hash, unknown objects by repr.

    Dicts get string keys and tuples become lists, so equal settings give equal JSON. A
    callable (say, a custom metric) is represented by its repr, which includes its address: it
    never matches another process's entry by mistake, at the price of never being a hit either.
    """
    import numpy as np

    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"ndarray": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(),
                "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def content_hash(header: Mapping[str, Any], arrays: Iterable[Any] = ()) -> str:
    """sha256 (hex) of ``header`` (settings, as canonical sorted JSON) and of each array's dtype, shape and bytes.

    ``arrays`` are NumPy arrays (anything ``np.ascontiguousarray`` takes) or ``None`` (an absent
    input, hashed as such, so ``[a, None]`` and ``[a]`` differ). Put everything that changes the
    result into ``header`` — the method, every parameter, a format tag, library versions.
    """
    import numpy as np

    h = hashlib.sha256()
    h.update(json.dumps(canonical(dict(header)), sort_keys=True).encode())
    for a in arrays:
        if a is None:
            h.update(b"|none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"|{a.dtype.str}{a.shape}|".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# ---------------------------------------------------------------- atomic writes
TMP_SUFFIX = ".tmp"
"""Temporary files of :func:`atomic_write` are ``.<name>.<random>.tmp`` next to their target; one left
behind by a killed process is never read, and a run's owner may delete it (:func:`remove_temporaries`)."""


def atomic_write(path: str | Path, write: Callable[[str], None], *, durable: bool = False) -> None:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file next to it, then ``os.replace``.

    The folder is created if needed. If ``write`` fails the temporary file is removed and the
    error propagates; an existing ``path`` is left as it was. A process killed at any moment
    (even SIGKILL) leaves either the old ``path`` or the new one, never half a file.

    ``durable=True`` also flushes the temporary file to the disk (``fsync``) before the rename,
    and the folder after it, so that the new file survives a power cut too (run directories use
    it; the cache does not need it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; the file gets what open() would give it
        write(tmp)
        if durable:
            _fsync(tmp)
        crash_point(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent, folder=True)


def _umask() -> int:
    """The process's umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str | Path, folder: bool = False) -> None:
    """Flush a file (or a folder's entries) to the disk; a folder that cannot be opened is skipped."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    except OSError:
        if folder:
            return  # e.g. Windows cannot open a folder
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left in ``folder`` (not below it) when a process
    was killed mid-write; returns them. Call it only where no other process is writing (a run
    directory whose lock you hold)."""
    gone = []
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(f".*{TMP_SUFFIX}"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                gone.append(tmp)
    return gone


# ---------------------------------------------------------------- crash testing (tests only)
KILL_ENV = "FEATGAP_TEST_KILL_AT"
"""**For tests only.** ``FEATGAP_TEST_KILL_AT=POINT:N`` makes the process kill itself with SIGKILL
the ``N``-th time it reaches ``POINT`` (:func:`crash_point`), so that a test can crash
``featgap train`` at an exact moment and check that rerunning it recovers. Points: ``write:NAME``
(inside :func:`atomic_write` of a file called NAME, after its temporary file is written and
before the rename), and the trainer's ``config`` (right after config.json), ``step`` (after a
training step), ``callback`` (after a per-epoch monitoring callback) and ``metrics`` (after an
epoch's line in metrics.jsonl, before its checkpoint). ``tests/test_crash_safety.py`` uses them.
Unset (always, outside tests), it costs one dictionary look-up."""
_kill_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process at the ``N``-th visit of point ``name`` when ``$FEATGAP_TEST_KILL_AT`` is ``name:N``.

    A test-only hook (see :data:`KILL_ENV`); without the variable it does nothing.
    """
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    point, _, count = spec.rpartition(":")
    if point != name:
        return
    _kill_counts[name] = _kill_counts.get(name, 0) + 1
    if str(_kill_counts[name]) == count.strip():
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------- arrays
def save_arrays(path: str | Path, arrays: Mapping[str, Any], label: str = "cache") -> bool:
    """Store named NumPy arrays as an ``.npz`` entry, atomically; ``False`` (and a warning) if it cannot be written.

    ``label`` names the cache in the warning (e.g. ``"embedding cache"``).
    """
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
            np.savez(fh, **arrays)

    try:
        atomic_write(path, write)
        return True
    except OSError as err:
        warnings.warn(f"could not write {label} {path}: {err}", RuntimeWarning, stacklevel=2)
        return False


def load_arrays(path: str | Path, shapes: Mapping[str, tuple[int, ...]] | None = None,
                dtype: Any = None, label: str = "cache") -> dict[str, Any] | None:
    """The arrays of an ``.npz`` entry, or ``None`` on a miss.

    A missing file is a silent miss. A file that cannot be read, or whose arrays are not
    exactly the names of ``shapes`` with those shapes (and of ``dtype``, when given), is a miss
    with a ``RuntimeWarning`` that names ``label``: the caller recomputes and overwrites it.
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {name: np.array(npz[name]) for name in npz.files}
        if shapes is not None and (set(out) != set(shapes) or any(out[n].shape != tuple(s) for n, s in shapes.items())):
            raise ValueError("unexpected contents")
        if dtype is not None and any(a.dtype != np.dtype(dtype) for a in out.values()):
            raise ValueError("unexpected dtype")
        return out
    except Exception as err:  # noqa: BLE001 - a damaged cache file is a miss, never a crash
        warnings.warn(f"ignoring unreadable {label} file {path} ({type(err).__name__}); recomputing",
                      RuntimeWarning, stacklevel=2)
        return None
