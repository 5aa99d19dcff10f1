"""Text of a partly masked canvas (a ``--trajectory`` step): decoded like any sample, with every masked position
shown as ``[MASK]`` (a tokenizer's own decode drops it as a special token, or does not know an appended id)."""

from __future__ import annotations

MASK_TEXT = "[MASK]"


def canvas_text(tok, ids, mask_id: int) -> str:
    """Runs of real tokens decoded as :func:`elfctl.data.tokenize.decode_ids` decodes a sample (cut after the first
    eos, specials stripped), joined by ``[MASK]`` where the canvas is still masked."""
    from elfctl.data.tokenize import eos_id

    ids, e = [int(i) for i in ids], eos_id(tok)
    if e in ids:
        ids = ids[: ids.index(e)]
    parts, run = [], []
    for i in ids + [None]:
        if i is not None and i != mask_id:
            run.append(i)
            continue
        if run:
            text = tok.decode(run, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()
            if text:
                parts.append(text)
            run = []
        if i is not None:
            parts.append(MASK_TEXT)
    return " ".join(parts)
