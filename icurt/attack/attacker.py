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
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
import torch
from torch import nn

from icurt.config import OPTIMIZERS
from icurt.errors import IcurtError

OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}


@dataclass(frozen=True)
class AttackHparams:
    kappa: float
    lambda_1: float
    learning_rate: float
    optimizer: str
    batch_size: int
    max_perts: int = 0
    lambda_decay: float = 1.0      # < 1: per-sample L1 weight search (see the module docstring)
    lambda_decay_every: int = 10   # iterations between its adjustments

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise IcurtError(f"unknown attack optimizer '{self.optimizer}'; choose from {', '.join(OPTIMIZERS)}")
        if (self.batch_size < 1 or self.learning_rate <= 0 or self.lambda_1 < 0 or self.kappa < 0
                or not 0 < self.lambda_decay <= 1 or self.lambda_decay_every < 1):
            raise IcurtError(f"invalid attack hyperparameters {self}; batch_size, learning_rate and "
                             "lambda_decay_every must be positive, kappa and lambda_1 non-negative, "
                             "lambda_decay in (0, 1]")

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


@dataclass
class AttackState:
    """One batch mid-attack: the perturbation, its optimizer and the per-sample records so far."""

    x: torch.Tensor               # (B, T, F) inputs in [0, 1]
    target: torch.Tensor          # (B,) class to move away from
    p: torch.Tensor               # (B, T, F) the perturbation (leaf, requires grad)
    lambda_1: torch.Tensor        # (B,) each sample's current L1 weight in the proximal step
    lower: torch.Tensor           # -x
    upper: torch.Tensor           # 1 - x
    optimizer: torch.optim.Optimizer
    orig_logits: torch.Tensor     # (B, C)
    first_iteration: torch.Tensor  # (B,) -1 until found
    first_p: torch.Tensor
    best_iteration: torch.Tensor
    best_loss: torch.Tensor       # (B,) inf until found
    best_p: torch.Tensor
    best_logits: torch.Tensor     # (B, C) NaN until found
    adversarial: torch.Tensor | None = None  # (B,) whether the newest checked iterate is adversarial
    iteration: int = 0            # updates applied so far
    checked: int = 0              # newest iterate whose logits are recorded


@dataclass
class BatchResult:
    """Per-sample outcome as numpy arrays (zeros / -1 / NaN where no adversarial example was found)."""

    success: np.ndarray           # (B,) bool
    first_iteration: np.ndarray   # (B,) int64
    best_iteration: np.ndarray    # (B,) int64
    first_p: np.ndarray           # (B, T, F) float32
    best_p: np.ndarray            # (B, T, F) float32
    orig_logits: np.ndarray       # (B, C) float32
    adv_logits: np.ndarray        # (B, C) float32, of the best example


