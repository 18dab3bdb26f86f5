"""best_attack_hparams.json, the one record a tune-attack run leaves for the full attack: the best
trial's hyperparameters, the attack method they were tuned with, the fold (and how it was chosen),
where the tuning samples came from, and the score."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from icurt.attack.attacker import AttackHparams
from icurt.attack.batching import batch_choice
from icurt.config import AttackMethod, TuneAttackConfig, section_from_dict
from icurt.errors import IcurtError
from icurt.files import read_json
from icurt.tuning.trials import best_hparams_of

BEST_FILE = "best_attack_hparams.json"


@dataclass(frozen=True)
class TunedAttack:
    hp: AttackHparams
    method: AttackMethod
    fold: int
    objective_name: str
    score: float
    trial: int
    fold_choice: str = "fixed"       # "median validation loss", "fixed" or "--fold"
    samples: str = "all"             # where the tuning samples came from ("held_out" or "all")


def best_record(row: dict, space: dict, method: AttackMethod, ta: TuneAttackConfig, chosen: dict,
                device: str) -> dict:
    """The JSON of the best trial (a trials-table row) of a study tuned with `method` on `device`;
    `chosen`: {"fold", "fold_choice", "samples", "candidates"} of the stage. Its batch_size is the
    one the trials ran at: the searched one where the method couples samples, else the auto size
    (icurt/attack/batching.py), with batch_size_reason saying which."""
    hparams = best_hparams_of(row, space)
    size, reason = batch_choice(method, hparams.get("batch_size", 0), 0, device)
    return {**hparams, "batch_size": size, "batch_size_reason": reason, "method": asdict(method),
            "objective": row["objective"], "objective_name": ta.objective, "trial": row["number"], **chosen}


def read_tuned(run) -> TunedAttack:
    """What tune-attack run `run` recorded; IcurtError when it has no (valid) record."""
    path = run.file(BEST_FILE)
    if not path.is_file():
        raise IcurtError(f"tune-attack run {run.run_id} has no {BEST_FILE}; rerun `icurt tune-attack` "
                         "or pass another run with --from")
    values = read_json(path)
    if "method" not in values:
        raise IcurtError(f"tune-attack run {run.run_id} records no attack method (an older icurt wrote it); "
                         "rerun `icurt tune-attack`")
    return TunedAttack(hp=AttackHparams.from_dict(values), method=section_from_dict("attack_method", values["method"]),
                       fold=int(values["fold"]), objective_name=str(values["objective_name"]),
                       score=float(values["objective"]), trial=int(values["trial"]),
                       fold_choice=str(values.get("fold_choice", "fixed")), samples=str(values.get("samples", "all")))
