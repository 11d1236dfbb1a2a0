r"""Benchmarks: bertrepro beside transformers, measured in one run on the same machine and weights.

Each benchmark is a plain function listed in :data:`BENCHMARKS`. It takes the arguments ``config``
(a :class:`~bertrepro.config.BertConfig`), ``batch``, ``seq``, ``repeats``, ``warmup``, ``device``
and ``peak_gflops`` (it may ignore the ones it has no use for) and returns a dict with at least

* ``name``   -- the id ``--only`` selects (``"model_forward"``),
* ``ours`` / ``theirs`` -- median milliseconds of bertrepro and of the reference,
* ``ratio``  -- ``ours / theirs`` (below 1.0: we are faster).

To add one, write ``bench_<name>(...)`` returning such a dict and append it to :data:`BENCHMARKS`.

Method (nanoGPT's ``bench.py`` habits): warm up, synchronise, time; interleave A and B runs (the
order alternating every repeat, so drift in a shared machine's load hits both alike); report the
median, tokens/s, and achieved GFLOP/s against a measured fp32 matmul peak (an MFU-style fraction).

Examples::

    python -m bertrepro.bench                       # every benchmark, BERT-base, batch 8 x 128, CPU
    python -m bertrepro.bench --only model_forward --repeats 20
    python -m bertrepro.bench --config tiny --batch 2 --seq 16 --repeats 3
    python -m bertrepro.bench --device cuda --peak-gflops 60000
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from typing import Any, Callable, Iterator, Sequence

import torch

from .arguments import plain_text
from .checkpoints import to_hf
from .config import BertConfig
from .masking import mask_tokens
from .model import BertForPreTraining, BertModel
from .train.flops import forward_flops, measure_peak_flops, train_step_flops
from .train.optim import build_adamw

__all__ = ["BENCHMARKS", "PRESETS", "matmul_peak_gflops", "bench_model_forward", "bench_masking", "bench_train_step", "format_table", "main"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: str | torch.device = "cpu", n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 ``torch.mm`` throughput of two n x n matrices, in GFLOP/s: the machine's practical peak
    (:func:`bertrepro.train.flops.measure_peak_flops` in fp32)."""
    return measure_peak_flops(device, torch.float32, n, repeats) / 1e9


@contextlib.contextmanager
def _num_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (None: leave it), restoring the old value after."""
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"threads must be >= 1 or None, got {n}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Time each zero-argument callable ``repeats`` times, alternating their order each round (seconds).

    Not ``torch.utils.benchmark.Timer``: a Timer measures one statement's runs back to back, so a
    change in a shared machine's load between the two measurements would fall on one side only;
    alternating A and B every round makes drift hit both alike, and keeps every single time for the
    median and the spread.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            _sync(device)
            t0 = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times



def _timing_result(name: str, what: str, times: dict[str, list[float]], tokens: int, repeats: int,
                   **extra: Any) -> dict[str, Any]:
    """The common fields of a benchmark's result: medians in ms, their ratio and the tokens/s of each side."""
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"name": name, "what": what, "unit": "ms", "ours": med["ours"] * 1e3, "theirs": med["theirs"] * 1e3,
            "ratio": med["ours"] / med["theirs"], "speedup": med["theirs"] / med["ours"],
            "ours_tokens_per_s": tokens / med["ours"], "theirs_tokens_per_s": tokens / med["theirs"], **extra,
            "repeats": repeats, "times_s": times}


def _add_throughput(res: dict[str, Any], flops: dict[str, int], peak_gflops: float | None) -> dict[str, Any]:
    """Achieved GFLOP/s of each side and, given the machine's peak, the MFU-style fraction."""
    for side in ("ours", "theirs"):
        res[f"{side}_gflops"] = flops[side] / (res[side] / 1e3) / 1e9
    if peak_gflops:
        res["peak_gflops"] = peak_gflops
        res["ours_mfu"] = res["ours_gflops"] / peak_gflops
        res["theirs_mfu"] = res["theirs_gflops"] / peak_gflops
    return res


