"""The sparse adversarial attack (plain torch, batched, no Ray).

For each sample x with class t (the model's prediction; the true label when it is correctly
classified) minimise f(x + P) + lambda_1 · ‖P‖₁ with f = max(Z_t − max_{j≠t} Z_j + kappa, 0).
Each iteration takes one step of the configured torch optimizer on f, then the proximal step of
the L1 term (soft-threshold, which makes exact zeros), then projects onto x + P ∈ [0, 1] and, if
`max_perts` > 0, keeps only the max_perts largest |P| of each sample.

Why the threshold is lr · lambda_1 / D: Adam and RMSprop move each element by lr · g / D (D the
optimizer's per-element scale, sqrt of its second-moment estimate); the matching proximal step
thresholds in the same metric, so an element survives only where its gradient outweighs
lambda_1, as in plain ISTA. With SGD (D = 1) it is the textbook lr · lambda_1.

With lambda_decay < 1, every lambda_decay_every iterations each sample's L1 weight in the
proximal step is multiplied by lambda_decay while its iterate is not adversarial and divided by it
(up to lambda_1) while it is: EAD's per-sample binary search over its constant c, folded into one
run, so a sample whose input gradients are all below lambda_1 is not stuck at P = 0. Whatever the
schedule, the best example is the one with the lowest f + lambda_1 · ‖P‖₁ at the configured lambda_1.

Iterate k is the perturbation after k updates; it is checked for adversariality on the forward
pass that also computes its gradient, so each iteration costs one forward and one backward.

With early_stop_patience > 0 a sample stops once its iterate is adversarial, its L1 weight is
back at lambda_1 and its best loss fell by less than EARLY_STOP_TOLERANCE (relative) over the last
early_stop_patience iterations (EAD's abort_early, per sample). Stopped samples leave the batch,
so the model runs only on the samples still moving and a batch ends when all have stopped.

The reference study's attack is the same loop with four switches of AttackMethod (each icurt's
value first): `threshold` "lambda" shrinks every element by exactly lambda_1 per iteration;
`loss_norm` "induced" back-propagates margin + lambda_1 · max_j Σ_t |P_tj| (torch's
matrix_norm(P, ord=1) over hours × features) and judges "best" by it; `loss_reduction` "mean"
divides the batch's loss by its size; `optimizer_state` "carried" starts a batch from the
optimizer state (moments, step counts) the previous batch of the same size left (`init(carry=)`).
The recorded loss is f + lambda_1 · norm with f = max(margin + kappa, 0): the reference's
max(margin, −kappa) + lambda_1 · norm plus the constant kappa.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import nn

from icurt.attack.exact import margin
from icurt.attack.state import AttackState, BatchResult, Records
from icurt.config import AttackMethod
from icurt.errors import IcurtError
from icurt.choices import OPTIMIZERS
from icurt.model.trainer import OPTIMIZER_CLASSES

EARLY_STOP_TOLERANCE = 1e-3   # relative fall of a sample's best loss that still counts as progress


@dataclass(frozen=True)
class AttackHparams:
    """The attack's tuned hyperparameters (the rest of the attack is its AttackMethod)."""

    kappa: float
    lambda_1: float
    learning_rate: float
    optimizer: str
    batch_size: int

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise IcurtError(f"unknown attack optimizer '{self.optimizer}'; choose from {', '.join(OPTIMIZERS)}")
        if self.batch_size < 1 or self.learning_rate <= 0 or self.lambda_1 < 0 or self.kappa < 0:
            raise IcurtError(f"invalid attack hyperparameters {self}; batch_size and learning_rate must "
                             "be positive, kappa and lambda_1 non-negative")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "AttackHparams":
        names = {f.name for f in fields(cls)}
        missing = {"kappa", "lambda_1", "learning_rate", "optimizer", "batch_size"} - set(values)
        if missing:
            raise IcurtError(f"attack hyperparameters lack {', '.join(sorted(missing))}; "
                             "rerun `icurt tune-attack`")
        return cls(**{k: v for k, v in values.items() if k in names})


