"""Pre-training: recipe, schedule, batch splitting, checkpoints, resume and a learning check.

Full-pipeline tests train a tiny model on a small synthetic corpus built here (no download, seconds).
"""
from __future__ import annotations

import json
import math
import random

import pytest
import torch

from bertrepro import BertConfig, BertForPreTraining
from bertrepro import pretrain as pt
from bertrepro.cache import commit
from bertrepro.checkpoints import CheckpointError
from bertrepro.model import IGNORE_INDEX
from bertrepro.train.distributed import derive_seed, init_distributed, split_batch
from bertrepro.train.flops import estimate_mfu, train_step_flops
from bertrepro.train.optim import decay_parameter_names, learning_rate_at, param_groups


def tiny_model(**kw) -> BertForPreTraining:
    return BertForPreTraining(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, **kw))


# ----------------------------------------------------------------------------- recipe

def test_decay_groups_partition_all_parameters():
    model = tiny_model()
    decay, no_decay = decay_parameter_names(model)
    names = {n for n, _ in model.named_parameters()}
    assert set(decay).isdisjoint(no_decay)
    assert set(decay) | set(no_decay) == names
    # the dim>=2 rule selects what the original's name filter ("LayerNorm", "bias") excludes
    for n in no_decay:
        assert "LayerNorm" in n or n.endswith("bias"), n
    for n in decay:
        assert "LayerNorm" not in n and not n.endswith("bias"), n
    assert "bert.embeddings.word_embeddings.weight" in decay  # shared with the MLM decoder, listed once
    groups = param_groups(model, 0.01)
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_optimizer_hyperparameters():
    model = tiny_model()
    opt = pt.build_optimizer(model, pt.PretrainConfig.for_profile("smoke"), torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW)
    for g in opt.param_groups:
        assert g["betas"] == (0.9, 0.999) and g["eps"] == 1e-6


@pytest.mark.parametrize("warmup,total", [(10, 100), (0, 50), (3, 7)])
def test_schedule_matches_hand_formula(warmup, total):
    base = 2e-3
    cfg = pt.PretrainConfig.for_profile("smoke", learning_rate=base, warmup_steps=warmup, total_steps=total)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=base)
    sched = pt.build_scheduler(opt, cfg)
    seen = []
    for s in range(total + 3):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for s, lr in enumerate(seen):
        hand = base * s / warmup if s < warmup else base * max(0.0, 1 - s / total)  # optimization.py
        assert lr == pytest.approx(hand, rel=1e-12, abs=1e-15), s
        assert lr == pytest.approx(learning_rate_at(s, base, warmup, total), abs=1e-15)
    if warmup:
        assert seen[0] == 0.0 and seen[warmup // 2] == pytest.approx(base * (warmup // 2) / warmup)
        assert max(seen) <= base
    assert seen[total] == 0.0 and seen[total + 2] == 0.0


def test_max_steps_does_not_change_schedule():
    a = pt.PretrainConfig.for_profile("smoke")
    b = pt.PretrainConfig.for_profile("smoke", max_steps=5)
    lrs = []
    for cfg in (a, b):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.learning_rate)
        sched = pt.build_scheduler(opt, cfg)
        out = []
        for _ in range(5):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        lrs.append(out)
    assert lrs[0] == lrs[1]
    assert b.stop_step == 5 and a.stop_step == a.total_steps


# ----------------------------------------------------------------------------- config and CLI

def test_unknown_profile_is_an_error():
    with pytest.raises(ValueError, match="unknown profile 'huge'.*smoke, cpu, gpu"):
        pt.PretrainConfig.for_profile("huge")
    with pytest.raises(SystemExit):
        pt.build_parser().parse_args(["--profile", "huge", "--output-dir", "x"])


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match="unknown objective 'nsp'"):
        pt.PretrainConfig.for_profile("smoke", objective="nsp")
    with pytest.raises(ValueError, match="max_steps \\(30\\) is past the end"):
        pt.PretrainConfig.for_profile("smoke", max_steps=30)
    with pytest.raises(ValueError, match="unknown PretrainConfig field"):
        pt.PretrainConfig.for_profile("smoke", hiden_size=3)