@dataclass
class SampleResults(BatchResult):
    """BatchResult for every sample given to attack_samples, plus whether it was attacked."""

    attacked: np.ndarray = None   # (N,) bool

    def select(self, index) -> "SampleResults":
        return SampleResults(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list["SampleResults"]) -> "SampleResults":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


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
    """The batched sparse attack on one model: init a batch, step it in blocks, read its result."""

    def __init__(self, model: nn.Module, hp: AttackHparams, device: str = "cpu"):
        self.hp, self.device = hp, torch.device(device)
        self.model = attack_model(model, str(self.device))

    @torch.no_grad()
    def logits(self, x) -> torch.Tensor:
        """The model's logits for x (B, T, F), as the attack sees them."""
        return self.model(torch.as_tensor(x, dtype=torch.float32).to(self.device)).float()

    def init(self, x, y) -> AttackState:
        """A fresh state for inputs x (B, T, F) in [0, 1]; y is the class each sample is pushed away from."""
        x = torch.as_tensor(x, dtype=torch.float32).to(self.device).contiguous()
        target = torch.as_tensor(y, dtype=torch.int64).to(self.device)
        orig_logits = self.logits(x)
        batch = x.shape[0]
        p = torch.zeros_like(x, requires_grad=True)
        optimizer = OPTIMIZER_CLASSES[self.hp.optimizer]([p], lr=self.hp.learning_rate)
        never = torch.full((batch,), -1, dtype=torch.int64, device=self.device)
        return AttackState(
            x=x, target=target, p=p, lambda_1=torch.full((batch,), self.hp.lambda_1, device=self.device), lower=-x, upper=1.0 - x, optimizer=optimizer, orig_logits=orig_logits,
            first_iteration=never.clone(), first_p=torch.zeros_like(x), best_iteration=never.clone(),
            best_loss=torch.full((batch,), math.inf, device=self.device), best_p=torch.zeros_like(x),
            best_logits=torch.full_like(orig_logits, math.nan))

    def step(self, state: AttackState, iterations: int) -> AttackState:
        """Advance the batch by `iterations` updates (callable repeatedly)."""
        for _ in range(iterations):
            logits = self.model(state.x + state.p).float()
            margin_loss = torch.clamp(self._margin(logits, state.target) + self.hp.kappa, min=0.0)
            if state.checked < state.iteration:
                self._record(state, logits.detach(), margin_loss.detach())
            state.optimizer.zero_grad(set_to_none=True)
            margin_loss.sum().backward()
            state.optimizer.step()
            with torch.no_grad():
                if self.hp.lambda_decay < 1 and (state.iteration + 1) % self.hp.lambda_decay_every == 0:
                    self._adapt_lambda(state)
                self._proximal_step(state)
            state.iteration += 1
        return state

    def result(self, state: AttackState) -> BatchResult:
        """The per-sample records so far (the newest iterate included)."""
        if state.checked < state.iteration:
            with torch.no_grad():
                logits = self.model(state.x + state.p).float()
                self._record(state, logits, torch.clamp(self._margin(logits, state.target) + self.hp.kappa, min=0.0))
        found = state.first_iteration >= 0
        return BatchResult(
            success=_np(found), first_iteration=_np(state.first_iteration),
            best_iteration=_np(state.best_iteration), first_p=_np(state.first_p),
            best_p=_np(state.best_p), orig_logits=_np(state.orig_logits), adv_logits=_np(state.best_logits))

    @staticmethod
    def _margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Z_t − max_{j≠t} Z_j per sample."""
        true_logit = logits.gather(1, target[:, None]).squeeze(1)
        others = logits.scatter(1, target[:, None], -math.inf)
        return true_logit - others.max(dim=1).values

    def _record(self, state: AttackState, logits: torch.Tensor, margin_loss: torch.Tensor) -> None:
        # Masked updates with torch.where keep every sample's bookkeeping in parallel, with no sync.
        p = state.p.detach()
        adversarial = logits.argmax(dim=1) != state.target
        loss = margin_loss + self.hp.lambda_1 * p.abs().sum(dim=(1, 2))
        new_first = adversarial & (state.first_iteration < 0)
        better = adversarial & (loss < state.best_loss)
        state.first_iteration = torch.where(new_first, state.iteration, state.first_iteration)
        state.first_p = torch.where(new_first[:, None, None], p, state.first_p)
        state.best_iteration = torch.where(better, state.iteration, state.best_iteration)
        state.best_loss = torch.where(better, loss, state.best_loss)
        state.best_p = torch.where(better[:, None, None], p, state.best_p)
        state.best_logits = torch.where(better[:, None], logits, state.best_logits)
        state.adversarial = adversarial
        state.checked = state.iteration

    def _adapt_lambda(self, state: AttackState) -> None:
        """Lower the L1 weight of samples that are not adversarial now; raise it back (to at most
        lambda_1) for those that are — EAD's per-sample search over c, folded into one run."""
        if state.adversarial is None:
            return
        raised = torch.clamp(state.lambda_1 / self.hp.lambda_decay, max=self.hp.lambda_1)
        state.lambda_1 = torch.where(state.adversarial, raised, state.lambda_1 * self.hp.lambda_decay)

    def _proximal_step(self, state: AttackState) -> None:
        p = state.p
        threshold = self.hp.learning_rate * state.lambda_1[:, None, None] / self._preconditioner(state)
        shrunk = torch.clamp(p.abs() - threshold, min=0.0)
        p.copy_(torch.minimum(torch.maximum(torch.sign(p) * shrunk, state.lower), state.upper))
        cap = self.hp.max_perts
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


