"""Ray job: `icurt run`.  ray job submit --working-dir . -- python jobs/pipeline.py [--config FILE] [--set k=v]"""

from _job import run_command

if __name__ == "__main__":
    run_command("run")
