"""The sequence-level PPO trainer of the GPT policy (the zoo's ``gpt`` agent on TextGen)."""

from __future__ import annotations

import json
import zipfile
from collections import Counter

import numpy as np
import pytest
import torch

from textgym.constraints import TokenSet
from textgym_agents.backends.sb3.zoo import make_agent
from textgym_agents.policies.gpt_policy import GPTActorCriticPolicy
from textgym_agents.trainers.advantages import rloo_advantages
from textgym_agents.trainers.episodes import Episode
from textgym_agents.trainers.sequence_ppo import SequencePPO

PROMPTS = ["the movie was", "a quiet drama about a family", "i watched this film"]


def trainer(path, *, action_mode="vocab", rm=None, kl_coef=0.5, **kwargs) -> SequencePPO:
    env_kwargs = {
        "model": str(path),
        "prompts": PROMPTS,
        "max_new_tokens": 5,
        "kl_coef": kl_coef,
        "action_mode": action_mode,
        "top_k": 5,
    }
    if rm is not None:
        env_kwargs["reward_model"] = rm
    settings = {"num_envs": 4, "episodes_per_update": 8, "minibatch_episodes": 4, **kwargs}
    return SequencePPO(env_kwargs, seed=0, **settings)


def length_reward(prompts, texts):
    return [len(t) / 10.0 for t in texts]


def ending_early(agent: SequencePPO, bonus: float = 5.0) -> SequencePPO:
    """Raise the EOS logit of the policy's head ("vocab" mode), in acting and in the update
    alike, so texts end at different steps and rows of a group go idle."""
    head, eos = agent.policy.action_logits, agent.eos_token_id

    def action_logits(token_logits, hidden=None, candidate_ids=None):
        logits = head(token_logits, hidden, candidate_ids).clone()
        logits[..., eos] += bonus
        return logits

    agent.policy.action_logits = action_logits
    return agent


def full_forward_logprobs(agent: SequencePPO, episodes) -> list[np.ndarray]:
    """Each episode's action log-probs from one plain forward pass over its sequence."""
    with torch.no_grad():
        logits, _, _ = agent._forward(episodes)
    logprobs = torch.log_softmax(logits, -1).numpy()
    return [logprobs[i, np.arange(len(e.actions)), e.actions] for i, e in enumerate(episodes)]


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_policy_starts_as_the_reference_so_rewards_are_the_rm_score(tiny_gpt2, action_mode):
    agent = trainer(tiny_gpt2, action_mode=action_mode)
    episodes = agent.collect()
    assert len(episodes) >= 8
    for e in episodes:
        assert abs(e.kl) < 1e-4  # the env's KL, from the trainer's own log-probs
        np.testing.assert_allclose(e.rewards[:-1], 0.0, atol=1e-4)
        assert e.rewards[-1] == pytest.approx(e.rm_score, abs=1e-4)


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_acting_log_probs_match_one_forward_over_the_sequence(tiny_gpt2, action_mode):
    # Rows end at different steps (EOS) and restart mid-rollout: the KV cache is spliced.
    agent = trainer(tiny_gpt2, action_mode=action_mode, episodes_per_update=24)
    episodes = agent.collect()
    assert len({len(e.tokens) for e in episodes}) > 1 or len(episodes) > agent.num_envs
    for e, recomputed in zip(episodes, full_forward_logprobs(agent, episodes)):
        np.testing.assert_allclose(e.logprobs, recomputed, atol=1e-4)
        if action_mode == "topk":
            chosen = e.candidates[np.arange(len(e.tokens)), e.actions]
            np.testing.assert_array_equal(chosen, e.tokens)


def test_acting_after_an_update_uses_the_new_weights(tiny_gpt2):
    agent = trainer(tiny_gpt2, learning_rate=1e-3)
    first = agent.collect()
    before = full_forward_logprobs(agent, first)
    agent.update(first)
    assert not np.allclose(
        np.concatenate(before), np.concatenate(full_forward_logprobs(agent, first))
    )
    # Episodes in flight at the update keep the behaviour log-probs of their earlier tokens;
    # every last token was sampled by the updated policy, through its rebuilt cache.
    second = agent.collect()
    for e, recomputed in zip(second, full_forward_logprobs(agent, second)):
        assert e.logprobs[-1] == pytest.approx(recomputed[-1], abs=1e-4)


