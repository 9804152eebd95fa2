"""AFA: adversarial feature alignment (arXiv 2402.12187; docs ``docs/methods/afa.md``), as three methods.

AFA trains in two stages (``featgap train --method afa`` runs both; :mod:`featgap.train.stages`):

1. **Pre-training** (method ``afa``): encoder ``f`` and projection head ``g`` minimise a
   *supervised contrastive* loss over clean and adversarial views, where the adversarial view is
   made by PGD that **maximises** that same loss — the worst feature misalignment in the ε-ball
   (:mod:`featgap.methods.contrastive` explains the loss and the attack)::

       min_{f,g}  E [ SupCon( g(f(x)), g(f(x̃)) ; y, τ ) ],   x̃ = argmax_{‖x̃−x‖≤ε} SupCon_adv-anchors

   No classifier is trained by this loss. featgap adds an *online linear probe* (option
   ``online_probe``, on by default): the model's own linear ``head`` learns CE on the
   **detached** clean features, so it cannot change the encoder, but it lets the per-epoch
   monitor report accuracy while pre-training and gives stage 2 a warm start.
2. **Fine-tuning** of the classifier with PGD-AT, one of
   * ``alf``, adversarial *linear* fine-tuning: the encoder is frozen (weights and batch-norm
     statistics), only the linear head learns — the paper's "baseline AFA";
   * ``aff``, adversarial *full* fine-tuning: encoder and head learn (PGD-AT from the AFA weights).

``afa_trades`` is the paper's joint variant, one stage: TRADES(β) on encoder + linear head plus
λ × the AFA contrastive term, each term with its own inner maximisation (a KL attack and a
contrastive attack).

Options (``TrainConfig.extra``, all recorded in config.json; declared in :attr:`AFA.options`):
``temperature`` τ, ``anchors`` (``all`` | ``adversarial``), ``attack_objective`` (``supcon`` |
``ce``: CE through the linear head), ``proj_dim`` (128), ``online_probe`` and ``probe_lr_scale``;
``afa_trades`` shares the first four (one ``--afa-*`` flag each) and has ``lam`` λ and TRADES'
``beta`` instead of the probe (its head is trained by TRADES).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featgap.attacks import cross_entropy, eval_mode, pgd
from featgap.errors import FeatgapError
from featgap.methods.base import AttackSettings, Method, Option, accuracy
from featgap.methods.contrastive import ANCHORS, ProjectionHead, afa_views_loss, contrastive_objective, projector
from featgap.methods.extended import ExtendedModel
from featgap.methods.pgd_at import PGDAT
from featgap.methods.trades import TRADES

ATTACK_OBJECTIVES = ("supcon", "ce")

# Options of both afa and afa_trades: declared once, so each is one --afa-* flag for both methods.
TEMPERATURE = Option("temperature", float, 0.1, "AFA τ, temperature of the supervised contrastive loss",
                     flag="--afa-temperature")
ANCHORS_OPTION = Option("anchors", str, "all", "AFA anchors of the contrastive loss: all views, or adversarial only",
                        choices=ANCHORS, flag="--afa-anchors")
ATTACK_OBJECTIVE = Option("attack_objective", str, "supcon", "what AFA's PGD maximises: the contrastive loss "
                          "(supcon) or CE through the linear head (ce)", choices=ATTACK_OBJECTIVES, flag="--afa-attack")
PROJ_DIM = Option("proj_dim", int, 128, "AFA projection head's output size", flag="--afa-proj-dim")
PROJECTION = "projection"


class ProjectedModel(ExtendedModel):
    """A featgap model plus AFA's projection head ``g`` (registered as ``projection``).

    ``forward`` is still the model's logits (through its linear ``head``); :meth:`project` is
    the contrastive path ``x ↦ g(f(x))``, unit vectors of ``proj_dim``.
    """

    def __init__(self, model: nn.Module, proj_dim: int = 128) -> None:
        super().__init__(model)
        self.projection = ProjectionHead(model.feature_dim, proj_dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(x))


class FrozenEncoder(ExtendedModel):
    """The plain model with everything but ``head`` frozen: no gradients, and batch norm in eval mode.

    ``requires_grad_(False)`` alone is not enough for a frozen encoder: in training mode a
    batch-norm layer still updates its running mean and variance on every forward pass.
    :meth:`train` therefore keeps every child except ``head`` in eval mode. No method-owned
    layers: the ``state_dict`` is exactly the plain model's.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        for name, child in self.named_children():
            if name != "head":
                child.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenEncoder:
        super().train(mode)
        for name, child in self.named_children():
            if name != "head":
                child.train(False)
        return self


