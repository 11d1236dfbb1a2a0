"""The verdicts of the analog tasks: learned over the trivial rule (3 SE, paired), pretraining_helps
only when both arms learned, MiniLM against the best rule; the rules' own scores; early stopping."""
from __future__ import annotations

import pytest
import torch

from bertrepro.finetune.analog_verdicts import TRIVIAL, beats_rules, learned, paired, pretraining_helps, rule_scores
from bertrepro.finetune.analogs import build_task
from bertrepro.finetune.classifier import FinetuneConfig, fine_tune
from bertrepro.finetune.metrics import entity_scores, paired_f1_difference, sentence_counts


def acc(per_item):
    per_item = [float(x) for x in per_item]
    return {"accuracy": sum(per_item) / len(per_item), "accuracy_se": 1.0, "n": len(per_item), "per_item": per_item}


def draws(p, n, seed):
    g = torch.Generator().manual_seed(seed)
    return (100 * (torch.rand(n, generator=g) < p).double()).tolist()


def test_learned_needs_three_paired_standard_errors_over_the_trivial_rule():
    majority = acc([50.0] * 400)  # a constant's per-item score: its mean
    assert learned("qnli", acc(draws(0.75, 400, 0)), majority)["learned"]
    assert not learned("qnli", acc(draws(0.52, 400, 1)), majority)["learned"]  # 2 points: within 3 SE
    assert not learned("qnli", acc(draws(0.30, 400, 2)), majority)["learned"]  # below the bar


def test_pretraining_helps_is_decided_only_when_both_arms_learned():
    trivial = acc([25.0] * 500)
    strong, weak, chance = acc(draws(0.7, 500, 0)), acc(draws(0.5, 500, 1)), acc(draws(0.25, 500, 2))
    assert pretraining_helps("swag", strong, weak, trivial)["status"] == "qualitatively reproduced"
    assert pretraining_helps("swag", weak, strong, trivial)["status"] == "not reproduced at this scale"
    c = pretraining_helps("swag", strong, chance, trivial)  # the random arm stayed at chance
    assert c["status"] == "inconclusive" and c["pretrained_learned"] and not c["random_learned"]
    with pytest.raises(ValueError, match="same items"):
        paired("swag", strong, acc(draws(0.5, 10, 3)))


def test_beats_rules_compares_with_the_best_rule():
    trivial = acc([50.0] * 400)
    rules = {"overlap": acc(draws(0.6, 400, 5)), "majority": trivial}
    model = acc(draws(0.8, 400, 6))
    b = beats_rules("qnli", model, rules, trivial)
    assert b["rule"] == "overlap" and b["status"] == "qualitatively reproduced"
    assert beats_rules("qnli", acc(draws(0.6, 400, 5)), rules, trivial)["status"] == "not reproduced at this scale"
    assert beats_rules("qnli", trivial, rules, trivial)["status"] == "inconclusive"


def test_paired_f1_difference_is_the_entity_f1_difference():
    gold = [["B-NAME", "I-NAME", "O"], ["O", "B-NAME", "O"], ["B-NAME", "O", "O"]] * 30
    a = [["B-NAME", "I-NAME", "O"], ["O", "B-NAME", "O"], ["O", "O", "O"]] * 30
    b = [["B-NAME", "O", "O"], ["O", "O", "O"], ["B-NAME", "O", "O"]] * 30
    d = paired_f1_difference(sentence_counts(gold, a), sentence_counts(gold, b))
    want = 100 * (entity_scores(gold, a)["f1"] - entity_scores(gold, b)["f1"])
    assert abs(d["difference"] - want) < 1e-9 and d["se"] > 0 and d["items"] == 90
    same = paired_f1_difference(sentence_counts(gold, a), sentence_counts(gold, a))
    assert same["difference"] == 0.0 and same["se"] == 0.0


@pytest.fixture(scope="module")
def small_tasks():
    return {t: build_task(t, max_items=60) for t in ("squad20", "ner", "swag", "qnli")}


def test_trivial_rules_score_what_they_must(small_tasks):
    s = rule_scores("squad20", small_tasks["squad20"])
    none = sum(not it.answers for it in small_tasks["squad20"].test) / len(small_tasks["squad20"].test)
    assert list(s)[0] == TRIVIAL["squad20"] and abs(s["always no answer"]["f1"] - 100 * none) < 1e-9
    assert rule_scores("ner", small_tasks["ner"])["no names"]["f1"] == 0.0
    swag = rule_scores("swag", small_tasks["swag"])
    assert swag["chance"]["accuracy"] == 25.0 and len(swag["chance"]["per_item"]) == swag["chance"]["n"]
    qnli = rule_scores("qnli", small_tasks["qnli"], small_tasks["qnli"].test[:10])
    assert all(v["n"] == 10 for v in qnli.values())


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(1, 1)

    def forward(self, input_ids, attention_mask, labels):
        x = input_ids.float().mean(1, keepdim=True)
        return type("O", (), {"loss": ((self.w(x).squeeze(-1) - labels) ** 2).mean()})()


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    g = torch.Generator().manual_seed(0)
    data = {"input_ids": torch.randint(1, 9, (32, 4), generator=g), "attention_mask": torch.ones(32, 4, dtype=torch.long),
            "labels": torch.randn(32, generator=g)}
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.9, 0.2])
    seen = []

    def dev(model):
        seen.append(float(model.w.weight.detach()))
        return next(scripted)

    r = fine_tune(_Toy(), data, None, FinetuneConfig(batch_size=8, epochs=6, learning_rate=1e-2), dev_score=dev,
                  patience=2, progress=False)
    assert r.dev_curve == [0.1, 0.5, 0.4, 0.3] and r.best_epoch == 2  # stopped two epochs after the best
    assert float(r.model.w.weight.detach()) == seen[1]  # the weights of epoch 2, restored
    assert r.steps == 16  # 4 epochs of 4 batches
