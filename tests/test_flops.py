"""The one FLOP formula of a training step (bertrepro.train.flops.train_step_flops) against torch's FlopCounterMode.

The formula must equal what FlopCounterMode measures on one forward + backward pass through the
explicit attention path, for every objective and two shapes; and FlopCounterMode on the fast
(scaled_dot_product_attention) path must miss exactly the attention term, so the formula is never
"fixed" to agree with the blind counter.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bertrepro.config import BertConfig
from bertrepro.model import BertForPreTraining
from bertrepro.train.flops import count_step_flops, estimate_mfu, steps_for_flops, train_step_flops

B, T, V = 4, 16, 97


def _model(L: int, H: int, A: int) -> BertForPreTraining:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=A,
                     intermediate_size=4 * H, max_position_embeddings=T, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertForPreTraining(cfg)


def _batch(objective: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    labels = torch.full((B, T), -100)
    if objective == "ltr":
        labels[:, :-1] = ids[:, 1:]  # every next token
    else:
        pick = torch.rand(B, T, generator=g) < 0.15
        pick[:, 1] = True  # at least one prediction per row
        labels[pick] = ids[pick]
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids),
            "labels": labels}


@pytest.mark.parametrize("shape", [(1, 16, 2), (2, 32, 4)])
@pytest.mark.parametrize("objective", ["mlm_nsp", "mlm", "ltr"])
def test_step_flops_equals_flop_counter(shape, objective):
    model = _model(*shape)
    batch = _batch(objective)
    predicted = int((batch["labels"] != -100).sum())
    measured = count_step_flops(model, batch, is_causal=objective == "ltr")
    formula = train_step_flops(model.config, B, T, predicted)
    assert formula == measured  # counted predictions, pooler and NSP head included: exact
    assert train_step_flops(model.config, B, T, predicted / 2 + predicted / 2) == pytest.approx(formula)


def test_flop_counter_misses_sdpa_attention():
    """The fast path's attention is invisible to FlopCounterMode on CPU: the gap is exactly 12 L B T^2 H."""
    L, H, A = 2, 32, 4
    model = _model(L, H, A)
    batch = _batch("mlm")
    with FlopCounterMode(display=False) as fast:
        out = model.bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        h = out.last_hidden_state[batch["labels"] != -100]
        (model.cls.predictions(h).sum() + model.cls.seq_relationship(out.pooler_output).sum()).backward()
    explicit = count_step_flops(model, batch, is_causal=False)
    missed = explicit - fast.get_total_flops()
    if missed == 0:
        pytest.skip("this torch build counts scaled_dot_product_attention FLOPs")
    assert missed == 12 * L * B * T * T * H


def test_more_predictions_cost_more_and_steps_round_trip():
    cfg = _model(2, 32, 4).config
    mlm, ltr = train_step_flops(cfg, B, T, 10), train_step_flops(cfg, B, T, 60)
    assert ltr > mlm
    target = 1000 * mlm
    n = steps_for_flops(target, ltr)
    assert abs(n * ltr - target) <= ltr / 2
    with pytest.raises(ValueError, match="predicted"):
        train_step_flops(cfg, B, T, -1)
    with pytest.raises(ValueError, match="target_flops"):
        steps_for_flops(0, ltr)


def test_mfu_is_the_step_formula_times_steps_per_second():
    cfg = _model(2, 32, 4).config
    step = train_step_flops(cfg, B, T, 12)
    assert estimate_mfu(step, steps_per_s=5.0, peak_flops=1e9) == pytest.approx(step * 5.0 / 1e9)
    with pytest.raises(ValueError, match="peak_flops must be > 0"):
        estimate_mfu(step, 1.0, 0.0)
