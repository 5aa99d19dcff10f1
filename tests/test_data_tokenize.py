"""Sequences and masks of ELF-METHOD §1: eos/pad layout, conditional [c ; y], truncation counts, packing."""

import pytest
import torch

from elfctl.config import load_config
from elfctl.data.dataset import TokenDataset
from elfctl.data.tokenize import SequenceBuilder, decode_ids, encoder_attention_mask, load_tokenizer


def _setup(path, *over):
    cfg = load_config(None, [f"encoder.source={path}", *over])
    tok = load_tokenizer(cfg.encoder)
    return cfg, tok, lambda s: tok(s, add_special_tokens=False)["input_ids"]


def test_conditional_truncation_order_and_counts(tiny_encoder_dir):  # the eos layout (the authors': elsewhere)
    cfg, tok, ids = _setup(tiny_encoder_dir, "data.task=conditional", "data.max_length=8", "data.max_input_length=3",
                           "data.pad_token=eos", "data.cond_layout=eos")
    b = SequenceBuilder(tok, cfg.data)
    eos = tok.eos_token_id
    # condition cut to max_input_length first (2 tokens + eos), then the target cut to fit, keeping its eos
    it = b.pair("the big red cat", "a dog ran on the mat")
    assert it["input_ids"].tolist() == ids("the big") + [eos] + ids("a dog ran on") + [eos]
    assert it["cond_mask"].tolist() == [True] * 3 + [False] * 5
    assert it["attention_mask"].all()
    assert b.stats.truncated == 1
    b.pair("the cat", "a dog")  # fits: not counted
    assert b.stats.truncated == 1 and b.stats.examples == 2
    b.pair("the cat", "a dog sat on the big red mat")  # only the target is cut
    assert b.stats.truncated == 2


def test_conditional_with_pad_masks_the_padding(tiny_encoder_dir):
    cfg, tok, ids = _setup(tiny_encoder_dir, "data.task=conditional", "data.max_length=8", "data.pad_token=pad")
    it = SequenceBuilder(tok, cfg.data).pair("the cat", "a dog")
    n = len(ids("the cat")) + len(ids("a dog"))
    assert it["attention_mask"].tolist() == [True] * n + [False] * (8 - n)
    assert it["input_ids"].tolist()[n:] == [tok.pad_token_id] * (8 - n)
    assert it["cond_mask"].sum() == len(ids("the cat"))


def test_unconditional_eos_pad_and_no_cls(tiny_encoder_dir):
    cfg, tok, ids = _setup(tiny_encoder_dir, "data.max_length=6")
    it = SequenceBuilder(tok, cfg.data).text("the cat sat")
    assert it["input_ids"].tolist() == ids("the cat sat") + [tok.eos_token_id] + [tok.pad_token_id] * 2
    assert not it["cond_mask"].any()
    assert it["input_ids"].dtype == torch.long and it["attention_mask"].dtype == torch.bool


def test_packing_windows_are_full_and_eos_separated(tiny_encoder_dir):
    cfg, tok, ids = _setup(tiny_encoder_dir, "data.max_length=4", "data.packing=true")
    b = SequenceBuilder(tok, cfg.data)
    items = b.packed(["the cat sat", "a dog", "ran on"])
    flat = sum((it["input_ids"].tolist() for it in items), [])
    eos = tok.eos_token_id
    assert flat == (ids("the cat sat") + [eos] + ids("a dog") + [eos] + ids("ran on") + [eos])[:8]
    assert len(items) == 2 and all(it["attention_mask"].all() for it in items)


def test_dataset_skips_blank_records_and_keeps_raw_text(tiny_encoder_dir):
    cfg, tok, _ = _setup(tiny_encoder_dir, "data.max_length=4")
    ds = TokenDataset([{"text": "the cat"}, {"text": "   "}, {"text": "a dog sat on the mat"}], tok, cfg.data)
    assert len(ds) == 2 and ds.stats.skipped == 1 and ds.stats.truncated == 1
    assert ds.raw(1) == {"text": "a dog sat on the mat"}
    assert set(ds[0]) == {"input_ids", "attention_mask", "cond_mask"} and ds[0]["input_ids"].shape == (4,)