def test_cli_overrides_profile_fields():
    args = pt.build_parser().parse_args(["--profile", "cpu", "--output-dir", "x", "--max-steps", "7", "--seed", "3",
                                         "--dropout", "0.1", "--objective", "ltr", "--compile", "--corpus", "c"])
    cfg = pt.config_from_args(args)
    assert (cfg.max_steps, cfg.seed, cfg.dropout, cfg.objective, cfg.compile, cfg.corpus) == (7, 3, 0.1, "ltr", True, "c")
    assert cfg.hidden_size == pt.PretrainConfig.for_profile("cpu").hidden_size  # untouched fields keep the preset
    assert cfg.bert_config(100).hidden_dropout_prob == 0.1


def test_gpu_profile_keeps_the_paper_recipe():
    cfg = pt.PretrainConfig.for_profile("gpu")
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (12, 768, 12)
    assert (cfg.learning_rate, cfg.batch_size, cfg.max_seq_length, cfg.dropout) == (1e-4, 256, 128, 0.1)
    assert (cfg.weight_decay, cfg.adam_epsilon, cfg.max_grad_norm) == (0.01, 1e-6, 1.0)


# ----------------------------------------------------------------------------- batch splitting

@pytest.mark.parametrize("global_bs,world,cap,micro,accum", [
    (32, 1, None, 32, 1), (32, 2, None, 16, 1), (256, 8, None, 32, 1), (256, 2, 64, 64, 2),
    (256, 1, 100, 64, 4), (24, 2, 5, 4, 3), (7, 7, None, 1, 1), (12, 1, 1, 1, 12)])
def test_split_batch(global_bs, world, cap, micro, accum):
    s = split_batch(global_bs, world, cap)
    assert (s.micro_batch_size, s.accumulation_steps) == (micro, accum)
    assert s.micro_batch_size * s.world_size * s.accumulation_steps == global_bs
    rows = sorted(i for r in range(world) for a in range(accum) for i in range(global_bs)[s.rows(r, a)])
    assert rows == list(range(global_bs))  # the ranks' micro-batches tile the global batch exactly once


@pytest.mark.parametrize("global_bs,world", [(32, 3), (10, 4), (5, 2)])
def test_split_batch_world_not_dividing_is_a_clear_error(global_bs, world):
    with pytest.raises(ValueError, match=f"global batch size {global_bs} cannot be split over world size {world}"):
        split_batch(global_bs, world)
    with pytest.raises(ValueError, match="--batch-size"):
        split_batch(global_bs, world, 1)  # no accumulation fixes it


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_split_batch_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="must be a positive int"):
        split_batch(bad, 1)


# ----------------------------------------------------------------------------- distributed set-up

def test_no_torchrun_env_means_single_process(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.enabled) == (0, 1, False)


