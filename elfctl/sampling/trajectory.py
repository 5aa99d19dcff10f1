"""Recorded trajectories: which steps to decode (``--trajectory all`` or a list) and one frame's JSON record.

A frame is what the text would be if sampling stopped after step k (``{"step", "text", "tokens", "pinned"?}``):
``tokens`` are display pieces of the same ids ``text`` decodes (cut at the first eos, special tokens dropped except
the mask token, shown as ``[MASK]``; ``"".join(tokens) == text``), so ``elfctl view`` can mark, position by position, what changed since the
previous frame without a tokenizer. ``pinned`` lists ``[start, end)`` token ranges held fixed (infill prefix and
suffix). docs/VIEWER.md describes the format.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from elfctl.errors import ConfigError

MASK_PIECE = "[MASK]"  # how a masked position (a masked-diffusion canvas) is shown in text and tokens

TrajectorySpec = Union[str, Sequence[int]]  # "all", or step indices


def parse_trajectory(text: Optional[str]) -> TrajectorySpec:
    """``--trajectory``: ``all`` (every step) or comma-separated step indices; empty: none."""
    if not text or not text.strip():
        return []
    if text.strip().lower() == "all":
        return "all"
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--trajectory: expected 'all' or comma-separated step indices (e.g. 0,8,16,31), got "
                          f"{text!r}") from None


def trajectory_steps(spec: TrajectorySpec, steps: int) -> list[int]:
    """The step indices to record for a draw of ``steps`` steps; out-of-range indices are a ConfigError."""
    if isinstance(spec, str):
        if spec != "all":
            raise ConfigError(f"--trajectory: expected 'all' or step indices, got {spec!r}")
        return list(range(steps))
    bad = [k for k in spec if not 0 <= int(k) < steps]
    if bad:
        raise ConfigError(f"--trajectory: step {bad[0]} is out of range; steps are 0..{steps - 1}")
    return sorted(set(int(k) for k in spec))


def _visible_positions(tok, ids: Sequence[int], mask_id: Optional[int]) -> list[int]:
    """Positions of the ids ``decode_ids`` turns into text: before the first eos, special tokens dropped (the mask
    token kept)."""
    from elfctl.data.tokenize import eos_id

    e = eos_id(tok)
    end = ids.index(e) if e in ids else len(ids)
    special = set(getattr(tok, "all_special_ids", []) or []) - {mask_id}
    return [p for p in range(end) if ids[p] not in special]


def token_pieces(tok, ids: Sequence[int], *, mask_id: Optional[int] = None,
                 cache: Optional[dict] = None) -> list[str]:
    """Display text of each token, in context: a piece is what the token adds after the one before it
    (``decode([a, b])`` minus ``decode([a])``), so a word-piece joins its word and a new word keeps its space;
    ``"".join`` of the pieces is the decoded text up to leading/trailing space. ``cache`` memoizes (prev, id)."""
    cache = {} if cache is None else cache
    out, prev = [], None
    for i in ids:
        key = (prev, i)
        if key not in cache:
            if i == mask_id:
                piece = (" " if prev is not None else "") + MASK_PIECE
            elif prev is None or prev == mask_id:
                piece = tok.decode([i], clean_up_tokenization_spaces=True)
                piece = piece if prev is None else " " + piece.lstrip()
            else:
                a = tok.decode([prev], clean_up_tokenization_spaces=True)
                ab = tok.decode([prev, i], clean_up_tokenization_spaces=True)
                piece = ab[len(a):] if ab.startswith(a) else tok.decode([i], clean_up_tokenization_spaces=True)
            cache[key] = piece
        out.append(cache[key])
        prev = i
    if out:
        out[0] = out[0].lstrip()
    return out


def align_pieces(pieces: Sequence[str], text: str) -> list[str]:
    """Pieces re-cut so that ``"".join`` is exactly ``text``: each token takes the text up to the end of its own
    core (its piece without spaces), found in order. A decode's clean-up can move spaces across tokens (BERT
    writes ``isn ' t`` as ``isn't``), which pair pieces cannot see; the cores stay in order. A core not found
    keeps an empty piece; text after the last core goes to the last piece."""
    out, cursor = [], 0
    for piece in pieces:
        core = piece.strip()
        found = text.find(core, cursor) if core else -1
        if found < 0:
            out.append("")
            continue
        end = found + len(core)
        out.append(text[cursor:end])
        cursor = end
    if out and cursor < len(text):
        out[-1] += text[cursor:]
    return out


def frame_record(tok, step: int, ids: Sequence[int], *, pinned: Sequence[tuple[int, int]] = (),
                 mask_id: Optional[int] = None, cache: Optional[dict] = None) -> dict:
    """One trajectory frame of one sample. ``pinned``: [start, end) ranges of ``ids`` positions held fixed; the
    record gives them as ranges of its tokens (what is left of them before the text ends)."""
    from elfctl.data.tokenize import decode_ids

    ids = [int(i) for i in ids]
    keep = _visible_positions(tok, ids, mask_id)
    tokens = token_pieces(tok, [ids[p] for p in keep], mask_id=mask_id, cache=cache)
    if mask_id is None:  # the tokens spell the sample's own text, clean-up of the decode included
        text = decode_ids(tok, ids)
        tokens = align_pieces(tokens, text)
    else:  # a decode drops the mask token: the text is the pieces'
        if tokens:
            tokens[-1] = tokens[-1].rstrip()
        text = "".join(tokens)
    rec = {"step": int(step), "text": text, "tokens": tokens}
    spans = []
    for a, b in pinned:  # token j is pinned when its position keep[j] is in [a, b)
        inside = [j for j, p in enumerate(keep) if a <= p < b]
        if inside:
            spans.append([inside[0], inside[-1] + 1])
    if spans:
        rec["pinned"] = spans
    return rec
