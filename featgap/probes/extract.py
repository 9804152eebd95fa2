"""Read a network's features at named layers: for featgap models and for any ``nn.Module``.

A *layer* is named the way PyTorch names it: the dotted path of a sub-module
(``model.get_submodule(name)``, e.g. ``"stage2"`` of a featgap model or ``"layer3.1.conv2"``
of a torchvision ResNet). Its output is read with a forward hook while the whole model runs
once. Two extra names are understood:

* ``"logits"`` — the model's own output;
* a node of torchvision's FX graph (e.g. ``"flatten"`` or ``"layer1.0.add"`` — see
  ``torchvision.models.feature_extraction.get_graph_node_names``), for values that no module
  returns on its own. This needs the model to trace with ``torch.fx``; most CNNs do.

Feature maps with spatial dimensions (``B×C×H×W``, or any ``B×C×…``) are reduced to one vector
per sample by an **explicit** pooling choice:

* ``pool="avg"`` — global average over every dimension after the channel one: ``B×C``;
  what a classifier's global pooling does, and comparable across layers of different size;
* ``pool="flatten"`` — keep every value: ``B×(C·H·W)``; position-sensitive, and large.

Typical use::

    feats = extract_features(model, x, layers=["stage2", "pool", "logits"])
    feats["pool"].shape            # (N, 128) on the CPU, float32

Featgap models default to their ``layer_names`` (the stages and the pooled penultimate layer
``"pool"``, whose output is ``model.features(x)``); any other module needs ``layers``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from featgap.attacks import eval_mode
from featgap.errors import FeatgapError
from featgap.progress import progress

POOLINGS = ("avg", "flatten")
LOGITS = "logits"


def pool_features(t: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """One vector per sample from a layer's output, by an explicit pooling choice.

    ``(B, D)`` stays as it is; ``(B, C, …)`` becomes ``(B, C)`` with ``pool="avg"`` (the mean
    over every dimension after the channel one, as a classifier's global pooling does) or
    ``(B, C·H·W)`` with ``pool="flatten"`` (position-sensitive, large).

    Arguments:
        t (Tensor): a layer's output.
        pool (str): ``"avg"`` or ``"flatten"``. (Default: ``"avg"``)

    Shape:
        - t: ``(B, D)`` or ``(B, C, …)``.
        - output: ``(B, D′)``.

    Examples::
        >>> pool_features(torch.ones(2, 8, 4, 4)).shape
        torch.Size([2, 8])
    """
    if pool not in POOLINGS:
        raise FeatgapError(f"unknown pooling {pool!r}; choose one of: {', '.join(POOLINGS)}")
    if t.ndim <= 2:
        return t.reshape(t.shape[0], -1)
    if pool == "avg":
        return t.flatten(2).mean(dim=2)
    return t.flatten(1)


def default_layers(model: nn.Module) -> list[str]:
    """``model.layer_names`` for featgap models (stages plus ``"pool"``); else an error."""
    names = getattr(model, "layer_names", None)
    if names:
        return list(names)
    raise FeatgapError(f"{type(model).__name__} has no layer_names: pass layers=[...] by module name "
                       f"(e.g. {_example_names(model)})")


def _example_names(model: nn.Module, k: int = 4) -> str:
    names = [n for n, _ in model.named_children()][:k]
    return ", ".join(repr(n) for n in names) or "no sub-modules"


def resolve_layers(model: nn.Module, layers: str | Sequence[str] | None) -> list[str]:
    """Normalise ``layers`` (None → default, one string → list) and reject duplicates."""
    if layers is None:
        return default_layers(model)
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise FeatgapError("layers is empty: name at least one layer")
    if len(set(names)) != len(names):
        raise FeatgapError(f"layers lists a name twice: {names}")
    return names


def _module_names(model: nn.Module) -> set[str]:
    return {name for name, _ in model.named_modules() if name}


def snapshot(t: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """A layer's output pooled *now*, in memory of its own, so later in-place ops cannot change it.

    Networks modify tensors in place after a layer has returned them: torchvision's ResNet
    rectifies ``bn1``'s output with ``ReLU(inplace=True)`` and adds the shortcut to ``bn2``'s
    with ``out += identity``; DenseNet and MobileNet do the same with their ReLUs. A kept
    reference would then read the *later* value (``bn1`` rectified). So the value is pooled as
    soon as it is produced (:func:`pool_features`) and cloned only when the pooled tensor still
    shares memory with the output (``pool="flatten"``, or an output that is already ``(B, D)``);
    ``pool="avg"`` makes a new, small tensor and copies nothing. The autograd graph is kept.

    Arguments:
        t (Tensor): a layer's output, at the moment the layer returns it.
        pool (str): ``"avg"`` or ``"flatten"``. (Default: ``"avg"``)

    Shape:
        - t: ``(B, D)`` or ``(B, C, …)``; output: ``(B, D′)``.

    Examples::
        >>> out = torch.randn(2, 4); kept = snapshot(out); out.relu_()
        >>> bool((kept < 0).any())        # the value at read time, not the rectified one
        True
    """
    pooled = pool_features(t, pool)
    if pooled.untyped_storage().data_ptr() == t.untyped_storage().data_ptr():
        pooled = pooled.clone()
    return pooled


def _first_tensor(out: object) -> torch.Tensor:
    """A module may return a tuple or dict (e.g. attention); its first tensor is the feature."""
    if torch.is_tensor(out):
        return out
    if isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]):
        return out[0]
    if isinstance(out, dict) and out:
        first = next(iter(out.values()))
        if torch.is_tensor(first):
            return first
    raise FeatgapError(f"a probed layer returned {type(out).__name__}, not a tensor")


class LayerReader:
    """Run the model once and return the pooled outputs of the named layers.

    ``reader(x) -> {layer: (B, D) tensor, ...}`` keeps the autograd graph, so it can be
    differentiated (local Lipschitzness and attribution use this); wrap it in ``torch.no_grad``
    to only read. Modules are read with forward hooks, other names as torchvision FX graph
    nodes; ``"logits"`` is the model's output. Each value is taken (pooled, see :func:`snapshot`)
    the moment it is produced, so an in-place op later in the network (``ReLU(inplace=True)``,
    ``out += identity``) does not change what is read. Use it as a context manager so that the
    hooks are removed afterwards. Creating one checks the names (an unknown layer is an error).

    Arguments:
        model (nn.Module): any module.
        layers (str | list[str] | None): module names, graph nodes or ``"logits"``.
            (Default: ``model.layer_names``)
        pool (str): ``"avg"`` or ``"flatten"`` (:func:`pool_features`). (Default: ``"avg"``)

    Examples::
        >>> with LayerReader(model, ["stage2", "pool"]) as read:
        ...     feats = read(x)
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str] | None = None, pool: str = "avg") -> None:
        if pool not in POOLINGS:
            raise FeatgapError(f"unknown pooling {pool!r}; choose one of: {', '.join(POOLINGS)}")
        self.model, self.pool = model, pool
        self.layers = resolve_layers(model, layers)
        modules = _module_names(model)
        wanted = [n for n in self.layers if n != LOGITS]
        self._hooked = [n for n in wanted if n in modules]
        self._traced = [n for n in wanted if n not in modules]
        self._fx: nn.Module | None = None
        if self._traced:
            self._fx = _fx_extractor(model, self._traced, pool)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._seen: dict[str, list[torch.Tensor]] = {}

    def __enter__(self) -> LayerReader:
        for name in self._hooked:
            module = self.model.get_submodule(name)
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, name: str):  # noqa: ANN202 - a hook closure
        def hook(module: nn.Module, args: object, out: object) -> None:
            self._seen.setdefault(name, []).append(snapshot(_first_tensor(out), self.pool))
        return hook

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._hooked and not self._handles:
            raise RuntimeError("use LayerReader inside a `with` block (the hooks are added on entry)")
        self._seen = {}
        logits = self.model(x)
        out: dict[str, torch.Tensor] = {}
        for name in self._hooked:
            calls = self._seen.get(name, [])
            if len(calls) != 1:
                raise FeatgapError(
                    f"module {name!r} ran {len(calls)} times in one forward pass, so its output is ambiguous"
                    + (" (a module reused inside the model, like torchvision's shared ReLU): "
                       "probe a module that runs once, or a graph node such as 'layer1.0.add'" if calls else
                       " (it is not on the forward path)"))
            out[name] = calls[0]
        if self._fx is not None:
            out.update(self._fx(x))
        if LOGITS in self.layers:
            out[LOGITS] = _first_tensor(logits)
        self._seen = {}
        return {name: pool_features(out[name], self.pool) for name in self.layers}