def _check_projected(model: nn.Module) -> ProjectedModel:
    if not isinstance(model, ProjectedModel):
        raise RuntimeError("AFA methods train a ProjectedModel; call method.start(model) first (the Trainer does)")
    return model


class _ContrastiveTerm:
    """AFA's min–max term on a :class:`ProjectedModel`: the attack, then the loss over both views."""

    def __init__(self, attack: AttackSettings, temperature: float, anchors: str, attack_objective: str) -> None:
        if not temperature > 0:
            raise FeatgapError(f"AFA temperature must be positive; got {temperature}")
        self.attack, self.temperature = attack, float(temperature)
        self.anchors, self.attack_objective = anchors, attack_objective

    def adversarial_views(self, model: ProjectedModel, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        """PGD (model in eval mode) maximising the adversarial anchors' SupCon loss, or CE (option)."""
        a = self.attack
        if self.attack_objective == "ce":
            objective = cross_entropy
        else:
            with torch.no_grad(), eval_mode(model):
                z_nat = model.project(x)  # the clean views the attack pushes away from (fixed targets)
            objective = contrastive_objective(projector(model.projection), z_nat, y, temperature=self.temperature)
        return pgd(model, x, y, eps=eps, steps=a.steps, step_size=a.step_size, norm=a.norm, objective=objective)

    def __call__(self, model: ProjectedModel, x: torch.Tensor, y: torch.Tensor, eps: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, clean pooled features)`` — the features let a caller train a probe on them."""
        x_adv = self.adversarial_views(model, x, y, eps)
        h_nat = model.features(x)  # clean and adversarial views in two passes, as TRADES does:
        h_adv = model.features(x_adv)  # batch-norm statistics are then never mixed
        loss = afa_views_loss(model.projection(h_nat), model.projection(h_adv), y,
                              temperature=self.temperature, anchors=self.anchors)
        return loss, h_nat


class _WithProjection(Method):
    """What ``afa`` and ``afa_trades`` share: a :class:`ProjectedModel` and the contrastive term."""

    def __init__(self, attack: AttackSettings, **options: object) -> None:
        super().__init__(attack, **options)
        o = self.values
        self.term = _ContrastiveTerm(attack, float(o["temperature"]), str(o["anchors"]), str(o["attack_objective"]))

    def start(self, model: nn.Module) -> ProjectedModel:
        return ProjectedModel(model, int(self.values["proj_dim"]))


class AFA(_WithProjection):
    r"""AFA stage 1: adversarial supervised-contrastive pre-training of the encoder (+ online probe).

    Paper: Park et al., "Adversarial Feature Alignment: Balancing Robustness and Accuracy in Deep
    Learning via Adversarial Training", AISec 2024, https://arxiv.org/abs/2402.12187

    Loss: SupCon(g(f(x)), g(f(x̃)); y, τ) [+ CE(head(stopgrad f(x)), y)],  x̃ = PGD maximising SupCon.

    Options:
        temperature (float): τ of the supervised contrastive loss (default 0.1).
        anchors (str): ``all`` views are anchors, or ``adversarial`` ones only (default all).
        attack_objective (str): what the PGD maximises, ``supcon`` or ``ce`` through the linear
            head (default supcon).
        proj_dim (int): output size of the projection head g (default 128).
        online_probe (bool): train the linear head on detached clean features (default True).
        probe_lr_scale (float): the online probe's learning rate relative to the encoder's: the
            linear ``head`` is its own parameter group with ``lr_scale`` = this, so at every step
            its lr is ``scheduled lr × probe_lr_scale`` (default 0.1; :meth:`param_groups`).

    ``featgap train --method afa`` follows it with stage 2, :class:`ALF` or :class:`AFF` (``--finetune``).
    """

    name = "afa"
    pretrains = True
    options = (TEMPERATURE, ANCHORS_OPTION, ATTACK_OBJECTIVE, PROJ_DIM,
               Option("online_probe", bool, True, "train the linear head on detached clean features while AFA "
                      "pre-trains (monitoring, warm start of stage 2)"),
               Option("probe_lr_scale", float, 0.1, "the online probe's lr relative to the encoder's (its own "
                      "parameter group: lr × this at every step of the schedule)"))

    def __init__(self, attack: AttackSettings, **options: object) -> None:
        super().__init__(attack, **options)
        if self.values["attack_objective"] == "ce" and not self.values["online_probe"]:
            raise FeatgapError("method afa: attack_objective 'ce' attacks through the linear head, which only the "
                               "online probe trains; keep online_probe on")
        if not float(self.values["probe_lr_scale"]) > 0:
            raise FeatgapError(f"method afa: probe_lr_scale must be positive; got {self.values['probe_lr_scale']}")

    def param_groups(self, model: nn.Module) -> list[dict]:
        """The encoder and projection head at the scheduled lr, the online probe (``head``) at
        ``lr × probe_lr_scale``.

        The Trainer sets each group's lr to ``lr(t) × group["lr_scale"]`` at every step, so the
        ratio holds through warm-up and every milestone. The groups follow the order of
        ``model.parameters()`` (runs of consecutive parameters), so a parameter keeps its index
        in the optimiser's state whatever the grouping. Without the online probe the head gets no
        gradient and one group is returned.

        Example::

            >>> groups = AFA(AttackSettings()).param_groups(model)   # model = AFA.start(plain)
            >>> [g["lr_scale"] for g in groups]                        # stage1…pool, head, projection
            [1.0, 0.1, 1.0]
        """
        if not self.values["online_probe"]:
            return super().param_groups(model)
        scale = float(self.values["probe_lr_scale"])
        groups: list[dict] = []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            s = scale if name.startswith("head.") else 1.0
            if groups and groups[-1]["lr_scale"] == s:
                groups[-1]["params"].append(p)
            else:
                groups.append({"params": [p], "lr_scale": s})
        return groups

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = _check_projected(model)
        contrastive, h_nat = self.term(model, x, y, eps)
        metrics = {"l_con": contrastive.detach()}
        loss = contrastive
        if self.values["online_probe"]:
            logits = model.head(h_nat.detach())  # the probe cannot move the encoder
            loss = loss + F.cross_entropy(logits.float(), y)
            metrics["probe_acc"] = accuracy(logits, y)
        return loss, metrics


class ALF(PGDAT):
    r"""AFA stage 2, adversarial linear fine-tuning: PGD-AT of the linear head on a frozen encoder.

    Paper: the "baseline AFA" of Park et al., AISec 2024, https://arxiv.org/abs/2402.12187

    Loss: CE(f(x'), y),  x' = PGD-CE; only the head learns (encoder weights and batch-norm frozen).

    Options: none.
    """

    name = "alf"
    needs_init = True

    def start(self, model: nn.Module) -> FrozenEncoder:
        return FrozenEncoder(model)


class AFF(PGDAT):
    r"""AFA stage 2, adversarial full fine-tuning: PGD-AT of encoder and head from the AFA weights.

    Paper: Park et al., AISec 2024, https://arxiv.org/abs/2402.12187 (featgap's second variant).

    Loss: CE(f(x'), y),  x' = PGD-CE (as PGD-AT, started from stage 1).

    Options: none.
    """

    name = "aff"
    needs_init = True


class AFATrades(_WithProjection):
    r"""AFA + TRADES, one stage: TRADES(β) on encoder + linear head plus λ · the AFA min–max term.

    Paper: the joint variant of Park et al., AISec 2024, https://arxiv.org/abs/2402.12187

    Loss: CE(f(x), y) + β·KL(p(x) ‖ p(x̂)) + λ·SupCon(g(f(x)), g(f(x̃))),  x̂ = KL attack, x̃ = SupCon attack.

    Options:
        lam (float): λ, weight of the AFA contrastive term (default 1.0).
        temperature (float), anchors (str), attack_objective (str), proj_dim (int): as for
            :class:`AFA` (default 0.1, all, supcon, 128).
        beta (float): TRADES β, weight of the KL term (default 6.0).
    """

    name = "afa_trades"
    options = (Option("lam", float, 1.0, "λ, weight of the AFA contrastive term in afa_trades", flag="--afa-lambda"),
               TEMPERATURE, ANCHORS_OPTION, ATTACK_OBJECTIVE, PROJ_DIM, *TRADES.options)

    def __init__(self, attack: AttackSettings, **options: object) -> None:
        super().__init__(attack, **options)
        self.lam = float(self.values["lam"])
        self.trades = TRADES(attack, beta=self.values["beta"])

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = _check_projected(model)
        trades, metrics = self.trades.loss(model, x, y, eps)
        contrastive, _ = self.term(model, x, y, eps)
        return trades + self.lam * contrastive, {**metrics, "l_trades": trades.detach(), "l_con": contrastive.detach()}


__all__ = ["AFA", "AFF", "ALF", "AFATrades", "ATTACK_OBJECTIVES", "FrozenEncoder", "ProjectedModel"]
