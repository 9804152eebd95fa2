"""Disentangled components, per sample: how big the two parts of a split feature are, and how
they point relative to each other, for natural and adversarial inputs.

The probe works with any model that splits its feature into two components — the *component
contract*:

* ``model.components(x)`` returns a mapping with ``"f1"`` and ``"f2"``, two ``(B, D)``
  tensors (an intrinsic and a confused part of the feature);
* optionally it also returns ``"logits1"`` and ``"logits2"`` (the heads' outputs on ``f1`` and
  ``f2``), and the model has ``confused_target(logits1, y) -> (B,)``, the class the confused
  head is meant to predict. Then the probe also reports ``y_conf`` and ``conf_hit``.

AFD's student (``featgap.methods.afd.AFDStudent``; Zhou et al., arXiv 2401.14707) is such a
model: ``f1 = D1·z`` is classified and kept, ``f2 = D2·z`` is fed to a head trained to predict
``ŷc``, the wrong class the intrinsic head is most drawn to. Load a finished AFD run's student
with ``featgap.methods.afd.load_student(run_dir)`` (the exported model has D1 folded into its
head and no D2, so it has no components).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from featgap.attacks import eval_mode
from featgap.errors import FeatgapError
from featgap.probes.adversarial import Attack, with_adversarial
from featgap.probes.extract import as_float_images, model_device
from featgap.probes.frames import concat, frame

COMPONENT_STATS = ("f1_norm", "f2_norm", "cos_f1_f2", "conf_hit")
"""The component measures a summary reports (``conf_hit`` only for models with ``confused_target``)."""


def component_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None = None, *,
                    eps: float | None = None, steps: int = 10, norm: str = "linf", attack: Attack | None = None,
                    batch_size: int = 500, seed: int | None = 0) -> pd.DataFrame:
    """Size and angle of a model's two feature components, per sample, for natural and adversarial inputs.

    For ``(f1, f2) = model.components(x)`` (see the module docstring for the contract)::

        f1_norm = ‖f1‖₂     f2_norm = ‖f2‖₂     cos_f1_f2 = f1·f2 / (‖f1‖ ‖f2‖)
        y_conf  = model.confused_target(logits1, y)          conf_hit = argmax(logits2) == y_conf

    For AFD (arXiv 2401.14707) the elimination loss drives ``cos_f1_f2`` toward −1, and
    ``conf_hit`` is how often the confused head recognises the confusion.

    Arguments:
        model (nn.Module): a model with ``components(x)`` (e.g. an AFD student); its forward
            gives the logits the attack uses.
        x (Tensor): natural images, float in [0, 1] or uint8.
        y (Tensor): labels.
        x_adv (Tensor | None): adversarial examples; made with PGD at ``eps`` when ``None``.
        eps, steps, norm, attack, seed: the attack (see :func:`adversarial_examples`).
        batch_size (int): images per forward pass. (Default: 500)

    Shape:
        - x, x_adv: ``(N, C, H, W)``. y: ``(N,)``.
        - output: DataFrame of ``2N`` rows, the natural ones first; columns ``sample, label,
          input, f1_norm, f2_norm, cos_f1_f2`` and, with ``confused_target``, ``y_conf, conf_hit``.

    Examples::
        >>> df = component_norms(load_student("runs/afd"), x, y, eps=0.3)
        >>> df.groupby("input")[["f1_norm", "f2_norm", "cos_f1_f2", "conf_hit"]].mean()
    """
    if not callable(getattr(model, "components", None)):
        raise FeatgapError(f"{type(model).__name__} has no disentangled components (a components(x) method): "
                           "pass an AFD student (featgap.methods.afd.load_student(run_dir)), not an exported model")
    x_adv = with_adversarial(model, x, y, x_adv, eps=eps, steps=steps, norm=norm, attack=attack,
                             batch_size=batch_size, seed=seed)
    confused_target = getattr(model, "confused_target", None)
    device = model_device(model)
    parts = []
    with torch.no_grad(), eval_mode(model):
        for kind, images in (("nat", x), ("adv", x_adv)):
            cols: dict[str, list[torch.Tensor]] = {}
            for i in range(0, len(images), batch_size):
                yb = y[i:i + batch_size].to(device)
                c = model.components(as_float_images(images[i:i + batch_size]).to(device))
                if "f1" not in c or "f2" not in c:
                    raise FeatgapError(f"{type(model).__name__}.components(x) must return 'f1' and 'f2'; "
                                       f"it returned {', '.join(map(str, c))}")
                f1, f2 = c["f1"].float(), c["f2"].float()
                batch = {"f1_norm": f1.norm(dim=1), "f2_norm": f2.norm(dim=1),
                         "cos_f1_f2": F.cosine_similarity(f1, f2, dim=1)}
                if callable(confused_target) and "logits1" in c and "logits2" in c:
                    y_conf = confused_target(c["logits1"], yb)
                    batch["y_conf"] = y_conf
                    batch["conf_hit"] = c["logits2"].argmax(1) == y_conf
                for k, v in batch.items():
                    cols.setdefault(k, []).append(v.cpu())
            n = len(images)
            parts.append(frame({"sample": np.arange(n), "label": y.cpu().numpy(),
                                "input": np.full(n, kind, dtype=object),
                                **{k: torch.cat(v) for k, v in cols.items()}}))
    return concat(parts)
