"""Ray job: `icurt preprocess`.  ray job submit --working-dir . -- python jobs/preprocess.py [--config FILE] [--set k=v]"""

from _job import run_command

if __name__ == "__main__":
    run_command("preprocess")
