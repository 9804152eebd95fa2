"""AFD's disentangled components, per sample: how big the intrinsic and the confused features
are, and how they point relative to each other, for natural and adversarial inputs.

An AFD student (:class:`featgap.methods.afd.AFDStudent`) splits the pooled feature ``z`` into
``f1 = D1·z`` (intrinsic, classified) and ``f2 = D2·z`` (confused, fed to a head that is
trained to predict the wrong class ``ŷc`` the intrinsic head is most drawn to). Per sample
and input (natural / adversarial) :func:`component_norms` reports::

    f1_norm    ‖f1‖₂
    f2_norm    ‖f2‖₂
    cos_f1_f2  cos(f1, f2)     AFD's elimination loss drives it toward −1
    y_conf     ŷc: the intrinsic head's prediction if wrong, else its runner-up
    conf_hit   the confused head predicts ŷc

Load a finished AFD run's student (the exported model has D1 folded into its head and no D2)
with :func:`featgap.methods.afd.load_student`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from featgap.attacks import eval_mode
from featgap.errors import FeatgapError
from featgap.probes.extract import as_float_images, model_device
from featgap.probes.table import Table

COMPONENT_STATS = ("f1_norm", "f2_norm", "cos_f1_f2", "conf_hit")


def component_norms(model: nn.Module, x_nat: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, *,
                    batch_size: int = 500) -> Table:
    """One row per (sample, input): ``sample, label, input, f1_norm, f2_norm, cos_f1_f2, y_conf, conf_hit``."""
    from featgap.methods.afd import confusing_target

    if not callable(getattr(model, "components", None)):
        raise FeatgapError(f"{type(model).__name__} has no disentangled components: pass an AFD student "
                           "(featgap.methods.afd.load_student(run_dir)), not an exported model")
    if x_nat.shape != x_adv.shape or len(x_nat) != len(y):
        raise FeatgapError(f"x_nat {tuple(x_nat.shape)}, x_adv {tuple(x_adv.shape)} and y ({len(y)}) do not match")
    device = model_device(model)
    parts = []
    with torch.no_grad(), eval_mode(model):
        for kind, x in (("nat", x_nat), ("adv", x_adv)):
            cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("f1_norm", "f2_norm", "cos_f1_f2", "y_conf", "hit")}
            for i in range(0, len(x), batch_size):
                yb = y[i:i + batch_size].to(device)
                c = model.components(as_float_images(x[i:i + batch_size]).to(device))
                y_conf = confusing_target(c["logits1"], yb)
                cols["f1_norm"].append(c["f1"].float().norm(dim=1).cpu())
                cols["f2_norm"].append(c["f2"].float().norm(dim=1).cpu())
                cols["cos_f1_f2"].append(F.cosine_similarity(c["f1"].float(), c["f2"].float(), dim=1).cpu())
                cols["y_conf"].append(y_conf.cpu())
                cols["hit"].append((c["logits2"].argmax(1) == y_conf).cpu())
            n = len(x)
            parts.append(Table({"sample": np.arange(n), "label": y.cpu().numpy(), "input": np.full(n, kind, dtype=object),
                                **{k: torch.cat(v).numpy() for k, v in cols.items() if k != "hit"},
                                "conf_hit": torch.cat(cols["hit"]).numpy()}))
    return Table.concat(parts)
