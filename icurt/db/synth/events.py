"""Synthetic chartevents and labevents: hourly vitals, lab and blood-gas draws, MIMIC-III's quirks.

Each stay has a baseline per signal; its severity pushes the signals over the first days
(`drift`), a daily wave and measurement noise sit on top. No Python loop runs over stays or
events: loops go over the few vitals and lab items only.

Left whole at ~330 lines: the two event tables draw from the same physiology and item tables, and
ceiling.py reads its constants from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from icurt.db.synth.skeleton import DAY, HOUR, MINUTE, NEONATE, Skeleton, within_group_rank
from icurt.db.synth.items import (BG_PANELS, CHART_ITEMS, LAB_ITEMS, LAB_PANELS, NEONATE_SHIFT,
                                  SIGNAL_NAMES, SIGNALS, SPECIMEN_ITEMID, SPECIMEN_WEIGHTS,
                                  SPECIMENS, VITALS)

SIGNAL_INDEX = {name: k for k, name in enumerate(SIGNAL_NAMES)}
VITAL_SIGNALS = np.array([SIGNAL_INDEX[v.signal] for v in VITALS])
# Share of a vital's rows replaced by an impossible value (kept out by the queries' range checks).
OUT_OF_RANGE = {"heartrate": (0.003, (0.0, 350.0)), "sysbp": (0.002, (0.0, 420.0)),
                "diasbp": (0.002, (0.0, 310.0)), "meanbp": (0.002, (0.0, 320.0)),
                "resprate": (0.002, (0.0, 75.0)), "spo2": (0.005, (101.0, 102.0, 105.0, 110.0, 127.0)),
                "glucose": (0.005, (0.0,))}
# the per-row item index runs over LAB_ITEMS plus a last entry: a draw's rare second specimen row
LAB_ROW_ITEMS = LAB_ITEMS + (LAB_ITEMS[[lab.itemid for lab in LAB_ITEMS].index(SPECIMEN_ITEMID)],)
LAB_SIGNALS = np.array([SIGNAL_INDEX[lab.signal] if lab.signal else -1 for lab in LAB_ROW_ITEMS])
LAB_SCALE = np.array([lab.scale for lab in LAB_ROW_ITEMS])
LAB_OFFSET = np.array([lab.offset for lab in LAB_ROW_ITEMS])
LAB_DECIMALS = np.array([lab.decimals for lab in LAB_ROW_ITEMS])
LAB_NORMAL_LOW = np.array([lab.normal[0] if lab.normal else -np.inf for lab in LAB_ROW_ITEMS])
LAB_NORMAL_HIGH = np.array([lab.normal[1] if lab.normal else np.inf for lab in LAB_ROW_ITEMS])
OUT_OF_RANGE_RATE = np.array([OUT_OF_RANGE.get(v.name, (0.0,))[0] for v in VITALS])
TEMPERATURE_UNIT_SWAP_RATE = 0.003  # a °F reading under a °C item or the reverse
ERROR_RATE = 0.004         # MetaVision rows flagged error = 1 (with a garbled value)
NULL_ICUSTAY_RATE = 0.001
LAB_TEXTS = ("ERROR", "UNABLE TO REPORT", "HEMOLYZED SPECIMEN")
BG_INTERCEPT, BG_SLOPE = 0.4, 0.9  # an adult stay has blood gases with P = sigmoid(0.4 + 0.9 · severity)


def drift(hours: np.ndarray) -> np.ndarray:
    """How much of a stay's severity shows at `hours` after intime: 0.3 at admission to ICU → 1."""
    decay = np.exp(-np.abs(hours) / 24)
    return np.where(hours >= 0, 1 - 0.7 * decay, 0.3 * decay)


def _signal_parameter(name: str) -> np.ndarray:
    return np.array([getattr(SIGNALS[s], name) for s in SIGNAL_NAMES], dtype=float)


EFFECT, WAVE, NOISE_SD, LOW, HIGH = map(_signal_parameter, ("effect", "wave", "noise_sd", "low", "high"))
IS_LOG = _signal_parameter("log").astype(bool)


