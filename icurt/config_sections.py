"""The config's sections: one frozen dataclass per TOML table, each field with its type and bounds.

icurt.config assembles them into Config and loads, layers and validates the values; the default
values live in configs/default.toml.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from icurt.choices import ACTIVATIONS, OBJECTIVES, OPTIMIZERS, OUTPUTS, PRECISIONS, READOUTS
from icurt.dsn import check_dsn_scheme, remember_passwords
from icurt.errors import IcurtError

# [attack_method] choices: icurt's first, the reference study's second (configs/reference.toml)
THRESHOLDS = ("preconditioned", "lambda")
LOSS_NORMS = ("elementwise", "induced")
LOSS_REDUCTIONS = ("sum", "mean")
OPTIMIZER_STATES = ("per_batch", "carried")

FEATURE_COLUMNS = (
    "potassium", "calcium", "ph", "pco2", "lactate",
    "albumin", "bun", "creatinine", "sodium", "bicarbonate", "platelet", "glucose", "magnesium",
    "heartrate", "sysbp", "diasbp", "tempc", "resprate", "spo2",
)
SPLITS = ("patient", "stay")                  # folds grouped by subject_id, or by ICU stay (the reference)
CHECKPOINT_METRICS = ("auroc", "val_loss")
FOLD_CHOICES = ("median", "fixed")            # the attacked fold: median by validation loss, or [tune_attack].fold
SAMPLE_CHOICES = ("held_out", "all")          # attack targets: the attacked fold's held-out samples, or all
DATASETS = ("mimic-iii", "mimic-iv")          # what the database holds: MIMIC-III v1.4 or MIMIC-IV v2.2+


def setting(*, min: float | None = None, max: float | None = None, choices=None,
            ascending_pair: bool = False):
    """A config field with the bounds the loader checks (`choices` applies to each list item)."""
    return field(metadata={"min": min, "max": max, "choices": choices, "ascending_pair": ascending_pair})


@dataclass(frozen=True)
class PathsConfig:
    data: str = setting()

    def __post_init__(self):
        if not self.data.strip():   # Path("") is the working directory: runs would land beside the user's files
            raise IcurtError("config key 'paths.data' is empty; give a folder (--set paths.data=DIR or "
                             "ICURT_DATA=DIR; the default is data)")


@dataclass(frozen=True)
class DbConfig:
    dsn: str = setting()
    optuna_dsn: str = setting()
    schema: str = setting()
    dataset: str = setting(choices=DATASETS)
    hosp_schema: str = setting()
    icu_schema: str = setting()
    embedded_port: int = setting(min=0, max=65535)
    connect_timeout_s: int = setting(min=1, max=600)

    def __post_init__(self):
        remember_passwords(self.dsn, self.optuna_dsn)   # masked wherever they appear, from now on
        check_dsn_scheme(self.dsn, "db.dsn", "ICURT_DSN")
        check_dsn_scheme(self.optuna_dsn, "db.optuna_dsn", "ICURT_OPTUNA_DSN", url_only=True)


@dataclass(frozen=True)
class RayConfig:
    address: str = setting()
    num_cpus: int = setting(min=0)
    num_gpus: int = setting(min=-1)
    device: str = setting(choices=("auto", "cpu", "cuda"))
    include_dashboard: bool = setting()
    dashboard_host: str = setting()
    dashboard_port: int = setting(min=1, max=65535)
    worker_logs: bool = setting()


@dataclass(frozen=True)
class SynthConfig:
    stays: int = setting(min=1, max=1_000_000)
    seed: int = setting(min=0)
    mortality_rate: float = setting(min=0.01, max=0.5)


@dataclass(frozen=True)
class QueryConfig:
    fetch_size: int = setting(min=100)
    csv: bool = setting()


@dataclass(frozen=True)
class PreprocessConfig:
    engine: str = setting(choices=("modin", "pandas"))
    features: list[str] = setting(choices=FEATURE_COLUMNS)
    min_age: float = setting(min=0, max=150)
    age_cap: float = setting(min=0, max=150)
    min_los_hospital: float = setting(min=0)
    min_los_icu: float = setting(min=0)
    winsorize_percentiles: list[float] = setting(min=0, max=100, ascending_pair=True)
    observation_window_start: str = setting(choices=("intime", "admittime"))
    observation_window_hours: int = setting(min=1, max=24 * 30)
    min_observation_hours: int = setting(min=1, max=24 * 30)
    num_partitions: int = setting(min=0)
    statistics: str = setting(choices=("window_hours", "stay_rows"))
    interpolation: str = setting(choices=("window", "stay"))
    inclusion: str = setting(choices=("window_length", "resampled_rows"))
    hour_bins: str = setting(choices=("window_start", "clock"))
    min_stay_timestamps: int = setting(min=0)
    potassium_source: str = setting(choices=("blood_gas", "chemistry", "both"))
    calcium_source: str = setting(choices=("blood_gas", "chemistry"))  # ionized vs total: never merged
    sodium_source: str = setting(choices=("blood_gas", "chemistry", "both"))
    glucose_source: str = setting(choices=("blood_gas", "chemistry", "both"))
    bicarbonate_source: str = setting(choices=("blood_gas", "chemistry", "both"))


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape beyond its tuned hyperparameters (tune-model and train build the same)."""
    readout: str = setting(choices=READOUTS)
    output: str = setting(choices=OUTPUTS)


