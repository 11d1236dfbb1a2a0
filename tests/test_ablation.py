"""The ablations of chapter 12 (BERT §5.1 Table 5, §5.2 Table 6).

* the LTR arm is causal through the pre-training code path, and its labels are the next tokens;
* the cloze test, for bidirectional and left-to-right models, against naive one-item computations
  on a hand-made vocabulary;
* equal compute: the three arms' configurations differ only in the objective; the size grid is valid;
* the probe / fine-tuning loops agree with bertrepro.finetune's curves; the paired statistics and the
  ordering verdicts on hand-made numbers.
"""
from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch
from torch.testing import assert_close

from bertrepro import ablation as ab
from bertrepro import pretrain as pt
from bertrepro.config import BertConfig
from bertrepro.labels import ARM_LABELS
from bertrepro.model import left_to_right
from bertrepro.pretrain.config import OBJECTIVES
from bertrepro.pretrain.evaluate import masked_lm_nll
from bertrepro.stats import claim_sentence, ordering_claim, paired_difference
from bertrepro.finetune import Arm, Encoded, FinetuneConfig, TopicTask, finetune_curve, probe_curve
from bertrepro.model import IGNORE_INDEX, BertForPreTraining, BertModel
from bertrepro.params import count_parameters
from bertrepro.tokenization import SPECIAL_TOKENS, WordPieceTokenizer


# ----------------------------------------------------------------------------- fixtures

def synthetic_corpus(n_train: int = 40, n_valid: int = 12, seed: int = 0) -> dict[str, list[list[str]]]:
    rng = random.Random(seed)
    animals = ["cat", "dog", "fox", "owl", "bee", "cow"]
    food = dict(zip(animals, ["fish", "bones", "hens", "mice", "honey", "grass"]))
    colours = ["red", "blue", "green", "brown"]

    def document() -> list[str]:
        a = rng.choice(animals)
        return [f"the {a} likes {food[a]} and {colours[(i + len(a)) % 4]} things today ." for i in range(6)]

    return {"train": [document() for _ in range(n_train)], "validation": [document() for _ in range(n_valid)]}


CORPUS = synthetic_corpus()


def tiny(**overrides) -> pt.PretrainConfig:
    kw = dict(vocab_size=100, max_seq_length=32, batch_size=8, total_steps=3, warmup_steps=1, log_every=1,
              checkpoint_every=100, dropout=0.0, eval_batch_size=64, num_threads=1)
    kw.update(overrides)
    return pt.PretrainConfig.for_profile("smoke", **kw)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("vocab-cache")


@pytest.fixture(scope="module")
def ltr_run(tmp_path_factory, cache):
    return pt.pretrain(tiny(objective="ltr"), tmp_path_factory.mktemp("ltr"), corpus=CORPUS, cache_dir=cache,
                       progress=False)


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory, cache):
    return pt.pretrain(tiny(objective="mlm_nsp"), tmp_path_factory.mktemp("mlm"), corpus=CORPUS, cache_dir=cache,
                       progress=False)


def hand_tokenizer(tmp_path) -> WordPieceTokenizer:
    pieces = [*SPECIAL_TOKENS, "the", "cat", "sat", "on", "mat", ".", "##s", "a", "big", "7"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(pieces) + "\n")
    return WordPieceTokenizer.from_vocab(path)


def tiny_bert(vocab_size: int, seed: int = 0) -> BertForPreTraining:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForPreTraining(cfg).eval()


# ----------------------------------------------------------------------------- the LTR arm

