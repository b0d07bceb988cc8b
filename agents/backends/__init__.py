"""The RL libraries agents train with: stable-baselines3 (`sb3`: the zoo and the VecEnvs) and Ray
RLlib (`rllib`, an optional extra), with the tuned settings of both (`hyperparams`)."""