@dataclass(frozen=True)
class TuningDriverConfig:
    """What tune-model and tune-attack share: trial budget, TPE start-up, ASHA, resources, seed."""
    num_trials: int = setting(min=1)
    optuna_startup_trials: int = setting(min=0)
    asha_grace_period: int = setting(min=1)
    asha_reduction_factor: int = setting(min=2)
    max_concurrent_trials: int = setting(min=0)
    cpus_per_trial: float = setting(min=0.01)
    gpus_per_trial: float = setting(min=0, max=8)
    seed: int = setting(min=0)


@dataclass(frozen=True)
class TuneModelConfig(TuningDriverConfig):
    num_folds: int = setting(min=2, max=20)
    fold_seed: int = setting(min=0)
    split: str = setting(choices=SPLITS)
    trial_score: str = setting(choices=("last", "best"))
    cv_epochs: int = setting(min=1)
    epochs_per_cv_epoch: int = setting(min=1)
    batch_size_exponents: list[int] = setting(min=0, max=16, ascending_pair=True)
    lstm_hidden_exponents: list[int] = setting(min=0, max=12, ascending_pair=True)
    lstm_activations: list[str] = setting(choices=ACTIVATIONS)
    dropout: list[float] = setting(min=0, max=0.99, ascending_pair=True)
    fc_size_exponents: list[int] = setting(min=0, max=12, ascending_pair=True)
    fc_activations: list[str] = setting(choices=ACTIVATIONS)
    optimizers: list[str] = setting(choices=OPTIMIZERS)
    learning_rate: list[float] = setting(min=1e-12, max=10, ascending_pair=True)


@dataclass(frozen=True)
class TrainConfig:
    num_folds: int = setting(min=2, max=20)
    fold_seed: int = setting(min=0)
    split: str = setting(choices=SPLITS)
    checkpoint_split: str = setting(choices=("inner", "held_out"))
    inner_folds: int = setting(min=2, max=20)
    checkpoint_metric: str = setting(choices=CHECKPOINT_METRICS)
    epochs: int = setting(min=1)
    eval_interval: int = setting(min=1)
    patience: int = setting(min=0)
    precision: str = setting(choices=PRECISIONS)
    num_workers: int = setting(min=1)
    cpus_per_worker: float = setting(min=0.01)
    gpus_per_worker: float = setting(min=0, max=8)
    seed: int = setting(min=0)


@dataclass(frozen=True)
class TuneAttackConfig(TuningDriverConfig):
    fold_choice: str = setting(choices=FOLD_CHOICES)
    fold: int = setting(min=0)
    samples: str = setting(choices=SAMPLE_CHOICES)
    epochs_per_batch: int = setting(min=1)
    report_interval: int = setting(min=1)
    max_num_samples: int = setting(min=1)
    sample_selection_seed: int = setting(min=0)
    objective: str = setting(choices=OBJECTIVES)
    n_critical: int = setting(min=1)
    prune: bool = setting()
    kappa: list[float] = setting(min=0, ascending_pair=True)
    lambda_1: list[float] = setting(min=1e-12, ascending_pair=True)
    learning_rate: list[float] = setting(min=1e-12, max=10, ascending_pair=True)
    batch_size_exponents: list[int] = setting(min=0, max=16, ascending_pair=True)
    optimizers: list[str] = setting(choices=OPTIMIZERS)


@dataclass(frozen=True)
class AttackConfig:
    samples: str = setting(choices=SAMPLE_CHOICES)
    epochs_per_batch: int = setting(min=1)
    max_num_samples: int = setting(min=1)
    seed: int = setting(min=0)
    batch_size: int = setting(min=0)
    num_actors: int = setting(min=0)
    cpus_per_actor: float = setting(min=0.01)
    gpus_per_actor: float = setting(min=0, max=8)
    max_batch_retries: int = setting(min=0)


@dataclass(frozen=True)
class AttackMethod:
    """How the sparse attack works beyond its tuned hyperparameters: tune-attack trials and the full
    attack run the same method (the attack takes the one its tune-attack run recorded)."""
    max_perts: int = setting(min=0)
    lambda_decay: float = setting(min=1e-6, max=1.0)
    lambda_decay_every: int = setting(min=1)
    early_stop_patience: int = setting(min=0)
    attack_misclassified: bool = setting()
    threshold: str = setting(choices=THRESHOLDS)
    loss_norm: str = setting(choices=LOSS_NORMS)
    loss_reduction: str = setting(choices=LOSS_REDUCTIONS)
    optimizer_state: str = setting(choices=OPTIMIZER_STATES)

    def __post_init__(self):
        if self.optimizer_state == "carried" and self.early_stop_patience:
            raise IcurtError("config key 'attack_method.optimizer_state' is 'carried', which needs every sample "
                             "of a batch to run the whole budget; set attack_method.early_stop_patience = 0")


@dataclass(frozen=True)
class FragilityConfig:
    """The fragility sweep: the attack again under L0 and clinical-unit L∞ budgets."""
    l0_budgets: list[int] = setting(min=1)
    linf_scales: list[float] = setting(min=1e-6)
    clinical_step: dict[str, float] = setting(min=1e-12, choices=FEATURE_COLUMNS)
    cells: list[str] = setting(choices=("measured", "all"))
    headline_k: int = setting(min=1)
    iterations: int = setting(min=1)
    early_stop_patience: int = setting(min=0)
    warm_start: bool = setting()
    max_num_samples: int = setting(min=1)
    seed: int = setting(min=0)
    cpus_per_task: float = setting(min=0.01)
    gpus_per_task: float = setting(min=0, max=8)


@dataclass(frozen=True)
class AnalyzeConfig:
    top_features: int = setting(min=1, max=19)


@dataclass(frozen=True)
class ProfileConfig:
    """Which profile the config is (default, reference, demo, or a user file's name): a label the
    run records and the report names."""
    name: str = setting()
