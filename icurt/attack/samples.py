"""Attacking many samples: consecutive batches of the sparse attack, with their results per sample."""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from icurt.attack.attacker import AttackHparams, SparseAttack, to_numpy
from icurt.attack.exact import exact_fp32, margin
from icurt.attack.state import AttackState, BatchResult
from icurt.config import AttackMethod
from icurt.errors import IcurtError


@dataclass
class SampleResults(BatchResult):
    """BatchResult for every sample given to attack_samples, plus whether it was attacked and
    whether a claimed success failed its re-verification (verify_successes; then success is False)."""

    attacked: np.ndarray = None     # (N,) bool
    unverified: np.ndarray = None   # (N,) bool

    @classmethod
    def concat(cls, parts: list["SampleResults"]) -> "SampleResults":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


ReportFn = Callable[[int, SampleResults], "bool | None"]


def attack_samples(model: nn.Module, x, y, hp: AttackHparams, method: AttackMethod, iterations: int,
                   device: str = "cpu", report_every: int | None = None,
                   on_report: ReportFn | None = None, p0=None, max_abs=None, allowed=None) -> SampleResults:
    """Attack all samples in consecutive batches of hp.batch_size; misclassified ones only if the
    method says so. x is (N, T, F) in scaled [0, 1] units, y (N,) the labels.

    With `report_every`, all batches advance together in blocks and `on_report(iterations_done,
    results so far)` runs after each block; it returns False to stop early. A budget narrows every
    iterate (SparseAttack.init): max_abs (F,) scaled, allowed (N, T, F) bool; p0 (N, T, F) warm-starts.
    With the method's optimizer_state "carried" the batches depend on each other and run as the
    reference runs them (see _attack_in_order); on_report then runs once, at the end.
    The attack runs without TF32 (exact_fp32), and every result, reported or returned, has its
    successes re-verified (verify_successes).
    """
    # writable, so torch can share it without a warning (arrays from the object store are read-only)
    x, y = np.require(x, np.float32, ["W"]), np.asarray(y, dtype=np.int64)
    if x.ndim != 3 or len(x) != len(y):
        raise IcurtError(f"attack inputs must be (N, T, F) with N labels, got {x.shape} and {y.shape}")
    if len(x) and (x.min() < 0 or x.max() > 1):
        raise IcurtError("attack inputs must be scaled to [0, 1]; use a preprocess run's dataset")
    with exact_fp32():
        attack = SparseAttack(model, hp, method, device)
        verified = lambda results: verify_successes(model, x, results, device)  # noqa: E731
        if method.optimizer_state == "carried":
            results = verified(_attack_in_order(attack, x, y, iterations, p0=p0, max_abs=max_abs, allowed=allowed))
            if on_report is not None:  # the batches run one after another: only the end can be reported
                on_report(iterations, results)
            return results
        return _attack_independent(attack, x, y, iterations, verified, report_every, on_report, p0, max_abs,
                                   allowed)


def _attack_independent(attack: SparseAttack, x, y, iterations: int, verified: Callable, report_every, on_report,
                        p0, max_abs, allowed) -> SampleResults:
    """attack_samples for batches that do not depend on each other (optimizer_state "per_batch")."""
    size = attack.hp.batch_size

    def part(values, i):
        return None if values is None else np.asarray(values)[i:i + size]

    jobs = (_BatchJob.start(attack, x[i:i + size], y[i:i + size], attack.method.attack_misclassified,
                            p0=part(p0, i), max_abs=max_abs, allowed=part(allowed, i))
            for i in range(0, len(x), size))
    if not report_every:  # one batch at a time, so only one batch's state is ever held
        parts = [job.advance(attack, iterations).result(attack) for job in jobs]
        return verified(SampleResults.concat(parts) if parts else _collect(attack, [], x.shape))
    batches = list(jobs)
    done = 0
    while done < iterations:
        todo = min(report_every, iterations - done)
        for job in batches:
            job.advance(attack, todo)
        done += todo
        if on_report is not None and on_report(done, verified(_collect(attack, batches, x.shape))) is False:
            break
    return verified(_collect(attack, batches, x.shape))


def verify_successes(model: nn.Module, x: np.ndarray, results: SampleResults, device: str = "cpu") -> SampleResults:
    """`results` for x (N, T, F), scaled, with every claimed success re-checked by a separate forward
    pass of `model` as a report runs it (eval mode, predict_logits' fixed evaluation batch, no TF32)
    on x + best_p and on x + first_p. A success whose re-run margin Z_t − max_{j≠t} Z_j (t: the
    attacked class, the original prediction) is ≥ 0 for either example becomes a failure like a
    sample with none (no examples, iterations −1, losses and adv_logits NaN), flagged in
    `unverified`. Returns new results; the recorded adv_logits of verified ones are kept."""
    from icurt.model.trainer import predict_logits

    claimed = np.flatnonzero(results.success)
    unverified = np.zeros(len(results.success), bool)
    if len(claimed):
        evaluator = _on_device(model, device)
        target = torch.as_tensor(results.orig_logits[claimed].argmax(axis=1), device=device)
        base = torch.as_tensor(np.asarray(x, np.float32)[claimed], device=device)
        for kind in ("best_p", "first_p"):
            p = torch.as_tensor(getattr(results, kind)[claimed], device=device)
            with exact_fp32():
                unverified[claimed] |= to_numpy(margin(predict_logits(evaluator, base + p), target) >= 0)
    if not unverified.any():
        return replace(results, unverified=unverified)
    out = SampleResults.concat([replace(results, unverified=unverified)])   # a copy: the caller's stays
    n = int(unverified.sum())
    _fill(out, unverified, _not_found(results.orig_logits[unverified], results.attacked[unverified],
                                      (n, *results.best_p.shape[1:])))
    return out


