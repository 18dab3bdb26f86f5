"""Ray job: `icurt tune-model`.  ray job submit --working-dir . -- python jobs/tune_model.py [--config FILE] [--set k=v]"""

from _job import run_command

if __name__ == "__main__":
    run_command("tune-model")
