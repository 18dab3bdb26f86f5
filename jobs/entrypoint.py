"""Ray job entrypoint: any `icurt` command, from the shipped working dir (no install needed).

    ray job submit --working-dir . -- python jobs/entrypoint.py run [--config FILE] [--set k=v]
    ray job submit --working-dir . -- python jobs/entrypoint.py train --from RUN

The commands are the CLI's, generated from the stage table (icurt/stage_table.py). Inside a Ray
job icurt joins the job's cluster through RAY_ADDRESS instead of starting a local Ray.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":
    from icurt.cli import main

    sys.exit(main())
