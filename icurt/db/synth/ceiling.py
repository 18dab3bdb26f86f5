"""The achievable ceiling of the synthetic cohort: each stay's probability of death given what its
first 48 hours of measurements carry, beside the oracle's, which knows the latent severity itself.

The oracle's AUROC is not reachable from the data: a stay's signals sit on an unknown baseline of
their own (between-stay sd ≈ 1.5–3 × the severity effect) and are noisy, so the severity shows
only partly. The ceiling is the Bayes posterior P(died | measurements) under synth's own
measurement model (events.py `Physiology.measure`), on the latent scale (log for log signals):

    y = mean_j + b_j + effect_j · s · drift(t) + wave_j · (a · sin ωt + c · cos ωt) + noise_sd_j · ε

per measurement of signal j at t hours after intime, with s ~ N(0, 1) the severity, b_j ~ N(0,
between_sd_j²) the stay's baseline offset and (a, c) the stay's daily-wave phase as
(cos φ, sin φ), approximated by N(0, ½ I). Integrating out each b_j (Sherman–Morrison) leaves a
linear-Gaussian model in θ = (s, a, c) whose posterior comes from per-stay, per-signal sums of the
measurements. Whether blood gases were drawn in the window (pH measured) also carries severity:
P(blood gases | s) = sigmoid(BG_INTERCEPT + BG_SLOPE · s) for adults; it enters as a likelihood on
a grid of s. Then P(died) = ∫ sigmoid(intercept + MORTALITY_SLOPE · s) p(s | data) ds.

"Measurements" are every value of the 19 features' signals in [intime, intime + 48 h), whatever
item records it (lab and blood-gas potassium, chart and lab glucose, base excess for bicarbonate):
an upper bound for a model that sees the 19 features of the 48 h window. Ignored, so a model may
come within noise of it: clipping to the signal's range, rounding, and the rows the queries drop.
"""

from __future__ import annotations

import numpy as np

from icurt.db.synth.items import SIGNALS, SIGNAL_NAMES

WINDOW_HOURS = 48.0
FEATURE_SIGNALS = ("potassium", "calcium", "ph", "pco2", "lactate", "albumin", "bun", "creatinine", "sodium",
                   "bicarbonate", "platelet", "glucose", "magnesium", "heartrate", "sysbp", "diasbp", "tempc",
                   "resprate", "spo2")
BG_MARKER = "ph"                  # measured only in blood gases: a stay with pH in the window had them
GRID = np.linspace(-6.0, 6.0, 481)
_COLUMN = np.full(len(SIGNAL_NAMES), -1)
_COLUMN[[SIGNAL_NAMES.index(name) for name in FEATURE_SIGNALS]] = np.arange(len(FEATURE_SIGNALS))
_PARAMS = {name: np.array([getattr(SIGNALS[s], name) for s in FEATURE_SIGNALS], dtype=float)
           for name in ("mean", "between_sd", "noise_sd", "effect", "wave")}
# sums per (stay, signal): 1, d, S, C, dd, dS, dC, SS, SC, CC, r, dr, Sr, Cr  (S = sin ωt, C = cos ωt)
_TERMS = 14