def test_update_is_one_forward_per_sequence(tiny_gpt2):
    agent = trainer(tiny_gpt2, n_epochs=2)
    episodes = agent.collect()[:8]
    rows = []
    hook = agent.policy.trunk.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    agent.update(episodes)
    hook.remove()
    # One no-grad pass for the old values, then 2 epochs x 2 minibatches of 4 sequences.
    assert rows == [8, 4, 4, 4, 4]


def test_updates_raise_the_reward(tiny_gpt2):
    # Reward: the share of the letter "e" in the continuation.
    def reward(prompts, texts):
        return [t.count("e") / max(1, len(t)) for t in texts]

    settings = {"num_envs": 8, "episodes_per_update": 16, "minibatch_episodes": 8}
    agent = trainer(tiny_gpt2, rm=reward, kl_coef=0.0, learning_rate=1e-2, **settings)
    before = np.mean([e.rm_score for e in agent.collect()])
    for _ in range(14):
        agent.update(agent.collect())
    after = np.mean([e.rm_score for e in agent.collect()])
    assert after > before + 0.1, (before, after)


def test_learn_counts_generated_tokens_and_calls_back(tiny_gpt2):
    agent = trainer(tiny_gpt2)
    seen = []
    agent.learn(30, callback=lambda a, stats: seen.append(stats))
    assert agent.num_timesteps >= 30
    assert seen and seen[-1].timesteps == agent.num_timesteps
    assert all(s.tokens > 0 and s.collect_seconds > 0 and s.update_seconds > 0 for s in seen)
    stop = []
    agent.learn(10_000, callback=lambda a, stats: stop.append(1) or False)
    assert len(stop) == 1


def test_the_env_cannot_be_stepped_behind_the_trainers_back(tiny_gpt2):
    agent = trainer(tiny_gpt2)
    agent.collect()
    with pytest.raises(RuntimeError, match="SequencePPO"):
        for _ in range(2):  # the first step may only restart rows that just finished
            agent.env.step(np.zeros(agent.num_envs, dtype=np.int64))


def test_save_and_load_round_trip(tiny_gpt2, tmp_path):
    agent = trainer(tiny_gpt2, learning_rate=1e-3)
    agent.update(agent.collect())
    agent.save(tmp_path / "policy.zip")
    loaded = GPTActorCriticPolicy.load(str(tmp_path / "policy.zip"))
    episodes = agent.collect()[:4]
    expected = full_forward_logprobs(agent, episodes)
    agent.policy = loaded
    for a, b in zip(expected, full_forward_logprobs(agent, episodes)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("num_envs", 0),
        ("episodes_per_update", 0),
        ("n_epochs", 1.5),
        ("clip_range", 0.0),
        ("group_size", 0),
        ("group_size", 3),  # does not divide num_envs=4
        ("advantage", "grpo"),
        ("normalize_advantage", "sequence"),
        ("normalize_advantage", "batch"),  # one advantage per episode: RLOO only
        ("normalize_advantage", "group"),
    ],
)
def test_bad_settings_name_the_argument(tiny_gpt2, argument, value):
    with pytest.raises(ValueError, match=argument):
        trainer(tiny_gpt2, **{argument: value})


def test_rloo_needs_groups_and_group_size_belongs_to_the_trainer(tiny_gpt2):
    with pytest.raises(ValueError, match="advantage='rloo' with group_size=1"):
        trainer(tiny_gpt2, advantage="rloo")
    with pytest.raises(ValueError, match="env_kwargs=.*sets group_size"):
        SequencePPO({"model": str(tiny_gpt2), "group_size": 2}, num_envs=4)
    with pytest.raises(ValueError, match="env_kwargs sets a constraint"):
        SequencePPO({"model": str(tiny_gpt2), "constraint": TokenSet((5, 7))}, num_envs=4)


def test_grouped_episodes_come_in_whole_groups_that_share_their_prompt(tiny_gpt2):
    agent = trainer(tiny_gpt2, group_size=2, episodes_per_update=7)
    episodes = agent.collect() + agent.collect()
    sizes = Counter(e.group for e in episodes)
    assert len(sizes) >= 7 and set(sizes.values()) == {2}
    for group in sizes:
        first, second = (e for e in episodes if e.group == group)
        np.testing.assert_array_equal(first.prompt, second.prompt)
        assert first.prompt_text == second.prompt_text


