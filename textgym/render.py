"""Drawing an episode's tokens coloured by their step rewards (ANSI text or an RGB image).

The picture that explains KL shaping: every token carries the KL penalty it earned, and the
last one also the reward model's score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_RESET = "\x1b[0m"


def _colour(reward: float, scale: float) -> tuple[int, int, int]:
    """Green for positive, red for negative, stronger for larger |reward|; grey near zero."""
    strength = 0.0 if scale <= 0 else min(abs(reward) / scale, 1.0)
    faded = 200 - int(120 * strength)
    vivid = 200 + int(55 * strength)
    return (faded, vivid, faded) if reward >= 0 else (vivid, faded, faded)


def _scale(rewards: Sequence[float]) -> float:
    return float(np.max(np.abs(rewards))) if len(rewards) else 1.0


def render_ansi(
    prompt: str,
    tokens: Sequence[str],
    step_rewards: Sequence[float],
    rm_score: float | None = None,
) -> str:
    """The prompt, then each token coloured by its KL step reward, then the score line.

    ``step_rewards`` are the KL parts only (the RM score is shown on its own line).
    """
    scale = _scale(step_rewards)
    coloured = "".join(
        f"\x1b[38;2;{r};{g};{b}m{token}{_RESET}"
        for token, (r, g, b) in zip(tokens, (_colour(x, scale) for x in step_rewards))
    )
    table = " ".join(f"{token!r}:{reward:+.3f}" for token, reward in zip(tokens, step_rewards))
    lines = [f"\x1b[2m{prompt}{_RESET}{coloured}", f"  step rewards  {table}"]
    total = float(np.sum(step_rewards))
    if rm_score is None:
        lines.append(f"  KL reward so far {total:+.3f}  ({len(tokens)} tokens)")
    else:
        lines.append(
            f"  RM score {rm_score:+.3f}   KL reward {total:+.3f}   return {rm_score + total:+.3f}"
        )
    return "\n".join(lines)


def render_rgb(
    prompt: str,
    tokens: Sequence[str],
    step_rewards: Sequence[float],
    rm_score: float | None = None,
    width: int = 640,
) -> np.ndarray:
    """The same picture as `render_ansi` as an ``(H, W, 3)`` uint8 array (Pillow's default font)."""
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
    if rm_score is not None:
        footer = f"RM score {rm_score:+.3f}   KL reward {float(np.sum(step_rewards)):+.3f}"
    else:
        footer = f"KL reward so far {float(np.sum(step_rewards)):+.3f}"
    height = y + 2 * line_height + margin
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    scale = _scale(step_rewards)
    for x, y, w, text, reward in placed:
        if reward is None:
            draw.text((x, y), text, fill=(110, 110, 110), font=font)
        else:
            draw.rectangle((x - 1, y - 1, x + w, y + line_height - 3), fill=_colour(reward, scale))
            draw.text((x, y), text, fill=(0, 0, 0), font=font)
    draw.text((margin, y + line_height + 2), footer, fill=(0, 0, 0), font=font)
    return np.asarray(image, dtype=np.uint8).copy()
