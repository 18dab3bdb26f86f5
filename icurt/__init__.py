"""icurt: a Ray-distributed platform for ICU deep learning on MIMIC-III.

The Python API (icurt/api.py) is loaded on first use, so `import icurt` stays light:
`icurt.load_config`, `icurt.run`, `icurt.run_all`, `icurt.list_runs`, `icurt.latest`,
`icurt.open_run`, `icurt.synth_cohort`, `icurt.stop_database`.
"""

__version__ = "0.1.0"

_API = ("load_config", "run", "run_all", "list_runs", "latest", "open_run", "synth_cohort", "stop_database",
        "RunView")


def __getattr__(name: str):
    if name in _API:
        from icurt import api

        return getattr(api, name)
    raise AttributeError(f"module 'icurt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