def _fx_extractor(model: nn.Module, nodes: list[str], pool: str = "avg") -> nn.Module:
    """torchvision's feature extractor for graph nodes that are not modules (one-line errors).

    Each returned node is passed through :func:`snapshot` right where it is computed (a node
    inserted after it in the graph): a later node of the same graph may modify its value in
    place (an ``inplace=True`` ReLU after ``layer1.0.add``) when a later node is requested too.
    """
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    try:
        _, eval_nodes = get_graph_node_names(model)
    except Exception as err:  # noqa: BLE001 - tracing can fail in many ways
        raise FeatgapError(f"layers {nodes} are not sub-modules of {type(model).__name__}, and the model does not "
                           f"trace with torch.fx ({type(err).__name__}); probe sub-modules by name instead") from None
    unknown = [n for n in nodes if n not in eval_nodes]
    if unknown:
        raise FeatgapError(f"unknown layer {unknown[0]!r} for {type(model).__name__}: not a sub-module or graph node "
                           f"(modules include {_example_names(model)})")
    extractor = create_feature_extractor(model, return_nodes={n: n for n in nodes})
    graph = extractor.graph
    output = next(node for node in graph.nodes if node.op == "output")
    returned = dict(output.args[0])
    for name, node in returned.items():
        with graph.inserting_after(node):
            returned[name] = graph.call_function(snapshot, (node, pool))
    output.args = (returned,)
    extractor.recompile()
    return extractor


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free module)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def extract_features(model: nn.Module, x: torch.Tensor, layers: str | Sequence[str] | None = None, *,
                     pool: str = "avg", batch_size: int = 500, desc: str = "features") -> dict[str, torch.Tensor]:
    """Pooled features of ``x`` at each named layer, in batches, without gradients.

    Runs in eval mode (each module's mode restored afterwards) on the model's device (inputs
    are moved there and results brought back to the CPU), with a progress bar when there is
    more than one batch. uint8 images (as an :class:`~featgap.data.ImageSet` stores them) are
    scaled to [0, 1]. A helper: the probes read their features with it.

    Arguments:
        model (nn.Module): any module taking images in [0, 1].
        x (Tensor): images.
        layers (str | list[str] | None): as for :class:`LayerReader`; add ``"logits"`` for the
            model's output. (Default: ``model.layer_names``)
        pool (str): ``"avg"`` or ``"flatten"``. (Default: ``"avg"``)
        batch_size (int): images per forward pass. (Default: 500)
        desc (str): the progress bar's label.

    Shape:
        - x: ``(N, C, H, W)``.
        - output: ``{layer: (N, D) float32 CPU tensor}``, in the order of ``layers``.

    Examples::
        >>> feats = extract_features(model, x, ["stage2", "pool", "logits"])
        >>> feats["pool"].shape
        torch.Size([1000, 128])
    """
    check_batch_size(batch_size)
    device = model_device(model)
    parts: dict[str, list[torch.Tensor]] = {}
    n_batches = max(1, math.ceil(len(x) / batch_size))
    with LayerReader(model, layers, pool) as read, torch.no_grad(), eval_mode(model):
        batches = range(0, len(x), batch_size)
        for i in progress(batches, desc=desc, leave=False) if n_batches > 1 else batches:
            xb = as_float_images(x[i:i + batch_size]).to(device)
            for name, value in read(xb).items():
                parts.setdefault(name, []).append(value.float().cpu())
        names = read.layers
    if not parts:
        return {name: torch.empty(0) for name in names}
    return {name: torch.cat(parts[name]) for name in names}


