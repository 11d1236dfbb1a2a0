"""Figure 4 training: one fine-tuning loop for every head (chapter 10's classifier unchanged), the
learning rate chosen on dev, and the command line's outputs and errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from bertrepro.checkpoints import minilm_dir
from bertrepro.config import BertConfig
from bertrepro.finetune import cli as finetune_cli
from bertrepro.finetune.classifier import (FinetuneConfig, choose_learning_rate, classifier_from_encoder, fine_tune,
                                           take_rows, tune_on_dev)
from bertrepro.finetune.analogs import NAME_TAGS
from bertrepro.finetune.analog_runs import TASK_KINDS, analog_budget, forward_all
from bertrepro.finetune.formats import read_squad_json, write_squad_json
from bertrepro.finetune.tasks import Encoded
from bertrepro.heads import head_from_encoder
from bertrepro.model import BertModel

CFG = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
VOCAB_PIECES = 3000  # the first pieces of bert-base-uncased's vocabulary: enough for a tiny test checkpoint


def _inputs(n=12, T=10, k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, T) if k is None else (n, k, T)
    ids = torch.randint(5, CFG.vocab_size, shape, generator=g)
    lengths = torch.randint(4, T + 1, shape[:-1], generator=g)
    mask = (torch.arange(T) < lengths[..., None]).long()
    return {"input_ids": ids * mask, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask}


def _data(kind, n=12, T=10, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    if kind == "choice":
        x = _inputs(n, T, k=4, seed=seed)
        return {**x, "labels": torch.randint(0, 4, (n,), generator=g)}
    x = _inputs(n, T, seed=seed)
    if kind == "span":
        s = torch.randint(1, 4, (n,), generator=g)
        return {**x, "start_positions": s, "end_positions": s + 1}
    if kind == "tag":
        labels = torch.randint(0, 3, (n, T), generator=g).masked_fill(x["attention_mask"] == 0, -100)
        return {**x, "labels": labels}
    return {**x, "labels": torch.randint(0, 2, (n,), generator=g)}


def test_the_classifier_path_is_the_mapping_path():
    enc = BertModel(CFG)
    x = _data("pair")
    data = Encoded(x["input_ids"], x["token_type_ids"], x["attention_mask"])
    cfg = FinetuneConfig(learning_rate=1e-3, batch_size=4, epochs=2, dropout=0.1)
    a = fine_tune(classifier_from_encoder(enc, 2, seed=0, dropout=0.1), data, x["labels"], cfg, seed=3, progress=False)
    b = fine_tune(classifier_from_encoder(enc, 2, seed=0, dropout=0.1), x, None, cfg, seed=3, progress=False)
    assert a.losses == b.losses and a.steps == b.steps == 6
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kind", ["pair", "span", "tag", "choice"])
def test_one_loop_trains_every_head_deterministically(kind):
    enc = BertModel(CFG)
    data = _data(kind, n=8)
    cfg = FinetuneConfig(learning_rate=3e-3, batch_size=8, epochs=40, warmup_proportion=0.0)
    runs = [fine_tune(head_from_encoder(kind, enc, num_labels=3 if kind == "tag" else 2, seed=0), data, None, cfg,
                      seed=1, progress=False) for _ in range(2)]
    assert runs[0].losses == runs[1].losses  # seeded: deterministic on the CPU
    first, last = runs[0].losses[0], runs[0].losses[-1]
    assert last < 0.5 * first, (kind, first, last)  # it fits 8 examples: the head and the encoder learn
    # the trained head's loss on all rows, computed outside the loop, is the low loss the loop ended with
    with torch.no_grad():
        full = runs[0].model(**data).loss
    assert abs(float(full) - last) < 0.1 * first


def test_take_rows_trims_the_token_axis_of_every_token_tensor():
    x = _data("choice", n=6, T=10)
    idx = torch.tensor([0, 2])
    rows = take_rows(x, idx)
    T = int(x["attention_mask"][idx].sum(-1).max())
    assert rows["input_ids"].shape == (2, 4, T) and rows["labels"].shape == (2,)
    assert torch.equal(rows["input_ids"], x["input_ids"][idx][..., :T])
    tag = _data("tag", n=6, T=10)
    r = take_rows(tag, idx)
    assert r["labels"].shape == r["input_ids"].shape


def test_forward_all_restores_the_order_and_pads_the_token_axis():
    model = head_from_encoder("span", BertModel(CFG), seed=0).eval()
    x = _inputs(7, 10)
    x["attention_mask"][:, 8:] = 0  # no row is longer than 8 tokens
    out = forward_all(model, x, ("start_logits",), token_axis=True, batch_size=3)["start_logits"]
    with torch.no_grad():
        ref = model(**x).start_logits
    real = x["attention_mask"].bool()
    torch.testing.assert_close(out[real], ref[real], atol=1e-5, rtol=1e-5)
    assert out.shape == ref.shape and (out[:, 8:] == -1e4).all()  # beyond every batch's longest row: the fill


def test_learning_rate_is_chosen_on_dev_first_on_ties():
    enc = BertModel(CFG)
    data = _data("pair", n=8)
    cfg = FinetuneConfig(batch_size=4, epochs=1)
    built = []

    def build():
        built.append(head_from_encoder("pair", enc, seed=0))
        return built[-1]

    dev = {1e-3: 0.5, 2e-3: 0.9, 3e-3: 0.9}
    seen = []

    def score(model):
        lr = [1e-3, 2e-3, 3e-3][len(seen)]
        seen.append(model)
        return dev[lr]

    lr, scores, best = choose_learning_rate(build, data, score, [1e-3, 2e-3, 3e-3], cfg)
    assert lr == 2e-3 and scores == dev and best.model is built[1] and len({id(m) for m in built}) == 3
    assert best.learning_rates[0] > 0 and max(best.learning_rates) <= 2e-3


def test_tune_on_dev_is_choose_learning_rate_with_the_classifier():
    enc = BertModel(CFG)
    x = _data("pair", n=8)
    e = Encoded(x["input_ids"], x["token_type_ids"], x["attention_mask"])
    cfg = FinetuneConfig(batch_size=4, epochs=1)
    lr, scores, best = tune_on_dev(enc, 2, (e, x["labels"]), (e, x["labels"]), [1e-3, 1e-2], cfg)
    again = fine_tune(classifier_from_encoder(enc, 2, seed=0, dropout=cfg.dropout), e, x["labels"],
                      cfg.replace(learning_rate=lr), progress=False)
    assert again.losses == best.losses and set(scores) == {1e-3, 1e-2}


def test_budgets_cover_every_task_and_the_gpu_profile_uses_the_paper_recipes():
    for task in TASK_KINDS:
        for profile in ("smoke", "cpu", "gpu"):
            analog_budget(profile, task)
    s11, s20, swag = (analog_budget("gpu", t) for t in ("squad11", "squad20", "swag"))
    assert (s11.max_seq_length, s11.doc_stride, s11.epochs, s11.batch_size) == (384, 128, 3, 32)
    assert s11.learning_rates["pretrained"] == (5e-5,)
    assert (s20.epochs, s20.batch_size, s20.learning_rates["pretrained"]) == (2, 48, (5e-5,))
    assert (swag.epochs, swag.batch_size, swag.learning_rates["pretrained"]) == (3, 16, (2e-5,))
    with pytest.raises(ValueError, match="unknown task 'squad'"):
        analog_budget("cpu", "squad")


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A small BERT checkpoint directory (config.json, model.safetensors, vocab.txt), as chapter 09 writes."""
    path = tmp_path_factory.mktemp("tiny")
    vocab = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()[:VOCAB_PIECES]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = transformers.BertConfig(vocab_size=VOCAB_PIECES, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(str(path))
    return path


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _cli(tmp, ckpt, task, *extra):
    return finetune_cli.main(["--task", task, "--arm", "pretrained", "--profile", "smoke", "--pretrained-dir",
                              str(ckpt), "--output-dir", str(tmp), "--no-progress", *extra])


HF_CLASSES = {"pair": "BertForSequenceClassification", "span": "BertForQuestionAnswering",
              "tag": "BertForTokenClassification", "choice": "BertForMultipleChoice"}


@pytest.mark.parametrize("task", list(TASK_KINDS))
def test_cli_writes_a_transformers_model_dev_file_predictions_and_metrics(task, tmp_path, tiny_checkpoint, capsys):
    assert _cli(tmp_path, tiny_checkpoint, task) == 0, capsys.readouterr().err
    kind = TASK_KINDS[task]
    model = getattr(transformers, HF_CLASSES[kind]).from_pretrained(str(tmp_path / "model"))
    tok = transformers.BertTokenizerFast.from_pretrained(str(tmp_path / "model"))
    assert len(tok) == model.config.vocab_size == VOCAB_PIECES
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    preds = json.loads((tmp_path / "predictions.json").read_text())
    budget = analog_budget("smoke", task)
    assert metrics["task"] == task and metrics["learning_rate"] in budget.learning_rates["pretrained"]
    assert len(preds) == metrics["dev"]["n"]
    if kind == "span":
        dev = read_squad_json(tmp_path / "dev.json")
        assert [it.id for it in dev] == list(preds) and all(isinstance(v, str) for v in preds.values())
        assert all(v == "" or v in it.context for it, v in zip(dev, preds.values()))
        assert set(metrics["test"]) >= {"em", "f1", "em_se", "f1_se"}
    elif kind == "tag":
        assert (tmp_path / "dev.conll").is_file()
        assert model.config.id2label == dict(enumerate(NAME_TAGS))
        assert all(set(v) <= set(NAME_TAGS) for v in preds.values())
    else:
        assert (tmp_path / "dev.json").is_file() and "accuracy_se" in metrics["test"]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, tiny_checkpoint, capsys):
    assert finetune_cli.main(["--task", "squad", "--profile", "smoke", "--output-dir", str(tmp_path)]) == 2
    _one_line(capsys, "unknown task 'squad'", "squad11")
    # a checkpoint whose vocabulary does not match
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bad / name).write_bytes((tiny_checkpoint / name).read_bytes())
    (bad / "vocab.txt").write_text("\n".join((tiny_checkpoint / "vocab.txt").read_text().splitlines()[:2000]) + "\n")
    assert _cli(tmp_path / "o1", bad, "qnli") == 2
    _one_line(capsys, "vocabulary mismatch", "2000 pieces", "3000")
    # a question longer than the window
    assert _cli(tmp_path / "o2", tiny_checkpoint, "squad11", "--max-seq-length", "8") == 2
    _one_line(capsys, "the question has", "more than the window")
    # a dev.json answer that is not in its context
    assert _cli(tmp_path / "o3", tiny_checkpoint, "squad11") == 0
    capsys.readouterr()
    doc = json.loads((tmp_path / "o3" / "dev.json").read_text())
    qa = doc["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["text"] = "an answer that is nowhere"
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps(doc))
    assert _cli(tmp_path / "o4", tiny_checkpoint, "squad11", "--dev-file", str(dev)) == 2
    _one_line(capsys, "an answer that is nowhere")
    assert not (tmp_path / "o4").exists()
    # the written dev file is read back unchanged
    items = read_squad_json(tmp_path / "o3" / "dev.json")
    write_squad_json(items, tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads((tmp_path / "o3" / "dev.json").read_text())


def test_the_v2_threshold_sits_between_dev_margins_with_the_same_f1():
    from bertrepro.finetune.analog_runs import _midpoint
    from bertrepro.spans import choose_threshold

    g = torch.Generator().manual_seed(0)
    span, null = torch.randn(40, generator=g), torch.randn(40, generator=g)
    span_f1, null_f1 = (torch.rand(40, generator=g) > 0.5).double(), (torch.rand(40, generator=g) > 0.5).double()
    tau, f1 = choose_threshold(span, null, span_f1, null_f1)
    d = (span - null).double()
    mid = _midpoint(tau, d)
    assert not (d == mid).any() and mid > tau
    assert float(torch.where(d > mid, span_f1, null_f1).mean()) == pytest.approx(f1)
    assert _midpoint(float(d.max()), d) == float(d.max()) + 1.0
