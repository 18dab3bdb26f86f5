"""Arithmetic the attack's claims can stand on: fp32 without TF32, and the margin they are judged by.

With kappa 0 the best example sits on the decision boundary (margins of −1e-5), so a kernel's
rounding decides whether it flips the model. cuDNN's default TF32 made 0.7 % of the claimed flips
fail a re-run in another batch on an H200; with TF32 off all re-verified. On a CPU both switches
are no-ops. attack_samples re-verifies every claimed flip (samples.verify_successes).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def exact_fp32():
    """TF32 off for cuDNN (the LSTM) and CUDA matmuls inside the block; the previous flags after."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    try:
        saved = (cudnn.allow_tf32, matmul.allow_tf32)
    except RuntimeError:  # flags set through torch's newer fp32_precision API disagree: leave TF32 off after
        saved = None
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        if saved is not None:
            cudnn.allow_tf32, matmul.allow_tf32 = saved


def margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Z_t − max_{j≠t} Z_j per sample of logits (B, C); target (B,)."""
    own = logits.gather(1, target[:, None]).squeeze(1)
    return own - logits.scatter(1, target[:, None], -torch.inf).max(dim=1).values