def _on_device(model: nn.Module, device: str) -> nn.Module:
    """The model on `device`; a copy when it lives elsewhere, so the caller's model is not moved."""
    current = next(model.parameters(), torch.empty(0)).device
    return model if current == torch.device(device) else copy.deepcopy(model).to(device)


@dataclass
class _BatchJob:
    """One batch: the full-size original outputs plus the state of its attacked subset."""

    attacked: np.ndarray
    orig_logits: np.ndarray
    shape: tuple
    state: AttackState | None

    @classmethod
    def start(cls, attack: SparseAttack, x: np.ndarray, y: np.ndarray, attack_misclassified: bool,
              p0=None, max_abs=None, allowed=None) -> "_BatchJob":
        orig_logits = to_numpy(attack.logits(x))
        prediction = orig_logits.argmax(axis=1)
        attacked = np.ones(len(y), bool) if attack_misclassified else prediction == y
        state = attack.init(x[attacked], prediction[attacked], p0=None if p0 is None else p0[attacked],
                            max_abs=max_abs, allowed=None if allowed is None else allowed[attacked]) \
            if attacked.any() else None
        return cls(attacked=attacked, orig_logits=orig_logits, shape=x.shape, state=state)

    def advance(self, attack: SparseAttack, iterations: int) -> "_BatchJob":
        if self.state is not None:
            attack.step(self.state, iterations)
        return self

    def result(self, attack: SparseAttack) -> SampleResults:
        out = _not_found(self.orig_logits, self.attacked, self.shape)
        if self.state is not None:
            _fill(out, self.attacked, attack.result(self.state))
        return out


ATTACK_FIELDS = ("success", "first_iteration", "best_iteration", "first_loss", "best_loss", "first_p", "best_p",
                 "adv_logits")


def _not_found(orig_logits: np.ndarray, attacked: np.ndarray, shape: tuple) -> SampleResults:
    """Results of samples that have no adversarial example (yet)."""
    n, t, f = shape
    return SampleResults(
        success=np.zeros(n, bool), first_iteration=np.full(n, -1, np.int64),
        best_iteration=np.full(n, -1, np.int64), first_loss=np.full(n, np.nan, np.float32),
        best_loss=np.full(n, np.nan, np.float32), first_p=np.zeros((n, t, f), np.float32),
        best_p=np.zeros((n, t, f), np.float32), orig_logits=orig_logits,
        adv_logits=np.full((n, orig_logits.shape[1]), np.nan, np.float32), attacked=attacked.copy(),
        unverified=np.zeros(n, bool))


def _fill(out: SampleResults, rows, part) -> None:
    for name in ATTACK_FIELDS:
        getattr(out, name)[rows] = getattr(part, name)


def _attack_in_order(attack: SparseAttack, x: np.ndarray, y: np.ndarray, iterations: int, p0=None,
                     max_abs=None, allowed=None) -> SampleResults:
    """The reference's way: the samples to attack are chosen first (the correctly classified ones,
    unless attack_misclassified), cut into batches of hp.batch_size in order and attacked one batch
    after another, each starting from the optimizer state the one before left (SparseAttack.init's
    carry; a batch of another size, the last one, starts afresh)."""
    size = attack.hp.batch_size
    orig_logits = (np.concatenate([to_numpy(attack.logits(x[i:i + size])) for i in range(0, len(x), size)])
                   if len(x) else np.zeros((0, 2), np.float32))
    prediction = orig_logits.argmax(axis=1)
    attacked = np.ones(len(y), bool) if attack.method.attack_misclassified else prediction == y
    out = _not_found(orig_logits, attacked, x.shape)
    rows, state = np.flatnonzero(attacked), None
    for start in range(0, len(rows), size):
        batch = rows[start:start + size]
        state = attack.step(attack.init(x[batch], prediction[batch], p0=None if p0 is None else p0[batch],
                                        max_abs=max_abs, allowed=None if allowed is None else allowed[batch],
                                        carry=state), iterations)
        _fill(out, batch, attack.result(state))
    return out


def _collect(attack: SparseAttack, batches: list[_BatchJob], shape: tuple) -> SampleResults:
    if not batches:  # no samples: an empty result of the right shapes
        batches = [_BatchJob(np.zeros(0, bool), np.zeros((0, 2), np.float32), (0, *shape[1:]), None)]
    return SampleResults.concat([job.result(attack) for job in batches])
