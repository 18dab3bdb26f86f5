"""Ray job: `icurt attack`.  ray job submit --working-dir . -- python jobs/attack.py [--config FILE] [--set k=v]"""

from _job import run_command

if __name__ == "__main__":
    run_command("attack")