def test_episodes_without_groups_have_group_minus_one(tiny_gpt2):
    assert {e.group for e in trainer(tiny_gpt2, episodes_per_update=4).collect()} == {-1}


def test_idle_rows_record_nothing_and_their_rewards_sum_to_the_env_return(tiny_gpt2):
    agent = ending_early(trainer(tiny_gpt2, rm=length_reward, group_size=2, episodes_per_update=16))
    env_returns, running, idle_steps = [], np.zeros(agent.num_envs), []
    step = agent.env.step

    def recording_step(actions):
        out = step(actions)
        _, rewards, terminated, _, infos = out
        running[:] += rewards  # a restarting row is paid 0
        idle_steps.append(int(infos["idle"].sum()))
        for row in np.flatnonzero(terminated):
            env_returns.append(running[row])
            running[row] = 0.0
        return out

    agent.env.step = recording_step
    episodes = agent.collect()
    assert sum(idle_steps) > 0
    lengths = {len(e.tokens) for e in episodes}
    assert len(lengths) > 1
    for e in episodes:
        assert len(e.tokens) == len(e.actions) == len(e.logprobs) == len(e.rewards)
        assert agent.eos_token_id not in e.tokens[:-1]  # nothing after a text's end
    returns = [e.episode_return for e in episodes]
    np.testing.assert_allclose(returns, env_returns[: len(episodes)], atol=1e-5)
    # Idle rows fed their policy cache nothing: acting matches a plain forward pass.
    for e, recomputed in zip(episodes, full_forward_logprobs(agent, episodes)):
        np.testing.assert_allclose(e.logprobs, recomputed, atol=1e-4)


def handmade_episode(rewards: list[float], group: int) -> Episode:
    n = len(rewards)
    return Episode(
        prompt=np.array([1, 2]),
        tokens=np.arange(n),
        actions=np.arange(n),
        logprobs=np.zeros(n, dtype=np.float32),
        rewards=np.array(rewards, dtype=np.float32),
        candidates=None,
        rm_score=rewards[-1],
        kl=0.0,
        kl_coef=0.0,
        text="",
        prompt_text="",
        group=group,
    )


def test_rloo_advantage_is_the_return_minus_the_mean_of_the_others(tiny_gpt2):
    groups = [7, 3, 7, 3, 7, 3]  # two groups of 3, interleaved
    rewards = [[0.5], [-0.1, 0.25, 1.0], [0.0, 2.0], [0.75], [0.25, -0.5], [1.5, 0.0]]
    episodes = [handmade_episode(r, g) for r, g in zip(rewards, groups)]
    returns = np.array([sum(r) for r in rewards])
    expected = [
        returns[i] - np.mean([returns[j] for j in range(6) if j != i and groups[j] == groups[i]])
        for i in range(6)
    ]
    np.testing.assert_allclose(rloo_advantages(episodes, 3), expected, rtol=1e-6)

    agent = trainer(tiny_gpt2, num_envs=3, group_size=3, advantage="rloo")
    advantages, targets = agent._advantages(episodes)
    for i, r in enumerate(rewards):  # every token gets its episode's advantage
        np.testing.assert_allclose(advantages[i, : len(r)], expected[i], rtol=1e-6)
        np.testing.assert_allclose(targets[i, : len(r)], np.cumsum(r[::-1])[::-1], rtol=1e-6)
    with pytest.raises(ValueError, match="whole groups of group_size=3"):
        rloo_advantages(episodes[:5], 3)


def whitened(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std(ddof=1) + 1e-8)


def expected_rloo_advantages(
    rewards: list[list[float]], groups: list[int], normalisation: str
) -> list[np.ndarray]:
    """SequencePPO's documented RLOO advantages, computed directly: per episode its return
    minus the mean return of the others of its group, normalised as documented, on every
    token."""
    returns = np.array([sum(r) for r in rewards])
    members = {g: [j for j in range(len(groups)) if groups[j] == g] for g in groups}
    loo = np.array(
        [
            r - np.mean([returns[j] for j in members[g] if j != i])
            for i, (r, g) in enumerate(zip(returns, groups))
        ]
    )
    if normalisation == "batch":
        loo = whitened(loo)
    elif normalisation == "group":
        loo = np.array([a / (returns[members[g]].std(ddof=1) + 1e-8) for a, g in zip(loo, groups)])
    tokens = [np.full(len(r), a) for r, a in zip(rewards, loo)]
    if normalisation == "token":
        flat = whitened(np.concatenate(tokens))
        tokens = np.split(flat, np.cumsum([len(r) for r in rewards])[:-1])
    return tokens


