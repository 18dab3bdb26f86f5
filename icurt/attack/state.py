"""What the sparse attack keeps per batch (plain torch, no I/O): the per-sample records of its
first and best adversarial examples, the state of a batch mid-attack, and a batch's result."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class Records:
    """Per-sample records of an attack: the first adversarial example and the lowest-loss one."""

    first_iteration: torch.Tensor  # (B,) -1 until found
    first_loss: torch.Tensor       # (B,) inf until found
    first_p: torch.Tensor          # (B, T, F)
    best_iteration: torch.Tensor   # (B,) -1 until found
    best_loss: torch.Tensor        # (B,) inf until found
    best_p: torch.Tensor           # (B, T, F)
    best_logits: torch.Tensor      # (B, C) NaN until found

    @classmethod
    def empty(cls, x: torch.Tensor, num_classes: int) -> "Records":
        batch = x.shape[0]
        never = torch.full((batch,), -1, dtype=torch.int64, device=x.device)
        return cls(first_iteration=never, first_loss=torch.full((batch,), math.inf, device=x.device),
                   first_p=torch.zeros_like(x), best_iteration=never.clone(),
                   best_loss=torch.full((batch,), math.inf, device=x.device), best_p=torch.zeros_like(x),
                   best_logits=torch.full((batch, num_classes), math.nan, device=x.device))

    def take(self, index: torch.Tensor) -> "Records":
        return Records(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def clone(self) -> "Records":
        return Records(**{f.name: getattr(self, f.name).clone() for f in fields(self)})

    def put(self, index: torch.Tensor, part: "Records") -> None:
        for f in fields(self):
            getattr(self, f.name)[index] = getattr(part, f.name)


@dataclass
class AttackState:
    """One batch mid-attack. The working tensors hold only the samples still being optimised
    (`rows` maps them to the batch); `stopped` holds the final records of the others."""

    rows: torch.Tensor            # (A,) batch positions of the active samples
    x: torch.Tensor               # (A, T, F) inputs in [0, 1]
    target: torch.Tensor          # (A,) class to move away from
    p: torch.Tensor               # (A, T, F) the perturbation (leaf, requires grad)
    lambda_1: torch.Tensor        # (A,) each sample's current L1 weight in the proximal step
    lower: torch.Tensor           # -x
    upper: torch.Tensor           # 1 - x
    optimizer: torch.optim.Optimizer
    records: Records              # of the active samples
    stopped: Records              # batch-sized; rows of stopped samples are final
    orig_logits: torch.Tensor     # (B, C)
    window_best_loss: torch.Tensor  # (A,) best loss at the last early-stop check
    loss_divisor: float = 1.0     # the batch's loss is summed, then divided by this (1: sum; B: mean)
    adversarial: torch.Tensor | None = None  # (A,) whether the newest checked iterate is adversarial
    iteration: int = 0            # updates applied so far
    checked: int = 0              # newest iterate whose logits are recorded


@dataclass
class BatchResult:
    """Per-sample outcome as numpy arrays (zeros / -1 / NaN where no adversarial example was found)."""

    success: np.ndarray           # (B,) bool
    first_iteration: np.ndarray   # (B,) int64
    best_iteration: np.ndarray    # (B,) int64
    first_loss: np.ndarray        # (B,) float32, the attack's loss at the first example (NaN: none)
    best_loss: np.ndarray         # (B,) float32, the lowest loss (NaN: none)
    first_p: np.ndarray           # (B, T, F) float32
    best_p: np.ndarray            # (B, T, F) float32
    orig_logits: np.ndarray       # (B, C) float32
    adv_logits: np.ndarray        # (B, C) float32, of the best example
