"""The trajectory animation as a GIF (for a README): the page's panels side by side, one GIF frame per time of
the shared axis, the same marks (changed: bold, underlined, shaded; masked: a dashed box; pinned: shaded blue with
a double underline; infilled: a dotted line above).

Pillow draws it (it comes with matplotlib: ``pip install 'elfctl[plots]'``). Fonts: DejaVu Sans when the system
has it, else Pillow's own; a sequence longer than :data:`MAX_LINES` lines is cut with an ellipsis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from elfctl.errors import ConfigError
from elfctl.view.trajectories import CHANGED, MASK, PINNED, Panel, frame_at, timeline

PANEL_WIDTH = 520
PAD = 14
FONT_SIZE = 16
LINE = 26
MAX_LINES = 18
FRAME_MS = 140
HOLD_LAST_MS = 2500

INK, MUTED, BG, BORDER = (27, 27, 27), (95, 95, 95), (255, 255, 255), (200, 200, 200)
CHG_BG, CHG_LINE = (255, 217, 160), (179, 89, 0)
PIN_BG, PIN_LINE = (212, 232, 247), (11, 92, 153)
MASK_BG, MASK_LINE = (236, 236, 236), (107, 107, 107)


def _pillow():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ConfigError("--gif needs Pillow: pip install 'elfctl[plots]' (it comes with matplotlib)") from None
    return Image, ImageDraw, ImageFont


def _font(ImageFont, names: Sequence[str], size: int):
    for name in names:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


class _Fonts:
    def __init__(self, ImageFont):
        self.regular = _font(ImageFont, ("DejaVuSans.ttf", "LiberationSans-Regular.ttf"), FONT_SIZE)
        bold = _font(ImageFont, ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf"), FONT_SIZE)
        self.bold_is_fake = bold is None or getattr(bold, "path", None) == getattr(self.regular, "path", None)
        self.bold = self.regular if self.bold_is_fake else bold
        self.small = _font(ImageFont, ("DejaVuSans.ttf", "LiberationSans-Regular.ttf"), FONT_SIZE - 4)
        self.mono = _font(ImageFont, ("DejaVuSansMono.ttf", "LiberationMono-Regular.ttf"), FONT_SIZE - 4)


def _width(font, text: str) -> float:
    return font.getlength(text) if hasattr(font, "getlength") else font.getsize(text)[0]


def layout(tokens: Sequence[str], kinds: str, fonts: _Fonts, width: int) -> list[list[tuple[float, str, str]]]:
    """Lines of (x, text, kind) runs: leading spaces advance x unmarked, a token that does not fit starts a new
    line, a token wider than a line is cut into pieces that fit, a newline in a token ends the line."""
    lines: list[list[tuple[float, str, str]]] = [[]]
    x = 0.0
    for tok, kind in zip(tokens, kinds):
        font = fonts.mono if kind == MASK else fonts.bold if kind == CHANGED else fonts.regular
        parts = tok.split("\n")
        for n, part in enumerate(parts):
            if n:
                lines.append([])
                x = 0.0
            word = part.lstrip()
            space = _width(fonts.regular, part[: len(part) - len(word)]) if lines[-1] else 0.0
            if not word:
                x += space
                continue
            w = _width(font, word) + (4 if kind == MASK else 0)
            if x + space + w > width and lines[-1]:
                lines.append([])
                x, space = 0.0, 0.0
            while w > width and len(word) > 1:  # a very long token: as much as fits, the rest on the next line
                cut = len(word)
                while cut > 1 and _width(font, word[:cut]) > width - x:
                    cut -= 1
                lines[-1].append((x, word[:cut], kind))
                lines.append([])
                word, x = word[cut:], 0.0
                w = _width(font, word)
            lines[-1].append((x + space, word, kind))
            x += space + w
    return lines


def _dashed_rect(draw, box, color, dash: int = 3) -> None:
    x0, y0, x1, y1 = box
    for x in range(int(x0), int(x1), dash * 2):
        draw.line([(x, y0), (min(x + dash, x1), y0)], fill=color)
        draw.line([(x, y1), (min(x + dash, x1), y1)], fill=color)
    for y in range(int(y0), int(y1), dash * 2):
        draw.line([(x0, y), (x0, min(y + dash, y1))], fill=color)
        draw.line([(x1, y), (x1, min(y + dash, y1))], fill=color)


def _draw_lines(draw, lines, fonts: _Fonts, left: int, top: int, infill: bool) -> None:
    for li, runs in enumerate(lines[:MAX_LINES]):
        y = top + li * LINE
        for x, text, kind in runs:
            x = left + x
            if kind == MASK:
                w = _width(fonts.mono, text) + 4
                draw.rectangle([x, y + 3, x + w, y + LINE - 5], fill=MASK_BG)
                _dashed_rect(draw, (x, y + 3, x + w, y + LINE - 5), MASK_LINE)
                draw.text((x + 2, y + 6), text, font=fonts.mono, fill=MUTED)
                continue
            font = fonts.bold if kind == CHANGED else fonts.regular
            w = _width(font, text)
            if kind == CHANGED:
                draw.rectangle([x - 1, y + 2, x + w + 1, y + LINE - 4], fill=CHG_BG)
            elif kind == PINNED:
                draw.rectangle([x - 1, y + 2, x + w + 1, y + LINE - 4], fill=PIN_BG)
            draw.text((x, y + 3), text, font=font, fill=INK)
            if kind == CHANGED and fonts.bold_is_fake:
                draw.text((x + 1, y + 3), text, font=font, fill=INK)
            if kind == CHANGED:
                draw.line([(x, y + LINE - 4), (x + w, y + LINE - 4)], fill=CHG_LINE, width=2)
            elif kind == PINNED:
                draw.line([(x, y + LINE - 5), (x + w, y + LINE - 5)], fill=PIN_LINE, width=1)
                draw.line([(x, y + LINE - 3), (x + w, y + LINE - 3)], fill=PIN_LINE, width=1)
            elif infill:
                for dx in range(0, int(w), 4):
                    draw.point([(x + dx, y + 1), (x + dx + 1, y + 1)], fill=MASK_LINE)
    if len(lines) > MAX_LINES:
        draw.text((left, top + MAX_LINES * LINE), "…", font=fonts.regular, fill=MUTED)


def gif_frames(panels: Sequence[Panel], sample_pos: int = 0):
    """The GIF's frames (PIL images), one per time of the shared axis, for the ``sample_pos``-th embedded sample
    of each panel."""
    Image, ImageDraw, ImageFont = _pillow()
    fonts = _Fonts(ImageFont)
    axis = timeline(panels)
    text_w = PANEL_WIDTH - 2 * PAD
    chosen = [p.samples[min(sample_pos, len(p.samples) - 1)] for p in panels]
    laid = [[layout(f.tokens, f.kinds, fonts, text_w) for f in s.frames] for s in chosen]
    prompts = [layout([s.prompt], PINNED, fonts, text_w) if s.prompt else [] for s in chosen]
    n_lines = min(MAX_LINES + 1, max(len(ls) for frames in laid for ls in frames))
    n_prompt = min(4, max(len(p) for p in prompts))
    header_h = 2 * LINE + 8
    height = PAD + header_h + (n_prompt * LINE + 8 if n_prompt else 0) + LINE + n_lines * LINE + PAD + 10
    width = PANEL_WIDTH * len(panels)
    at = [frame_at(s.frames, axis) for s in chosen]
    images = []
    for ti, t in enumerate(axis):
        im = Image.new("RGB", (width, height), BG)
        draw = ImageDraw.Draw(im)
        for pi, (panel, s) in enumerate(zip(panels, chosen)):
            left = pi * PANEL_WIDTH + PAD
            if pi:
                draw.line([(pi * PANEL_WIDTH, 0), (pi * PANEL_WIDTH, height)], fill=BORDER, width=1)
            draw.text((left, PAD), panel.path.name, font=fonts.bold, fill=INK)
            caption = " · ".join(f"{k} {v}" for k, v in panel.settings)
            draw.text((left, PAD + LINE), _fit(caption, fonts.small, text_w), font=fonts.small, fill=MUTED)
            y = PAD + header_h
            if n_prompt:
                if prompts[pi]:
                    _draw_lines(draw, prompts[pi][:n_prompt], fonts, left, y, False)
                y += n_prompt * LINE + 8
            fi = at[pi][ti]
            if fi < 0:
                status = f"not started (first frame at {100 * s.frames[0].progress:.0f}%)"
            else:
                f = s.frames[fi]
                status = f"sample #{s.index} · step {f.step + 1}/{panel.steps} · {f.kinds.count(CHANGED)} changed"
            draw.text((left, y), status, font=fonts.small, fill=MUTED)
            if fi >= 0:
                _draw_lines(draw, laid[pi][fi], fonts, left, y + LINE, bool(s.frames[fi].pinned))
        # a progress bar and the frame number: every frame differs, so the GIF writer merges none of them
        draw.rectangle([0, height - 6, int(width * t), height], fill=CHG_LINE)
        label = f"time {100 * t:.1f}% · frame {ti + 1}/{len(axis)}"
        draw.text((width - PAD - _width(fonts.small, label), height - 24), label, font=fonts.small, fill=MUTED)
        images.append(im)
    return images


def _fit(text: str, font, width: int) -> str:
    if _width(font, text) <= width:
        return text
    while text and _width(font, text + "…") > width:
        text = text[:-1]
    return text + "…"


def write_gif(panels: Sequence[Panel], path: Path, sample_pos: int = 0, frame_ms: int = FRAME_MS) -> int:
    """Write the animation to ``path`` (atomically); returns the number of frames."""
    from elfctl.atomic import atomic_open

    images = gif_frames(panels, sample_pos)
    durations = [frame_ms] * len(images)
    durations[-1] = HOLD_LAST_MS  # the finished text stays on screen before the loop restarts
    with atomic_open(path, "wb", encoding=None) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0,
                       disposal=1)
    return len(images)

