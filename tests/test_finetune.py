"""Fine-tuning and linear probes (BERT §4.1, Appendix A.3): parity with transformers, optimisation, sampling."""
import math
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch.testing import assert_close

from bertrepro import BertConfig, BertForSequenceClassification, BertModel
from bertrepro.checkpoints import load_state_dict_strict
from bertrepro.data import NetworkRequiredError
from bertrepro.train.optim import WarmupLinearDecay, param_groups
from bertrepro.finetune import (
    Encoded, FinetuneConfig, accuracy, classifier_from_encoder, extract_features, fine_tune,
    load_glue, predict, select_by_dev, stratified_subsample, train_probe,
)

CFG = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                 max_position_embeddings=16)


def _encoded(n=12, T=10, seed=0, min_len=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, CFG.vocab_size, (n, T), generator=g)
    lengths = torch.randint(min_len, T + 1, (n,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    ids[:, 0] = 2  # [CLS]
    ids = ids * mask  # [PAD] = 0 after each sequence
    types = torch.zeros_like(ids)
    types[:, T // 2:] = 1
    return Encoded(ids, types * mask, mask)


def _separable(n_per_class=16, T=8, seed=0):
    """Class c is a sequence made mostly of token 10 + c: a bag-of-words problem a tiny BERT must fit."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(2).repeat_interleave(n_per_class)
    ids = torch.randint(20, CFG.vocab_size, (len(labels), T), generator=g)
    signal = torch.rand(len(labels), T, generator=g) < 0.6
    ids = torch.where(signal, 10 + labels[:, None], ids)
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    return Encoded(ids, torch.zeros_like(ids), mask), labels


# ---------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("num_labels", [2, 3])
def test_sequence_classification_matches_transformers(num_labels):
    hf_cfg = CFG.to_hf()
    hf_cfg.num_labels = num_labels
    hf_cfg._attn_implementation = "eager"
    hf = transformers.BertForSequenceClassification(hf_cfg).eval()
    ours = BertForSequenceClassification(CFG, num_labels).eval()
    load_state_dict_strict(ours, hf.state_dict(), "transformers.BertForSequenceClassification")
    assert set(ours.state_dict()) == {k for k in hf.state_dict() if not k.endswith(("position_ids", "token_type_ids"))}
    x = _encoded()
    labels = torch.arange(len(x)) % num_labels
    with torch.no_grad():
        loss, logits = ours(x.input_ids, x.token_type_ids, x.attention_mask, labels)
        ref = hf(input_ids=x.input_ids, token_type_ids=x.token_type_ids, attention_mask=x.attention_mask, labels=labels)
    assert_close(logits, ref.logits, atol=1e-5, rtol=1e-5)
    assert_close(loss, ref.loss, atol=1e-5, rtol=1e-5)
    assert torch.equal(logits.argmax(-1), ref.logits.argmax(-1))
    # predict() sorts by length and trims padding: same logits as one padded batch
    assert_close(predict(ours, x, batch_size=5), ref.logits, atol=1e-5, rtol=1e-5)


def test_classifier_from_encoder_copies_and_leaves_the_encoder_alone():
    enc = BertModel(CFG).eval()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    clf = classifier_from_encoder(enc, 3, seed=1)
    for k, v in enc.state_dict().items():
        assert torch.equal(clf.bert.state_dict()[k], v), k
    with torch.no_grad():
        clf.bert.embeddings.word_embeddings.weight.add_(1.0)
    for k, v in enc.state_dict().items():
        assert torch.equal(before[k], v), k  # a copy, not shared storage
    again = classifier_from_encoder(enc, 3, seed=1)
    other = classifier_from_encoder(enc, 3, seed=2)
    assert torch.equal(again.classifier.weight, classifier_from_encoder(enc, 3, seed=1).classifier.weight)
    assert not torch.equal(again.classifier.weight, other.classifier.weight)
    assert 0.005 < again.classifier.weight.std() < 0.03  # truncated normal with sigma = initializer_range
    dropped = classifier_from_encoder(enc, 3, dropout=0.25)  # fine-tuning's dropout replaces the encoder's
    assert dropped.bert.embeddings.dropout.p == 0.25 and dropped.bert.encoder.layer[0].attention.self.dropout == 0.25
    with pytest.raises(ValueError, match="pooler"):
        classifier_from_encoder(BertModel(CFG, add_pooling_layer=False), 2)


# ---------------------------------------------------------------------------------------------- features


def test_extract_features_match_a_direct_forward():
    enc = BertModel(CFG).eval()
    x = _encoded(n=9)
    feats = extract_features(enc, x, ("cls", "mean", "pooler"), batch_size=4, progress=False)
    with torch.no_grad():
        out = enc(x.input_ids, x.token_type_ids, x.attention_mask)
    assert_close(feats["cls"], out.last_hidden_state[:, 0], atol=1e-5, rtol=1e-5)
    assert_close(feats["pooler"], out.pooler_output, atol=1e-5, rtol=1e-5)
    naive = torch.stack([out.last_hidden_state[i, : int(x.attention_mask[i].sum())].mean(0) for i in range(len(x))])
    assert_close(feats["mean"], naive, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown pooling"):
        extract_features(enc, x, ("max",), progress=False)


# ---------------------------------------------------------------------------------------------- probe


def _gaussian_blobs(n, k=3, d=8, noise_seed=0, sep=6.0):
    """n points around k fixed random centres (the centres do not depend on noise_seed)."""
    centers = torch.randn(k, d, generator=torch.Generator().manual_seed(1234)) * sep
    y = torch.arange(n) % k
    return centers[y] + torch.randn(n, d, generator=torch.Generator().manual_seed(noise_seed)), y


def test_linear_probe_recovers_a_separable_problem_at_its_optimum():
    x, y = _gaussian_blobs(90)
    l2 = 1e-2
    probe = train_probe(x, y, 3, l2=l2, max_iter=500)
    assert accuracy(probe(x), y) == 1.0
    # The problem is convex: at the optimum the gradient of the penalized loss vanishes.
    w = probe.linear.weight.detach().clone().requires_grad_(True)
    b = probe.linear.bias.detach().clone().requires_grad_(True)
    z = (x - probe.mean) / probe.std
    loss = F.cross_entropy(z @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert gw.abs().max() < 1e-4 and gb.abs().max() < 1e-4
    # and it generalises to new points around the same centres
    xt, yt = _gaussian_blobs(300, noise_seed=1)
    assert accuracy(probe(xt), yt) > 0.98


def test_probe_is_deterministic_and_checks_its_inputs():
    x, y = _gaussian_blobs(30)
    a, b = train_probe(x, y, 3), train_probe(x, y, 3)
    assert torch.equal(a.linear.weight, b.linear.weight)
    with pytest.raises(ValueError, match="num_labels=3"):
        train_probe(x, y + 1, 3)  # label 3 does not fit 3 classes
    with pytest.raises(ValueError, match=r"features \(N, H\) and labels \(N,\)"):
        train_probe(x, y[:-1], 3)


# ---------------------------------------------------------------------------------------------- fine-tuning


def _run_classifier_lr(step: int, init_lr: float, num_train_steps: int, warmup_proportion: float) -> float:
    """google-research/bert optimization.py as run_classifier.py calls it: polynomial decay (power 1)
    from step 0 to 0 at num_train_steps, replaced by init_lr * step / warmup while step < warmup."""
    warmup = int(num_train_steps * warmup_proportion)
    decayed = init_lr * (1 - min(step, num_train_steps) / num_train_steps)
    return init_lr * step / warmup if step < warmup else decayed


def test_schedule_is_run_classifiers():
    f = WarmupLinearDecay.from_proportion(20, 0.1)  # 2 warm-up steps
    assert [f(s) for s in range(20)] == pytest.approx([_run_classifier_lr(s, 1.0, 20, 0.1) for s in range(20)])
    assert [f(s) for s in range(3)] == pytest.approx([0.0, 0.5, 0.9])  # decays from step 0: 1 - 2/20 at step 2
    assert [WarmupLinearDecay.from_proportion(5, 0.0)(s) for s in range(5)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    with pytest.raises(ValueError, match="warmup_proportion"):
        WarmupLinearDecay.from_proportion(5, 1.5)


def test_parameter_groups_partition_all_parameters():
    model = BertForSequenceClassification(CFG, 3)
    decay, no_decay = param_groups(model, 0.01)
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_fine_tuning_fits_a_tiny_separable_dataset_deterministically():
    x, y = _separable()
    cfg = FinetuneConfig(learning_rate=3e-3, batch_size=8, epochs=3, min_steps=40, max_seq_length=8)
    enc = BertModel(CFG)
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    r1 = fine_tune(classifier_from_encoder(enc, 2, seed=0), x, y, cfg, seed=0, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    r2 = fine_tune(classifier_from_encoder(enc, 2, seed=0), x, y, cfg, seed=0, progress=False)
    assert r1.losses == r2.losses  # seeded CPU runs are deterministic
    r3 = fine_tune(classifier_from_encoder(enc, 2, seed=0), x, y, cfg, seed=1, progress=False)
    assert r3.losses != r1.losses
    assert r1.steps == 40 == len(r1.losses)  # max(3 epochs x 4 batches, min_steps)
    assert sum(r1.losses[-5:]) / 5 < 0.25 * sum(r1.losses[:5]) / 5
    assert accuracy(predict(r1.model, x), y) == 1.0
    # the learning rates follow the schedule
    lrs = [_run_classifier_lr(s, 3e-3, 40, 0.1) for s in range(40)]
    assert r1.learning_rates == pytest.approx(lrs, abs=1e-12)
    assert sum(lr == max(r1.learning_rates) for lr in r1.learning_rates) == 1  # the peak is one step


def test_num_steps_follows_the_recipe():
    cfg = FinetuneConfig()
    assert cfg.num_steps(100) == 3 * 4  # 3 epochs of ceil(100 / 32) batches
    assert cfg.replace(min_steps=50).num_steps(100) == 50
    assert cfg.replace(epochs=0.5).num_steps(64) == 1


def test_learning_rate_grid_picks_the_best_dev_score():
    best, scores = select_by_dev([1e-5, 3e-5, 5e-5], lambda lr: {1e-5: 0.5, 3e-5: 0.9, 5e-5: 0.7}[lr])
    assert best == 3e-5 and scores == {1e-5: 0.5, 3e-5: 0.9, 5e-5: 0.7}
    assert select_by_dev(["a", "b", "c"], lambda g: 1.0)[0] == "a"  # ties: the first in grid order
    # a real grid: a vanishing learning rate cannot fit the data, 3e-3 can
    x, y = _separable()
    dev_x, dev_y = _separable(seed=1)
    enc = BertModel(CFG)
    cfg = FinetuneConfig(batch_size=8, min_steps=40, max_seq_length=8)

    def dev_accuracy(lr):
        r = fine_tune(classifier_from_encoder(enc, 2), x, y, cfg.replace(learning_rate=lr), progress=False)
        return accuracy(predict(r.model, dev_x), dev_y)

    best, scores = select_by_dev([1e-9, 3e-3], dev_accuracy)
    assert best == 3e-3 and scores[3e-3] > scores[1e-9] + 0.2
    with pytest.raises(ValueError, match="empty"):
        select_by_dev([], dev_accuracy)


def test_bad_inputs_raise_clear_errors():
    x, y = _separable()
    model = classifier_from_encoder(BertModel(CFG), 2)
    with pytest.raises(ValueError, match="num_labels=2"):
        fine_tune(model, x, y + 1, FinetuneConfig(), progress=False)  # labels {1, 2} with 2 classes
    with pytest.raises(ValueError, match="rows"):
        fine_tune(model, x, y[:-1], FinetuneConfig(), progress=False)
    with pytest.raises(TypeError, match="BertForSequenceClassification"):
        fine_tune(BertModel(CFG), x, y, FinetuneConfig(), progress=False)
    for bad in (dict(learning_rate=0), dict(batch_size=0), dict(warmup_proportion=1.0), dict(epochs=-1),
                dict(min_steps=-1), dict(max_seq_length=1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FinetuneConfig(**bad)
    with pytest.raises(ValueError, match="differ in shape"):
        accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- sampling


def test_stratified_subsample_is_exact_deterministic_and_nested():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (400,), generator=g)
    counts = torch.bincount(labels)
    for k in (1, 3, 10):
        idx = stratified_subsample(labels, k, torch.Generator().manual_seed(7))
        assert torch.equal(torch.bincount(labels[idx], minlength=5), torch.full((5,), k))
        assert torch.equal(idx, torch.sort(idx).values) and len(idx.unique()) == len(idx)
        assert torch.equal(idx, stratified_subsample(labels, k, torch.Generator().manual_seed(7)))
    small = stratified_subsample(labels, 3, torch.Generator().manual_seed(7))
    large = stratified_subsample(labels, 10, torch.Generator().manual_seed(7))
    assert set(small.tolist()) <= set(large.tolist())  # the curve's samples are nested
    assert not torch.equal(large, stratified_subsample(labels, 10, torch.Generator().manual_seed(8)))
    # every example of a class is equally likely to be drawn (a 5-sigma binomial band)
    hits = torch.zeros(len(labels))
    for s in range(400):
        hits[stratified_subsample(labels, 2, torch.Generator().manual_seed(s))] += 1
    p = 2 / counts[labels].float()
    assert ((hits - 400 * p).abs() <= 5 * (400 * p * (1 - p)).sqrt() + 1).all()


def test_stratified_subsample_short_classes():
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 8)
    with pytest.raises(ValueError, match=r"fewer examples \{1: 2\}"):
        stratified_subsample(labels, 3, torch.Generator().manual_seed(0))
    idx = stratified_subsample(labels, 3, torch.Generator().manual_seed(0), cap=True)
    assert torch.bincount(labels[idx]).tolist() == [3, 2, 3]
    with pytest.raises(ValueError, match="per_class"):
        stratified_subsample(labels, 0, torch.Generator())


# ---------------------------------------------------------------------------------------------- GLUE


def test_glue_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(NetworkRequiredError, match=r"HF_DATASETS_OFFLINE=1.*--task topics"):
        load_glue("sst2")
    assert time.perf_counter() - t < 5.0
    with pytest.raises(ValueError, match="unknown GLUE task 'cola'.*sst2, mrpc, mnli"):
        load_glue("cola")


def test_glue_offline_fails_fast_in_a_fresh_process():
    """The whole import + call, as a reader would run it, in well under 5 s of network-free time."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    code = ("import time; t=time.perf_counter()\n"
            "from bertrepro.finetune import load_glue\nfrom bertrepro.data import NetworkRequiredError\n"
            "t0=time.perf_counter()\n"
            "try:\n    load_glue('mrpc')\nexcept NetworkRequiredError as e:\n    print('OK', time.perf_counter()-t0)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("OK"), out.stderr
    assert float(out.stdout.split()[1]) < 5.0


# ---------------------------------------------------------------------------------------------- the topic task


def _fake_corpus(per_topic_validation=6, per_topic_test=7):
    import datasets

    from bertrepro.data import TOPICS, UNCATEGORIZED

    def split(n, tag):
        rows = [{"title": f"{tag}-{t}-{i}", "topic": t, "text": f"{tag} article {i} about {t.lower()}"}
                for t in TOPICS for i in range(n)]
        rows += [{"title": f"{tag}-u-{i}", "topic": UNCATEGORIZED, "text": f"{tag} uncategorized {i}"} for i in range(5)]
        return datasets.Dataset.from_list(rows)

    return {"validation": split(per_topic_validation, "val"), "test": split(per_topic_test, "test")}


def test_topic_task_uses_only_held_out_splits():
    from bertrepro.data import TOPICS
    from bertrepro.finetune import topic_task

    corpus = _fake_corpus()
    task = topic_task(corpus, dev_per_class=3)
    assert task.label_names == tuple(TOPICS) and task.num_labels == 11
    counts = task.counts()
    assert counts == {"pool": [6] * 11, "dev": [3] * 11, "test": [4] * 11}
    assert all(t.startswith("val ") for t in task.pool["texts"])  # the pool is the validation split
    assert not set(task.dev["texts"]) & set(task.test["texts"])
    assert set(task.dev["texts"]) | set(task.test["texts"]) == {t for t in corpus["test"]["text"] if "uncategorized" not in t}
    again = topic_task(corpus, dev_per_class=3)
    assert again.dev["texts"] == task.dev["texts"]  # fixed, whatever the run's seed
    for s in ("pool", "dev", "test"):  # labels follow the texts
        for text, label in zip(task.split(s)["texts"], task.split(s)["labels"].tolist()):
            assert text.endswith(TOPICS[label].lower())
    small = topic_task(corpus, dev_per_class=3, max_per_class=2)
    assert small.counts() == {"pool": [2] * 11, "dev": [3] * 11, "test": [2] * 11}
    with pytest.raises(ValueError, match="lacks split"):
        topic_task({"validation": corpus["validation"]})
    with pytest.raises(ValueError, match="split 'train'"):
        task.split("train")


def test_training_indices_all_and_per_class():
    from bertrepro.finetune import training_indices

    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 8)
    assert torch.equal(training_indices(labels, "all", 0), torch.arange(15))
    idx = training_indices(labels, 3, 0)
    assert torch.bincount(labels[idx]).tolist() == [3, 2, 3]  # capped at the size of a short class
    assert torch.equal(idx, training_indices(labels, 3, 0))
    with pytest.raises(ValueError, match="'all'"):
        training_indices(labels, "half", 0)


def test_encode_texts_pads_truncates_and_matches_transformers():
    from transformers import BertTokenizerFast

    from bertrepro.checkpoints import minilm_dir
    from bertrepro.finetune import encode_texts
    from bertrepro.tokenization import WordPieceTokenizer

    ours = WordPieceTokenizer.from_vocab(minilm_dir() / "vocab.txt")
    hf = BertTokenizerFast.from_pretrained(str(minilm_dir()))
    texts = ["my dog is hairy", "a much longer sentence that will certainly be cut at the maximum length"]
    a, b = encode_texts(ours, texts, 10), encode_texts(hf, texts, 10)
    assert a.input_ids[0, :6].tolist() == [101, 2026, 3899, 2003, 15892, 102]  # the published ids
    for x, y in ((a.input_ids, b.input_ids), (a.token_type_ids, b.token_type_ids), (a.attention_mask, b.attention_mask)):
        assert torch.equal(x, y)
    assert a.input_ids.shape == (2, 10) and a.input_ids[1, -1].item() == 102  # truncated, still ends in [SEP]
    pair = encode_texts(ours, ["my dog is cute"], 16, texts_b=["he likes playing"])
    assert pair.input_ids[0, :10].tolist() == [101, 2026, 3899, 2003, 10140, 102, 2002, 7777, 2652, 102]
    assert pair.token_type_ids[0, :10].tolist() == [0] * 6 + [1] * 4
    assert a[torch.tensor([0])].input_ids.shape == (1, 6)  # row selection trims the padding
    with pytest.raises(ValueError, match="same length"):
        encode_texts(ours, texts, 10, texts_b=["one"])
    with pytest.raises(TypeError, match="not one string"):
        encode_texts(ours, "my dog", 10)
    with pytest.raises(TypeError, match="unsupported tokenizer"):
        encode_texts(object(), texts, 10)


# ---------------------------------------------------------------------------------------------- arms, summaries


def _tiny_checkpoint(tmp_path):
    from bertrepro import BertForPreTraining
    from bertrepro.checkpoints import save_pretrained

    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz") + \
             ["article", "about", "val", "test", "uncategorized"] + [str(i) for i in range(10)]
    cfg = BertConfig(vocab_size=len(pieces), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=48, max_position_embeddings=64)
    model_dir = tmp_path / "model"
    save_pretrained(BertForPreTraining(cfg), model_dir)
    (model_dir / "vocab.txt").write_text("\n".join(pieces) + "\n")
    return model_dir


def test_load_arm_random_and_pretrained_share_architecture(tmp_path):
    from bertrepro.finetune import load_arm

    model_dir = _tiny_checkpoint(tmp_path)
    pre = load_arm("pretrained", model_dir)
    rnd = load_arm("random", model_dir, seed=3)
    assert pre.encoder.config == rnd.encoder.config and pre.tokenizer.vocab == rnd.tokenizer.vocab
    assert not torch.equal(pre.encoder.encoder.layer[0].attention.self.query.weight,
                           rnd.encoder.encoder.layer[0].attention.self.query.weight)
    assert torch.equal(rnd.encoder.pooler.dense.weight, load_arm("random", model_dir, seed=3).encoder.pooler.dense.weight)
    with pytest.raises(ValueError, match="unknown arm 'bert-large'; valid arms are random, pretrained, minilm"):
        load_arm("bert-large", model_dir)
    with pytest.raises(ValueError, match="needs pretrained_dir"):
        load_arm("pretrained")
    with pytest.raises(ValueError, match="no vocab.txt"):
        load_arm("random", tmp_path)


def test_summaries_and_the_two_standard_error_verdict():
    from bertrepro.finetune import compare, summarize
    from bertrepro.stats import mean_std

    rows = [{"arm": a, "regime": "probe", "size": 10, "n_train": 110, "seed": s, "n_test": 400, "accuracy": acc}
            for a, accs in (("random", [0.30, 0.32, 0.34]), ("minilm", [0.80, 0.81, 0.82]), ("pretrained", [0.31, 0.35, 0.33]))
            for s, acc in enumerate(accs)]
    summary = summarize(rows)
    m, s = mean_std([0.30, 0.32, 0.34])
    assert m == pytest.approx(0.32) and s == pytest.approx(0.02)
    assert {r["arm"]: r["seeds"] for r in summary} == {"random": 3, "minilm": 3, "pretrained": 3}
    c = compare(summary, "minilm", "random", "probe", 10)
    se = math.sqrt(0.01 ** 2 / 3 + 0.02 ** 2 / 3 + 0.81 * 0.19 / 400 + 0.32 * 0.68 / 400)
    assert c["helps"] and c["standard_error"] == pytest.approx(se) and c["difference"] == pytest.approx(0.49)
    c = compare(summary, "pretrained", "random", "probe", 10)
    assert not c["helps"] and c["difference"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="no finetune result for arm 'minilm'"):
        compare(summary, "minilm", "random", "finetune", 10)
    # single deterministic runs: the binomial noise of the test set still counts
    one = summarize([{**rows[0], "accuracy": 0.50}, {**rows[3], "accuracy": 0.56}])
    assert not compare(one, "minilm", "random", "probe", 10)["helps"]  # 0.06 < 2 x 0.035
    assert compare(one, "minilm", "random", "probe", 10, sigmas=1.0)["helps"]


def test_command_line_fine_tunes_and_writes_its_result(tmp_path, monkeypatch):
    import json

    from bertrepro.finetune.cli import main, run

    monkeypatch.setenv("BERTREPRO_CACHE_DIR", str(tmp_path / "cache"))
    model_dir = _tiny_checkpoint(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text('{"unfinished": true}')  # a run killed before its result: started again
    result = run(["--profile", "smoke", "--arm", "random", "--pretrained-dir", str(model_dir), "--per-class", "2",
                   "--learning-rate", "1e-3", "3e-3", "--output-dir", str(out), "--no-progress"])
    assert result["chosen_learning_rate"] in (1e-3, 3e-3) and set(result["dev_accuracy"]) == {1e-3, 3e-3}
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["train_examples"] == 22
    assert json.loads((out / "result.json").read_text())["test_accuracy"] == result["test_accuracy"]
    assert json.loads((out / "config.json").read_text())["max_seq_length"] == 32  # the smoke budget
    assert "unfinished" not in json.loads((out / "config.json").read_text())
    with pytest.raises(SystemExit):
        main(["--per-class", "0"])
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(NetworkRequiredError, match="--task topics"):
        run(["--task", "mrpc", "--arm", "minilm", "--profile", "smoke", "--output-dir", str(tmp_path / "mrpc")])
    assert time.perf_counter() - t < 5.0
