"""``textgym render`` and the HTML renderer: episodes drawn token by token, coloured by reward."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from textgym.render import render_ansi, render_html, shared_scale
from textgym_agents.cli import main
from textgym_agents.training.evaluation import play_run, play_text
from textgym_agents.training.train import train

PROMPTS = ["the movie was", "a quiet drama about a family"]
TOKENS = [" <b>", " &amp;", ' "quoted"', "  two spaces", "plain"]
REWARDS = [0.02, -0.05, 0.0, -0.01, 0.05]


def text_kwargs(path) -> dict:
    return {"model": str(path), "prompts": PROMPTS, "max_new_tokens": 4}


def env_args(path) -> list[str]:
    pairs = [f"{key}={value!r}" for key, value in text_kwargs(path).items()]
    return [part for pair in pairs for part in ("--env-arg", pair)]


class Spans(HTMLParser):
    """The token spans (text, title, background) of an HTML render; fails on unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.spans: list[dict[str, str]] = []
        self.current: dict[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("meta",):  # void element
            return
        self.open.append(tag)
        attrs = dict(attrs)
        if tag == "span" and "title" in attrs:
            self.current = {"text": "", **attrs}
            self.spans.append(self.current)

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"
        if tag == "span":
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"] += data


def parse(html: str) -> Spans:
    parser = Spans()
    parser.feed(html)
    parser.close()
    assert parser.open == [], f"unclosed tags {parser.open}"
    return parser


def background(span: dict[str, str]) -> tuple[int, ...]:
    return tuple(int(x) for x in re.search(r"rgb\((\d+),(\d+),(\d+)\)", span["style"]).groups())


@pytest.fixture(scope="module")
def gpt_run(tiny_gpt2, tmp_path_factory):
    """A tiny ``gpt`` run that learned nothing (learning rate 0): its policy is the reference."""
    out = tmp_path_factory.mktemp("runs") / "gpt"
    train(
        "TextGen-v0",
        "gpt",
        steps=16,
        out=out,
        progress=False,
        eval_episodes=2,
        env_kwargs={**text_kwargs(tiny_gpt2), "kl_coef": 0.1},
        n_envs=4,
        episodes_per_update=4,
        learning_rate=0.0,
    )
    return out


# ------------------------------------------------------------------------------ render_html


def test_render_html_escapes_tokens_and_gives_each_its_exact_reward():
    html = render_html('say <"hi"> & go', TOKENS, REWARDS, rm_score=0.5)
    spans = parse(html).spans
    assert [span["text"] for span in spans] == TOKENS  # escaped, spaces kept, one per token
    assert [float(span["title"].split()[-1]) for span in spans] == REWARDS
    assert "white-space:pre-wrap" in html
    assert "say &lt;&quot;hi&quot;&gt; &amp; go" in html and "<b>" not in html
    assert "RM score +0.500" in html and "KL reward +0.010" in html


def test_render_html_colours_rewards_by_sign_and_size_like_the_ansi_renderer():
    spans = parse(render_html("p", TOKENS, REWARDS)).spans
    colours = [background(span) for span in spans]
    green, red, grey = colours[4], colours[1], colours[2]
    assert green[1] > green[0] and red[0] > red[1] and grey[0] == grey[1] == grey[2]
    assert colours[0][1] < green[1]  # +0.02 is paler than the largest reward, +0.05
    ansi = render_ansi("p", TOKENS, REWARDS)
    ansi_colours = [tuple(map(int, c)) for c in re.findall(r"\x1b\[38;2;(\d+);(\d+);(\d+)m", ansi)]
    assert ansi_colours == colours


def test_one_scale_colours_episodes_alike_and_each_episode_alone_uses_its_range():
    small, large = [-0.05, 0.01], [-1.0, 0.2]
    # Alone, each episode's largest |reward| gets full colour: -0.05 looks like -1.0.
    alone = [background(parse(render_html("p", ["a", "b"], r)).spans[0]) for r in (small, large)]
    assert alone[0] == alone[1]
    scale = shared_scale([small, large])
    assert scale == 1.0
    shared = [
        background(parse(render_html("p", ["a", "b"], r, scale=scale)).spans[0])
        for r in (small, large)
    ]
    assert shared[1] == alone[1] and shared[0][0] < shared[1][0]  # -0.05 is the paler red
    with pytest.raises(ValueError, match="scale=0"):
        render_html("p", ["a"], [0.1], scale=0)


def test_the_score_line_counts_a_missing_eos_penalty_in_the_return():
    line = render_ansi("p", ["a", "b"], [-0.25, -0.25], rm_score=1.0, penalty=0.5)
    assert "missing-EOS penalty -0.500" in line and "return +0.000" in line
    assert "missing-EOS" not in render_ansi("p", ["a"], [-0.25], rm_score=1.0)


def test_float_noise_of_a_policy_at_the_reference_stays_grey():
    spans = parse(render_html("p", ["a", "b"], [1e-8, -2e-8])).spans
    for r, g, b in map(background, spans):
        assert max(r, g, b) - min(r, g, b) <= 1


# ----------------------------------------------------------------------------- the command


def test_render_reference_prints_ansi_with_the_score_line(capsys, tiny_gpt2):
    main(["render", "reference", "--episodes", "2", "--color", "always", *env_args(tiny_gpt2)])
    out = capsys.readouterr().out
    assert out.count("--- episode") == 2 and out.count("RM score") == 2
    assert "\x1b[38;2;" in out and "KL reward +0.000" in out  # the reference: KL 0


def test_render_to_png_stacks_the_episodes(tiny_gpt2, tmp_path):
    out = tmp_path / "episodes.png"
    main(["render", "reference", "--episodes", "1", "--out", str(out), *env_args(tiny_gpt2)])
    one = Image.open(out).size
    main(["render", "reference", "--episodes", "3", "--out", str(out), *env_args(tiny_gpt2)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    three = Image.open(out).size
    assert three[0] == one[0] and three[1] > 2 * one[1]


def test_render_to_html_has_one_span_per_token(tiny_gpt2, tmp_path):
    out = tmp_path / "episodes.html"
    args = ["--episodes", "3", "--seed", "5", "--temperature", "2.0", "--out", str(out)]
    main(["render", "reference", *args, *env_args(tiny_gpt2)])
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count('class="episode"') == 3
    spans = parse(page).spans
    # The same seed plays the same episodes.
    episodes = play_text(
        None, episodes=3, seed=5, env_kwargs=text_kwargs(tiny_gpt2), temperature=2.0
    )
    assert [span["text"] for span in spans] == [t for e in episodes for t in e.tokens]
    assert [float(span["title"].split()[-1]) for span in spans] == pytest.approx(
        [r for e in episodes for r in e.step_rewards]
    )
    assert page.count("RM score") == 3


def test_played_tokens_spell_the_episode_text_and_carry_its_penalty(tiny_gpt2):
    import gymnasium as gym

    kwargs = {**text_kwargs(tiny_gpt2), "missing_eos_penalty": 0.5}
    episodes = play_text(None, episodes=6, seed=3, env_kwargs=kwargs)
    # The env scores the decoded text; the drawn tokens must be that text, token by token.
    eos = gym.make("TextGen-v0", **kwargs).unwrapped.tokenizer.eos_token
    for episode in episodes:
        ended = episode.tokens[-1] == eos
        assert episode.penalty == (0.0 if ended else 0.5)
        assert "".join(episode.tokens[:-1] if ended else episode.tokens) == episode.text
    assert {e.penalty for e in episodes} <= {0.0, 0.5}


def test_reference_kl_rewards_are_zero_only_at_temperature_one(tiny_gpt2):
    kwargs = {**text_kwargs(tiny_gpt2), "kl_coef": 0.1}
    plain = play_text(None, episodes=4, seed=0, env_kwargs=kwargs)
    # The tiny random model is nearly uniform, so even 0.3 moves it only a little.
    sharp = play_text(None, episodes=4, seed=0, env_kwargs=kwargs, temperature=0.3)
    assert all(len(e.tokens) == len(e.step_rewards) >= 1 for e in plain + sharp)
    assert np.abs([r for e in plain for r in e.step_rewards]).max() < 1e-5
    assert np.abs([r for e in sharp for r in e.step_rewards]).max() > 1e-2


def test_render_a_gpt_run_directory_scores_with_the_agents_policy(gpt_run, capsys):
    main(["render", str(gpt_run), "--episodes", "2"])
    out = capsys.readouterr().out
    assert out.count("--- episode") == 2 and out.count("RM score") == 2
    episodes = play_run(gpt_run, episodes=3)
    assert len(episodes) == 3 and all(e.prompt in PROMPTS for e in episodes)
    # The agent samples from torch's generator, seeded by the play: the same seed, the same
    # episodes, whatever the caller's random state.
    torch.manual_seed(123)
    assert [e.tokens for e in play_run(gpt_run, episodes=3)] == [e.tokens for e in episodes]
    # The agent (still the reference) is the KL scorer, so every KL reward is ~0; without it
    # the env's reference-only reward, kl_coef * log pi_ref, would be about 0.1 * -5.8.
    assert np.abs([r for e in episodes for r in e.step_rewards]).max() < 1e-3


def test_render_an_sb3_ppo_run_directory_in_topk_mode(tiny_gpt2, tmp_path):
    out = tmp_path / "ppo"
    kwargs = text_kwargs(tiny_gpt2)
    train("TextGen-v0", "ppo", steps=16, out=out, progress=False, eval_episodes=2,
          env_kwargs=kwargs, n_envs=2, n_steps=8, batch_size=16)  # fmt: skip
    html = tmp_path / "ppo.html"
    main(["render", str(out), "--episodes", "2", "--out", str(html)])
    spans = parse(html.read_text(encoding="utf-8")).spans
    assert 2 <= len(spans) <= 2 * kwargs["max_new_tokens"]
    assert all(span["text"] for span in spans)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["render", "reference", "--out", "x.txt"], r"--out x.txt: .*\.png or \.html"),
        (["render", "some_run", "--temperature", "2"], "--temperature 2.0: .*reference"),
        (["render", "no_such_run"], "no_such_run.*config.json"),
        (["render", "reference", "--episodes", "0"], "--episodes 0"),
        (["render", "reference", "--out", "no/such/dir/x.png"], "no/such/dir does not exist"),
        (["render", "reference", "--scale", "0"], "--scale 0.0: expected"),
    ],
)
def test_render_refuses_bad_arguments(argv, message, cli_error):
    assert re.search(message, cli_error(argv))


def test_render_refuses_a_gridworld_run(tmp_path, cli_error):
    out = tmp_path / "grid"
    train("GridWorld-v1", "a2c", steps=16, out=out, progress=False, eval_episodes=1)
    assert "GridWorld-v1 run: expected a TextGen-v0 run" in cli_error(["render", str(out)])