def bench_model_forward(
    config: BertConfig | None = None,
    batch: int = 8,
    seq: int = 128,
    *,
    repeats: int = 10,
    warmup: int = 2,
    device: str | torch.device = "cpu",
    peak_gflops: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """``bertrepro.BertModel`` vs transformers' ``BertModel`` (SDPA attention): one forward, same weights.

    Both run in eval mode under ``torch.inference_mode`` on the same fp32 inputs, with an attention
    mask that pads the second half of the batch to 3/4 of ``seq`` (real batches carry padding).
    Before timing, the two outputs are compared; their max abs difference is returned as ``max_abs_diff``.
    """
    config = BertConfig.base() if config is None else config
    device = torch.device(device)
    flops = forward_flops(config, batch, seq)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ours = BertModel(config).eval()
    theirs = to_hf(ours, attn_implementation="sdpa")
    if theirs.config._attn_implementation != "sdpa":
        raise RuntimeError(f"transformers built {theirs.config._attn_implementation!r} attention, expected 'sdpa'")
    ours, theirs = ours.to(device), theirs.to(device)
    ids = torch.randint(1, config.vocab_size, (batch, seq), generator=g)  # any id but [PAD]=0
    types = torch.zeros_like(ids)
    mask = torch.ones_like(ids)
    mask[batch // 2:, (3 * seq) // 4:] = 0  # (B, T): half the batch padded
    ids, types, mask = ids.to(device), types.to(device), mask.to(device)

    with torch.inference_mode():
        a = ours(ids, types, mask).last_hidden_state
        b = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state
        keep = mask.bool()
        max_abs_diff = (a - b)[keep].abs().max().item()
        times = _interleaved(
            {
                "ours": lambda: ours(ids, types, mask),
                "theirs": lambda: theirs(input_ids=ids, token_type_ids=types, attention_mask=mask),
            },
            repeats, warmup, device,
        )
    what = (f"BertModel forward, L={config.num_hidden_layers} H={config.hidden_size} A={config.num_attention_heads}, "
            f"batch {batch}x{seq}, fp32, {device.type}")
    res = _timing_result("model_forward", what, times, batch * seq, repeats, flops=flops, max_abs_diff=max_abs_diff)
    return _add_throughput(res, {"ours": flops, "theirs": flops}, peak_gflops)


# The special-token ids of the synthetic batches below (a vocabulary from train_wordpiece has the same).
_SPECIAL = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}


def _special_vocab(vocab_size: int) -> dict[str, int]:
    """A vocabulary of ``vocab_size`` pieces: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then filler words."""
    if vocab_size < 6:
        raise ValueError(f"vocab_size must be >= 6 (five special tokens and one word), got {vocab_size}")
    vocab = dict(_SPECIAL)
    vocab.update({f"w{i}": i for i in range(5, vocab_size)})
    return vocab


def _mlm_batch(vocab_size: int, batch: int, seq: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """``[CLS] w... [SEP] [PAD]...`` rows of random words; the second half of the batch padded to 3/4 of ``seq``.

    Ids follow :func:`_special_vocab`. Returns ``input_ids``, ``attention_mask`` and
    ``special_tokens_mask`` (True at [CLS], [SEP], [PAD]), each (B, T).
    """
    if seq < 3:
        raise ValueError(f"seq must be >= 3 ([CLS], one token, [SEP]), got {seq}")
    pad, cls, sep = _SPECIAL["[PAD]"], _SPECIAL["[CLS]"], _SPECIAL["[SEP]"]
    ids = torch.randint(len(_SPECIAL), vocab_size, (batch, seq), generator=g)  # (B, T) ordinary words
    length = torch.full((batch,), seq, dtype=torch.long)
    length[batch // 2:] = max(3, (3 * seq) // 4)
    pos = torch.arange(seq)[None, :]  # (1, T)
    ids[:, 0] = cls
    ids[pos == (length - 1)[:, None]] = sep  # at each row's end
    ids[pos >= length[:, None]] = pad
    attention_mask = (pos < length[:, None]).long()
    special = (ids == pad) | (ids == cls) | (ids == sep)
    return {"input_ids": ids, "attention_mask": attention_mask, "special_tokens_mask": special}


def bench_masking(
    config: BertConfig | None = None,
    batch: int = 256,
    seq: int = 128,
    *,
    repeats: int = 10,
    warmup: int = 2,
    device: str | torch.device = "cpu",
    peak_gflops: float | None = None,
    seed: int = 0,
    threads: int | None = 1,
) -> dict[str, Any]:
    """:func:`bertrepro.masking.mask_tokens` vs transformers' ``DataCollatorForLanguageModeling`` masking.

    Both corrupt the same (B, T) batch of ``config.vocab_size`` ids (default BERT-base's 30,522) with
    15 % selection and 80/10/10: ours through ``mask_tokens``, theirs through the collator's
    ``torch_mask_tokens`` step with the same special-token mask (it edits its input in place, so it
    gets a fresh copy each call; the copy is timed with it). The collator draws a Bernoulli(0.15) per
    token, where the original and ours choose exactly ``round(0.15 n)`` positions per sequence; both
    chosen fractions are returned (``ours_chosen_fraction``, ``theirs_chosen_fraction``) as a sanity
    check. ``peak_gflops`` is unused (no matmuls), and so is ``device``: masking runs on the CPU, in
    the data pipeline, so both sides are timed there, by default with one thread (``threads=1``), as
    in a ``DataLoader`` worker (PyTorch sets one thread per worker). On a busy machine, intra-op
    threads waiting for each other can dominate operations this small; None keeps the process's setting.
    """
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling  # optional: only this benchmark

    config = BertConfig.base() if config is None else config
    device = torch.device("cpu")
    V = config.vocab_size
    vocab = _special_vocab(V)
    tokenizer = BertTokenizerFast(vocab=vocab)
    if len(tokenizer) != V:
        raise RuntimeError(f"transformers built a {len(tokenizer)}-piece tokenizer from a {V}-piece vocabulary")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
    g = torch.Generator().manual_seed(seed)
    data = _mlm_batch(V, batch, seq, g)
    ids, special, attention_mask = data["input_ids"], data["special_tokens_mask"], data["attention_mask"]
    mask_id = vocab["[MASK]"]

    def ours():
        return mask_tokens(ids, special, vocab_size=V, mask_token_id=mask_id, pad_token_id=vocab["[PAD]"],
                           generator=g, attention_mask=attention_mask)

    def theirs():
        return collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special)

    candidates = int((~special).sum())
    fractions = {name: int((fn()[1] != -100).sum()) / candidates for name, fn in (("ours", ours), ("theirs", theirs))}
    with _num_threads(threads):
        times = _interleaved({"ours": ours, "theirs": theirs}, repeats, warmup, device)
    threads_used = threads or torch.get_num_threads()
    what = f"MLM masking (15 %, 80/10/10) of a {batch}x{seq} batch, V={V}, cpu, {threads_used} thread(s)"
    return _timing_result("masking", what, times, batch * seq, repeats, threads=threads_used,
                          ours_chosen_fraction=fractions["ours"], theirs_chosen_fraction=fractions["theirs"])


def _pretraining_batch(vocab_size: int, batch: int, seq: int, g: torch.Generator,
                       device: torch.device) -> tuple[torch.Tensor, ...]:
    """A masked (B, T) batch of random words with two segments and random NSP labels, on ``device``:
    input ids, token types, attention mask, MLM labels, NSP labels."""
    data = _mlm_batch(vocab_size, batch, seq, g)
    inputs, labels = mask_tokens(data["input_ids"], data["special_tokens_mask"], vocab_size=vocab_size,
                                 mask_token_id=_SPECIAL["[MASK]"], max_predictions=20, generator=g,
                                 attention_mask=data["attention_mask"])
    types = torch.zeros_like(inputs)
    types[:, seq // 2:] = 1  # (B, T) segment B in the second half
    nsp = torch.randint(0, 2, (batch,), generator=g)
    return tuple(x.to(device) for x in (inputs, types, data["attention_mask"], labels, nsp))


def bench_train_step(
    config: BertConfig | None = None,
    batch: int = 32,
    seq: int = 128,
    *,
    repeats: int = 10,
    warmup: int = 2,
    device: str | torch.device = "cpu",
    peak_gflops: float | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """One pre-training optimizer step: ``bertrepro.BertForPreTraining`` vs transformers' (SDPA), same weights.

    A step is ``zero_grad``, forward with masked-LM labels and NSP labels, ``backward`` and an AdamW
    step (lr 1e-4, weight decay 0.01), in train mode. The batch is random words masked by
    :func:`bertrepro.masking.mask_tokens` (at most 20 predictions per sequence, as the original at
    length 128). Ours computes the masked-LM logits only at the chosen rows (``run_pretraining.py``'s
    ``gather_indexes``); transformers computes them at all B*T positions and ignores the rest in the loss.
    Before timing, both losses are computed in eval mode and compared (``loss_abs_diff``). Default
    config: ``BertConfig.tiny()`` (L=2, H=128, A=2, V=30,522). ``threads``: intra-op threads for the
    timed steps (None: the process's setting).
    """
    config = BertConfig.tiny() if config is None else config
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ours = BertForPreTraining(config)
    theirs = to_hf(ours, attn_implementation="sdpa")
    if theirs.config._attn_implementation != "sdpa":
        raise RuntimeError(f"transformers built {theirs.config._attn_implementation!r} attention, expected 'sdpa'")
    ours, theirs = ours.to(device), theirs.to(device)
    inputs, types, mask, labels, nsp = _pretraining_batch(config.vocab_size, batch, seq, g, device)
    mlm_rows = int((labels != -100).sum())

    with torch.no_grad():
        ours.eval(), theirs.eval()
        a = ours(inputs, types, mask, labels=labels, next_sentence_label=nsp).loss
        b = theirs(input_ids=inputs, token_type_ids=types, attention_mask=mask, labels=labels,
                   next_sentence_label=nsp).loss
        loss_abs_diff = (a - b).abs().item()
    ours.train(), theirs.train()
    opt_ours = build_adamw(ours, 1e-4, 0.01, device)
    opt_theirs = build_adamw(theirs, 1e-4, 0.01, device)

    def step_ours():
        opt_ours.zero_grad(set_to_none=True)
        ours(inputs, types, mask, labels=labels, next_sentence_label=nsp).loss.backward()
        opt_ours.step()

    def step_theirs():
        opt_theirs.zero_grad(set_to_none=True)
        theirs(input_ids=inputs, token_type_ids=types, attention_mask=mask, labels=labels,
               next_sentence_label=nsp).loss.backward()
        opt_theirs.step()

    with _num_threads(threads):
        times = _interleaved({"ours": step_ours, "theirs": step_theirs}, repeats, warmup, device)
    flops = {"ours": train_step_flops(config, batch, seq, mlm_rows),
             "theirs": train_step_flops(config, batch, seq, batch * seq)}
    what = (f"BertForPreTraining optimizer step, L={config.num_hidden_layers} H={config.hidden_size} "
            f"A={config.num_attention_heads} V={config.vocab_size}, batch {batch}x{seq}, {mlm_rows} MLM rows, fp32, "
            f"{device.type}")
    res = _timing_result("train_step", what, times, batch * seq, repeats, mlm_rows=mlm_rows, ours_flops=flops["ours"],
                         theirs_flops=flops["theirs"], loss_abs_diff=loss_abs_diff)
    return _add_throughput(res, flops, peak_gflops)


#: Every benchmark, in the order they run. Append new ``bench_*`` functions here.
BENCHMARKS: list[Callable[..., dict[str, Any]]] = [bench_model_forward, bench_masking, bench_train_step]


PRESETS: dict[str, Callable[[], BertConfig]] = {"base": BertConfig.base, "large": BertConfig.large, "tiny": BertConfig.tiny}

# Each benchmark's own workload: (config preset, batch, sequence length). --config/--batch/--seq override.
DEFAULTS: dict[str, tuple[str, int, int]] = {
    "model_forward": ("base", 8, 128),  # BERT-base forward, 8 x 128, fp32
    "masking": ("base", 256, 128),  # one 256 x 128 batch with BERT's 30,522-piece vocabulary
    "train_step": ("tiny", 32, 128),  # one optimizer step of L2/H128/A2 BertForPreTraining
}


def _bench_name(fn: Callable) -> str:
    return fn.__name__.removeprefix("bench_")


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: one row per benchmark, then the throughput details where present."""
    rows = [("benchmark", "ours", "theirs", "ours/theirs", "tokens/s ours", "tokens/s theirs", "GFLOP/s ours", "GFLOP/s theirs", "max|diff|")]
    for r in results:
        unit = r.get("unit", "ms")

        def opt(key: str, fmt: str) -> str:
            return format(r[key], fmt) if key in r else "-"

        rows.append((
            r["name"], f"{r['ours']:.1f} {unit}", f"{r['theirs']:.1f} {unit}", f"{r['ratio']:.3f}",
            opt("ours_tokens_per_s", ",.0f"), opt("theirs_tokens_per_s", ",.0f"),
            opt("ours_gflops", ".1f"), opt("theirs_gflops", ".1f"), opt("max_abs_diff", ".1e"),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmarks, print a table and return ``{"environment": ..., "results": [...]}``."""
    names = [_bench_name(f) for f in BENCHMARKS]
    p = argparse.ArgumentParser(prog="python -m bertrepro.bench", description=plain_text(__doc__.split("\n\n")[0]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=names, metavar="NAME",
                   help=f"run only this benchmark (repeatable); one of {', '.join(names)}")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per side (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs per side (default 2)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--config", choices=sorted(PRESETS), default=None,
                   help="model size preset for every benchmark (default: each benchmark's own, see DEFAULTS)")
    p.add_argument("--batch", type=int, default=None, help="sequences per batch (default: each benchmark's own)")
    p.add_argument("--seq", type=int, default=None, help="tokens per sequence (default: each benchmark's own)")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="the device's fp32 peak in GFLOP/s; measured with a large torch.mm when omitted")
    args = p.parse_args(argv)
    for flag, value, low in (("--repeats", args.repeats, 1), ("--warmup", args.warmup, 0),
                             ("--batch", args.batch, 1), ("--seq", args.seq, 1)):
        if value is not None and value < low:
            p.error(f"{flag} must be >= {low}, got {value}")
    if args.seq is not None and args.seq > 512:
        p.error(f"--seq {args.seq} exceeds max_position_embeddings=512")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device} requested but CUDA is not available")

    peak = args.peak_gflops if args.peak_gflops else matmul_peak_gflops(device)
    env = {
        "device": str(device),
        "config": args.config or "per benchmark",
        "batch": args.batch or "per benchmark",
        "seq": args.seq or "per benchmark",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "matmul_peak_gflops": peak,
        "peak_measured": not args.peak_gflops,
    }
    print(f"device {device} | torch {torch.__version__} | {env['threads']} threads | "
          f"fp32 matmul peak {peak:.1f} GFLOP/s ({'measured, torch.mm 2048^2' if env['peak_measured'] else 'given'})")
    selected = [f for f in BENCHMARKS if not args.only or _bench_name(f) in args.only]
    results = []
    for fn in selected:
        preset, batch, seq = DEFAULTS[_bench_name(fn)]
        config = PRESETS[args.config or preset]()
        batch, seq = args.batch or batch, args.seq or seq
        print(f"running {_bench_name(fn)} ({args.config or preset}, {batch} x {seq}) ...", flush=True)
        results.append(fn(config, batch, seq, repeats=args.repeats, warmup=args.warmup,
                          device=device, peak_gflops=peak))
    print()
    print(format_table(results))
    for r in results:
        if "ours_mfu" in r and "flops" in r:
            print(f"{r['name']}: {r['what']}; {r['flops'] / 1e9:.1f} GFLOP per forward; "
                  f"fraction of matmul peak: ours {r['ours_mfu']:.1%}, theirs {r['theirs_mfu']:.1%}")
        elif "ours_mfu" in r:
            print(f"{r['name']}: {r['what']}; GFLOP per step: ours {r['ours_flops'] / 1e9:.1f}, theirs "
                  f"{r['theirs_flops'] / 1e9:.1f}; fraction of matmul peak: ours {r['ours_mfu']:.1%}, "
                  f"theirs {r['theirs_mfu']:.1%}")
        elif "speedup" in r:
            print(f"{r['name']}: {r['what']}; ours is {r['speedup']:.2f}x as fast")
    return {"environment": env, "results": results}


if __name__ == "__main__":
    main()
