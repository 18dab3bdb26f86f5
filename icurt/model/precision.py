"""The numeric precision a model trains and is evaluated in ([train].precision): fp32, or autocast
to bf16 or fp16 (fp16 with a GradScaler). fp32 is the default: on an H200 the BiLSTM-128 trains at
44,024 samples/s in fp32 and 25,114 under fp16 autocast (issue 20), its AUROC the same.

No torch import at module level (the trainer's callers need not load it); the names live in
icurt/choices.py, below the config.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import lru_cache

from icurt.choices import PRECISIONS
from icurt.errors import IcurtError


def _device_type(device) -> str:
    import torch

    return torch.device(device).type


def check_precision(precision: str, device) -> None:
    """IcurtError (one line) when `device` ("cpu", "cuda", "cuda:0", a torch.device) cannot run
    `precision`: fp16 needs CUDA; bf16 on CUDA needs a device with bf16 support (checked where this
    process sees CUDA; a Ray worker checks again on its own device). fp32 runs everywhere."""
    import torch

    if precision not in PRECISIONS:
        raise IcurtError(f"train.precision is {precision!r}; set it to one of {', '.join(PRECISIONS)}")
    kind = _device_type(device)
    if precision == "fp16" and kind != "cuda":
        raise IcurtError(f"train.precision is fp16 but the model runs on the {kind.upper()}, which has no fp16 "
                         "autocast; set train.precision=fp32 (or bf16)")
    if precision == "bf16" and kind == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise IcurtError("train.precision is bf16 but this CUDA device does not support bfloat16; "
                         "set train.precision=fp32 (or fp16)")
    if precision == "bf16" and kind == "cpu" and not cpu_runs_bf16_lstm():
        raise IcurtError("train.precision is bf16 but this CPU cannot run the LSTM in bfloat16 (oneDNN has no "
                         "bf16 LSTM for it: no AVX-512 BF16 or AMX); set train.precision=fp32")


@lru_cache(maxsize=1)
def cpu_runs_bf16_lstm() -> bool:
    """Whether this CPU runs an LSTM under bf16 autocast: oneDNN has no bf16 LSTM primitive on CPUs
    without AVX-512 BF16 or AMX (e.g. many AMD EPYC), where the forward pass raises RuntimeError.
    Probed once with a tiny LSTM, so the answer is what training would meet."""
    import torch

    lstm = torch.nn.LSTM(2, 2, batch_first=True)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 2, 2))
    except RuntimeError:
        return False
    return True


def autocast(precision: str, device):
    """The context a forward pass runs in: torch.autocast to bf16/fp16 on `device`'s type, or a
    no-op for fp32."""
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(_device_type(device), dtype=dtype)


def needs_grad_scaler(precision: str, device) -> bool:
    """fp16 on CUDA scales its loss (small fp16 gradients would underflow); bf16 has fp32's range."""
    return precision == "fp16" and _device_type(device) == "cuda"


def evaluation_device(precision: str) -> str:
    """Where this process (not a Ray worker) evaluates a model of `precision`: the CPU, which runs
    fp32 and bf16, or CUDA for fp16 (IcurtError when this process sees no CUDA device)."""
    import torch

    if precision != "fp16":
        return "cpu"
    if not torch.cuda.is_available():
        raise IcurtError("train.precision is fp16, which only CUDA runs, but this process (where each fold's "
                         "held-out predictions are computed) sees no CUDA device; set train.precision=fp32 "
                         "or bf16, or run icurt on a machine with a GPU")
    return "cuda"