# The issue's example: returns 1, 0, 0.5, 0.5 in groups (0, 1), (2, 3), of 1, 3, 2, 2 tokens.
ISSUE_REWARDS = [[1.0], [0.0, 0.0, 0.0], [0.0, 0.5], [0.25, 0.25]]
ISSUE_GROUPS = [0, 0, 1, 1]
# Two groups of 3, interleaved, with different spreads.
MIXED_REWARDS = [[0.5], [-0.1, 0.25, 1.0], [0.0, 2.0], [0.75], [0.25, -0.5], [1.5, 0.0]]
MIXED_GROUPS = [7, 3, 7, 3, 7, 3]


def test_rloo_trains_on_the_plain_leave_one_out_advantage_by_default(tiny_gpt2):
    agent = trainer(tiny_gpt2, num_envs=2, group_size=2, advantage="rloo")
    assert agent.normalize_advantage == "none"
    episodes = [handmade_episode(r, g) for r, g in zip(ISSUE_REWARDS, ISSUE_GROUPS)]
    advantages = agent.advantages(episodes)
    for got, want in zip(advantages, [[1.0], [-1.0, -1.0, -1.0], [0.0, 0.0], [0.0, 0.0]]):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # Whitening over tokens (what RLOO did before the option) is still there, by name.
    tokens = trainer(
        tiny_gpt2, num_envs=2, group_size=2, advantage="rloo", normalize_advantage="token"
    )
    got = [a[0] for a in tokens.advantages(episodes)]
    np.testing.assert_allclose(got, [1.768, -1.061, 0.354, 0.354], atol=1e-3)


@pytest.mark.parametrize("normalisation", ["none", "token", "batch", "group"])
@pytest.mark.parametrize(
    ("rewards", "groups"), [(ISSUE_REWARDS, ISSUE_GROUPS), (MIXED_REWARDS, MIXED_GROUPS)]
)
def test_rloo_advantages_are_their_documented_formula(tiny_gpt2, rewards, groups, normalisation):
    k = len(groups) // len(set(groups))
    agent = trainer(
        tiny_gpt2, num_envs=k, group_size=k, advantage="rloo", normalize_advantage=normalisation
    )
    episodes = [handmade_episode(r, g) for r, g in zip(rewards, groups)]
    expected = expected_rloo_advantages(rewards, groups, normalisation)
    for got, want in zip(agent.advantages(episodes), expected):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("normalisation", ["token", "none"])
def test_gae_advantages_are_their_documented_formula(tiny_gpt2, normalisation):
    agent = trainer(tiny_gpt2, gae_lambda=0.9, normalize_advantage=normalisation)
    episodes = agent.collect()
    with torch.no_grad():
        values = agent._forward(episodes)[1].numpy()
    expected = []
    for i, e in enumerate(episodes):  # GAE with gamma = 1, the episode's end terminal
        v = np.append(values[i, : len(e.tokens)], 0.0)
        deltas = e.rewards + v[1:] - v[:-1]
        expected.append(
            np.array(
                [sum(0.9**j * d for j, d in enumerate(deltas[t:])) for t in range(len(e.tokens))]
            )
        )
    if normalisation == "token":
        flat = whitened(np.concatenate(expected))
        expected = np.split(flat, np.cumsum([len(e.tokens) for e in episodes])[:-1])
    for got, want in zip(agent.advantages(episodes), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("advantage", "normalisation"),
    [
        ("rloo", "none"),
        ("rloo", "batch"),
        ("rloo", "group"),
        ("rloo", "token"),
        ("gae", "token"),
        ("gae", "none"),
    ],
)
def test_the_policy_loss_uses_the_advantages_it_reports(tiny_gpt2, advantage, normalisation):
    # Texts of different lengths, paid by length: an advantage's token weight shows.
    agent = ending_early(
        trainer(
            tiny_gpt2,
            rm=length_reward,
            group_size=2,
            advantage=advantage,
            normalize_advantage=normalisation,
            n_epochs=1,
            minibatch_episodes=64,
        )
    )
    episodes = agent.collect()
    advantages = np.concatenate(agent.advantages(episodes))
    # One minibatch of every episode, before any step: the ratio is 1, so the clipped
    # objective is -advantage on every token.
    stats = agent.update(episodes)
    assert stats["policy_loss"] == pytest.approx(-advantages.mean(), abs=1e-4)
    if normalisation == "none":
        assert abs(advantages.mean()) > 1e-2  # tells "none" from the whitened mean of 0


