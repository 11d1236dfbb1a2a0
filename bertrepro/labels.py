"""Display names of the encoders the book compares, one table for chapters 10 to 12.

Keys are chapter 10's arms (:data:`bertrepro.finetune.ARMS`) and chapter 12's pre-training
objectives (:data:`bertrepro.pretrain.config.OBJECTIVES`); the two sets do not overlap.
"""
from __future__ import annotations

__all__ = ["ARM_LABELS"]

ARM_LABELS: dict[str, str] = {
    # chapter 10: where the encoder's weights come from
    "random": "random init (chapter-09 shape)",
    "pretrained": "pre-trained in chapter 09",
    "minilm": "all-MiniLM-L6-v2 (real pre-training)",
    "minilm-random": "random init (MiniLM shape)",
    # chapter 12: the pre-training objective (Table 5's rows)
    "mlm_nsp": "MLM + NSP (BERT)",
    "mlm": "MLM only (No NSP)",
    "ltr": "LTR LM (No NSP)",
}