def check_images(model: nn.Module, x: object, y: object = None, *, name: str = "x", allow_empty: bool = False) -> None:
    """One-line :class:`FeatgapError` for images or labels a probe cannot use (``docs/errors.md``).

    ``x`` must be a ``(N, C, H, W)`` tensor (for a module without ``in_channels``: any batch
    ``(N, ...)``), uint8 or float in [0, 1] without NaN, with the model's number of channels
    (``model.in_channels`` when it has one) and, unless
    ``allow_empty``, at least one image. ``y``, when given, must be ``N`` integer labels in
    ``[0, model.num_classes)`` (when the model has ``num_classes``).

    >>> check_images(model, x * 255, y)     # FeatgapError: x must be in [0, 1] (or uint8) ...
    """
    if not isinstance(x, torch.Tensor):
        raise FeatgapError(f"{name} must be a torch.Tensor of images (N, C, H, W); got {type(x).__name__}")
    channels = getattr(model, "in_channels", None)
    if x.ndim != 4 and (isinstance(channels, int) or x.ndim < 2):  # any other module: a batch of inputs (N, ...)
        raise FeatgapError(f"{name} must be images of shape (N, C, H, W); got shape {tuple(x.shape)}")
    if len(x) == 0 and not allow_empty:
        raise FeatgapError(f"{name} holds no images (shape {tuple(x.shape)})")
    if isinstance(channels, int) and x.shape[1] != channels:
        raise FeatgapError(f"{name} has {x.shape[1]} channels but {type(model).__name__} takes {channels} "
                           f"(shape {tuple(x.shape)}; images of another dataset?)")
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise FeatgapError(f"{name} must be float in [0, 1] or uint8; got {x.dtype}")
        if len(x) and not bool(torch.isfinite(x).all()):
            raise FeatgapError(f"{name} holds NaN or infinite values")
        if len(x) and (float(x.min()) < 0 or float(x.max()) > 1):
            raise FeatgapError(f"{name} must be in [0, 1] (or uint8 in [0, 255]); got values in "
                               f"[{float(x.min()):.4g}, {float(x.max()):.4g}]")
    if y is None:
        return
    if not isinstance(y, torch.Tensor) or y.ndim != 1:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise FeatgapError(f"y must be a 1-D tensor of labels (N,); got {shape}")
    if len(y) != len(x):
        raise FeatgapError(f"{name} has {len(x)} images but y has {len(y)} labels")
    if len(y) and (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool):
        raise FeatgapError(f"y must hold integer class labels; got {y.dtype}")
    classes = getattr(model, "num_classes", None)
    if len(y) and (int(y.min()) < 0 or (isinstance(classes, int) and int(y.max()) >= classes)):
        limit = f"[0, {classes})" if isinstance(classes, int) else "≥ 0"
        raise FeatgapError(f"labels must be in {limit}; got labels in [{int(y.min())}, {int(y.max())}]")


def check_batch_size(batch_size: int) -> None:
    """``batch_size`` below 1 is a one-line :class:`FeatgapError`."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise FeatgapError(f"batch_size must be an integer ≥ 1; got {batch_size!r}")


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in [0, 1]; float images pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x