def test_advantages_refuse_no_episodes(tiny_gpt2):
    with pytest.raises(ValueError, match="episodes=\\[\\]"):
        trainer(tiny_gpt2).advantages([])


def test_rloo_without_a_value_loss_trains_the_policy_alone(tiny_gpt2):
    agent = trainer(
        tiny_gpt2, rm=length_reward, group_size=2, advantage="rloo", vf_coef=0.0, learning_rate=1e-3
    )
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    forward, grad_enabled = agent._forward, []

    def recording_forward(episodes):
        grad_enabled.append(torch.is_grad_enabled())
        return forward(episodes)

    agent._forward = recording_forward
    agent.learn(30)
    assert grad_enabled and all(grad_enabled)  # no forward pass for old values
    after = agent.policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("trunk.") for k in changed)
    assert not any(k.startswith("value_head.") for k in changed)


def test_load_state_round_trips_group_size_and_advantage(tiny_gpt2, tmp_path):
    path = tmp_path / "trainer.zip"
    settings = {"num_envs": 2, "group_size": 2, "episodes_per_update": 2}
    agent = trainer(tiny_gpt2, advantage="rloo", **settings)
    agent.update(agent.collect())
    agent.save(path)
    with zipfile.ZipFile(path) as archive:
        saved = json.loads(archive.read("trainer.json"))
    assert (saved["group_size"], saved["advantage"]) == (2, "rloo")
    resumed = trainer(tiny_gpt2, advantage="rloo", **settings)
    resumed.load_state(path)
    assert resumed.num_timesteps == agent.num_timesteps
    other = trainer(tiny_gpt2, **settings)
    with pytest.raises(ValueError, match="'advantage': 'rloo'"):
        other.load_state(path)
    assert other.num_timesteps == 0


def test_load_state_round_trips_normalize_advantage_and_reads_old_files_as_token(
    tiny_gpt2, tmp_path
):
    settings = {"num_envs": 2, "group_size": 2, "episodes_per_update": 2, "advantage": "rloo"}
    agent = trainer(tiny_gpt2, normalize_advantage="batch", **settings)
    agent.update(agent.collect())
    agent.save(tmp_path / "new.zip")
    trainer(tiny_gpt2, normalize_advantage="batch", **settings).load_state(tmp_path / "new.zip")
    plain = trainer(tiny_gpt2, **settings)
    with pytest.raises(ValueError, match="'normalize_advantage': 'batch'"):
        plain.load_state(tmp_path / "new.zip")
    assert plain.num_timesteps == 0

    # A file from before the option: its RLOO advantages were whitened over tokens.
    with zipfile.ZipFile(tmp_path / "new.zip") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    saved = json.loads(files["trainer.json"])
    del saved["normalize_advantage"]
    files["trainer.json"] = json.dumps(saved).encode()
    with zipfile.ZipFile(tmp_path / "old.zip", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match="'normalize_advantage': 'token'"):
        plain.load_state(tmp_path / "old.zip")
    resumed = trainer(tiny_gpt2, normalize_advantage="token", **settings)
    resumed.load_state(tmp_path / "old.zip")
    assert resumed.num_timesteps == agent.num_timesteps


def test_zoo_gpt_on_textgen_is_the_sequence_trainer(tiny_gpt2):
    agent = make_agent(
        "gpt", "TextGen-v0", n_envs=2, env_kwargs={"model": str(tiny_gpt2), "max_new_tokens": 3}
    )
    assert isinstance(agent, SequencePPO) and agent.num_envs == 2
    assert agent.env.unwrapped.core.action_mode == "vocab"
