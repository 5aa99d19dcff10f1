"""Sampling trajectories as viewer frames: read samples files, mark what changed, align panels in time.

A panel is one samples file (``elfctl sample --trajectory ...``): its header's settings and a few chosen samples,
each a list of frames. A frame holds the display tokens after step k and one letter per token
(:data:`KINDS`): pinned, mask, changed since the panel's previous frame, or unchanged. Panels of different step
counts share one normalized time axis: frame k of an N-step draw sits at progress (k + 1) / N, and at each time
of the shared axis a panel shows its latest frame at or before it (none before its first step).

Only the chosen samples are parsed (a line's index is read from its start), so a 1,000-sample file opens as fast
as a small one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from elfctl.errors import ConfigError
from elfctl.sampling.trajectory import MASK_PIECE  # (that module loads no torch)

DEFAULT_SAMPLES = 8    # samples embedded when none are chosen: the first ones with a trajectory
RECORD_HINT = ("record them with `elfctl sample --trajectory all --num-samples 4 --out traj.jsonl` "
               "(or --trajectory 0,8,16,31 for chosen steps)")

# One letter per token of a frame.
PINNED, MASK, CHANGED, SAME = "p", "m", "n", "."
KINDS = {PINNED: "pinned (prompt, infill prefix/suffix)", MASK: "masked position", CHANGED: "changed since the "
         "previous frame", SAME: "unchanged"}

_WORDS = re.compile(r"\s*(?:{m}|(?:(?!{m})\S)+)|\s+$".format(m=re.escape(MASK_PIECE)))
_INDEX = re.compile(r'"index"\s*:\s*(-?\d+)')


@dataclass
class Frame:
    step: int
    progress: float          # (step + 1) / steps: the share of the draw done when this frame was decoded
    tokens: list[str]
    kinds: str               # one letter per token (KINDS)
    text: str
    pinned: list[list[int]] = field(default_factory=list)


@dataclass
class SampleView:
    index: int
    frames: list[Frame]
    text: str                            # the final sample text
    prompt: Optional[str] = None         # a conditional model's condition
    reference: Optional[str] = None


@dataclass
class Panel:
    path: Path
    header: dict
    settings: list[tuple[str, str]]
    steps: int
    samples: list[SampleView]
    total: int                            # samples in the file (from the header when it says)


# --------------------------------------------------------------------------------------------- frames
def split_text(text: str) -> list[str]:
    """Display tokens of a frame recorded as text only: words with their leading space, ``[MASK]`` on its own;
    ``"".join`` gives the text back exactly."""
    return [m.group(0) for m in _WORDS.finditer(text)]


def frame_kinds(prev: Optional[Sequence[str]], tokens: Sequence[str], pinned: Iterable[Sequence[int]] = ()) -> str:
    """One letter per token: pinned (inside a pinned range), mask, changed (no previous frame, a position the
    previous frame did not reach, or a different token there) or unchanged. Whitespace alone is not a change."""
    pin = set()
    for a, b in pinned:
        pin.update(range(int(a), int(b)))
    out = []
    for i, tok in enumerate(tokens):
        if i in pin:
            out.append(PINNED)
        elif tok.strip() == MASK_PIECE:
            out.append(MASK)
        elif prev is None or i >= len(prev) or prev[i].strip() != tok.strip():
            out.append(CHANGED)
        else:
            out.append(SAME)
    return "".join(out)


def build_frames(trajectory: list[dict], steps: int) -> list[Frame]:
    """Frames of one sample's recorded trajectory, in step order, with their change letters."""
    frames, prev = [], None
    for rec in sorted(trajectory, key=lambda r: int(r["step"])):
        text = str(rec.get("text", ""))
        tokens = [str(t) for t in rec["tokens"]] if isinstance(rec.get("tokens"), list) else split_text(text)
        pinned = [[int(a), int(b)] for a, b in rec.get("pinned", [])]
        step = int(rec["step"])
        frames.append(Frame(step, (step + 1) / steps, tokens, frame_kinds(prev, tokens, pinned), text, pinned))
        prev = tokens
    return frames


# --------------------------------------------------------------------------------------------- time axis
def timeline(panels: Sequence[Panel]) -> list[float]:
    """The shared normalized time axis: every progress value any embedded sample has a frame at, sorted."""
    return sorted({round(f.progress, 9) for p in panels for s in p.samples for f in s.frames})


def frame_at(frames: Sequence[Frame], axis: Sequence[float]) -> list[int]:
    """For each time of the axis, the index of the latest frame at or before it; -1 before the first frame."""
    out, j = [], -1
    for t in axis:
        while j + 1 < len(frames) and round(frames[j + 1].progress, 9) <= t:
            j += 1
        out.append(j)
    return out


# --------------------------------------------------------------------------------------------- reading
def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def panel_settings(header: dict) -> list[tuple[str, str]]:
    """What a panel's caption says, from its header: model, steps, sampler, γ, guidance, seed (and any other
    sampler setting a header records, so another family's sampler shows its own)."""
    s = header.get("sampler") if isinstance(header.get("sampler"), dict) else {}
    out = []
    model = header.get("recipe") or Path(str(header.get("run_dir") or "?")).name
    if header.get("family"):
        model = f"{header['family']} {model}"
    if header.get("step") is not None:
        model += f" @ step {header['step']}"
    out.append(("model", model))
    if "steps" in s:
        out.append(("steps", _fmt(s["steps"])))
    if "sampler" in s:
        out.append(("sampler", _fmt(s["sampler"])))
    if "gamma" in s:
        out.append(("γ", _fmt(s["gamma"])))
    g = header.get("guidance") if isinstance(header.get("guidance"), dict) else {}
    if g:
        parts = [f"SC-CFG {_fmt(g['sc_cfg'])}"] if "sc_cfg" in g else []
        if g.get("cfg_applies_to") == "condition" and "cfg" in g:
            parts.insert(0, f"CFG {_fmt(g['cfg'])}")
        out.append(("guidance", ", ".join(parts) or "none"))
    elif "cfg" in s or "sc_cfg" in s:
        out.append(("guidance", ", ".join(f"{k.upper().replace('_', '-')} {_fmt(s[k])}"
                                          for k in ("cfg", "sc_cfg") if k in s)))
    if header.get("seed") is not None:
        out.append(("seed", _fmt(header["seed"])))
    shown = {"steps", "sampler", "gamma", "cfg", "sc_cfg"}
    out += [(k.replace("_", " "), _fmt(v)) for k, v in s.items()
            if k not in shown and isinstance(v, (str, int, float, bool))]
    return out