def test_encoder_attention_mask_properties():
    torch.manual_seed(0)
    B, L = 3, 7
    am = torch.rand(B, L) > 0.2
    cm = torch.zeros(B, L, dtype=torch.bool)
    cm[:, :3] = True
    drop = torch.tensor([False, True, False])
    m = encoder_attention_mask(am, cm, drop)
    assert m.shape == (B, L, L) and m.dtype == torch.bool
    cond, valid = cm & am, am
    for b in range(B):
        for i in range(L):
            if not m[b, i].any():
                continue
            allowed = cond[b] if cond[b, i] else (valid[b] & ~cond[b] if drop[b] else valid[b])
            if allowed.any():
                assert torch.equal(m[b, i], allowed), (b, i)
            else:  # nothing to see: the row sees itself only (no NaN rows)
                assert m[b, i].nonzero().flatten().tolist() == [i]


def test_decode_cuts_at_eos_and_strips_specials(tiny_encoder_dir):
    _, tok, ids = _setup(tiny_encoder_dir)
    seq = [tok.pad_token_id] + ids("the cat") + [tok.eos_token_id] + ids("dog dog")
    assert decode_ids(tok, torch.tensor(seq)) == "the cat"


def test_gpt2_style_tokenizer_without_pad_pads_with_eos_masked(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3, "[UNK]": 4}
    t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>", unk_token="[UNK]").save_pretrained(tmp_path)
    cfg = load_config(None, [f"encoder.source={tmp_path}", "data.max_length=5"])
    tok = load_tokenizer(cfg.encoder)
    it = SequenceBuilder(tok, cfg.data).text("a b")
    assert it["input_ids"].tolist() == [1, 2, 0, 0, 0]
    assert it["attention_mask"].tolist() == [True, True, True, False, False]


def test_eos_padding_is_never_an_encoder_key_but_carries_loss(tiny_encoder_dir):
    # ELF-METHOD §1: with eos as pad the padding positions are not keys for the encoder (the authors mark only
    # real tokens valid), while the loss still covers every target position (the model learns eos runs).
    from elfctl.objective import ElfObjective

    cfg, tok, ids = _setup(tiny_encoder_dir, "data.task=conditional", "data.max_length=10", "data.pad_token=eos")
    it = SequenceBuilder(tok, cfg.data).pair("the cat", "a dog")
    n_c, n = len(ids("the cat")), len(ids("the cat")) + len(ids("a dog"))
    assert it["input_ids"].tolist()[n:] == [tok.eos_token_id] * (10 - n)
    assert it["attention_mask"].tolist() == [True] * n + [False] * (10 - n)
    m = encoder_attention_mask(it["attention_mask"][None], it["cond_mask"][None])[0]
    assert not m[:, n:].any()                        # no query sees a padding key
    assert m[n_c:, :n].all()                         # target and padding queries see every real token
    loss = ElfObjective(cfg.objective, pad_token="eos").loss_mask(it["attention_mask"][None], it["cond_mask"][None])
    assert loss[0].tolist() == [False] * n_c + [True] * (10 - n_c)


def test_conditional_summary_counts_cut_inputs_and_cut_targets(tiny_encoder_dir):
    cfg, tok, _ = _setup(tiny_encoder_dir, "data.task=conditional", "data.max_length=8", "data.max_input_length=3",
                         "data.pad_token=eos", "data.cond_layout=eos")
    b = SequenceBuilder(tok, cfg.data)
    b.pair("the big red cat", "a dog")            # input cut
    b.pair("the cat", "a dog sat on the mat")     # target cut
    b.pair("the big red cat", "a dog sat on the big red mat")  # both
    b.pair("the", "a dog")                        # neither
    st = b.stats
    assert (st.examples, st.truncated, st.cond_truncated, st.target_truncated) == (4, 3, 2, 2)
    assert st.summary(cfg.data) == ("2 of 4 inputs truncated to 3 tokens (data.max_input_length, eos included), "
                                    "2 targets truncated to fit max_length 8, 0 blank skipped")


def test_texts_longer_than_the_tokenizer_maximum_raise_no_transformers_warning(tiny_encoder_dir, capfd):
    from elfctl.data.tokenize import batch_token_ids, token_ids

    cfg, tok, _ = _setup(tiny_encoder_dir, "data.max_length=4")
    tok.model_max_length = 3
    text = "the big red cat sat on the mat"
    assert len(batch_token_ids(tok, [text])[0]) > 3 and len(token_ids(tok, text)) > 3
    SequenceBuilder(tok, cfg.data).text(text)
    assert "longer than the specified maximum" not in capfd.readouterr().err