class Evidence:
    """Per-stay, per-feature-signal sums of the measurements in the window (filled by `add`)."""

    def __init__(self, n_stays: int):
        self.n_stays = n_stays
        self.sums = np.zeros((_TERMS, n_stays * len(FEATURE_SIGNALS)))

    def add(self, signal: np.ndarray, stay: np.ndarray, hours: np.ndarray, latent: np.ndarray) -> None:
        """Measurements of signal index `signal` (events.SIGNAL_NAMES order) of `stay` at `hours`
        after intime, on the latent scale (before exp for log signals)."""
        from icurt.db.synth.events import drift

        column = _COLUMN[signal]
        keep = (column >= 0) & (hours >= 0) & (hours < WINDOW_HOURS)
        if not keep.any():
            return
        key = stay[keep] * len(FEATURE_SIGNALS) + column[keep]
        t, col = hours[keep], column[keep]
        r = latent[keep] - _PARAMS["mean"][col]
        d, S, C = drift(t), np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24)
        one = np.ones_like(t)
        for k, term in enumerate((one, d, S, C, d * d, d * S, d * C, S * S, S * C, C * C, r, d * r, S * r, C * r)):
            self.sums[k] += np.bincount(key, weights=term, minlength=self.sums.shape[1])

    def summaries(self) -> np.ndarray:
        """(stays, 3 · 19) per feature signal: the mean of its latent values less the population mean,
        their least-squares slope on drift(t), and whether it was measured (0 where it was not)."""
        n, d, r, dd, dr = (self.sums[k].reshape(self.n_stays, -1) for k in (0, 1, 10, 4, 11))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, r / n, 0.0)
            slope = np.where(n > 2, (dr - d * r / n) / (dd - d * d / n), 0.0)
        return np.concatenate([mean, np.nan_to_num(slope, posinf=0.0, neginf=0.0), (n > 0).astype(float)], axis=1)

    def posterior(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, variance) of s given the measurements under the linear-Gaussian model, and whether
        blood gases were seen, per stay."""
        f = len(FEATURE_SIGNALS)
        sums = self.sums.reshape(_TERMS, self.n_stays, f)
        n, d, S, C, dd, dS, dC, SS, SC, CC, r, dr, Sr, Cr = sums
        E, W = _PARAMS["effect"], _PARAMS["wave"]
        noise, between = _PARAMS["noise_sd"] ** 2, _PARAMS["between_sd"] ** 2
        gamma = between / (noise + n * between)                    # Sherman–Morrison of σ²I + B²11ᵀ
        h1 = np.stack([E * d, W * S, W * C], axis=-1)              # Σ h over the measurements: (stays, f, 3)
        hh = np.stack([np.stack([E * E * dd, E * W * dS, E * W * dC], -1),
                       np.stack([E * W * dS, W * W * SS, W * W * SC], -1),
                       np.stack([E * W * dC, W * W * SC, W * W * CC], -1)], -2)   # (stays, f, 3, 3)
        hr = np.stack([E * dr, W * Sr, W * Cr], axis=-1)
        info = (hh - gamma[..., None, None] * h1[..., :, None] * h1[..., None, :]) / noise[:, None, None]
        score = (hr - gamma[..., None] * h1 * r[..., None]) / noise[:, None]
        precision = info.sum(axis=1) + np.diag([1.0, 2.0, 2.0])    # prior: s ~ N(0, 1), (a, c) ~ N(0, ½ I)
        covariance = np.linalg.inv(precision)
        mean = np.einsum("nij,nj->ni", covariance, score.sum(axis=1))
        return mean[:, 0], covariance[:, 0, 0], n[:, FEATURE_SIGNALS.index(BG_MARKER)] > 0


def ceiling_probability(evidence: Evidence, intercept: float, slope: float, adult: np.ndarray) -> np.ndarray:
    """P(died | measurements) per stay: the mortality curve averaged over the posterior of s."""
    from icurt.db.synth.events import BG_INTERCEPT, BG_SLOPE
    from icurt.db.synth.skeleton import sigmoid

    mean, variance, bg_seen = evidence.posterior()
    log_density = -0.5 * (GRID[None, :] - mean[:, None]) ** 2 / variance[:, None]
    p_bg = sigmoid(BG_INTERCEPT + BG_SLOPE * GRID)[None, :]
    bg_likelihood = np.where(bg_seen[:, None], p_bg, 1 - p_bg)
    weights = np.exp(log_density - log_density.max(axis=1, keepdims=True))
    weights *= np.where(np.asarray(adult)[:, None], bg_likelihood, 1.0)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights @ sigmoid(intercept + slope * GRID)
