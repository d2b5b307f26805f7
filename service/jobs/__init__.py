"""Trial jobs: executors (local, Ray, Slurm), the in-job runner and context, the orchestrator."""