@dataclass(frozen=True)
class Physiology:
    baseline: np.ndarray   # (stays, signals), log scale for log signals
    severity: np.ndarray
    phase: np.ndarray
    intime: np.ndarray
    evidence: object = None  # a ceiling.Evidence that sees every measurement (for the achievable ceiling)

    def measure(self, signal: np.ndarray, stay: np.ndarray, seconds: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
        """One noisy measurement per row of signal index `signal` for `stay` at `seconds`."""
        hours = (seconds - self.intime[stay]) / HOUR
        x = self.baseline[stay, signal]
        x += EFFECT[signal] * self.severity[stay] * drift(hours)
        x += WAVE[signal] * np.sin(2 * np.pi * hours / 24 + self.phase[stay])
        x += NOISE_SD[signal] * rng.standard_normal(stay.size)
        if self.evidence is not None:
            self.evidence.add(signal, stay, hours, x)
        logged = IS_LOG[signal]
        x[logged] = np.exp(x[logged])
        return np.clip(x, LOW[signal], HIGH[signal], out=x)


def physiology(sk: Skeleton, rng: np.random.Generator, evidence=None) -> Physiology:
    """Per-stay baselines (neonates with their own heart and breathing rates) and daily-wave phases;
    `evidence` (a ceiling.Evidence) is shown every measurement made."""
    n = len(sk.stays)
    means = np.array([SIGNALS[s].mean for s in SIGNAL_NAMES])
    sds = np.array([SIGNALS[s].between_sd for s in SIGNAL_NAMES])
    baseline = means + sds * rng.standard_normal((n, len(SIGNAL_NAMES)))
    neonate = sk.admissions["neonate"].to_numpy()[sk.stays["admission"].to_numpy()]
    for name, shift in NEONATE_SHIFT.items():
        baseline[neonate, SIGNAL_INDEX[name]] += shift
    return Physiology(baseline, sk.stays["severity"].to_numpy(), rng.uniform(0, 2 * np.pi, n),
                      sk.stays["intime"].to_numpy(), evidence)


def _item_lookup(itemids, values, fill=-1) -> np.ndarray:
    table = np.full(max(itemids) + 1, fill, dtype=np.int64)
    table[list(itemids)] = values
    return table


def _text(values: np.ndarray, codes: np.ndarray | None = None,
          categories=()) -> pd.arrays.ArrowExtensionArray:
    """Numbers as MIMIC's `value` text ("87", "36.6"); rows with a text code take that text instead."""
    numbers = pc.cast(pa.array(values, from_pandas=True), pa.string())
    if codes is not None:
        labels = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0, type=pa.int32()),
                                                pa.array(list(categories), pa.string()))
        numbers = pc.coalesce(labels.cast(pa.string()), numbers)
    return pd.arrays.ArrowExtensionArray(numbers)