def test_ltr_labels_are_next_tokens(ltr_run):
    data, cfg = ltr_run.data, ltr_run.config
    ex = pt.epoch_examples(data, cfg, 0).select(slice(0, 6))
    batch = pt.make_batch(ex, data, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(batch["input_ids"], ex.input_ids)  # the LTR model reads the text unmasked
    for b in range(len(ex)):  # naive reference: label[t] = token[t+1] while t+1 is a real token
        n = int(ex.attention_mask[b].sum())
        want = [int(ex.input_ids[b, t + 1]) if t + 1 < n else IGNORE_INDEX for t in range(cfg.max_seq_length)]
        assert batch["labels"][b].tolist() == want


def test_ltr_pretrain_forward_is_causal(ltr_run):
    """The forward pass the training loop runs for objective="ltr": outputs at positions <= t do not
    move when tokens after t change (and the bidirectional pass does move, so the test can fail)."""
    model, data, cfg = ltr_run.model, ltr_run.data, ltr_run.config
    ex = pt.validation_examples(data, cfg).select(slice(0, 4))
    t = 8
    changed = ex.input_ids.clone()
    changed[:, t + 1:] = torch.where(ex.attention_mask[:, t + 1:].bool(), data.mask_token_id, data.pad_token_id)
    outs = {}
    for causal in (True, False):
        for name, ids in (("orig", ex.input_ids), ("changed", changed)):
            labels = pt.ltr_labels(ids, ex.attention_mask)
            labels[:, t + 1:] = IGNORE_INDEX  # keep only the positions 0..t
            o = model(ids, ex.token_type_ids, ex.attention_mask, labels=labels, is_causal=causal)
            outs[causal, name] = o.prediction_logits
    assert_close(outs[True, "orig"], outs[True, "changed"])
    assert not torch.allclose(outs[False, "orig"], outs[False, "changed"])


def test_left_to_right_encoder(ltr_run):
    enc = ltr_run.model.bert
    causal = left_to_right(enc)
    assert isinstance(causal, BertModel) and causal is not enc
    ids = torch.tensor([[2, 10, 11, 12, 3, 0, 0], [2, 13, 14, 15, 16, 17, 3]])
    mask = (torch.arange(7)[None] < torch.tensor([[5], [7]])).long()
    out = causal(ids, None, mask)
    ref = enc(ids, None, mask, is_causal=True)
    assert_close(out.last_hidden_state, ref.last_hidden_state)
    last = ref.last_hidden_state[torch.arange(2), torch.tensor([4, 6])]  # the [SEP] of each row
    assert_close(out.pooler_output, torch.tanh(enc.pooler.dense(last)))
    # padding changes nothing, and position 0 ([CLS]) is not the sentence vector under a causal mask
    short = causal(ids[:1, :5], None, mask[:1, :5])
    assert_close(short.pooler_output, out.pooler_output[:1])
    assert not torch.allclose(out.pooler_output, ref.pooler_output)
    with pytest.raises(ValueError, match="causal"):
        causal(ids, None, mask, is_causal=False)


# ----------------------------------------------------------------------------- the cloze test

def test_cloze_items_hand_made(tmp_path):
    tok = hand_tokenizer(tmp_path)
    v = tok.vocab
    # "the cat ##s sat on the mat . a big 7 cat ." : "cat" before "##s" is not a whole word, "." and "7" not words
    doc = [[v["the"], v["cat"], v["##s"], v["sat"], v["on"], v["the"], v["mat"], v["."]],
           [v["a"], v["big"], v["7"], v["cat"], v["."]]]
    items = ab.make_cloze_items([doc], tok, max_seq_length=16, num_items=100, min_context=2, seed=0)
    # window: [CLS] the cat ##s sat on the mat . a big 7 cat . [SEP] (positions 0..14); blanks need 2 pieces each side
    words = {1: "the", 4: "sat", 5: "on", 6: "the", 7: "mat", 9: "a", 10: "big", 12: "cat"}
    eligible = {p for p in words if 3 <= p <= 15 - 2 - 2}
    assert sorted(items.position.tolist()) == sorted(eligible)
    assert (items.target == items.input_ids[torch.arange(len(items)), items.position]).all()
    assert tok.convert_ids_to_tokens(items.target) == [words[p] for p in items.position.tolist()]
    again = ab.make_cloze_items([doc], tok, 16, 100, 2, seed=0)
    assert torch.equal(again.position, items.position)
    few = ab.make_cloze_items([doc], tok, 16, 3, 2, seed=1)
    assert len(few) == 3 and set(few.position.tolist()) <= eligible
    with pytest.raises(ValueError, match="cannot hold"):
        ab.make_cloze_items([doc], tok, 6, 10, 2, seed=0)


def test_cloze_inputs(tmp_path):
    tok = hand_tokenizer(tmp_path)
    v = tok.vocab
    doc = [[v["the"], v["cat"], v["sat"], v["on"], v["the"], v["mat"], v["."]]]
    items = ab.make_cloze_items([doc], tok, 12, 1, 2, seed=0)
    t = int(items.position[0])
    special = (tok.mask_token_id, tok.sep_token_id, tok.pad_token_id)
    ids, mask, read = ab.cloze_inputs(items, "bidirectional", *special)
    assert (ids[0] == tok.mask_token_id).nonzero().flatten().tolist() == [t] and int(read[0]) == t
    assert torch.equal(mask, items.attention_mask)
    ids_l, mask_l, read_l = ab.cloze_inputs(items, "left_only", *special)
    n = t + 2
    assert ids_l[0, :t].tolist() == items.input_ids[0, :t].tolist()
    assert ids_l[0, t:n].tolist() == [tok.mask_token_id, tok.sep_token_id]
    assert (ids_l[0, n:] == tok.pad_token_id).all() and mask_l[0].tolist() == [1] * n + [0] * (12 - n)
    ids_r, _, read_r = ab.cloze_inputs(items, "left_to_right", *special)
    assert torch.equal(ids_r, ids) and int(read_r[0]) == t - 1
    with pytest.raises(ValueError, match="unknown cloze mode"):
        ab.cloze_inputs(items, "right_to_left", *special)


def test_cloze_scores_match_naive_one_item_computation(tmp_path):
    tok = hand_tokenizer(tmp_path)
    v = tok.vocab
    docs = [[[v[w] for w in "the cat sat on the mat . a big cat sat on a mat .".split()]]]
    items = ab.make_cloze_items(docs, tok, 20, 6, 2, seed=3)
    model = tiny_bert(tok.vocab_size)
    scores = {m: ab.cloze_scores(model, items, m, tok, batch_size=4) for m in ab.CLOZE_MODES}
    word, _ = ab.word_token_mask(tok)
    words_only = ab.cloze_scores(model, items, "bidirectional", tok, candidates=word)
    assert_close(words_only.log_prob, scores["bidirectional"].log_prob)  # the probabilities do not change
    for i in range(len(items)):
        t, n = int(items.position[i]), int(items.attention_mask[i].sum())
        x = items.input_ids[i, :n].clone()
        target = int(items.target[i])
        masked = x.clone()
        masked[t] = tok.mask_token_id
        with torch.no_grad():
            # bidirectional: the whole window, blank masked, logits at the blank
            bi = model(masked[None]).prediction_logits[0, t].log_softmax(-1)
            # left only: [CLS] w_1 .. w_{t-1} [MASK] [SEP], nothing padded
            left = torch.cat([x[:t], torch.tensor([tok.mask_token_id, tok.sep_token_id])])
            lo = model(left[None]).prediction_logits[0, t].log_softmax(-1)
            # left to right: a causal model reads the prefix [CLS] w_1 .. w_{t-1} ALONE; its last output predicts w_t
            ltr = model(x[None, :t], is_causal=True).prediction_logits[0, -1].log_softmax(-1)
        for mode, ref in (("bidirectional", bi), ("left_only", lo), ("left_to_right", ltr)):
            s = scores[mode]
            assert_close(s.log_prob[i], ref[target].double(), atol=1e-5, rtol=1e-5)
            assert int(s.prediction[i]) == int(ref.argmax())
        best_word = max((p for p in range(tok.vocab_size) if word[p]), key=lambda p: float(bi[p]))  # a loop over pieces
        assert int(words_only.prediction[i]) == best_word
        assert tok.convert_ids_to_tokens([best_word])[0].isalpha()
    # the LTR blank does not see the blank or the right context: changing them changes nothing
    future = items.input_ids.clone()
    pos = torch.arange(future.shape[1])[None]
    future = torch.where((pos >= items.position[:, None]) & items.attention_mask.bool(), v["big"], future)
    other = dataclasses.replace(items, input_ids=future)
    assert_close(ab.cloze_scores(model, other, "left_to_right", tok).log_prob, scores["left_to_right"].log_prob)
    assert not torch.allclose(ab.cloze_scores(model, other, "bidirectional", tok).log_prob,
                              scores["bidirectional"].log_prob)
    acc = scores["bidirectional"].accuracy(items.target)
    assert acc == pytest.approx(float((scores["bidirectional"].prediction == items.target).double().mean()))


def test_ltr_cloze_through_pretrained_model(ltr_run):
    """On the model pre-trained with objective="ltr": the causal cloze equals its next-token prediction."""
    data, model = ltr_run.data, ltr_run.model
    items = ab.make_cloze_items(data.validation_documents, data.tokenizer, 32, 20, 3, seed=0)
    s = ab.cloze_scores(model, items, "left_to_right", data.tokenizer)
    for i in range(3):
        t = int(items.position[i])
        with torch.no_grad():
            lp = model(items.input_ids[i:i + 1, :t], is_causal=True).prediction_logits[0, -1].log_softmax(-1)
        assert_close(s.log_prob[i], lp[items.target[i]].double(), atol=1e-5, rtol=1e-5)


def test_masked_lm_nll_matches_pretrain_evaluate(mlm_run):
    data, cfg, model = mlm_run.data, mlm_run.config, mlm_run.model
    valid = pt.validation_examples(data, cfg)
    nll = masked_lm_nll(model, valid, data, cfg, batch_size=7)
    ev = pt.evaluate(model, valid, data, cfg)
    assert nll.numel() == ev["mlm_predictions"]
    assert float(nll.mean().exp()) == pytest.approx(ev["mlm_perplexity"], rel=1e-6)


# ----------------------------------------------------------------------------- equal compute and the grid

@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_arms_hold_compute_equal(profile):
    """MLM + NSP is chapter 09's preset; MLM differs in the objective and its stop (chapter 09's
    matched_step); LTR's schedule has chapter 09's FLOPs and stops at matched_step's FLOPs
    (checked without running anything, from a hand-made FLOP table)."""
    s = ab.settings_for(profile)
    base = pt.PretrainConfig.for_profile(profile, seed=3)
    flops = {"ltr_total_steps": 1234, "ltr_stop_step": 321}  # any numbers: the counted ones are checked at smoke
    cfgs = {o: ab.pretrain_config(s, o, seed=3, flops=flops) for o in OBJECTIVES}
    assert cfgs["mlm_nsp"] == base
    assert ab.differing_fields(base, cfgs["mlm"]) <= {"objective", "max_steps", "checkpoint_every", "keep_checkpoints"}
    assert cfgs["mlm"].stop_step == s.matched_step and cfgs["mlm"].total_steps == base.total_steps
    assert s.matched_step % base.checkpoint_every == 0  # chapter 09 keeps a checkpoint there
    assert ab.differing_fields(base, cfgs["ltr"]) <= {"objective", "total_steps", "warmup_steps", "max_steps",
                                                      "checkpoint_every", "keep_checkpoints"}
    ltr = cfgs["ltr"]
    assert ltr.total_steps == 1234 and ltr.stop_step == 321
    assert ltr.warmup_steps == round(1234 * base.warmup_steps / base.total_steps)
    for arm in (cfgs["mlm"], ltr):  # every snapshot is kept
        assert arm.keep_checkpoints > arm.stop_step // arm.checkpoint_every
    assert (ltr.num_hidden_layers, ltr.hidden_size, ltr.num_attention_heads) == s.arm_shape
    assert s.arm_shape == (base.num_hidden_layers, base.hidden_size, base.num_attention_heads)  # chapter 09's
    # chapter 09's run keeps its snapshots, and they do not change the run's identity
    assert base.keep_checkpoints >= base.total_steps // base.checkpoint_every >= 4
    assert {"checkpoint_every", "keep_checkpoints"} <= set(pt.PretrainConfig.RESUMABLE)


def test_equal_flop_ltr_schedule_at_smoke():
    s = ab.settings_for("smoke")
    f = ab.equal_flop_ltr_steps(s)
    assert f["ltr_predicted"] > f["mlm_predicted"] > 0
    p1, p2 = pt.PretrainConfig.for_profile("smoke").phase_steps()
    assert p2 > 0 and f["mlm_long_step_flops"] > f["mlm_step_flops"]  # the second phase's longer sequences
    assert f["ch09_flops"] == pytest.approx(p1 * f["mlm_step_flops"] + p2 * f["mlm_long_step_flops"])
    share = p2 / (p1 + p2)  # the LTR schedule has the same phases
    ltr_step = (1 - share) * f["ltr_step_flops"] + share * f["ltr_long_step_flops"]
    assert abs(f["ltr_total_steps"] * ltr_step - f["ch09_flops"]) <= ltr_step / 2
    # Table 5's equal compute: LTR stops at the step whose FLOPs are closest to chapter 09's at matched_step
    assert f["matched_flops"] == pytest.approx(s.matched_step * f["mlm_step_flops"])
    assert abs(f["ltr_stop_step"] * f["ltr_step_flops"] - f["matched_flops"]) <= f["ltr_step_flops"] / 2


@pytest.mark.parametrize("profile", ["smoke", "gpu"])
def test_table6_and_table8_plans(profile):
    s = ab.settings_for(profile)
    counts = []
    for shape in s.sizes:
        counts.append(count_parameters(pt.PretrainConfig.for_profile(profile, num_hidden_layers=shape[0],
                                                                     hidden_size=shape[1],
                                                                     num_attention_heads=shape[2],
                                                                     intermediate_size=4 * shape[1])
                                       .bert_config(100)))
    assert counts == sorted(counts) and counts[0] < counts[-1], counts
    mixes = [ab.mix_name(m) for m in s.table8_mixes]
    assert mixes[0] == "80_10_10" and {"100_0_0", "80_0_20", "0_0_100"} <= set(mixes)
    # Table 8 runs are smaller than the Table 5 arms
    assert s.table8_shape[1] < s.arm_shape[1] or s.table8_shape[0] < s.arm_shape[0]


def test_cpu_leaves_tables_6_and_8_to_the_gpu_profile():
    """At cpu Tables 6 and 8 train nothing, and their claims read "decided at the gpu profile", keyed
    as the gpu profile keys them."""
    s = ab.settings_for("cpu")
    assert not s.table6 and not s.table8
    results = {"gates": {}}
    claims = ab.table6_claims(results, s) + ab.table8_claims(results, s)
    gpu = ab.settings_for("gpu")
    assert len(claims) == 2 + 2 * (len(gpu.table8_mixes) - 1)
    for c in claims:
        assert c["status"] == "inconclusive" and c["value"] is None and c["unlearned"] == []
        assert "decided at the gpu profile" in ab.gated_sentence(c)
    assert "table8.probe.80_10_10_minus_0_0_100" in {c["key"] for c in claims}


def test_settings_reject_bad_values():
    good = ab.settings_for("smoke")
    with pytest.raises(ValueError, match="A must divide H"):
        dataclasses.replace(good, sizes=((1, 30, 4), (2, 32, 2)))
    with pytest.raises(ValueError, match="matched_step must be a kept checkpoint"):
        dataclasses.replace(good, matched_step=5)  # chapter 09's smoke run keeps steps 4, 8, ..., 20
    with pytest.raises(ValueError, match="snapshots"):
        dataclasses.replace(good, snapshots=1)
    with pytest.raises(ValueError, match="two distinct mixes"):
        dataclasses.replace(good, table8_mixes=((0.8, 0.1, 0.1),))
    with pytest.raises(ValueError, match="two distinct shapes"):
        dataclasses.replace(good, sizes=((1, 16, 2),))
    assert not dataclasses.replace(good, sizes=(), table8_mixes=()).table6  # none: left to the gpu profile
    with pytest.raises(ValueError, match="unknown profile"):
        ab.settings_for("tpu")


# ----------------------------------------------------------------------------- the masking mix

@pytest.mark.parametrize("mix", [(0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.8, 0.1, 0.1)])
def test_mix_reaches_mask_tokens_through_pretrain_config(mix, cache):
    """A 0/0/100 batch has no [MASK] (but for random tokens that hit its id); a 100/0/0 batch has
    [MASK] at every chosen position; 80/10/10 about 80 %."""
    m, same, r = mix
    cfg = tiny(mask_fraction=m, same_fraction=same, random_fraction=r, objective="mlm")
    data = pt.prepare_data(cfg, corpus=CORPUS, cache_dir=cache)
    ex = pt.epoch_examples(data, cfg, 0)
    batch = pt.make_batch(ex, data, cfg, torch.Generator().manual_seed(0))
    chosen = batch["labels"] != IGNORE_INDEX
    is_mask = batch["input_ids"] == data.mask_token_id
    assert chosen.sum() > 20
    assert not (is_mask & ~chosen).any()
    if m == 0.0:  # no [MASK] but the random draws (uniform over the vocabulary) that land on its id
        assert float(is_mask[chosen].double().mean()) < 5 / data.vocab_size
    if m == 1.0:
        assert is_mask[chosen].all()
    if mix == (0.8, 0.1, 0.1):
        assert 0.6 < float(is_mask[chosen].double().mean()) < 0.95


def test_mix_fields_are_validated_and_part_of_the_run():
    with pytest.raises(ValueError, match="must be 1"):
        tiny(mask_fraction=0.5)
    with pytest.raises(ValueError, match="probability"):
        tiny(mask_fraction=1.2, same_fraction=-0.2, random_fraction=0.0)
    for name in ("mask_fraction", "same_fraction", "random_fraction"):
        assert name not in pt.PretrainConfig.RESUMABLE


# ----------------------------------------------------------------------------- the learning check

def test_learning_check_by_hand_and_at_the_boundary():
    base = [True] * 10 + [False] * 90  # baseline 10 %
    model = [True] * 30 + [False] * 70  # 30 %, and right wherever the baseline is
    g = ab.learning_check(model, base)
    d = torch.tensor(model, dtype=torch.float64) - torch.tensor(base, dtype=torch.float64)
    z = float(d.mean() / (d.std() / math.sqrt(len(d))))
    assert g["cloze_over_baseline"] == pytest.approx(3.0) and g["z"] == pytest.approx(z) and g["learned"]
    at = ab.learning_check([True] * 15 + [False] * 85, base)  # exactly 1.5x, z = 5 / se
    assert at["cloze_over_baseline"] == pytest.approx(ab.MIN_OVER_BASELINE)
    assert at["learned"] == (at["z"] >= ab.MIN_Z)
    below = ab.learning_check([True] * 14 + [False] * 86, base)
    assert not below["learned"]
    assert not ab.learning_check(model, base, nsp_accuracy=0.64)["learned"]
    assert ab.learning_check(model, base, nsp_accuracy=0.65)["learned"]
    with pytest.raises(ValueError, match="equal-length"):
        ab.learning_check([True], [True, False])


def test_unlearned_arm_gives_inconclusive_never_not_reproduced():
    results = {"gates": {"a": {"learned": True}, "b": {"learned": False}}}
    reversed_claim = ordering_claim("k.x", "A beats B", [{"difference": -5.0, "se": 1.0}], 1.0, "points")
    assert reversed_claim["status"] == "not reproduced at this scale"
    gated = ab.gate_claim(reversed_claim, results, ["a", "b"])
    assert gated["status"] == "inconclusive" and gated["unlearned"] == ["b"]
    assert "`b` did not pass" in ab.gated_sentence(gated)
    kept = ab.gate_claim(reversed_claim, results, ["a"])
    assert kept["status"] == "not reproduced at this scale" and kept["unlearned"] == []


def test_smoke_chapter_results_are_all_inconclusive(tmp_path, monkeypatch):
    """At smoke no arm learns: every claim of chapter 12 is "inconclusive", none "not reproduced"."""
    monkeypatch.setenv("BERTREPRO_CACHE_DIR", str(tmp_path))
    s = ab.settings_for("smoke")
    res = ab.run_ablation(s, seed=0, device="cpu", progress=False)
    assert not any(g["learned"] for g in res["gates"].values())
    claims = (ab.table5_claims(res, s) + ab.table6_claims(res, s) + ab.table8_claims(res, s)
              + [ab.crossover_claim(res, k) for k in ("cloze", "probe")])
    assert claims and all(c["status"] == "inconclusive" for c in claims)
    # Table 5 at equal counted FLOPs: chapter 09's run read at matched_step, the FLOPs in every claim
    arm = {o: ab.run_name(o, s.arm_shape) for o in OBJECTIVES}
    assert res["runs"][arm["mlm_nsp"]]["steps"] == res["runs"][arm["mlm"]]["steps"] == s.matched_step
    assert ab.matched_flops(res, s)
    for c in ab.table5_claims(res, s):
        fa, fb = c["flops"]
        assert f"at {fa / 1e12:.3g} TFLOP" in c["claim"] and f"at {fb / 1e12:.3g} TFLOP" in c["claim"]
    assert len(res["curves"]["mlm_nsp"]) > len(res["curves"]["mlm"])  # the curve runs on to chapter 09's end
    curve = res["ch09_curve"]
    assert curve["steps"] == sorted(curve["steps"]) and curve["steps"][-1] == 20 and curve["unigram_perplexity"] > 1
    assert sum(line.startswith("cache: computing") for line in res["cache_log"]) >= len(res["runs"])  # not printed
    # the curve has the snapshots of the runs, with FLOPs rising, and the per-run table adds up
    for o, points in res["curves"].items():
        assert len(points) >= 3 and [p["flops"] for p in points] == sorted(p["flops"] for p in points)
    for row, r in zip(ab.arm_table(res), res["runs"].values()):
        assert row["TFLOP"] * 1e12 == pytest.approx(r["steps"] * r["step_flops"])


# ----------------------------------------------------------------------------- topic task loops

def synthetic_task(n_per_class: int = 6, classes: int = 3) -> TopicTask:
    def split(n):
        labels = torch.arange(classes).repeat(n)
        return {"titles": [f"t{i}" for i in range(len(labels))], "texts": ["x"] * len(labels), "labels": labels}

    return TopicTask(tuple(f"c{i}" for i in range(classes)), split(n_per_class), split(2), split(4))


def test_probe_rows_agree_with_probe_curve():
    task = synthetic_task()
    g = torch.Generator().manual_seed(0)
    feats = {}
    for arm in ("a", "b"):
        feats[arm] = {s: torch.randn(len(task.split(s)["labels"]), 8, generator=g)
                      + task.split(s)["labels"][:, None].float() for s in ("pool", "dev", "test")}
    mine = ab.probe_rows(feats, task, (1, 3, "all"), 2, (1e-2, 1.0), progress=False)
    ref = probe_curve(feats, task, (1, 3, "all"), 2, (1e-2, 1.0), progress=False)
    for m, r in zip(mine, ref, strict=True):
        assert {k: m[k] for k in r} == r
        assert len(m["correct"]) == len(task.test["labels"])
        assert m["accuracy"] == pytest.approx(sum(m["correct"]) / len(m["correct"]))
    assert len({m["accuracy"] for m in mine}) > 1  # not a constant: the features separate the classes


def test_finetune_rows_agree_with_finetune_curve():
    task = synthetic_task(n_per_class=4)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    encoder = BertModel(cfg).eval()
    g = torch.Generator().manual_seed(1)

    def enc(n):
        ids = torch.randint(5, 30, (n, 8), generator=g)
        ids[:, 0] = 2
        return Encoded(ids, torch.zeros_like(ids), torch.ones_like(ids))

    encoded = {s: enc(len(task.split(s)["labels"])) for s in ("pool", "dev", "test")}
    ft = FinetuneConfig(batch_size=4, epochs=1, min_steps=3, max_seq_length=8)
    mine = ab.finetune_rows({"pretrained": encoder}, encoded, task, (2,), 2, (1e-3, 1e-2), ft, progress=False)
    arm = Arm("pretrained", encoder, None, ARM_LABELS["pretrained"])
    ref = finetune_curve({"pretrained": arm}, {"pretrained": encoded}, task, {"pretrained": (2,)}, 2,
                         {"pretrained": (1e-3, 1e-2)}, ft, progress=False)
    for m, r in zip(mine, ref, strict=True):
        for k in ("arm", "size", "seed", "choice", "n_train", "steps"):
            assert m[k] == r[k], k
        for k in ("dev_accuracy", "accuracy"):
            assert m[k] == pytest.approx(r[k], abs=1e-6), k
    # the LTR encoder stays causal inside the classifier: a different model, same loop
    causal = ab.finetune_rows({"ltr": left_to_right(encoder)}, encoded, task, (2,), 1, (1e-3,), ft, progress=False)
    assert len(causal) == 1 and len(causal[0]["correct"]) == len(task.test["labels"])


# ----------------------------------------------------------------------------- statistics and claims

def test_paired_difference_by_hand():
    a = [[1, 1, 0, 1], [1, 0, 0, 1]]
    b = [[0, 1, 0, 0], [1, 0, 1, 0]]
    d = paired_difference(a, b)
    per_seed = [0.5, 0.0]  # mean of a - b in each seed
    assert d["difference"] == pytest.approx(0.25)
    se_seeds = (torch.tensor(per_seed, dtype=torch.float64).std() / 2 ** 0.5).item()
    var_items = [torch.tensor(r, dtype=torch.float64).var().item() for r in ([1, 0, 0, 1], [0, 0, -1, 1])]
    se_items = (sum(var_items) / 2 / 4) ** 0.5
    assert d["se_seeds"] == pytest.approx(se_seeds) and d["se_items"] == pytest.approx(se_items)
    assert d["se"] == pytest.approx((se_seeds ** 2 + se_items ** 2) ** 0.5)
    one = paired_difference([1.0, 0.0, 1.0], [0.0, 0.0, 1.0])
    assert one["seeds"] == 1 and one["se_seeds"] == 0.0 and one["difference"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="equal"):
        paired_difference([[1, 0]], [[1, 0, 1]])


def test_ordering_verdicts():
    def m(diff, se):
        return {"difference": diff, "se": se}

    yes = ordering_claim("k.a", "A beats B", [m(3.0, 1.0)], 2.0, "points")
    assert (yes["verdict"], yes["status"], yes["value"]) == ("reproduced", "qualitatively reproduced", 3.0)
    noise = ordering_claim("k.b", "A beats B", [m(1.0, 1.0)], 2.0, "points")
    assert (noise["verdict"], noise["status"]) == ("within noise", "not reproduced at this scale")
    rev = ordering_claim("k.c", "A beats B", [m(-3.0, 1.0)], 2.0, "points")
    assert (rev["verdict"], rev["status"]) == ("reversed", "not reproduced at this scale")
    mono = ordering_claim("k.d", "rises at every step", [m(5.0, 1.0), m(0.5, 1.0)], 7.0, "points",
                             overall=m(5.5, 1.2))
    assert mono["verdict"] == "within noise" and mono["value"] == 5.5
    with pytest.raises(ValueError, match="overall"):
        ordering_claim("k.e", "x", [m(1, 1), m(1, 1)], None, "points")
    for c, word in ((yes, "qualitatively reproduced"), (rev, "opposite"), (noise, "cannot tell")):
        assert word in claim_sentence(c)


def test_paper_differences():
    # Table 5: No NSP - LTR & No NSP over MNLI-m, QNLI, MRPC, SST-2 = (1.8 + 0.6 + 9.0 + 0.5) / 4
    assert ab.paper_difference("table5", "No NSP", "LTR & No NSP", ab.PAPER_TABLE5_COLUMNS) == pytest.approx(2.975)
    assert ab.paper_difference("table5", "BERT-base", "No NSP", ab.PAPER_TABLE5_COLUMNS) == pytest.approx(1.075)
    assert ab.paper_difference("table6", "3/768/12", "24/1024/16", ("LM ppl",)) == pytest.approx(2.61)


# ----------------------------------------------------------------------------- the per-run table and Figure 5

def test_per_run_table_names_its_losses_and_steps(mlm_run):
    """The table's train loss is the LM loss of the last log window (the MLM + NSP total is another number)."""
    from bertrepro.ablation.measure import run_summary

    last = mlm_run.metrics[-1]
    run = ab.TrainedRun("mlm_nsp-L2-H64-A2", mlm_run.config, mlm_run.model, mlm_run.evaluation, None,
                        mlm_run.model_dir, mlm_run.metrics)
    summary = run_summary(run, mlm_run.data)
    assert summary["steps"] == last["step"] and summary["wall_seconds"] == last["elapsed_s"]
    assert summary["flops"] == pytest.approx(last["step"] * summary["step_flops"])
    gates = {run.name: {"cloze_over_baseline": 1.0, "z": 0.0, "learned": False}}
    (row,) = ab.arm_table({"runs": {run.name: summary}, "gates": gates})
    assert last["loss"] != last["mlm_loss"]  # with NSP, the total is not the LM loss
    assert row["train LM loss"] == last["mlm_loss"] and "train loss" not in row
    assert row["held-out LM loss"] == mlm_run.evaluation["mlm_loss"]


def _curve_results(mlm_flops, ltr_flops):
    point = lambda f: {"step": int(f), "flops": f, "cloze": [1.0, 0.0, 1.0], "probe": [1.0, 1.0, 0.0],
                       "left_only": None}
    runs = {"mlm_nsp-x": {"role": "table5", "objective": "mlm_nsp"}, "ltr-x": {"role": "table5", "objective": "ltr"}}
    return {"curves": {"mlm_nsp": [point(f) for f in mlm_flops], "ltr": [point(f) for f in ltr_flops]},
            "runs": runs, "gates": {n: {"learned": True} for n in runs}}


@pytest.mark.parametrize("mlm_flops,ltr_flops", [([10.0, 20.0], [30.0]), ([], [5.0]), ([10.0], [])])
def test_crossover_claim_without_a_comparable_pair_is_not_measured(mlm_flops, ltr_flops):
    claim = ab.crossover_claim(_curve_results(mlm_flops, ltr_flops), "cloze")
    assert claim["status"] == "inconclusive" and claim["verdict"] == "not measured" and claim["value"] is None
    assert "not measured" in ab.gated_sentence(claim)


def test_crossover_claim_compares_ltr_at_no_more_flops():
    claim = ab.crossover_claim(_curve_results([10.0, 20.0], [5.0, 15.0, 25.0]), "cloze")
    assert claim["value"] == 0.0 and claim["verdict"] == "within noise" and "LTR at 1.5e-11 of 2e-11 TFLOP" in claim["claim"]


# ----------------------------------------------------------------------------- sentences from the numbers

def _nsp_claims(values, unlearned=()):
    return [{"key": f"table5.{how}.nsp_minus_no_nsp", "value": v, "se": se, "unlearned": list(unlearned)}
            for how, (v, se) in zip(("probe", "finetune"), values)]


def test_nsp_sentence_follows_the_measured_sign_and_se():
    hurt = ab.nsp_sentence(_nsp_claims([(-3.86, 1.40), (-0.5, 1.0)]))
    assert "-3.86 ± 1.40" in hurt and "*hurts*" in hurt and "helps" not in hurt
    helps = ab.nsp_sentence(_nsp_claims([(3.0, 1.0), (0.4, 1.0)]))
    assert "NSP helps" in helps and "hurts" not in helps
    noise = ab.nsp_sentence(_nsp_claims([(1.0, 1.0), (-1.0, 1.0)]))
    assert "cannot tell" in noise and "hurts" not in noise and "NSP helps" not in noise
    assert "decide nothing" in ab.nsp_sentence(_nsp_claims([(-5.0, 1.0), (-5.0, 1.0)], ["mlm-x"]))


def test_plateau_sentence_and_exit_from_the_numbers():
    runs = {"a": {"evaluation": {"mlm_perplexity": 881.0, "unigram_perplexity": 890.0}, "steps": 1000,
                  "nsp_balanced_accuracy": 0.5},
            "b": {"evaluation": {"lm_perplexity": 120.0, "unigram_perplexity": 890.0}, "steps": 50,
                  "nsp_balanced_accuracy": None}}
    a = ab.plateau_sentence({"runs": runs}, "a")
    assert "never got below the unigram plateau" in a and "881" in a and "890" in a and "NSP 50.0 %" in a
    assert "got below the unigram plateau but" in ab.plateau_sentence({"runs": runs}, "b")
    plateau = math.log(100.0)
    curve = {"run": "r", "steps": [50, 100, 150, 200], "unigram_perplexity": 100.0,
             "lm_loss": [plateau + 1, plateau, 0.95 * plateau, 0.85 * plateau]}
    assert ab.plateau_exit(curve) == 200 and ab.plateau_exit(curve, margin=0.05) == 150
    assert ab.plateau_exit({**curve, "lm_loss": [plateau] * 4}) is None
    s = ab.gpu_only_sentence(curve, steps=100)
    assert "decided at the gpu profile" in s and "step 200" in s and "more steps than 100" in s


def test_crossover_plot_keeps_tick_labels_apart_and_the_legend_off_the_axes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    point = lambda step, f: {"step": step, "flops": f, "cloze": [1.0, 0.0, 1.0, 0.0], "probe": [1.0, 1.0, 0.0, 0.0],
                             "left_only": [0.0, 1.0, 0.0, 0.0]}
    results = {"curves": {"mlm_nsp": [point(s, s * 6.9e9) for s in range(1000, 6001, 1000)],
                          "mlm": [point(s, s * 6.9e9) for s in range(400, 2001, 400)],
                          "ltr": [point(s, s * 15.7e9) for s in range(176, 877, 175)]},
               "cloze": {"baseline": {"correct": [0.0, 0.0, 1.0, 0.0]}}}
    fig, axes = plt.subplots(1, 2, figsize=(7.4, 3.8))
    ab.plot_crossover(results, axes=axes)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels(which="both")
                        if t.get_visible() and t.get_text()), key=lambda b: b.x0)
        assert len(boxes) >= 2
        for b1, b2 in zip(boxes, boxes[1:]):
            assert not b1.overlaps(b2), [t.get_text() for t in ax.get_xticklabels()]
        assert ax.get_legend() is None  # the legend is the figure's, below the panels
        legend_box = fig.legends[0].get_window_extent(renderer)
        assert not legend_box.overlaps(ax.get_window_extent(renderer))
    plt.close(fig)


def test_matched_flops_tolerates_the_pairs_but_not_another_budget():
    """Found by the gpu dry run: MLM + NSP and MLM at the same step count slightly different predicted
    positions (NSP's random second segments), so their FLOPs differ by a fraction of a percent; the check
    allows that, and half an LTR step, but not a different budget."""
    s = ab.settings_for("smoke")
    names = {o: ab.run_name(o, s.arm_shape) for o in OBJECTIVES}

    def results(nsp, mlm, ltr, ltr_step):
        runs = {names["mlm_nsp"]: {"flops": nsp}, names["mlm"]: {"flops": mlm},
                names["ltr"]: {"flops": ltr, "step_flops": ltr_step}}
        return {"runs": runs}

    assert ab.matched_flops(results(100.5, 100.0, 103.0, 10.0), s)
    assert not ab.matched_flops(results(150.0, 100.0, 103.0, 10.0), s)
    assert not ab.matched_flops(results(100.0, 100.0, 130.0, 10.0), s)
