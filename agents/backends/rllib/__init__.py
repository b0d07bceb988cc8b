"""Ray RLlib backend: textgym's agents on RLlib's PPO, over env runners and machines.

``pip install -e ".[rllib]"``; `textgym_agents.training.train.train` (``textgym train ... --backend
rllib``) builds on this package. What runs where:

- Each env runner (a Ray actor, on any node of the cluster) makes one native vector env
  (`gymnasium.make_vec` in ``"vector_entry_point"`` mode): for TextGen one `TextGenVectorEnv`
  with one reference model, one batched KV cache and its RM, loaded inside the runner from
  the env arguments (paths or names: nothing large travels from the driver).
- The learner (on the driver unless RLlib is told otherwise) updates the module; RLlib sends
  the weights to the runners after every iteration.

The package imports only with Ray installed; its modules: `modules` (the RLlib modules and
their files), `callbacks` (the runners' side: the KL scorer, episodes, the shared KL
coefficient) and `agent` (the config and the algorithm behind `train`'s interface).

The RLlib modules:

- `SB3PolicyModule` holds an SB3 actor-critic policy and calls its forward pass, so RLlib, SB3
  and `SequencePPO` share one implementation of logits and values: `GPTActorCriticPolicy`
  (``gpt``, which starts as the reference model: KL 0 before training) and, for ``ppo`` on
  TextGen's ``"topk"`` mode, `ReferencePriorPolicy` (the reference's candidate log-probs plus
  a learned correction that starts at 0).
- ``ppo`` on GridWorld is RLlib's own default PPO module, its ``Discrete`` cell index one-hot
  encoded by RLlib's ``FlattenObservations`` connector.

The KL step reward is exact: the env computes it, as on every other path, through its policy
scorer contract. `TextGymCallbacks` attaches each runner's own module to the runner's envs as
their scorer; the module remembers the log-probs of the forward pass that chose the actions
(`ForwardMemory`), so the env's ``log pi`` is that of the distribution that acted, at no
second forward pass, and the rewards RLlib trains on are the env's. The adaptive KL
coefficient is one controller on the driver: the runners' envs pay the coefficient they are
sent and do not step it; after every iteration the driver applies one update over the
episodes every runner finished in it and sends the result to all of them
(`synchronise_kl_coef`), so within an iteration every runner pays the same coefficient.
"""

from textgym_agents.backends.hyperparams import RLLIB_AGENTS, RLLIB_HYPERPARAMS
from textgym_agents.backends.rllib.agent import (
    IterationStats,
    RLlibAgent,
    check_working_directory,
    rllib_config,
    rllib_env_kwargs,
    rllib_hyperparams,
    rllib_session,
)
from textgym_agents.backends.rllib.callbacks import (
    RunnerScorer,
    TextGymCallbacks,
    set_kl_coef,
    synchronise_kl_coef,
    take_episodes,
)
from textgym_agents.backends.rllib.modules import (
    RLlibPolicy,
    SB3PolicyModule,
    load_module,
    module_archive,
    module_spec,
    one_hot_observations,
    policy_config,
)

__all__ = [
    "RLLIB_AGENTS",
    "RLLIB_HYPERPARAMS",
    "IterationStats",
    "RLlibAgent",
    "RLlibPolicy",
    "RunnerScorer",
    "SB3PolicyModule",
    "TextGymCallbacks",
    "check_working_directory",
    "load_module",
    "module_archive",
    "module_spec",
    "one_hot_observations",
    "policy_config",
    "rllib_config",
    "rllib_env_kwargs",
    "rllib_hyperparams",
    "rllib_session",
    "set_kl_coef",
    "synchronise_kl_coef",
    "take_episodes",
]
