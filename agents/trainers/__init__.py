"""Trainers of textgym's own: `SequencePPO` (PPO over whole sequences, `sequence_ppo`) and
behaviour cloning of an env's expert (`imitation`)."""
