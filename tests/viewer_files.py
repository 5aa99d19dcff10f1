"""Tiny hand-made samples files with trajectories (no model) for the viewer's tests."""

from __future__ import annotations

import json
from pathlib import Path


def header(steps: int, *, sampler: str = "ode", gamma: float = 0.0, seed: int = 0, num: int = 1, **extra) -> dict:
    return {"type": "header", "recipe": "quickstart", "step": 400, "task": "unconditional",
            "sampler": {"steps": steps, "sampler": sampler, "gamma": gamma, "time_grid": "logit_normal",
                        "cfg": 1.0, "sc_cfg": 3.0},
            "guidance": {"cfg": 1.0, "sc_cfg": 3.0, "cfg_applies_to": "self-conditioning", "cfg_flag_set": None},
            "seed": seed, "num_samples": num, **extra}


def frames_of(token_lists: list[list[str]], steps: list[int] | None = None) -> list[dict]:
    """Frames (step k: the k-th token list) in the format `elfctl sample --trajectory` writes."""
    steps = steps if steps is not None else list(range(len(token_lists)))
    return [{"step": k, "text": "".join(t).strip(), "tokens": t} for k, t in zip(steps, token_lists)]


def write_samples(path: Path, head: dict, samples: list[dict]) -> Path:
    rows = [head] + [{"type": "sample", "index": i, "text": s.get("text", ""), "token_ids": [], **s}
                     for i, s in enumerate(samples)]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return Path(path)


# A 4-step ELF draw and an 8-step one: token lists chosen by hand so every change mask is known.
FOUR = [["a", " b", " c"],
        ["a", " x", " c", " d"],
        ["a", " x", " c", " d"],
        ["the", " x", " cat", " d"]]
EIGHT = [["one"], ["one", " two"], ["one", " two", " three"], ["won", " two", " three"],
         ["won", " too", " three"], ["won", " too", " three", " four"], ["one", " too", " three", " four"],
         ["one", " two", " three", " four"]]
# a masked-diffusion canvas (the MDLM family's trajectories): [MASK] positions fill in
MASKED = [["[MASK]", " [MASK]", " [MASK]"], ["the", " [MASK]", " [MASK]"], ["the", " [MASK]", " sat"],
          ["the", " cat", " sat"]]
