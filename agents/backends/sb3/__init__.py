"""stable-baselines3: the agent zoo (`zoo`) and the VecEnvs it trains on (`vec_env`)."""
