"""Ray job: `icurt train`.  ray job submit --working-dir . -- python jobs/train.py [--config FILE] [--set k=v]"""

from _job import run_command

if __name__ == "__main__":
    run_command("train")