def _np(tensor: torch.Tensor) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array.astype(np.float32) if array.dtype.kind == "f" else array


ReportFn = Callable[[int, SampleResults], "bool | None"]


def attack_samples(model: nn.Module, x, y, hp: AttackHparams, iterations: int, device: str = "cpu",
                   attack_misclassified: bool = False, report_every: int | None = None,
                   on_report: ReportFn | None = None) -> SampleResults:
    """Attack all samples in consecutive batches of hp.batch_size; misclassified ones only if asked.

    With `report_every`, all batches advance together in blocks and `on_report(iterations_done,
    results so far)` runs after each block; it returns False to stop early.
    """
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
    if x.ndim != 3 or len(x) != len(y):
        raise IcurtError(f"attack inputs must be (N, T, F) with N labels, got {x.shape} and {y.shape}")
    if len(x) and (x.min() < 0 or x.max() > 1):
        raise IcurtError("attack inputs must be scaled to [0, 1]; use a preprocess run's dataset")
    attack = SparseAttack(model, hp, device)
    jobs = (_BatchJob.start(attack, x[i:i + hp.batch_size], y[i:i + hp.batch_size], attack_misclassified)
            for i in range(0, len(x), hp.batch_size))
    if not report_every:  # one batch at a time, so only one batch's state is ever held
        parts = [job.advance(attack, iterations).result(attack) for job in jobs]
        return SampleResults.concat(parts) if parts else _collect(attack, [], x.shape)
    batches = list(jobs)
    done = 0
    while done < iterations:
        todo = min(report_every, iterations - done)
        for job in batches:
            job.advance(attack, todo)
        done += todo
        if on_report is not None and on_report(done, _collect(attack, batches, x.shape)) is False:
            break
    return _collect(attack, batches, x.shape)


@dataclass
class _BatchJob:
    """One batch: the full-size original outputs plus the state of its attacked subset."""

    attacked: np.ndarray
    orig_logits: np.ndarray
    shape: tuple
    state: AttackState | None

    @classmethod
    def start(cls, attack: SparseAttack, x: np.ndarray, y: np.ndarray, attack_misclassified: bool) -> "_BatchJob":
        orig_logits = _np(attack.logits(x))
        prediction = orig_logits.argmax(axis=1)
        attacked = np.ones(len(y), bool) if attack_misclassified else prediction == y
        state = attack.init(x[attacked], prediction[attacked]) if attacked.any() else None
        return cls(attacked=attacked, orig_logits=orig_logits, shape=x.shape, state=state)

    def advance(self, attack: SparseAttack, iterations: int) -> "_BatchJob":
        if self.state is not None:
            attack.step(self.state, iterations)
        return self

    def result(self, attack: SparseAttack) -> SampleResults:
        n, t, f = self.shape
        c = self.orig_logits.shape[1]
        out = SampleResults(
            success=np.zeros(n, bool), first_iteration=np.full(n, -1, np.int64),
            best_iteration=np.full(n, -1, np.int64), first_p=np.zeros((n, t, f), np.float32),
            best_p=np.zeros((n, t, f), np.float32), orig_logits=self.orig_logits,
            adv_logits=np.full((n, c), np.nan, np.float32), attacked=self.attacked.copy())
        if self.state is not None:
            part = attack.result(self.state)
            for name in ("success", "first_iteration", "best_iteration", "first_p", "best_p", "adv_logits"):
                getattr(out, name)[self.attacked] = getattr(part, name)
        return out


def _collect(attack: SparseAttack, batches: list[_BatchJob], shape: tuple) -> SampleResults:
    if not batches:  # no samples: an empty result of the right shapes
        batches = [_BatchJob(np.zeros(0, bool), np.zeros((0, 2), np.float32), (0, *shape[1:]), None)]
    return SampleResults.concat([job.result(attack) for job in batches])
