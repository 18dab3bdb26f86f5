"""The attack's batch size: for throughput wherever it cannot change a result.

With icurt's method (loss_reduction "sum", optimizer_state "per_batch": Adam's moments are per
element) a sample's attack does not depend on the other samples of its batch, so the batch is
chosen for speed alone (AUTO_BATCH_SIZE; tests/attack/test_batching.py checks the independence).
With the reference's method (a batch-mean loss, or optimizer state carried from batch to batch)
the batch size changes the attack, so the tuned size is kept.
"""

from __future__ import annotations

from icurt.config import AttackMethod

# Sample-iterations/s of the BiLSTM-128 (48 h × 19) attack. CUDA, an H200: batch 128 → 38,194;
# 512 → 135,576; 2,048 → 183,796; 8,192 → 172,179. CPU, one thread (an actor's; 2 shared cores,
# 2 runs): 16 → 1,404–1,504; 32 → 1,480–1,618; 64 → 1,452–1,602; 128 → 1,189–1,307;
# 256 → 1,152–1,199; 512 → 965–988.
AUTO_BATCH_SIZE = {"cuda": 2048, "cpu": 64}


def couples_samples(method: AttackMethod) -> bool:
    """True when a sample's attack depends on the rest of its batch: a batch-mean loss (each
    sample's step shrinks with the batch's size) or optimizer state carried between batches."""
    return method.loss_reduction == "mean" or method.optimizer_state == "carried"


def batch_choice(method: AttackMethod, tuned_batch_size: int, configured: int, device: str) -> tuple[int, str]:
    """(batch size, why): [attack].batch_size when > 0 ("configured"); else the tuned size when the
    method couples samples ("tuned"); else AUTO_BATCH_SIZE of the device type ("auto"; device
    "cuda", "cuda:1" or "cpu")."""
    if configured > 0:
        return int(configured), "configured"
    if couples_samples(method):
        return int(tuned_batch_size), "tuned"
    return AUTO_BATCH_SIZE.get(str(device).split(":")[0], AUTO_BATCH_SIZE["cpu"]), "auto"


def attack_batch_size(method: AttackMethod, tuned_batch_size: int, configured: int, device: str) -> int:
    """The batch size the attack (or sweep, or tune-attack trial) runs at; see batch_choice."""
    return batch_choice(method, tuned_batch_size, configured, device)[0]


def resumed_batch_choice(choice: tuple[int, str], recorded_plan: dict) -> tuple[int, str]:
    """`choice` (batch_choice's) for resuming an interrupted run whose plan.json held
    `recorded_plan` ({} when none): an "auto" size becomes the size the run planned, so a run
    started on one device type resumes on another with the batches it already finished (its
    results do not depend on the batch size); a configured or tuned size is left to the plan check."""
    size, reason = choice
    planned = recorded_plan.get("batch_size")
    if reason == "auto" and planned and int(planned) != size:
        return int(planned), "auto (the size the interrupted run planned)"
    return choice
