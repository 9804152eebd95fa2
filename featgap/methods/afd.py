"""AFD: adversarial fine-tuning via feature disentanglement (arXiv 2401.14707, AAAI 2025).

Adversarial fine-tuning of a naturally trained model makes the features of natural and
adversarial inputs drift apart (the *feature gap*). AFD splits the pooled feature ``z`` of an
adversarial input into two parts with two bias-free ``d×d`` linear maps, both starting at the
identity, that share the classifier head ``(W, b)``::

    f1 = D1 · z                 intrinsic: kept, classified, pulled toward the natural teacher
    f2 = D2 · stopgrad(z)       confused: learns what pushes z toward a wrong class
    logits1 = W f1 + b          the deployed model
    logits2 = W f2 + b          the confused head

One training step on a batch ``(x, y)``, with ``x'`` = PGD on the deployed logits:

1. ``ŷc`` = the wrong class the intrinsic head is most drawn to: its prediction when that is
   wrong, else its runner-up (so ``ŷc ≠ y`` always);
2. ``L_conf = α · CE(logits2, ŷc)`` teaches D2 (and the head) to recognise that confusion;
3. ``L_elim = β · mean cos(f1, stopgrad(f2))`` pushes the intrinsic feature *away* from the
   confused direction (minimised, toward −1);
4. ``L_main = CE(logits1, y) + γ · (1 − mean cos(f1, t))`` classifies and keeps ``f1`` aligned
   with the frozen natural teacher's feature ``t`` of the *clean* input.

The reference code routes these gradients with several optimisers and backward passes;
featgap's default (option ``update="summed"``) gets the same routing from **one summed loss**
and one optimiser, because the two stop-gradients decide who learns from what:

* D2 receives only ∂L_conf (its input is detached, and ``L_elim`` sees ``f2`` detached);
* the backbone and D1 receive ∂L_elim + ∂L_main (the confused branch cannot reach them);
* the head receives ∂L_conf + ∂L_main.

The same routing is not the same *update*: the reference code takes **two optimiser steps per
batch**, first ``L_conf + L_elim`` on an optimiser of their own, then ``L_main`` on the main
optimiser, computed with the weights the first step left. ``update="two_step"`` does that
(:meth:`AFD.loss`): the second step sees D1, D2, the head and the backbone already moved by the
disentangler terms, and the two optimisers keep separate momentum buffers.

``tests/test_afd.py`` checks the routing term by term, and that the two schedules differ. At deployment D2 is dropped and D1 is
folded into the head, ``W' = W·D1``: :func:`fold_disentangler` returns a plain model of the
original architecture whose logits equal the student's.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from featgap import runs
from featgap.attacks import pgd
from featgap.errors import FeatgapError
from featgap.methods.base import AttackSettings, Method, Option, accuracy
from featgap.methods.extended import ExtendedModel

INTRINSIC, CONFUSED = "intrinsic", "confused"


class AFDStudent(ExtendedModel):
    """A featgap model plus the disentangler: ``forward`` gives the deployed logits ``W·D1·z + b``.

    The student keeps the plain model's own sub-modules under their own names (``stage1``, …,
    ``pool``, ``head``; see :class:`~featgap.methods.extended.ExtendedModel`) and adds
    ``intrinsic`` (D1) and ``confused`` (D2). So its ``state_dict`` is the plain model's plus two
    ``d×d`` weights, probes read the same layer names, and ``features(x)`` is the same pooled
    ``z`` as in the exported model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        d = model.feature_dim
        self.intrinsic = nn.Linear(d, d, bias=False)
        self.confused = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            self.intrinsic.weight.copy_(torch.eye(d))
            self.confused.weight.copy_(torch.eye(d))

    def plain_state(self) -> dict[str, torch.Tensor]:
        """The exported weights: D1 folded into the head, D2 dropped (:func:`fold_disentangler`)."""
        return fold_disentangler(self.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.intrinsic(self.features(x)))

    def components(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``z``, ``f1``, ``f2`` and both heads' logits for one batch (``f2`` from detached ``z``)."""
        z = self.features(x)
        f1, f2 = self.intrinsic(z), self.confused(z.detach())
        return {"z": z, "f1": f1, "f2": f2, "logits1": self.head(f1), "logits2": self.head(f2)}

    def confused_target(self, logits1: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``ŷc`` for a batch: the class the confused head is trained to predict (:func:`confusing_target`).

        ``logits1`` are ``components(x)["logits1"]``. Probes use this (with :meth:`components`)
        so that they need not know AFD's rule.
        """
        return confusing_target(logits1, y)


def fold_disentangler(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A student's ``state_dict`` → the plain model's: ``W' = W·D1``, D2 dropped (others unchanged)."""
    if f"{INTRINSIC}.weight" not in state:
        return dict(state)
    plain = {k: v for k, v in state.items() if not k.startswith((f"{INTRINSIC}.", f"{CONFUSED}."))}
    d1 = state[f"{INTRINSIC}.weight"].double()
    plain["head.weight"] = (state["head.weight"].double() @ d1).to(state["head.weight"].dtype)
    return plain


def export_plain(student: AFDStudent) -> nn.Module:
    """A plain model of the original architecture with D1 folded into its head (a new copy)."""
    return student.export()


def confusing_target(logits1: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``ŷc``: the predicted class when it is wrong, else the runner-up (never ``y``)."""
    masked = logits1.detach().clone()
    masked.scatter_(1, y.view(-1, 1), float("-inf"))
    return masked.argmax(1)


class AFD(Method):
    r"""AFD: adversarial fine-tuning of a natural model (``--init``) with a feature disentangler.

    Paper: Zhou et al., "AFD: Mitigating Feature Gap for Adversarial Robustness by Feature
    Disentanglement", AAAI 2025, https://arxiv.org/abs/2401.14707

    Loss: α·CE(W·D2·z̄, ŷc) + β·cos(D1·z, D2·z̄) + CE(W·D1·z, y) + γ·(1 − cos(D1·z, teacher(x))),
    z = features(x'), z̄ = stopgrad(z), x' = PGD-CE (the module docstring explains each term).

    Options:
        alpha (float): weight of the confused branch's loss (default 0.05).
        beta (float): weight of the intrinsic/confused cosine, the elimination loss (default 0.25).
        gamma (float): weight of the alignment with the natural teacher (default 25.0).
        update (str): ``summed`` (default: one optimiser step on L_conf + L_elim + L_main) or
            ``two_step`` (the reference code's: a step on L_conf + L_elim with a separate
            optimiser, then the main optimiser's step on L_main at the updated weights).

    The weights' defaults are the paper's CIFAR-10 values (presets: ``featgap/presets.py``).
    """

    name = "afd"
    needs_init = True
    options = (Option("alpha", float, 0.05, "AFD α, weight of the confused branch's loss"),
               Option("beta", float, 0.25, "AFD β, weight of the intrinsic/confused cosine (elimination) loss"),
               Option("gamma", float, 25.0, "AFD γ, weight of the alignment with the natural teacher"),
               Option("update", str, "summed", "AFD update per batch: summed (one step on the summed loss) or "
                      "two_step (the reference code's: L_conf + L_elim on their own optimiser, then L_main)",
                      choices=("summed", "two_step")))

    def __init__(self, attack: AttackSettings, **options: object) -> None:
        super().__init__(attack, **options)
        self.alpha, self.beta, self.gamma = (float(self.values[k]) for k in ("alpha", "beta", "gamma"))
        self.update = str(self.values["update"])
        self.teacher: nn.Module | None = None
        self.main_group: dict | None = None
        """The parameter group the main optimiser was built from (:meth:`param_groups`); the
        optimiser fills in its lr, momentum, weight decay, and the Trainer rewrites its ``lr``
        every step, so ``two_step`` reads the scheduled values here."""
        self.disentangler_optimizer: torch.optim.SGD | None = None
        """``two_step`` only: the separate optimiser of L_conf + L_elim (made on the first batch)."""

    def start(self, model: nn.Module) -> AFDStudent:
        """Freeze a copy of the natural model as the teacher; return the student to train."""
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
        return AFDStudent(model)

    def to(self, device: torch.device) -> None:
        if self.teacher is not None:
            self.teacher.to(device)

    def terms(self, student: AFDStudent, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor
              ) -> dict[str, torch.Tensor]:
        """The three loss terms (already weighted) and what they were computed from."""
        if self.teacher is None:
            raise RuntimeError("AFD.start(model) must run before training (the Trainer calls it)")
        c = student.components(x_adv)
        with torch.no_grad():
            t = self.teacher.features(x)
        y_conf = confusing_target(c["logits1"], y)
        conf = self.alpha * F.cross_entropy(c["logits2"].float(), y_conf)
        elim = self.beta * F.cosine_similarity(c["f1"].float(), c["f2"].detach().float(), dim=1).mean()
        main = F.cross_entropy(c["logits1"].float(), y) + self.gamma * (
            1.0 - F.cosine_similarity(c["f1"].float(), t.float(), dim=1).mean())
        return {"conf": conf, "elim": elim, "main": main, "y_conf": y_conf, **c}

    def param_groups(self, model: nn.Module) -> list[dict]:
        """One group of every trainable student parameter, kept as :attr:`main_group` for ``two_step``."""
        self.main_group = {"params": [p for p in model.parameters() if p.requires_grad]}
        return [self.main_group]

    def _disentangler_step(self, loss: torch.Tensor) -> None:
        """``two_step``'s first step: SGD on ``L_conf + L_elim`` with an optimiser of its own.

        It holds the same parameters as the main optimiser (the two terms reach D2 and the head,
        D1 and the backbone) and mirrors its scheduled lr, momentum, weight decay and Nesterov
        flag at every step, but keeps its own momentum buffers, as the reference code's separate
        optimiser does. Those buffers are not in the run's checkpoint: a resumed ``two_step``
        run restarts them at zero.
        """
        group = self.main_group
        if group is None or "lr" not in group:
            raise FeatgapError("AFD update=two_step needs the main optimiser built from AFD.param_groups(student) "
                               "(the Trainer does this)")
        if self.disentangler_optimizer is None:
            self.disentangler_optimizer = torch.optim.SGD(
                group["params"], lr=group["lr"], momentum=group.get("momentum", 0.0),
                weight_decay=group.get("weight_decay", 0.0), nesterov=group.get("nesterov", False))
        opt = self.disentangler_optimizer
        for g in opt.param_groups:
            g["lr"] = group["lr"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # the main step starts from no gradient

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``summed``: return L_conf + L_elim + L_main for the Trainer's one step.

        ``two_step``: take the disentangler step on L_conf + L_elim here, then run the student
        again on the same ``x'`` (weights moved; BN statistics see the batch twice) and return
        L_main for the Trainer's step. The metrics are those of the first forward pass, with
        ``l_main`` from the second.
        """
        a = self.attack
        x_adv = pgd(model, x, y, eps=eps, steps=a.steps, step_size=a.step_size, norm=a.norm)
        t = self.terms(model, x, x_adv, y)
        metrics = {"adv_acc": accuracy(t["logits1"], y), "l_conf": t["conf"].detach(),
                   "l_elim": t["elim"].detach(), "l_main": t["main"].detach(),
                   "conf_hit": (t["logits2"].argmax(1) == t["y_conf"]).float().mean().detach()}
        if self.update == "summed":
            return t["conf"] + t["elim"] + t["main"], metrics
        self._disentangler_step(t["conf"] + t["elim"])
        main = self.terms(model, x, x_adv, y)["main"]
        metrics["l_main"] = main.detach()
        return main, metrics


def load_student(run_dir: str, device: torch.device | str = "cpu") -> AFDStudent:
    """The AFD student of a run (with D1 and D2), from its latest checkpoint (EMA weights if kept).

    :meth:`AFD.load_wrapper <featgap.methods.base.Method.load_wrapper>`, with a clearer error
    for a run of another method.
    """
    method = runs.read_config(run_dir)["config"]["method"]
    if method != AFD.name:
        raise FeatgapError(f"{run_dir} is a {method} run; only afd runs have a student")
    return AFD.load_wrapper(run_dir, device)
