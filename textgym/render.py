"""Drawing an episode's tokens coloured by their step rewards (ANSI text, an RGB image, HTML).

The picture that explains KL shaping: every token carries the KL penalty it earned, and the
last one also the reward model's score.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from textgym._checks import is_number

_RESET = "\x1b[0m"


def _colour(reward: float, scale: float) -> tuple[int, int, int]:
    """Green for positive, red for negative, stronger for larger |reward|; grey near zero."""
    strength = 0.0 if scale <= 0 else min(abs(reward) / scale, 1.0)
    faded = 200 - int(120 * strength)
    vivid = 200 + int(55 * strength)
    return (faded, vivid, faded) if reward >= 0 else (vivid, faded, faded)


# The smallest reward that gets full colour: rewards that print as 0.000 (a policy at the
# reference leaves float noise of ~1e-8) stay grey instead of being stretched to full colour.
_MIN_SCALE = 1e-3


def shared_scale(step_rewards: Sequence[Sequence[float]]) -> float:
    """The colour scale that draws several episodes alike: their largest |step reward|."""
    return _scale([reward for rewards in step_rewards for reward in rewards])


def _scale(rewards: Sequence[float], scale: float | None = None) -> float:
    if scale is not None:
        if not (is_number(scale) and scale > 0 and np.isfinite(scale)):
            raise ValueError(f"scale={scale!r} must be a finite number > 0 (a |step reward|)")
        return float(scale)
    return max(float(np.max(np.abs(rewards))), _MIN_SCALE) if len(rewards) else 1.0


def _score_line(step_rewards: Sequence[float], rm_score: float | None, penalty: float) -> str:
    """The totals under the tokens: the summed KL reward and, once the episode ended, the RM
    score, the missing-EOS penalty if one was paid, and the return."""
    total = float(np.sum(step_rewards))
    if rm_score is None:
        return f"KL reward so far {total:+.3f}  ({len(step_rewards)} tokens)"
    paid = f"   missing-EOS penalty {-penalty:+.3f}" if penalty else ""
    return (
        f"RM score {rm_score:+.3f}   KL reward {total:+.3f}{paid}   "
        f"return {rm_score + total - penalty:+.3f}"
    )


def render_ansi(
    prompt: str,
    tokens: Sequence[str],
    step_rewards: Sequence[float],
    rm_score: float | None = None,
    *,
    scale: float | None = None,
    penalty: float = 0.0,
) -> str:
    """The prompt, then each token coloured by its KL step reward, then the score line.

    ``step_rewards`` are the KL parts only (the RM score is shown on its own line).

    :param scale: the |step reward| drawn at full colour (default: the episode's largest, so
        each episode uses the whole range; pass one value, e.g. `shared_scale`, to compare
        episodes).
    :param penalty: the missing-EOS penalty the episode paid at its end (0 if none).
    """
    scale = _scale(step_rewards, scale)
    coloured = "".join(
        f"\x1b[38;2;{r};{g};{b}m{token}{_RESET}"
        for token, (r, g, b) in zip(tokens, (_colour(x, scale) for x in step_rewards))
    )
    table = " ".join(f"{token!r}:{reward:+.3f}" for token, reward in zip(tokens, step_rewards))
    lines = [
        f"\x1b[2m{prompt}{_RESET}{coloured}",
        f"  step rewards  {table}",
        f"  {_score_line(step_rewards, rm_score, penalty)}",
    ]
    return "\n".join(lines)


def render_rgb(
    prompt: str,
    tokens: Sequence[str],
    step_rewards: Sequence[float],
    rm_score: float | None = None,
    width: int = 640,
    *,
    scale: float | None = None,
    penalty: float = 0.0,
) -> np.ndarray:
    """The same picture as `render_ansi` (and its keywords) as an ``(H, W, 3)`` uint8 array,
    ``width`` pixels wide (Pillow's default font)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    margin, line_height = 8, 18
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_width(text: str) -> int:
        return int(scratch.textlength(text, font=font))

    # Lay out: prompt words in grey, then token boxes coloured by reward, wrapping lines.
    pieces = [(word + " ", None) for word in prompt.split()] + list(zip(tokens, step_rewards))
    placed, x, y = [], margin, margin
    for text, reward in pieces:
        w = max(text_width(text), 4)
        if x + w > width - margin and x > margin:
            x, y = margin, y + line_height
        placed.append((x, y, w, text, reward))
        x += w + (2 if reward is not None else 0)
    footer = _score_line(step_rewards, rm_score, penalty)
    height = y + 2 * line_height + margin
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    scale = _scale(step_rewards, scale)
    for x, y, w, text, reward in placed:
        if reward is None:
            draw.text((x, y), text, fill=(110, 110, 110), font=font)
        else:
            draw.rectangle((x - 1, y - 1, x + w, y + line_height - 3), fill=_colour(reward, scale))
            draw.text((x, y), text, fill=(0, 0, 0), font=font)
    draw.text((margin, y + line_height + 2), footer, fill=(0, 0, 0), font=font)
    return np.asarray(image, dtype=np.uint8).copy()


def render_html(
    prompt: str,
    tokens: Sequence[str],
    step_rewards: Sequence[float],
    rm_score: float | None = None,
    *,
    scale: float | None = None,
    penalty: float = 0.0,
) -> str:
    """The same picture as `render_ansi` as a self-contained HTML ``<div>`` (inline styles).

    The prompt is grey; each token is a ``<span>`` whose background is coloured by its step
    reward and whose ``title`` (the tooltip) gives the exact reward; spaces and line breaks
    inside tokens are kept (``white-space: pre-wrap``). `html_page` makes a document of
    several.
    """
    scale = _scale(step_rewards, scale)
    spans = "".join(
        f'<span style="background:rgb({r},{g},{b})" title="step reward {float(reward):+}">'
        f"{html.escape(token)}</span>"
        for token, reward, (r, g, b) in zip(
            tokens, step_rewards, (_colour(x, scale) for x in step_rewards)
        )
    )
    return (
        '<div class="episode" style="font-family:monospace;margin:1em 0">'
        f'<div style="white-space:pre-wrap"><span style="color:#6e6e6e">{html.escape(prompt)}'
        f"</span>{spans}</div>"
        f"<div>{html.escape(_score_line(step_rewards, rm_score, penalty))}</div></div>"
    )


def html_page(episodes: Sequence[str], title: str) -> str:
    """A complete HTML document of `render_html` fragments under a heading."""
    title = html.escape(title)
    body = "\n".join(episodes)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{title}</title>'
        f"</head>\n<body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n"
    )
