"""Do stock agents learn GridWorld at their library's defaults?

Each agent is built with its library's defaults (nothing tuned: only what the env needs to be
read at all), trained for ``--steps`` env steps on ``--env`` with each seed of ``--seeds`` and
each map of ``--maps``, then acts greedily for 100 episodes. Printed, per map: the share of
those episodes that reach the diamond (``info["is_success"]`` on v1; reward +1 on v0) for
each seed, and the mean over seeds.

    python scripts/stock_defaults.py                       # SB3 PPO and DQN (the main env)
    python scripts/stock_defaults.py --library rllib       # RLlib PPO (pip install -e ".[rllib]")
    python scripts/stock_defaults.py --library tianshou    # Tianshou DQN (with "tianshou[eval]")
    python scripts/stock_defaults.py --library cleanrl     # CleanRL's ppo.py, written out here
    python scripts/stock_defaults.py --env GridWorld-v0 --seeds 0 --maps 4x4 6x6 8x8
    python scripts/stock_defaults.py --maps 6x6                 # v1's shaping on 6x6
    python scripts/stock_defaults.py --shaping 0               # v1's map without shaping
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.gridworld_maps import MAPS

ENV_ID = "GridWorld-v1"  # set by --env
SHAPING: dict[str, float] = {}  # {"shaping": --shaping} when given; else the env's


def greedy_success(act, map_name: str, episodes: int = 100) -> float:
    """Share of ``episodes`` greedy episodes that reach the diamond."""
    env = gym.make(ENV_ID, map=map_name, **SHAPING)
    successes = 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=10_000 + episode)
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            done = terminated or truncated
        successes += bool(info.get("is_success", reward == 1.0))  # v0: only the diamond pays +1
    return successes / episodes


def sb3(name: str, map_name: str, steps: int, seed: int):
    from stable_baselines3 import DQN, PPO

    env = gym.make(ENV_ID, map=map_name, **SHAPING)
    model = {"ppo": PPO, "dqn": DQN}[name]("MlpPolicy", env, seed=seed)  # SB3 one-hots Discrete
    model.learn(steps)
    return lambda obs: int(model.predict(obs, deterministic=True)[0])


def rllib_ppo(map_name: str, steps: int, seed: int):
    import ray
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.connectors.env_to_module import FlattenObservations
    from ray.rllib.core.columns import Columns

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    config = (
        PPOConfig()
        .environment(f"textgym:{ENV_ID}", env_config={"map": map_name, **SHAPING})
        # RLlib's default module has no encoder for a Discrete observation: one-hot it.
        .env_runners(
            num_env_runners=2,
            env_to_module_connector=lambda *args, **kwargs: FlattenObservations(),
        )
        .debugging(seed=seed)
    )
    algo = config.build_algo()
    for _ in range(-(-steps // config.train_batch_size_per_learner)):  # 4,000 env steps each
        algo.train()
    module = algo.get_module()
    n_cells = module.observation_space.shape[0]
    algo.stop()

    def act(obs: int) -> int:
        one_hot = torch.zeros(1, n_cells)
        one_hot[0, obs] = 1.0
        with torch.no_grad():
            logits = module.forward_inference({Columns.OBS: one_hot})[Columns.ACTION_DIST_INPUTS]
        return int(logits.argmax(-1))

    return act


def _one_hot_env(map_name: str) -> gym.Env:
    """The env with its Discrete index one-hot encoded (gymnasium's flattening of Discrete)."""
    return gym.wrappers.FlattenObservation(gym.make(ENV_ID, map=map_name, **SHAPING))


def _one_hot(map_name: str):
    """The same encoding for ``act``: the cell index -> a float32 one-hot vector."""
    space = gym.make(ENV_ID, map=map_name, **SHAPING).observation_space
    return lambda obs: gym.spaces.flatten(space, obs).astype(np.float32)


def tianshou_dqn(map_name: str, steps: int, seed: int):
    """Tianshou 2.x's high-level DQN (``DQNExperimentBuilder``) at its defaults, which are:
    an MLP (64, 64) with ReLU, Adam with lr 1e-3, gamma 0.99, 1-step returns, no target network
    (``target_update_freq=0``, so ``is_double=True`` has no effect), MSE loss, epsilon 0 in
    training and inference (no exploration beyond the network's own argmax); one training env
    per CPU (``num_training_envs=-1``), a replay buffer of 4,096, 2,048 env steps per collection
    step, then one gradient step of batch 64 per collected step, no warm-up steps.
    Set here: the number of env steps (one epoch of ``steps``, rounded up to whole collection
    steps), the seed, sequential envs (``venv_type`` has no default) and no persistence or
    watching (files, and a "human" render mode GridWorld lacks)."""
    import torch
    from tianshou.highlevel.config import OffPolicyTrainingConfig
    from tianshou.highlevel.env import EnvFactory, EnvMode, VectorEnvType

    try:
        from tianshou.highlevel.experiment import DQNExperimentBuilder, ExperimentConfig
    except ModuleNotFoundError as error:  # it imports joblib and rliable, Tianshou's "eval" extra
        raise SystemExit(
            f'tianshou.highlevel needs {error.name}: pip install "tianshou[eval]"'
        ) from error

    torch.set_num_threads(1)  # tiny MLPs on a shared machine

    class OneHotGridWorld(EnvFactory):
        def _create_env(self, mode: EnvMode) -> gym.Env:
            return _one_hot_env(map_name)

    experiment = DQNExperimentBuilder(
        OneHotGridWorld(VectorEnvType.DUMMY),
        ExperimentConfig(seed=seed, watch=False, persistence_enabled=False),
        OffPolicyTrainingConfig(max_epochs=1, epoch_num_steps=steps),
    ).build()
    policy = experiment.run().world.algorithm.policy
    one_hot = _one_hot(map_name)

    def act(obs: int) -> int:
        with torch.no_grad():
            return int(policy.compute_action(one_hot(obs)))

    return act


def cleanrl_ppo(map_name: str, steps: int, seed: int):
    """CleanRL's ``ppo.py`` (a single-file reference, not a library), at its defaults: 4 envs,
    128 steps per env per rollout, lr 2.5e-4 annealed linearly to 0, gamma 0.99, GAE lambda 0.95,
    4 minibatches, 4 epochs, normalised advantages, clip 0.2 (the value loss clipped too),
    entropy 0.01, value 0.5, max grad norm 0.5, Adam eps 1e-5; separate 64-64 tanh actor and
    critic, orthogonal init (sqrt(2), actor out 0.01, critic out 1.0). As in CleanRL,
    ``steps // 512`` rollouts and a truncation ends the return like a termination. Gymnasium 1.x
    resets sub-envs on the step after the end by default: same-step reset is the gymnasium 0.29
    behaviour CleanRL was written for."""
    import torch
    from torch import nn

    torch.set_num_threads(1)  # tiny MLPs on a shared machine
    n_envs, n_steps, n_minibatches, n_epochs, lr = 4, 128, 4, 4, 2.5e-4
    gamma, gae_lambda, clip, ent_coef, vf_coef, max_grad_norm = 0.99, 0.95, 0.2, 0.01, 0.5, 0.5
    batch_size = n_envs * n_steps
    minibatch_size = batch_size // n_minibatches
    n_iterations = steps // batch_size
    rng = np.random.default_rng(seed)  # minibatch shuffling
    torch.manual_seed(seed)
    envs = gym.vector.SyncVectorEnv(
        [lambda: _one_hot_env(map_name)] * n_envs,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    n_obs = int(np.prod(envs.single_observation_space.shape))
    n_actions = int(envs.single_action_space.n)

    def layer(n_in: int, n_out: int, std: float = np.sqrt(2)) -> nn.Linear:
        linear = nn.Linear(n_in, n_out)
        nn.init.orthogonal_(linear.weight, std)
        nn.init.constant_(linear.bias, 0.0)
        return linear

    critic = nn.Sequential(
        layer(n_obs, 64), nn.Tanh(), layer(64, 64), nn.Tanh(), layer(64, 1, std=1.0)
    )
    actor = nn.Sequential(
        layer(n_obs, 64), nn.Tanh(), layer(64, 64), nn.Tanh(), layer(64, n_actions, std=0.01)
    )
    params = [*critic.parameters(), *actor.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr, eps=1e-5)

    obs = torch.zeros((n_steps, n_envs, n_obs))
    actions = torch.zeros((n_steps, n_envs), dtype=torch.long)
    logprobs, rewards, dones, values = (torch.zeros((n_steps, n_envs)) for _ in range(4))
    next_obs = torch.tensor(envs.reset(seed=seed)[0], dtype=torch.float32)
    next_done = torch.zeros(n_envs)
    for iteration in range(1, n_iterations + 1):
        optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / n_iterations) * lr
        for step in range(n_steps):
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                dist = torch.distributions.Categorical(logits=actor(next_obs))
                action = dist.sample()
                values[step] = critic(next_obs).flatten()
            actions[step], logprobs[step] = action, dist.log_prob(action)
            next_obs, reward, terminated, truncated, _ = envs.step(action.numpy())
            rewards[step] = torch.tensor(reward, dtype=torch.float32)
            next_obs = torch.tensor(next_obs, dtype=torch.float32)
            next_done = torch.tensor(np.logical_or(terminated, truncated), dtype=torch.float32)
        with torch.no_grad():  # generalised advantage estimation
            next_value = critic(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            last_gae = 0
            for t in reversed(range(n_steps)):
                if t == n_steps - 1:
                    next_nonterminal, next_values = 1.0 - next_done, next_value
                else:
                    next_nonterminal, next_values = 1.0 - dones[t + 1], values[t + 1]
                delta = rewards[t] + gamma * next_values * next_nonterminal - values[t]
                advantages[t] = last_gae = delta + gamma * gae_lambda * next_nonterminal * last_gae
            returns = advantages + values
        b_obs, b_actions = obs.reshape(-1, n_obs), actions.reshape(-1)
        b_logprobs, b_advantages = logprobs.reshape(-1), advantages.reshape(-1)
        b_returns, b_values = returns.reshape(-1), values.reshape(-1)
        b_inds = np.arange(batch_size)
        for _ in range(n_epochs):
            rng.shuffle(b_inds)
            for start in range(0, batch_size, minibatch_size):
                mb = b_inds[start : start + minibatch_size]
                dist = torch.distributions.Categorical(logits=actor(b_obs[mb]))
                ratio = (dist.log_prob(b_actions[mb]) - b_logprobs[mb]).exp()
                mb_adv = b_advantages[mb]
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(
                    -mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - clip, 1 + clip)
                ).mean()
                new_value = critic(b_obs[mb]).view(-1)
                v_clipped = b_values[mb] + torch.clamp(new_value - b_values[mb], -clip, clip)
                v_loss_unclipped = (new_value - b_returns[mb]) ** 2
                v_loss = 0.5 * torch.max(v_loss_unclipped, (v_clipped - b_returns[mb]) ** 2).mean()
                loss = pg_loss - ent_coef * dist.entropy().mean() + vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()
    envs.close()
    one_hot = _one_hot(map_name)

    def act(obs: int) -> int:
        with torch.no_grad():
            return int(actor(torch.from_numpy(one_hot(obs))).argmax())

    return act


def main() -> None:
    global ENV_ID, SHAPING
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=["sb3", "rllib", "tianshou", "cleanrl"], default="sb3")
    parser.add_argument("--env", choices=["GridWorld-v1", "GridWorld-v0"], default=ENV_ID)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--maps", nargs="+", choices=sorted(MAPS), help="default: the env's")
    parser.add_argument("--agents", nargs="+", help="a subset of the library's agents")
    parser.add_argument("--shaping", type=float, help="the env's shaping (default: the env's)")
    args = parser.parse_args()
    ENV_ID = args.env
    SHAPING = {} if args.shaping is None else {"shaping": args.shaping}
    agents = args.agents or {"sb3": ["ppo", "dqn"], "tianshou": ["dqn"]}.get(args.library, ["ppo"])
    train = {"rllib": rllib_ppo, "tianshou": tianshou_dqn, "cleanrl": cleanrl_ppo}
    seeds = " | ".join(f"seed {seed}" for seed in args.seeds)
    env = args.env + ("" if args.shaping is None else f", shaping={args.shaping:g}")
    print(f"| {args.library} agent on {env}, {args.steps:,} steps | map | {seeds} | mean |")
    print("|---|---|" + "---|" * (len(args.seeds) + 1))
    for name in agents:
        for map_name in args.maps or [gym.make(args.env).unwrapped.default_map]:
            shares = []
            for seed in args.seeds:
                if args.library == "sb3":
                    act = sb3(name, map_name, args.steps, seed)
                else:
                    act = train[args.library](map_name, args.steps, seed)
                shares.append(greedy_success(act, map_name))
            cells = " | ".join(f"{share:.0%}" for share in shares)
            print(f"| {name} | {map_name} | {cells} | {np.mean(shares):.0%} |", flush=True)


if __name__ == "__main__":
    main()
