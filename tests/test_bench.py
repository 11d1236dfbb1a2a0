"""The benchmark harness: FLOP counts against torch's own counter and a hand count, result structure, CLI."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bertrepro import bench
from bertrepro.checkpoints import to_hf
from bertrepro.config import BertConfig
from bertrepro.masking import num_to_predict
from bertrepro.model import BertForPreTraining, BertModel
from bertrepro.train.flops import forward_flops, mlm_head_flops, train_step_flops

TINY = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=48, max_position_embeddings=64)


def test_forward_flops_hand_count():
    # B=2, T=8, H=32, F=48, L=2, written out term by term.
    B, T, H, F, L = 2, 8, 32, 48, 2
    qkvo = 4 * (2 * B * T * H * H)  # 4 projections, 2 FLOPs per multiply-add
    ffn = 2 * B * T * H * F + 2 * B * T * F * H
    scores = 2 * B * T * T * H  # Q K^T over all heads
    context = 2 * B * T * T * H  # A V
    pooler = 2 * B * H * H
    assert forward_flops(TINY, B, T) == L * (qkvo + ffn + scores + context) + pooler
    assert forward_flops(TINY, B, T, pooler=False) == L * (qkvo + ffn + scores + context)


@pytest.mark.parametrize("batch,seq", [(2, 8), (3, 17)])
def test_forward_flops_matches_torch_flop_counter(batch, seq):
    """torch's FlopCounterMode on transformers' BertModel (eager attention: plain matmuls it can count)."""
    ours = BertModel(TINY).eval()
    hf = to_hf(ours, attn_implementation="eager")
    ids = torch.randint(1, TINY.vocab_size, (batch, seq))
    for model, kwargs in ((hf, {"input_ids": ids}), (ours, {"input_ids": ids, "output_attentions": True})):
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(**kwargs)
        assert counter.get_total_flops() == forward_flops(TINY, batch, seq), type(model)


def test_forward_flops_rejects_bad_sizes():
    with pytest.raises(ValueError, match="seq=600 exceeds max_position_embeddings=512"):
        forward_flops(BertConfig.base(), 1, 600)
    with pytest.raises(ValueError, match="batch must be a positive int, got 0"):
        forward_flops(TINY, 0, 8)


def test_bench_functions_return_the_common_structure():
    for fn in bench.BENCHMARKS:
        r = fn(TINY, 2, 8, repeats=3, warmup=1, device="cpu", peak_gflops=100.0)
        assert r["name"] == fn.__name__.removeprefix("bench_")
        for key in ("ours", "theirs", "ratio"):
            assert isinstance(r[key], float) and r[key] > 0, (key, r[key])
        assert r["ratio"] == pytest.approx(r["ours"] / r["theirs"])


def test_model_forward_details():
    r = bench.bench_model_forward(TINY, 2, 8, repeats=3, warmup=0, peak_gflops=100.0)
    assert [len(v) for v in r["times_s"].values()] == [3, 3]
    assert r["max_abs_diff"] < 1e-5, "the two models must compute the same function before being timed"
    assert r["flops"] == forward_flops(TINY, 2, 8)
    assert r["ours_tokens_per_s"] == pytest.approx(2 * 8 / (r["ours"] / 1e3))
    assert r["ours_gflops"] == pytest.approx(r["flops"] / (r["ours"] / 1e3) / 1e9)
    assert r["ours_mfu"] == pytest.approx(r["ours_gflops"] / 100.0)
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        bench.bench_model_forward(TINY, 2, 8, repeats=0)


def test_train_step_flops_match_torch_flop_counter():
    """One forward + backward, counted by torch: ours gathers the MLM rows, transformers projects all B*T."""
    B, T = 3, 16
    ours = BertForPreTraining(TINY).train()
    hf = to_hf(ours, attn_implementation="eager").train()
    ids = torch.randint(5, TINY.vocab_size, (B, T))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    labels[0, 5] = ids[0, 5]  # 4 chosen rows
    nsp = torch.tensor([0, 1, 0])
    runs = (
        (lambda: ours(ids, labels=labels, next_sentence_label=nsp, output_attentions=True).loss, 4),
        (lambda: hf(input_ids=ids, labels=labels, next_sentence_label=nsp).loss, B * T),
    )
    for loss_fn, rows in runs:
        counter = FlopCounterMode(display=False)
        with counter:
            loss_fn().backward()
        assert counter.get_total_flops() == train_step_flops(TINY, B, T, rows), rows
    H, V = TINY.hidden_size, TINY.vocab_size
    assert mlm_head_flops(TINY, 4) == 4 * (2 * H * H + 2 * H * V)


def test_masking_details():
    r = bench.bench_masking(TINY, 64, 32, repeats=3, warmup=0)
    assert [len(v) for v in r["times_s"].values()] == [3, 3]
    assert r["speedup"] == pytest.approx(1 / r["ratio"])
    assert r["ours_tokens_per_s"] == pytest.approx(64 * 32 / (r["ours"] / 1e3))
    # Ours picks exactly round(0.15 n) per row (n counts [CLS]/[SEP]); half the rows have 32 tokens, half 24.
    n = torch.tensor([32] * 32 + [24] * 32)
    expected = int(num_to_predict(n).sum()) / int((n - 2).sum())
    assert r["ours_chosen_fraction"] == pytest.approx(expected)
    # The collator's Bernoulli(0.15) over 1,728 candidates: within 5 sigma of 0.15.
    assert abs(r["theirs_chosen_fraction"] - 0.15) < 5 * (0.15 * 0.85 / int((n - 2).sum())) ** 0.5
    assert r["threads"] == 1 and torch.get_num_threads() >= 1


def test_train_step_details():
    r = bench.bench_train_step(TINY, 4, 16, repeats=2, warmup=0, peak_gflops=100.0)
    assert r["loss_abs_diff"] < 1e-5, "both models must compute the same loss before being timed"
    assert 4 <= r["mlm_rows"] <= 4 * 16
    assert r["ours_flops"] == train_step_flops(TINY, 4, 16, r["mlm_rows"])
    assert r["theirs_flops"] == train_step_flops(TINY, 4, 16, 4 * 16)
    assert r["ours_flops"] < r["theirs_flops"]
    assert r["ours_mfu"] == pytest.approx(r["ours_gflops"] / 100.0)


def test_threads_are_restored():
    before = torch.get_num_threads()
    bench.bench_masking(TINY, 4, 8, repeats=1, warmup=0, threads=1)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1 or None, got 0"):
        bench.bench_masking(TINY, 4, 8, repeats=1, warmup=0, threads=0)


def test_matmul_peak_is_positive():
    assert bench.matmul_peak_gflops(n=128, repeats=2) > 0


def test_main_runs_and_prints_a_table(capsys):
    out = bench.main(["--only", "model_forward", "--config", "tiny", "--batch", "2", "--seq", "16",
                      "--repeats", "2", "--warmup", "0", "--peak-gflops", "50"])
    text = capsys.readouterr().out
    assert "model_forward" in text and "ours/theirs" in text
    assert [r["name"] for r in out["results"]] == ["model_forward"]
    assert out["environment"]["matmul_peak_gflops"] == 50 and not out["environment"]["peak_measured"]


def test_main_runs_the_new_benchmarks(capsys):
    out = bench.main(["--only", "masking", "--only", "train_step", "--config", "tiny", "--batch", "2", "--seq", "16",
                      "--repeats", "1", "--warmup", "0", "--peak-gflops", "50"])
    text = capsys.readouterr().out
    assert [r["name"] for r in out["results"]] == ["masking", "train_step"]
    assert "GFLOP per step" in text and "as fast" in text


@pytest.mark.parametrize("argv,message", [
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),
    (["--only", "nope"], "invalid choice: 'nope'"),
    (["--seq", "1000"], "--seq 1000 exceeds max_position_embeddings=512"),
])
def test_main_rejects_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err
