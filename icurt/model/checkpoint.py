"""The one checkpoint format: a folder with `best.pt` (a state_dict, loadable with
`torch.load(..., weights_only=True)`) and `model.json` ({"hparams", "num_features", "model",
"precision"}: the tuned hyperparameters, the input width, the [model] shape, so that `build()`
rebuilds the network that was trained, and the [train].precision it was trained in, so that it is
evaluated the same way; a model.json without "model" was written before [model] existed and is
rebuilt with icurt's shape of then, final_states + logits; one without "precision" was trained in
fp32).

Ray Train's per-evaluation checkpoints and a train run's `fold_<k>/` folders hold the same two
files. A `Checkpoint` is the same content in memory (CPU tensors, plain values): it travels through
Ray's object store to tuning trials and attack actors, and `build()` is the only place a model is
rebuilt from weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from icurt.config import ModelConfig, section_from_dict
from icurt.errors import IcurtError
from icurt.files import damaged, read_json, reading, rerun_advice
from icurt.model.hparams import ModelHparams
from icurt.model.lstm import ICURT_SHAPE, LSTMClassifier

WEIGHTS_FILE, SPEC_FILE = "best.pt", "model.json"


@dataclass(frozen=True)
class Checkpoint:
    state_dict: dict          # parameter name -> CPU tensor
    hparams: ModelHparams
    num_features: int
    shape: ModelConfig = ICURT_SHAPE   # [model] readout and output the network was trained with
    precision: str = "fp32"            # [train].precision it was trained in (model/precision.py)

    @classmethod
    def of(cls, model: LSTMClassifier, hparams: ModelHparams, num_features: int,
           precision: str = "fp32") -> "Checkpoint":
        return cls({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, hparams,
                   int(num_features), model.shape, precision)

    def build(self, device: str = "cpu") -> nn.Module:
        """The LSTMClassifier with these weights (and shape), in eval mode on `device`; its forward
        returns pre-softmax logits whatever [model].output it was trained with."""
        model = LSTMClassifier(self.num_features, self.hparams, self.shape)
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()

    def check_features(self, num_features: int, where: str) -> None:
        """IcurtError when the model's input width differs from the data's (`where` names the model)."""
        if self.num_features != num_features:
            raise IcurtError(f"the model of {where} expects {self.num_features} features but the dataset "
                             f"has {num_features}; retrain on this dataset")


def save(folder: str | Path, checkpoint: Checkpoint) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint.state_dict, folder / WEIGHTS_FILE)
    (folder / SPEC_FILE).write_text(json.dumps({"hparams": checkpoint.hparams.to_dict(),
                                                "num_features": checkpoint.num_features,
                                                "model": asdict(checkpoint.shape),
                                                "precision": checkpoint.precision}))


def load(folder: str | Path) -> Checkpoint:
    """The checkpoint saved in `folder`, checked: best.pt must be a state_dict of tensors (loaded
    with weights_only=True, so nothing in it is executed) that fits, strictly, the network
    model.json describes. IcurtError, one line naming the file, when a file is missing, damaged or
    the two disagree."""
    folder = Path(folder)
    for name in (WEIGHTS_FILE, SPEC_FILE):
        if not (folder / name).is_file():
            raise IcurtError(f"{folder} holds no {name}; it is not a model checkpoint")
    spec_path, weights = folder / SPEC_FILE, folder / WEIGHTS_FILE
    spec = read_json(spec_path)
    with reading(spec_path, also=(TypeError,)):
        shape = section_from_dict("model", spec["model"]) if "model" in spec else ICURT_SHAPE
        hparams, num_features = ModelHparams.from_dict(spec["hparams"]), int(spec["num_features"])
    with reading(weights, also=(RuntimeError,)):
        state = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise damaged(weights, f"it holds a {type(state).__name__}, not a state_dict of tensors")
    checkpoint = Checkpoint(state, hparams, num_features, shape, str(spec.get("precision", "fp32")))
    try:
        checkpoint.build()
    except RuntimeError as exc:
        raise IcurtError(f"{weights} does not fit the network its {SPEC_FILE} describes "
                         f"({_first_mismatch(str(exc))}); {rerun_advice(weights)}") from None
    return checkpoint


def _first_mismatch(message: str) -> str:
    """The first line of load_state_dict's report ('Missing key(s) ...', 'size mismatch for ...')."""
    lines = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    return (lines[0] if lines else message.strip()).rstrip(".")[:200]


def fold_folder(train_run_path: Path, fold: int) -> Path:
    return Path(train_run_path) / f"fold_{fold}"


def load_fold(train_run, fold: int) -> Checkpoint:
    """Fold `fold`'s checkpoint of a train run; IcurtError naming the folds it has otherwise."""
    folder = fold_folder(train_run.path, fold)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / SPEC_FILE).is_file():
        trained = sorted(p.name for p in train_run.path.glob("fold_*") if (p / WEIGHTS_FILE).is_file())
        raise IcurtError(f"train run {train_run.run_id} has no fold_{fold}/{WEIGHTS_FILE}; pick one of "
                         f"{', '.join(trained) or 'its folds (none trained)'} with --fold")
    return load(folder)
