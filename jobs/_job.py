"""Shared by the job entrypoints: make the shipped working dir importable, run one icurt command.

Inside a Ray job (`ray job submit --working-dir . -- python jobs/<name>.py ...`) icurt joins the
job's cluster through RAY_ADDRESS instead of starting a local Ray.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run_command(command: str) -> None:
    from icurt.cli import main

    sys.exit(main([command, *sys.argv[1:]]))