def _load_line(path: Path, n: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {n} is not JSON ({e.msg}); expected a samples file written by "
                          f"`elfctl sample`") from None
    if not isinstance(row, dict):
        raise ConfigError(f"{path}: line {n} is not a JSON object; expected a samples file written by "
                          f"`elfctl sample`")
    return row


def check_samples_path(path: Path) -> None:
    if not path.exists():
        raise ConfigError(f"{path}: no such file (looked at {path.resolve()})")
    if not path.is_file():
        raise ConfigError(f"{path}: not a samples file (JSONL from `elfctl sample`)")


def read_panel(path: Path, chosen: Optional[Sequence[int]] = None, limit: int = DEFAULT_SAMPLES) -> Panel:
    """The header and the chosen samples of one samples file (``chosen``: sample indices; None: the first
    ``limit`` samples that have a trajectory). Lines of other samples are never parsed."""
    path = Path(path)
    check_samples_path(path)
    header, picked, seen = None, {}, 0
    want = None if chosen is None else set(int(i) for i in chosen)
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if header is None:
                header = _load_line(path, n, line)
                if header.get("type") != "header":
                    raise ConfigError(f"{path}: the first line is not a samples header; expected a samples file "
                                      f"written by `elfctl sample`")
                continue
            seen += 1
            m = _INDEX.search(line[:200])
            if want is not None and m is not None and int(m.group(1)) not in want:
                continue  # not chosen: not parsed
            row = _load_line(path, n, line)
            if row.get("type") != "sample":
                continue
            index = int(row.get("index", seen - 1))
            if want is None:
                if row.get("trajectory"):
                    picked[index] = row
                if len(picked) >= limit:
                    break
            elif index in want:
                picked[index] = row
                if len(picked) == len(want):
                    break
    if header is None:
        raise ConfigError(f"{path}: empty file; expected a samples file written by `elfctl sample`")
    total = int(header.get("num_samples") or seen)
    if want is not None:
        missing = sorted(want - set(picked))
        if missing:
            raise ConfigError(f"--sample: {path} has no sample {missing[0]} (it holds indices 0..{total - 1})")
        bare = [i for i, r in picked.items() if not r.get("trajectory")]
        if bare:
            raise ConfigError(f"{path}: sample {bare[0]} has no trajectory; {RECORD_HINT}")
    elif not picked:
        raise ConfigError(f"{path}: no trajectories recorded ({seen} samples, none with a trajectory); "
                          f"{RECORD_HINT}")
    sampler = header.get("sampler") if isinstance(header.get("sampler"), dict) else {}
    order = list(picked) if want is None else [int(i) for i in dict.fromkeys(chosen)]
    last = max(int(t["step"]) for r in picked.values() for t in r["trajectory"])
    steps = int(sampler.get("steps") or last + 1)
    if last >= steps:
        raise ConfigError(f"{path}: a trajectory step {last} is past the header's {steps} steps")
    samples = [SampleView(i, build_frames(picked[i]["trajectory"], steps), str(picked[i].get("text", "")),
                          picked[i].get("input"), picked[i].get("reference")) for i in order]
    return Panel(path, header, panel_settings(header), steps, samples, total)


def parse_sample_choice(text: Optional[str]) -> Optional[list[int]]:
    """``--sample 3`` or ``--sample 0,5,9``; None: the first few with a trajectory."""
    if text is None or not text.strip():
        return None
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--sample: expected sample indices (e.g. 0 or 0,5,9), got {text!r}") from None
    if any(i < 0 for i in out):
        raise ConfigError(f"--sample: indices start at 0, got {min(out)}")
    return out


# --------------------------------------------------------------------------------------------- page data
def page_data(panels: Sequence[Panel]) -> dict:
    """Everything the page shows, JSON-ready: a shared table of token pieces (frames repeat most of them), the
    time axis, and per panel its caption and per sample its frames and the frame shown at each time."""
    axis = timeline(panels)
    pieces: dict[str, int] = {}

    def ids(tokens: list[str]) -> list[int]:
        return [pieces.setdefault(t, len(pieces)) for t in tokens]

    out_panels = []
    for p in panels:
        samples = []
        for s in p.samples:
            frames = [{"step": f.step, "p": round(f.progress, 9), "t": ids(f.tokens), "k": f.kinds,
                       **({"pin": f.pinned} if f.pinned else {})} for f in s.frames]
            samples.append({"index": s.index, "prompt": s.prompt, "text": s.text, "frames": frames,
                            "at": frame_at(s.frames, axis)})
        out_panels.append({"title": p.path.name, "settings": [list(kv) for kv in p.settings], "steps": p.steps,
                           "total": p.total, "samples": samples})
    return {"timeline": axis, "pieces": list(pieces), "panels": out_panels, "kinds": KINDS}