def attack_model(model: nn.Module, device: str) -> nn.Module:
    """A frozen copy of `model` on `device` that computes eval-mode outputs and allows input gradients.

    cuDNN's RNN backward refuses eval mode, so RNN layers run in train mode with their dropout at 0
    (identical outputs); every other layer (dropout included) stays in eval mode.
    """
    frozen = copy.deepcopy(model).to(device).eval()
    for param in frozen.parameters():
        param.requires_grad_(False)
    for module in frozen.modules():
        if isinstance(module, nn.RNNBase):
            module.dropout = 0.0
            module.train()
    return frozen


class SparseAttack:
    """The batched sparse attack on one model: init a batch, step it in blocks, read its result.

    Everything that defines the attack comes in here: the tuned `hp` and the `method` (cap,
    lambda search, early stop).
    """

    def __init__(self, model: nn.Module, hp: AttackHparams, method: AttackMethod, device: str = "cpu"):
        self.hp, self.method, self.device = hp, method, torch.device(device)
        self.model = attack_model(model, str(self.device))

    @torch.no_grad()
    def logits(self, x) -> torch.Tensor:
        """The model's logits for x (B, T, F), as the attack sees them."""
        return self.model(torch.as_tensor(x, dtype=torch.float32).to(self.device)).float()

    def init(self, x, y, p0=None, max_abs=None, allowed=None, carry: AttackState | None = None) -> AttackState:
        """A fresh state for inputs x (B, T, F) in [0, 1]; y is the class each sample is pushed away from.

        A budget (icurt/attack/budget.py) narrows the box every iterate is projected onto:
        |P_tj| ≤ max_abs_j (F,) scaled units, P = 0 where `allowed` (B, T, F) is False; the
        method's max_perts is its L0 part. `p0` (B, T, F) is a warm start, projected onto the box.
        With `carry` (the finished state of the previous batch) and optimizer_state "carried", the
        optimizer continues from carry's moments and step counts when its batch had the same size
        (the reference's one optimizer per attack, rebuilt only when the batch size changes).
        """
        x = torch.as_tensor(x, dtype=torch.float32).to(self.device).contiguous()
        target = torch.as_tensor(y, dtype=torch.int64).to(self.device)
        orig_logits = self.logits(x)
        batch = x.shape[0]
        lower, upper = -x, 1.0 - x
        if max_abs is not None:
            bound = torch.as_tensor(max_abs, dtype=torch.float32, device=self.device)
            lower, upper = torch.maximum(lower, -bound), torch.minimum(upper, bound)
        if allowed is not None:
            keep = torch.as_tensor(allowed, dtype=torch.bool, device=self.device)
            lower, upper = torch.where(keep, lower, 0.0), torch.where(keep, upper, 0.0)
        start = torch.zeros_like(x) if p0 is None else torch.as_tensor(p0, dtype=torch.float32).to(self.device)
        p = torch.minimum(torch.maximum(start, lower), upper).contiguous().requires_grad_(True)
        optimizer = OPTIMIZER_CLASSES[self.hp.optimizer]([p], lr=self.hp.learning_rate)
        if self.method.optimizer_state == "carried" and carry is not None and carry.p.shape == p.shape:
            optimizer.state[p] = {k: v.clone() if isinstance(v, torch.Tensor) else v
                                  for k, v in carry.optimizer.state[carry.p].items()}
        return AttackState(
            rows=torch.arange(batch, device=self.device), x=x, target=target, p=p,
            lambda_1=torch.full((batch,), self.hp.lambda_1, device=self.device), lower=lower, upper=upper,
            optimizer=optimizer,
            records=Records.empty(x, orig_logits.shape[1]), stopped=Records.empty(x, orig_logits.shape[1]),
            orig_logits=orig_logits, window_best_loss=torch.full((batch,), math.inf, device=self.device),
            loss_divisor=float(max(batch, 1)) if self.method.loss_reduction == "mean" else 1.0,
            checked=0 if p0 is None else -1)   # a warm start is itself a candidate (iterate 0)

    def step(self, state: AttackState, iterations: int) -> AttackState:
        """Advance the batch by `iterations` updates (callable repeatedly)."""
        patience = self.method.early_stop_patience
        for _ in range(iterations):
            if patience and state.iteration and state.iteration % patience == 0:
                self._stop_stalled(state)
            if not len(state.rows):
                state.iteration += 1
                continue
            logits = self.model(state.x + state.p).float()
            margin_loss = torch.clamp(self._margin(logits, state.target) + self.hp.kappa, min=0.0)
            if state.checked < state.iteration:
                self._record(state, logits.detach(), margin_loss.detach())
            state.optimizer.zero_grad(set_to_none=True)
            loss = margin_loss
            if self.method.loss_norm == "induced":
                loss = loss + state.lambda_1 * induced_l1(state.p)
            (loss.sum() / state.loss_divisor).backward()
            state.optimizer.step()
            with torch.no_grad():
                if self.method.lambda_decay < 1 and (state.iteration + 1) % self.method.lambda_decay_every == 0:
                    self._adapt_lambda(state)
                self._proximal_step(state)
            state.iteration += 1
        return state

    def result(self, state: AttackState) -> BatchResult:
        """The per-sample records so far (the newest iterate included)."""
        if state.checked < state.iteration and len(state.rows):
            with torch.no_grad():
                logits = self.model(state.x + state.p).float()
                self._record(state, logits, torch.clamp(self._margin(logits, state.target) + self.hp.kappa, min=0.0))
        records = state.stopped.clone()
        records.put(state.rows, state.records)
        return BatchResult(
            success=to_numpy(records.first_iteration >= 0), first_iteration=to_numpy(records.first_iteration),
            best_iteration=to_numpy(records.best_iteration), first_loss=_finite_or_nan(records.first_loss),
            best_loss=_finite_or_nan(records.best_loss), first_p=to_numpy(records.first_p),
            best_p=to_numpy(records.best_p), orig_logits=to_numpy(state.orig_logits),
            adv_logits=to_numpy(records.best_logits))

    def norm(self, p: torch.Tensor) -> torch.Tensor:
        """The size of each perturbation (B, T, F) that the loss weighs by lambda_1: Σ|P|
        (loss_norm "elementwise") or max_j Σ_t |P_tj| ("induced")."""
        return induced_l1(p) if self.method.loss_norm == "induced" else p.abs().sum(dim=(1, 2))

    _margin = staticmethod(margin)   # Z_t − max_{j≠t} Z_j per sample

    def _record(self, state: AttackState, logits: torch.Tensor, margin_loss: torch.Tensor) -> None:
        # Masked updates with torch.where keep every sample's bookkeeping in parallel, with no sync.
        p, rec = state.p.detach(), state.records
        adversarial = logits.argmax(dim=1) != state.target
        loss = margin_loss + self.hp.lambda_1 * self.norm(p)
        new_first = adversarial & (rec.first_iteration < 0)
        better = adversarial & (loss < rec.best_loss)
        rec.first_iteration = torch.where(new_first, state.iteration, rec.first_iteration)
        rec.first_loss = torch.where(new_first, loss, rec.first_loss)
        rec.first_p = torch.where(new_first[:, None, None], p, rec.first_p)
        rec.best_iteration = torch.where(better, state.iteration, rec.best_iteration)
        rec.best_loss = torch.where(better, loss, rec.best_loss)
        rec.best_p = torch.where(better[:, None, None], p, rec.best_p)
        rec.best_logits = torch.where(better[:, None], logits, rec.best_logits)
        state.adversarial = adversarial
        state.checked = state.iteration

    @torch.no_grad()
    def _stop_stalled(self, state: AttackState) -> None:
        """Move samples that have an adversarial example and whose best loss stalled over the last
        window out of the working set (one host sync per window)."""
        best = state.records.best_loss
        stalled = torch.isfinite(state.window_best_loss) & (
            best >= state.window_best_loss * (1.0 - EARLY_STOP_TOLERANCE))
        if state.adversarial is not None:
            stalled &= state.adversarial & (state.lambda_1 >= self.hp.lambda_1)
        state.window_best_loss = best.clone()
        if not bool(stalled.any()):
            return
        gone, keep = stalled.nonzero().squeeze(1), (~stalled).nonzero().squeeze(1)
        state.stopped.put(state.rows[gone], state.records.take(gone))
        state.records = state.records.take(keep)
        for name in ("rows", "x", "target", "lambda_1", "lower", "upper", "window_best_loss", "adversarial"):
            if getattr(state, name) is not None:
                setattr(state, name, getattr(state, name)[keep])
        state.p, state.optimizer = _keep_rows(state.optimizer, state.p, keep)

    def _adapt_lambda(self, state: AttackState) -> None:
        """Lower the L1 weight of samples that are not adversarial now; raise it back (to at most
        lambda_1) for those that are — EAD's per-sample search over c, folded into one run."""
        if state.adversarial is None:
            return
        raised = torch.clamp(state.lambda_1 / self.method.lambda_decay, max=self.hp.lambda_1)
        state.lambda_1 = torch.where(state.adversarial, raised, state.lambda_1 * self.method.lambda_decay)

    def _proximal_step(self, state: AttackState) -> None:
        p = state.p
        threshold = state.lambda_1[:, None, None]
        if self.method.threshold == "preconditioned":
            threshold = self.hp.learning_rate * threshold / self._preconditioner(state)
        shrunk = torch.clamp(p.abs() - threshold, min=0.0)
        p.copy_(torch.minimum(torch.maximum(torch.sign(p) * shrunk, state.lower), state.upper))
        cap = self.method.max_perts
        if 0 < cap < p[0].numel():
            flat = p.view(p.shape[0], -1)
            keep = torch.zeros_like(flat, dtype=torch.bool)
            keep.scatter_(1, flat.abs().topk(cap, dim=1).indices, True)
            flat.mul_(keep)

    def _preconditioner(self, state: AttackState):
        """The optimizer's per-element step scale D (its update is lr · g / D)."""
        opt_state = state.optimizer.state[state.p]
        group = state.optimizer.param_groups[0]
        if self.hp.optimizer == "adam":
            steps = float(opt_state["step"])
            bias_correction2 = 1.0 - group["betas"][1] ** steps
            return opt_state["exp_avg_sq"].sqrt() / math.sqrt(bias_correction2) + group["eps"]
        if self.hp.optimizer == "rmsprop":
            return opt_state["square_avg"].sqrt() + group["eps"]
        return 1.0


def induced_l1(p: torch.Tensor) -> torch.Tensor:
    """The induced matrix 1-norm of each (T, F) perturbation of p (B, T, F): the largest
    per-feature column sum max_j Σ_t |P_tj| (the reference's torch.linalg.matrix_norm(P, ord=1))."""
    return torch.linalg.matrix_norm(p, ord=1)


def _finite_or_nan(tensor: torch.Tensor) -> np.ndarray:
    return to_numpy(torch.where(torch.isfinite(tensor), tensor, torch.nan))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array.astype(np.float32) if array.dtype.kind == "f" else array


def _keep_rows(optimizer: torch.optim.Optimizer, p: torch.Tensor, keep: torch.Tensor):
    """A new leaf holding p's `keep` rows and an optimizer of the same kind continuing from the
    same per-element state (moment estimates sliced, step counts kept)."""
    kept = p.detach()[keep].clone().requires_grad_(True)
    group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    new_optimizer = type(optimizer)([kept], **group)
    new_optimizer.state[kept] = {k: v[keep] if isinstance(v, torch.Tensor) and v.shape == p.shape else v
                                 for k, v in optimizer.state[p].items()}
    return kept, new_optimizer
