"""`--trajectory` parsing and a frame's display tokens (elfctl.sampling.trajectory), with the tiny word-level
tokenizer of conftest and a hand-made one whose pieces join words."""

import pytest

from conftest import make_tokenizer_dir
from elfctl.errors import ConfigError
from elfctl.sampling.trajectory import align_pieces, frame_record, parse_trajectory, token_pieces, trajectory_steps


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer_dir(tmp_path_factory.mktemp("tok"))


def test_parse_and_resolve_the_flag():
    assert parse_trajectory(None) == [] and parse_trajectory(" ") == []
    assert parse_trajectory("ALL") == "all" and parse_trajectory("0, 8,31") == [0, 8, 31]
    with pytest.raises(ConfigError, match="expected 'all' or comma-separated step indices"):
        parse_trajectory("0,x")
    assert trajectory_steps("all", 4) == [0, 1, 2, 3]
    assert trajectory_steps([3, 0, 3], 4) == [0, 3]
    with pytest.raises(ConfigError, match="step 4 is out of range; steps are 0..3"):
        trajectory_steps([4], 4)


def test_pieces_join_into_the_decoded_text(tok):
    ids = tok.convert_tokens_to_ids("the cat sat on the mat".split())
    pieces = token_pieces(tok, ids)
    assert pieces == ["the", " cat", " sat", " on", " the", " mat"]
    assert "".join(pieces) == tok.decode(ids)


def test_a_frame_stops_at_eos_drops_specials_and_keeps_pinned_ranges_on_its_tokens(tok):
    w = {t: tok.convert_tokens_to_ids(t) for t in "the cat sat [SEP] [PAD] [UNK]".split()}
    ids = [w["the"], w["[UNK]"], w["cat"], w["sat"], w["[SEP]"], w["cat"], w["[PAD]"]]
    rec = frame_record(tok, 2, ids, pinned=[(0, 2), (3, 9)])
    # [UNK] is a special token (decode drops it): the pinned ranges follow the tokens that remain
    assert rec == {"step": 2, "text": "the cat sat", "tokens": ["the", " cat", " sat"], "pinned": [[0, 1], [2, 3]]}
    assert "pinned" not in frame_record(tok, 0, ids, pinned=[(5, 7)])  # only past the end: nothing pinned


def test_a_mask_token_is_shown_as_MASK(tok):
    w = {t: tok.convert_tokens_to_ids(t) for t in "the cat [UNK]".split()}
    mask = w["[UNK]"]  # stands in for a masked-diffusion tokenizer's mask token
    rec = frame_record(tok, 0, [w["the"], mask, mask, w["cat"]], mask_id=mask)
    assert rec["tokens"] == ["the", " [MASK]", " [MASK]", " cat"] and rec["text"] == "the [MASK] [MASK] cat"


def test_pieces_are_recut_to_spell_a_cleaned_up_text_exactly():
    # a decode's clean-up joins "isn ' t" into "isn't": pair pieces cannot see that, the cores stay in order
    assert align_pieces(["isn", " '", " t", " it", "?"], "isn't it?") == ["isn", "'", "t", " it", "?"]
    assert align_pieces(["a", " zz", " b"], "a b c") == ["a", "", " b c"]  # a lost core: empty; the rest at the end
    assert align_pieces([], "") == []