def _nullable_int(values: np.ndarray, null: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(values.astype(np.int32), null)


def _round(values: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    scale = 10.0 ** decimals
    return np.rint(values * scale) / scale


def _item_choice_table():
    """(ids, cumulative weights) per combination vital·4 + metavision·2 + arterial line."""
    width = max(len(c) for v in VITALS for system in (v.carevue, v.metavision) for c in system)
    ids = np.zeros((len(VITALS) * 4, width), dtype=np.int64)
    cumulative = np.full((len(VITALS) * 4, width), np.inf)
    for j, v in enumerate(VITALS):
        for mv, system in enumerate((v.carevue, v.metavision)):
            for line, choices in enumerate(system):
                row = j * 4 + mv * 2 + line
                weights = np.array([w for _, w in choices])
                ids[row, :len(choices)] = [itemid for itemid, _ in choices]
                ids[row, len(choices):] = choices[-1][0]
                cumulative[row, :len(choices) - 1] = np.cumsum(weights / weights.sum())[:-1]
    return ids, cumulative


def chartevents_frame(sk: Skeleton, phys: Physiology, rng: np.random.Generator) -> pd.DataFrame:
    """Vitals about hourly within each stay (a little spill), temperature every ~4 h, some glucose."""
    stays, adm = sk.stays, sk.admissions
    n_stays = len(stays)
    admission = stays["admission"].to_numpy()
    charted = adm["has_chartevents_data"].to_numpy()[admission].astype(bool)
    spill = [np.where(rng.random(n_stays) < 0.2, rng.integers(0, 60, n_stays), 0) * MINUTE for _ in range(2)]
    start, end = stays["intime"].to_numpy() - spill[0], stays["outtime"].to_numpy() + spill[1]
    first_slot = -(-start // HOUR) * HOUR
    n_slots = np.where(charted & (end >= first_slot), (end - first_slot) // HOUR + 1, 0)
    slot_stay = np.repeat(np.arange(n_stays), n_slots)
    k = within_group_rank(slot_stay)
    gap_start = rng.integers(0, np.maximum(n_slots, 1))
    gap_len = np.where(rng.random(n_stays) < 0.3, rng.integers(3, 13, n_stays), 0)
    outside_gap = (k < gap_start[slot_stay]) | (k >= (gap_start + gap_len)[slot_stay])
    keep = outside_gap & (rng.random(k.size) >= 0.08)
    slot_stay, k = slot_stay[keep], k[keep]
    slot_time = first_slot[slot_stay] + k * HOUR
    present = _vital_presence(slot_stay, k, n_stays, rng)
    slot, vital = np.nonzero(present)
    del present
    stay, time = slot_stay[slot], slot_time[slot]
    metavision = adm["metavision"].to_numpy()[admission][stay]
    aline = (rng.random(n_stays) < 0.35 + 0.15 * np.tanh(phys.severity))[stay]
    valuenum = phys.measure(VITAL_SIGNALS[vital], stay, time, rng)
    ids, cumulative = _item_choice_table()
    combo = vital * 4 + metavision * 2 + aline
    u = rng.random(stay.size)
    itemid = ids[combo, (u[:, None] >= cumulative[combo]).sum(axis=1)]
    del combo, u
    hit = np.flatnonzero(rng.random(stay.size) < OUT_OF_RANGE_RATE[vital])
    for j, v in enumerate(VITALS):
        if v.name in OUT_OF_RANGE:
            rows = hit[vital[hit] == j]
            valuenum[rows] = rng.choice(OUT_OF_RANGE[v.name][1], rows.size)
    fahrenheit = _item_lookup(CHART_ITEMS, [int(i.fahrenheit) for i in CHART_ITEMS.values()], 0)[itemid] == 1
    temperature = vital == [v.name for v in VITALS].index("tempc")
    swapped = temperature & (rng.random(stay.size) < TEMPERATURE_UNIT_SWAP_RATE)
    valuenum = np.where(fahrenheit != swapped, valuenum * 1.8 + 32, valuenum)
    decimals = np.array([v.decimals for v in VITALS])[vital]
    error = metavision & (rng.random(stay.size) < ERROR_RATE)
    valuenum = np.where(error, valuenum * rng.uniform(3, 8, stay.size), valuenum)
    valuenum = _round(valuenum, decimals)
    uom_names = sorted({i.valueuom for i in CHART_ITEMS.values()})
    uom = _item_lookup(CHART_ITEMS, [uom_names.index(i.valueuom) for i in CHART_ITEMS.values()])[itemid]
    n = stay.size
    carevue = ~metavision
    return pd.DataFrame(copy=False, data={  # copy=False: no block consolidation of the big columns
        "row_id": np.arange(1, n + 1, dtype=np.int32),
        "subject_id": stays["subject_id"].to_numpy(np.int32)[stay],
        "hadm_id": stays["hadm_id"].to_numpy(np.int32)[stay],
        "icustay_id": _nullable_int(stays["icustay_id"].to_numpy()[stay], rng.random(n) < NULL_ICUSTAY_RATE),
        "itemid": itemid.astype(np.int32),
        "charttime": time.astype("datetime64[s]"),
        "storetime": (time + rng.integers(0, 60, n) * MINUTE).astype("datetime64[s]"),
        "cgid": rng.integers(14_000, 22_000, n_stays).astype(np.int32)[stay],
        "value": _text(valuenum),
        "valuenum": valuenum,
        "valueuom": pd.Categorical.from_codes(uom, uom_names),
        "warning": _nullable_int((rng.random(n) < 0.005).astype(np.int32), carevue),
        "error": _nullable_int(error.astype(np.int32), carevue),
        "resultstatus": pd.arrays.ArrowExtensionArray(pa.nulls(n, pa.string())),
        "stopped": pd.Categorical.from_codes(np.where(carevue, 0, -1), ["NotStopd"]),
    })


def _vital_presence(slot_stay, k, n_stays, rng) -> np.ndarray:
    """(slots, vitals) booleans, in VITALS order: BP comes as a sys/dia/mean triple."""
    n = slot_stay.size
    present = np.zeros((n, len(VITALS)), dtype=bool)
    present[:, 0] = rng.random(n) < 0.97
    bp = rng.random(n) < 0.93
    present[:, 1], present[:, 2], present[:, 3] = bp, bp & (rng.random(n) < 0.99), bp & (rng.random(n) < 0.97)
    present[:, 4] = rng.random(n) < 0.9
    temp_phase, has_temp = rng.integers(0, 4, n_stays), rng.random(n_stays) >= 0.01
    present[:, 5] = ((k + temp_phase[slot_stay]) % 4 == 0) & (rng.random(n) < 0.9) & has_temp[slot_stay]
    present[:, 6] = rng.random(n) < 0.95
    glucose_every = np.where(rng.random(n_stays) < 0.6, 6, 24)
    has_glucose = rng.random(n_stays) >= 0.1
    present[:, 7] = ((k % glucose_every[slot_stay]) == 0) & (rng.random(n) < 0.9) & has_glucose[slot_stay]
    return present


def labevents_frame(sk: Skeleton, phys: Physiology, rng: np.random.Generator) -> pd.DataFrame:
    """Lab panels 1–3 a day in the ICU and ~daily on the ward, blood gases every ~6–8 h for a subset,
    ED labs just before admission and outpatient labs long before, both with NULL hadm_id."""
    draw_stay, hadm, time, is_bg = _lab_draws(sk, phys, rng)
    order = np.lexsort((time, sk.stays["subject_id"].to_numpy()[draw_stay]))
    draw_stay, hadm, time, is_bg = draw_stay[order], hadm[order], time[order], is_bg[order]
    present = _lab_presence(sk, draw_stay, is_bg, rng)
    draw, item = np.nonzero(present)
    del present
    n = draw.size
    stay, when = draw_stay[draw], time[draw]
    specimen = LAB_SIGNALS[item] < 0  # specimen rows, and the rare second specimen of a draw
    x = phys.measure(np.maximum(LAB_SIGNALS[item], 0), stay, when, rng)
    valuenum = _round(LAB_SCALE[item] * x + LAB_OFFSET[item], LAB_DECIMALS[item])
    del x
    valuenum[specimen] = np.nan
    _lab_quirks(item, valuenum, rng)
    with np.errstate(invalid="ignore"):
        flag = (valuenum < LAB_NORMAL_LOW[item]) | (valuenum > LAB_NORMAL_HIGH[item])
    text_labels = list(SPECIMENS) + list(LAB_TEXTS)
    text_code = np.full(n, -1)
    first_specimen = rng.choice(len(SPECIMENS), n, p=SPECIMEN_WEIGHTS)
    text_code[specimen] = np.where(item == len(LAB_ITEMS), (first_specimen + 1) % len(SPECIMENS),
                                   first_specimen)[specimen]
    unreadable = ~np.isnan(valuenum) & (rng.random(n) < 0.002)
    text_code[unreadable] = len(SPECIMENS) + rng.integers(0, len(LAB_TEXTS), int(unreadable.sum()))
    valuenum[unreadable] = np.nan
    itemids = np.array([lab.itemid for lab in LAB_ITEMS] + [SPECIMEN_ITEMID])
    uom_names = sorted({lab.valueuom for lab in LAB_ITEMS if lab.valueuom})
    uom = np.array([uom_names.index(lab.valueuom) if lab.valueuom else -1 for lab in LAB_ITEMS] + [-1])
    hadm_row = hadm[draw]
    return pd.DataFrame(copy=False, data={  # copy=False: no block consolidation of the big columns
        "row_id": np.arange(1, n + 1, dtype=np.int32),
        "subject_id": sk.stays["subject_id"].to_numpy(np.int32)[stay],
        "hadm_id": _nullable_int(np.maximum(hadm_row, 0), hadm_row < 0),
        "itemid": itemids[item].astype(np.int32),
        "charttime": when.astype("datetime64[s]"),
        "value": _text(valuenum, codes=text_code, categories=text_labels),
        "valuenum": valuenum,
        "valueuom": pd.Categorical.from_codes(uom[item], uom_names),
        "flag": pd.Categorical.from_codes(np.where(flag & ~unreadable, 0, -1), ["abnormal"]),
    })


def _lab_draws(sk: Skeleton, phys: Physiology, rng):
    """(stay whose physiology applies, hadm_id or -1, time, is blood gas) per draw, unsorted."""
    stays, adm, pat = sk.stays, sk.admissions, sk.patients
    intime, outtime = stays["intime"].to_numpy(), stays["outtime"].to_numpy()
    los_days = (outtime - intime) / DAY
    stay_ids = np.arange(len(stays))
    first_stay_of_adm = np.r_[0, np.cumsum(adm["n_stays"].to_numpy())[:-1]]
    first_adm_of_pat = np.r_[0, np.cumsum(np.bincount(adm["patient"].to_numpy(), minlength=len(pat)))[:-1]]
    first_stay_of_pat = first_stay_of_adm[first_adm_of_pat]
    admittime, dischtime = adm["admittime"].to_numpy(), adm["dischtime"].to_numpy()
    hadm_of_stay = stays["hadm_id"].to_numpy()
    parts = []

    def add(counts, owner_stay, hadm, start, length, bg):
        unit = np.repeat(np.arange(counts.size), counts)
        t = start[unit] + np.round(rng.random(unit.size) * length[unit]).astype(np.int64)
        t -= t % MINUTE
        parts.append((owner_stay[unit], hadm[unit], t, np.full(unit.size, bg)))

    icu_rate = rng.uniform(1, 3, len(stays))
    add(rng.poisson(icu_rate * los_days) + 1, stay_ids, hadm_of_stay, intime - 2 * HOUR,
        outtime - intime + 2 * HOUR, False)
    ward_days = (dischtime - admittime) / DAY
    add(rng.poisson(0.8 * ward_days), first_stay_of_adm, adm["hadm_id"].to_numpy(), admittime,
        dischtime - admittime, False)
    ed = adm["emergency"].to_numpy() & (rng.random(len(adm)) < 0.4)
    add(ed.astype(np.int64), first_stay_of_adm, np.full(len(adm), -1), admittime - 6 * HOUR,
        np.full(len(adm), 5 * HOUR), False)
    outpatient = (rng.random(len(pat)) < 0.3) * rng.integers(1, 5, len(pat))
    add(outpatient, first_stay_of_pat, np.full(len(pat), -1),
        pat["first_admittime"].to_numpy() - 700 * DAY, np.full(len(pat), 670 * DAY), False)
    adult = sk.patients["group"].to_numpy()[stays["patient"].to_numpy()] != NEONATE
    has_bg = adult & (rng.random(len(stays)) < 1 / (1 + np.exp(-(BG_INTERCEPT + BG_SLOPE * phys.severity))))
    add(np.where(has_bg, rng.poisson(rng.uniform(3, 4.5, len(stays)) * los_days), 0), stay_ids,
        hadm_of_stay, intime, outtime - intime, True)
    return tuple(np.concatenate(column) for column in zip(*parts))


def _lab_presence(sk: Skeleton, draw_stay, is_bg, rng) -> np.ndarray:
    """(draws, LAB_ITEMS + second specimen) booleans; albumin and magnesium skip some stays entirely."""
    n = draw_stay.size
    panels = sorted({lab.panel for lab in LAB_ITEMS})
    panel_present = {}
    for name in panels:
        p = np.where(is_bg, BG_PANELS.get(name, 0.0), LAB_PANELS.get(name, 0.0))
        panel_present[name] = rng.random(n) < p
    admission = sk.stays["admission"].to_numpy()[draw_stay]
    n_adm = len(sk.admissions)
    panel_present["albumin"] &= (rng.random(n_adm) >= 0.25)[admission]
    panel_present["magnesium"] &= (rng.random(n_adm) >= 0.08)[admission]
    present = np.zeros((n, len(LAB_ITEMS) + 1), dtype=bool)
    for i, lab in enumerate(LAB_ITEMS):
        present[:, i] = panel_present[lab.panel]
    present[:, -1] = panel_present["bg"] & (rng.random(n) < 0.005)
    return present


def _lab_quirks(item: np.ndarray, valuenum: np.ndarray, rng) -> None:
    """A glucose of 0, a lactate of 99, albumin in g/L (×10): values the queries drop or cap (in place)."""
    itemids = [lab.itemid for lab in LAB_ITEMS]
    for itemid, rate, impossible in ((50931, 0.003, 0.0), (50813, 0.002, 99.0), (50862, 0.01, None)):
        rows = np.flatnonzero(item == itemids.index(itemid))
        rows = rows[rng.random(rows.size) < rate]
        valuenum[rows] = valuenum[rows] * 10 if impossible is None else impossible