def test_distributed_env_errors(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="RANK and WORLD_SIZE must be set together"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK=2 must be in \[0, WORLD_SIZE=2\)"):
        init_distributed("cpu")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x' must be an integer"):
        init_distributed("cpu")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT not set"):
        init_distributed("cpu")


# ----------------------------------------------------------------------------- labels

def test_ltr_labels_are_the_next_real_token():
    ids = torch.tensor([[2, 5, 6, 3, 0, 0], [2, 7, 8, 9, 10, 3]])
    mask = (ids != 0).long()
    labels = pt.ltr_labels(ids, mask)
    I = IGNORE_INDEX
    assert labels.tolist() == [[5, 6, 3, I, I, I], [7, 8, 9, 10, 3, I]]


# ----------------------------------------------------------------------------- the full pipeline, tiny

def synthetic_corpus(n_train: int = 60, n_valid: int = 16, seed: int = 0) -> dict[str, list[list[str]]]:
    """Documents of 8 templated sentences about one animal: the food after "likes" is fixed by the
    animal, so a masked LM can learn it; a random next sentence usually names another animal."""
    rng = random.Random(seed)
    animals = ["cat", "dog", "fox", "owl", "bee", "cow", "eel", "ant"]
    food = dict(zip(animals, ["fish", "bones", "hens", "mice", "honey", "grass", "worms", "sugar"]))
    colours = ["red", "blue", "green", "brown", "black", "white"]
    numbers = ["one", "two", "three", "four", "five", "six", "seven", "eight"]

    def document() -> list[str]:
        a = rng.choice(animals)
        return [f"the {a} number {numbers[i]} likes {food[a]} and {colours[(i + len(a)) % 6]} things ."
                for i in range(8)]

    return {"train": [document() for _ in range(n_train)], "validation": [document() for _ in range(n_valid)]}


CORPUS = synthetic_corpus()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("vocab-cache")


def tiny(**overrides) -> pt.PretrainConfig:
    kw = dict(vocab_size=120, max_seq_length=32, batch_size=8, total_steps=40, warmup_steps=4, log_every=4,
              checkpoint_every=100, dropout=0.1, eval_batch_size=64, num_threads=1)
    kw.update(overrides)
    return pt.PretrainConfig.for_profile("smoke", **kw)


def train(out, cache, resume=False, corpus=CORPUS, **overrides) -> pt.PretrainResult:
    return pt.pretrain(tiny(**overrides), out, corpus=corpus, cache_dir=cache, resume=resume, progress=False)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """An uninterrupted 12-step run with dropout on."""
    return train(tmp_path_factory.mktemp("reference"), cache, max_steps=12)


def test_resume_is_bit_identical(tmp_path, cache, reference):
    half = train(tmp_path, cache, max_steps=6)
    assert half.step == 6 and half.checkpoint.name == "step-00000006"
    resumed = train(tmp_path, cache, resume=True, max_steps=12)
    assert resumed.step == 12 and resumed.steps_run == 6
    assert_same_weights(resumed.model, reference.model)
    # optimizer moments and the schedule's position too
    ref_state = pt.load_checkpoint(reference.output_dir)
    new_state = pt.load_checkpoint(tmp_path)
    for pid, entries in ref_state.optimizer["state"].items():
        for name, v in entries.items():
            assert torch.equal(v, new_state.optimizer["state"][pid][name]), (pid, name)
    assert ref_state.scheduler["last_epoch"] == new_state.scheduler["last_epoch"] == 12
    assert torch.equal(ref_state.masking_rng, new_state.masking_rng)
    assert ref_state.data == new_state.data
    # metrics.jsonl holds each step once, even though the first segment also logged its stop step
    steps = [m["step"] for m in resumed.metrics]
    assert steps == sorted(set(steps)) and steps[-1] == 12
    ref_losses = {m["step"]: m["loss"] for m in reference.metrics}
    assert {m["step"]: m["loss"] for m in resumed.metrics}[12] == ref_losses[12]


def _perturb(state: pt.TrainState, what: str) -> None:
    if what == "weights":
        with torch.no_grad():
            state.model.bert.encoder.layer[0].attention.self.query.weight.add_(1e-3)
    elif what == "optimizer":
        state.optimizer["state"] = {}  # as if resumed without the moments
    elif what == "masking_rng":
        state.masking_rng = torch.Generator().manual_seed(1).get_state()
    elif what == "dropout_rng":
        state.rank_rng[0]["torch"] = torch.Generator().manual_seed(1).get_state()
    elif what == "data_position":
        state.data["index"] = (state.data["index"] + 8) % state.data["examples_in_epoch"]


@pytest.mark.parametrize("what", ["weights", "optimizer", "masking_rng", "dropout_rng", "data_position"])
def test_resume_really_uses_the_checkpoint(tmp_path, cache, reference, what):
    train(tmp_path, cache, max_steps=6)
    state = pt.load_checkpoint(tmp_path)
    _perturb(state, what)
    pt.save_checkpoint(tmp_path, state)  # a valid checkpoint, with one part changed
    resumed = train(tmp_path, cache, resume=True, max_steps=12)
    assert max_difference(resumed.model, reference.model) > 0, what


def test_checkpoint_write_is_atomic(tmp_path, cache, monkeypatch):
    train(tmp_path, cache, max_steps=4)
    before = pt.load_checkpoint(tmp_path)
    files_before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    calls = []

    def crash(path, tensors):
        calls.append(path.name)
        if len(calls) == 2:  # model and optimizer written, then the process dies
            raise OSError("simulated crash while writing rng.safetensors")
        real_write(path, tensors)

    real_write = pt.state._write_tensors
    monkeypatch.setattr(pt.state, "_write_tensors", crash)
    before.step = 5
    with pytest.raises(OSError, match="simulated crash"):
        pt.save_checkpoint(tmp_path, before)
    assert calls == ["optimizer.safetensors", "rng.safetensors"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == files_before  # no half directory
    assert pt.latest_checkpoint(tmp_path).name == "step-00000004"
    monkeypatch.setattr(pt.state, "_write_tensors", real_write)
    after = pt.load_checkpoint(tmp_path)
    assert after.step == 4
    resumed = train(tmp_path, cache, resume=True, max_steps=6)  # and it still resumes
    assert resumed.step == 6


def test_missing_checkpoint_is_a_clear_error(tmp_path, cache):
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        train(tmp_path, cache, resume=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        pt.load_checkpoint(tmp_path / "checkpoints" / "step-00000001")


@pytest.mark.parametrize("damage", ["flip_weights", "truncate_optimizer", "bad_json", "missing_file", "dangling"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, cache, damage):
    train(tmp_path, cache, max_steps=2)
    ckpt = pt.latest_checkpoint(tmp_path)
    if damage == "flip_weights":
        data = bytearray((ckpt / "model.safetensors").read_bytes())
        data[-5] ^= 0xFF
        (ckpt / "model.safetensors").write_bytes(bytes(data))
        match = "model.safetensors does not match its SHA-256"
    elif damage == "truncate_optimizer":
        f = ckpt / "optimizer.safetensors"
        f.write_bytes(f.read_bytes()[:100])
        match = "optimizer.safetensors does not match its SHA-256"
    elif damage == "bad_json":
        (ckpt / "trainer_state.json").write_text('{"step": 2, ')
        match = "not a valid trainer state"
    elif damage == "missing_file":
        (ckpt / "rng.safetensors").unlink()
        match = "rng.safetensors is missing"
    else:
        (tmp_path / "checkpoints" / "latest").write_text("step-00000099")
        match = "does not exist"
    with pytest.raises(CheckpointError, match=match):
        train(tmp_path, cache, resume=True)


def test_resume_forces_the_architecture(tmp_path, cache):
    train(tmp_path, cache, max_steps=2)
    with pytest.raises(ValueError, match="resume forces the checkpoint's architecture.*hidden_size: checkpoint 32 vs requested 64"):
        train(tmp_path, cache, resume=True, hidden_size=64)
    with pytest.raises(ValueError, match="changes its settings: learning_rate"):
        train(tmp_path, cache, resume=True, learning_rate=5e-3)
    # every checkpoint carries the architecture, in the Hugging Face config.json beside the weights
    ckpt = pt.latest_checkpoint(tmp_path)
    assert ckpt.name == "step-00000002"
    assert json.loads((ckpt / "config.json").read_text())["hidden_size"] == 32
    assert pt.load_checkpoint(tmp_path).model.config.hidden_size == 32


def test_fresh_run_into_a_checkpointed_directory_is_an_error(tmp_path, cache):
    train(tmp_path, cache, max_steps=2)
    with pytest.raises(ValueError, match="already holds a previous run.*checkpoints/.*--resume"):
        train(tmp_path, cache)


def test_metrics_jsonl(tmp_path, cache):
    result = train(tmp_path, cache, max_steps=10)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == result.metrics
    assert [m["step"] for m in lines] == [4, 8, 10]  # every log_every steps, and where the run stops
    cfg = result.config
    for m in lines:
        for key in ("step", "lr", "loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "tokens_per_s",
                    "world_size", "global_batch_size"):
            assert key in m, key
        assert (m["world_size"], m["global_batch_size"]) == (1, 8)
        assert m["lr"] == pytest.approx(learning_rate_at(m["step"] - 1, cfg.learning_rate, cfg.warmup_steps,
                                                            cfg.total_steps))
        assert m["loss"] == pytest.approx(m["mlm_loss"] + m["nsp_loss"])
        assert m["tokens_per_s"] > 0 and 0 <= m["mlm_accuracy"] <= 1 and 0 <= m["nsp_accuracy"] <= 1
    saved = json.loads((tmp_path / "config.json").read_text())
    assert pt.PretrainConfig.from_dict(saved) == cfg
    evals = [json.loads(x) for x in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert evals[-1]["step"] == 10 and evals[-1] == {**result.evaluation}
    assert (tmp_path / "vocab.txt").read_text() == result.vocab_path.read_text()
    assert (tmp_path / "model" / "vocab.txt").is_file() and (tmp_path / "model" / "model.safetensors").is_file()


def test_accumulation_gives_the_same_update(tmp_path, cache):
    # micro-batches of 2 accumulated 4 times = one batch of 8 (losses are divided by global counts)
    a = train(tmp_path / "a", cache, max_steps=3, dropout=0.0)
    b = train(tmp_path / "b", cache, max_steps=3, dropout=0.0, micro_batch_size=2)
    assert b.metrics[-1]["accumulation_steps"] == 4
    assert max_difference(a.model, b.model) < 1e-6
    assert max_difference(a.model, b.model) < max_difference(a.model, train(tmp_path / "c", cache, max_steps=2,
                                                                            dropout=0.0).model)


def test_pretraining_learns_the_synthetic_corpus(tmp_path, cache):
    result = train(tmp_path, cache, total_steps=200, warmup_steps=20, learning_rate=3e-3, batch_size=16, dropout=0.0,
                   log_every=20, hidden_size=64, num_attention_heads=2)
    ev = result.evaluation
    first, last = result.metrics[0], result.metrics[-1]
    assert last["mlm_loss"] < 0.75 * first["mlm_loss"]
    # held out: the masked LM clearly beats always guessing the most frequent token, and the unigram model
    assert ev["mlm_accuracy"] > max(0.2, 3 * ev["mft_accuracy"]), ev
    assert ev["mlm_perplexity"] < 0.6 * ev["unigram_perplexity"], ev
    top = pt.fill_mask(result.model, result.tokenizer, "the cat number two likes [MASK] and green things .", top_k=3)
    assert len(top) == 1 and len(top[0]) == 3
    assert [p for _, p in top[0]] == sorted((p for _, p in top[0]), reverse=True)


def test_no_nsp_and_ltr_objectives(tmp_path, cache):
    data = pt.prepare_data(tiny(), CORPUS, cache)
    ex = pt.epoch_examples(data, tiny(objective="mlm"), 0)
    assert (ex.next_sentence_label == 0).all()  # no NSP: B is always the true continuation
    ex_nsp = pt.epoch_examples(data, tiny(), 0)
    frac = ex_nsp.next_sentence_label.float().mean().item()
    assert 0.3 < frac < 0.7  # balanced pairs for mlm_nsp

    init = BertForPreTraining(tiny().bert_config(data.vocab_size, data.pad_token_id))
    for objective in ("mlm", "ltr"):
        r = train(tmp_path / objective, cache, max_steps=4, objective=objective)
        assert all(m["nsp_loss"] is None and m["nsp_accuracy"] is None for m in r.metrics)
        assert "nsp_accuracy" not in r.evaluation
        prefix = "lm" if objective == "ltr" else "mlm"
        assert f"{prefix}_accuracy" in r.evaluation
        # the pooler and NSP classifier get no signal: frozen, unchanged from the seeded initialisation
        torch.manual_seed(derive_seed(0, "init"))
        init = BertForPreTraining(r.model.config)
        for name in ("bert.pooler.dense.weight", "cls.seq_relationship.weight"):
            assert torch.equal(r.model.state_dict()[name], init.state_dict()[name]), name


def test_ltr_model_is_causal(tmp_path, cache):
    r = train(tmp_path, cache, max_steps=3, objective="ltr", dropout=0.0)
    data = r.data
    ex = pt.validation_examples(data, r.config).select(slice(0, 4))
    batch = pt.make_batch(ex, data, r.config, torch.Generator().manual_seed(0))
    assert torch.equal(batch["input_ids"], ex.input_ids)  # nothing masked
    assert torch.equal(batch["labels"], pt.ltr_labels(ex.input_ids, ex.attention_mask))
    changed = ex.input_ids.clone()
    changed[:, 10:] = data.mask_token_id  # change the future
    h1 = r.model.bert(ex.input_ids, ex.token_type_ids, ex.attention_mask, is_causal=True).last_hidden_state
    h2 = r.model.bert(changed, ex.token_type_ids, ex.attention_mask, is_causal=True).last_hidden_state
    torch.testing.assert_close(h1[:, :10], h2[:, :10])


# ----------------------------------------------------------------------------- evaluation

@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache):
    return train(tmp_path_factory.mktemp("trained"), cache, max_steps=20, dropout=0.0)


def test_evaluation_is_deterministic_and_batch_size_free(trained):
    valid = pt.validation_examples(trained.data, trained.config)
    a = pt.evaluate(trained.model, valid, trained.data, trained.config, batch_size=64)
    b = pt.evaluate(trained.model, valid, trained.data, trained.config, batch_size=7)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == (b[k] if isinstance(b[k], str) else pytest.approx(b[k], rel=1e-6)), k
    assert a["mlm_accuracy"] == pytest.approx(trained.evaluation["mlm_accuracy"])


def test_evaluation_baselines_against_hand_computation(trained):
    data, cfg = trained.data, trained.config
    valid = pt.validation_examples(data, cfg)
    ev = pt.evaluate(trained.model, valid, data, cfg)
    batch = pt.make_batch(valid, data, cfg, torch.Generator().manual_seed(pt.EVAL_SEED))
    targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
    counts = torch.zeros(data.vocab_size)
    for doc in data.train_documents:
        for sentence in doc:
            for t in sentence:
                counts[t] += 1
    mft = int(counts.argmax())
    assert ev["mlm_predictions"] == targets.numel()
    assert ev["mft_accuracy"] == pytest.approx((targets == mft).float().mean().item())
    p = (counts + 1) / (counts.sum() + data.vocab_size)
    assert ev["unigram_perplexity"] == pytest.approx(math.exp(-p[targets].log().mean().item()), rel=1e-5)
    # the model's own numbers from its logits
    out = trained.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"])
    ce = torch.nn.functional.cross_entropy(out.prediction_logits, targets)
    assert ev["mlm_perplexity"] == pytest.approx(math.exp(ce.item()), rel=1e-4)
    assert ev["mlm_accuracy"] == pytest.approx((out.prediction_logits.argmax(-1) == targets).float().mean().item())


def test_balanced_nsp_accuracy_of_a_constant_guess_is_one_half(trained):
    model = BertForPreTraining(trained.model.config).eval()
    with torch.no_grad():
        model.cls.seq_relationship.weight.zero_()
        model.cls.seq_relationship.bias.copy_(torch.tensor([5.0, -5.0]))  # always IsNext
    valid = pt.validation_examples(trained.data, trained.config)
    ev = pt.evaluate(model, valid, trained.data, trained.config)
    assert (ev["nsp_accuracy_is_next"], ev["nsp_accuracy_not_next"], ev["nsp_accuracy"]) == (1.0, 0.0, 0.5)
    labels = valid.next_sentence_label
    assert ev["nsp_examples"] == len(valid) and 0 < labels.sum() < len(labels)


def test_fill_mask_errors_and_shape(trained):
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        pt.fill_mask(trained.model, trained.tokenizer, "the cat likes fish .")
    out = pt.fill_mask(trained.model, trained.tokenizer, "the [MASK] number one likes [MASK] .", top_k=4)
    assert len(out) == 2 and all(len(o) == 4 for o in out)
    assert all(0 <= p <= 1 for o in out for _, p in o)


def test_step_flops_match_the_6n_plus_12lht_estimate():
    """train_step_flops per token is 6N + 12LHT plus the gathered head, the pooler and the NSP classifier."""
    cfg = BertConfig.base()
    B, T, P = 256, 128, 256 * 20
    n_encoder = 12 * (4 * 768 * 768 + 2 * 768 * 3072)  # matrices of the 12 layers
    head = 768 * 768 + 768 * 30522
    hand = B * T * (6 * n_encoder + 12 * 12 * 768 * T) + 6 * P * head + 6 * B * (768 * 768 + 768 * 2)
    assert train_step_flops(cfg, B, T, P) == hand


def test_the_loops_mfu_prices_its_counted_predictions(tmp_path, cache):
    """Each metrics line's MFU is train_step_flops at the window's counted predictions, times steps/s."""
    r = train(tmp_path, cache, max_steps=8, peak_tflops=1.0)
    steps = [0] + [m["step"] for m in r.metrics]
    for m, n in zip(r.metrics, [b - a for a, b in zip(steps, steps[1:])]):
        assert 0 < m["predictions"] <= n * r.config.batch_size * r.config.max_predictions_per_seq
        flops = train_step_flops(r.model.config, r.config.batch_size, r.config.max_seq_length, m["predictions"] / n)
        assert m["mfu"] == pytest.approx(estimate_mfu(flops, m["steps_per_s"], 1e12), rel=1e-12)


def test_nsp_length_baseline_against_a_hand_lookup(trained):
    data, cfg = trained.data, trained.config
    train_ex, held = pt.epoch_examples(data, cfg, 0), pt.validation_examples(data, cfg)

    def key(ex, i):
        total = int(ex.attention_mask[i].sum())
        b = int((ex.token_type_ids[i] * ex.attention_mask[i]).sum())
        return total // 4, b // 4

    votes: dict = {}
    for i in range(len(train_ex)):
        votes.setdefault(key(train_ex, i), [0, 0])[int(train_ex.next_sentence_label[i])] += 1
    n_label = [int((train_ex.next_sentence_label == lab).sum()) for lab in (0, 1)]
    hits, totals = [0, 0], [0, 0]
    for i in range(len(held)):
        v = votes.get(key(held, i), [0, 0])
        guess = 1 if v[1] / n_label[1] >= v[0] / n_label[0] else 0  # each label's count over its size
        gold = int(held.next_sentence_label[i])
        totals[gold] += 1
        hits[gold] += guess == gold
    got = pt.nsp_length_baseline(train_ex, held)
    assert got["nsp_length_baseline_is_next"] == pytest.approx(hits[0] / totals[0])
    assert got["nsp_length_baseline_not_next"] == pytest.approx(hits[1] / totals[1])
    assert got["nsp_length_baseline"] == pytest.approx((hits[0] / totals[0] + hits[1] / totals[1]) / 2)
    assert trained.evaluation["nsp_length_baseline"] == pytest.approx(got["nsp_length_baseline"])
    # a length-determined labelling is learned perfectly; the same labels shuffled are not
    perfect = pt.Examples(train_ex.input_ids, train_ex.token_type_ids, train_ex.attention_mask,
                          train_ex.special_tokens_mask, (train_ex.attention_mask.sum(1) >= 24).long())  # a bucket edge
    assert pt.nsp_length_baseline(perfect, perfect)["nsp_length_baseline"] == 1.0


def test_main_runs_the_smoke_profile_on_the_embedded_corpus(tmp_path, cache, capsys):
    out = tmp_path / "run"
    result = pt.cli.run(["--profile", "smoke", "--output-dir", str(out), "--cache-dir", str(cache), "--max-steps",
                         "4", "--seed", "1", "--no-progress", "--num-threads", "1"])
    printed = capsys.readouterr().out
    summary = [line for line in printed.splitlines() if line.startswith("pretrain smoke:")]
    assert len(summary) == 1 and "steps 0 -> 4" in summary[0]  # one line, not the whole configuration
    assert isinstance(result, pt.PretrainResult) and result.step == 4 and result.config.seed == 1
    assert json.loads((out / "config.json").read_text())["max_steps"] == 4
    assert result.evaluation["mlm_predictions"] > 0 and 0 <= result.evaluation["nsp_accuracy"] <= 1
    assert result.checkpoint.name == "step-00000004"


def test_elapsed_time_continues_across_a_resume(tmp_path, cache):
    """elapsed_s (and so the ablation's wall_seconds) is the training time of every segment, not of the last."""
    first = train(tmp_path, cache, max_steps=10)
    before = first.metrics[-1]["elapsed_s"]
    resumed = train(tmp_path, cache, resume=True, max_steps=11)  # one more step
    assert [m["step"] for m in resumed.metrics][-2:] == [10, 11]
    assert resumed.metrics[-2]["elapsed_s"] == before  # the first segment's lines are kept as they were
    assert resumed.metrics[-1]["elapsed_s"] > before


def test_a_lowered_max_steps_loads_the_kept_checkpoint_at_its_stop(tmp_path, cache, monkeypatch):
    """A run trained to step 8, then asked for with max_steps=4, is read at its kept step-4 checkpoint:
    the model a run stopped at 4 makes, bit for bit, and nothing trains. Without a checkpoint at the
    stop step it trains."""
    done = train(tmp_path, cache, max_steps=8, checkpoint_every=4)
    commit(tmp_path, pt.runs.run_inputs(tiny(max_steps=8, checkpoint_every=4)))  # as load_or_train records it
    stamp = (done.model_dir / "model.safetensors").stat().st_mtime_ns
    short = train(tmp_path / "short", cache, max_steps=4, checkpoint_every=4)

    def no_training(*args, **kwargs):
        raise AssertionError("a kept checkpoint must be read, not trained again")

    monkeypatch.setattr(pt.runs, "pretrain", no_training)
    loaded = pt.load_or_train(tiny(max_steps=4, checkpoint_every=4), tmp_path, cache_dir=cache, progress=False,
                              with_data=False)
    assert loaded.step == 4 and loaded.steps_run == 0 and [m["step"] for m in loaded.metrics][-1] == 4
    assert (done.model_dir / "model.safetensors").stat().st_mtime_ns == stamp  # the longer run is kept
    assert_same_weights(loaded.model, short.model)
    assert (loaded.model_dir / "vocab.txt").is_file()  # a model folder the chapters load as they load model/
    with pytest.raises(AssertionError, match="must be read, not trained"):  # no checkpoint at step 6: it trains
        pt.load_or_train(tiny(max_steps=6, checkpoint_every=4), tmp_path, cache_dir=cache, progress=False)


# ----------------------------------------------------------------------------- the second phase (App. A.2)


def test_long_phase_boundary_and_phase_settings():
    c = pt.PretrainConfig.for_profile("cpu")
    assert c.long_phase_start == 5400 and c.phase_steps() == (5400, 600)  # the last 10 % of 6,000 steps
    assert c.phase_at(5399) == 0 and c.phase_at(5400) == 1
    long = c.phase_config(1)
    assert (long.max_seq_length, long.max_predictions_per_seq) == (128, 20)
    assert pt.PretrainConfig.for_profile("cpu", max_steps=3000).phase_steps() == (3000, 0)
    one = pt.PretrainConfig.for_profile("cpu", long_phase_fraction=0.0)
    assert one.long_phase_start == one.total_steps and one.phase_config(0) is one
    with pytest.raises(ValueError, match="long_seq_length .* shorter than max_seq_length"):
        pt.PretrainConfig.for_profile("cpu", long_seq_length=32)
    with pytest.raises(ValueError, match="long_phase_fraction must be in"):
        pt.PretrainConfig.for_profile("cpu", long_phase_fraction=1.5)


def _long(**kw) -> dict:
    return dict(total_steps=20, warmup_steps=2, long_phase_fraction=0.25, long_seq_length=64,
                long_max_predictions_per_seq=10, checkpoint_every=5, keep_checkpoints=5, **kw)


def test_second_phase_trains_longer_sequences_and_the_positions_it_reaches(tmp_path, cache):
    r = train(tmp_path, cache, **_long(dropout=0.0))
    by_step = {m["step"]: m for m in r.metrics}
    assert by_step[12]["seq_length"] == 32 and by_step[12]["phase"] == 0
    assert by_step[20]["seq_length"] == 64 and by_step[20]["phase"] == 1
    assert r.checkpoint is not None and pt.load_checkpoint(r.output_dir).data["phase"] == 1
    # Rows 32..63 of the position table get no gradient in phase 1 (sequences of 32 tokens): AdamW's
    # decoupled decay only scales them. Phase 2 reads them, and moves them off that line.
    torch.manual_seed(derive_seed(0, "init"))
    init = BertForPreTraining(r.model.config).bert.embeddings.position_embeddings.weight[32:64].detach()
    at15 = pt.load_checkpoint(r.output_dir / "checkpoints" / "step-00000015").model
    rows15 = at15.bert.embeddings.position_embeddings.weight[32:64].detach()
    scale = float((rows15 * init).sum() / (init * init).sum())
    assert 0.99 < scale <= 1.0
    torch.testing.assert_close(rows15, scale * init, rtol=0, atol=1e-6)
    rows20 = r.model.bert.embeddings.position_embeddings.weight[32:64].detach()
    assert (rows20 - scale * init).abs().max() > 1e-4  # 100x the tolerance above


def test_resume_across_the_phase_boundary_is_bit_identical(tmp_path, cache):
    whole = train(tmp_path / "whole", cache, **_long())
    for stop in (15, 17):  # at the boundary itself, and inside the second phase
        out = tmp_path / f"stop{stop}"
        train(out, cache, max_steps=stop, **_long())
        resumed = train(out, cache, resume=True, **_long())
        assert resumed.steps_run == 20 - stop
        assert_same_weights(resumed.model, whole.model)
