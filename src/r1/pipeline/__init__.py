"""Multi-stage runs: distillation (generate → filter → sft) and the R1 pipeline."""
