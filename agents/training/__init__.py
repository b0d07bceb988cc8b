"""Training runs: `train` (the orchestrator), the run directory (`rundir`), its checkpoints
(`checkpoints`) and logs (`logs`), the recorder that feeds them while an agent learns
(`recorder`), evaluation (`evaluation`), and what compares runs: `compare`, `curves` and the KL
experiment (`kl_experiment`)."""
