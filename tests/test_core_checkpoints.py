import json
import shutil

import pytest
import torch
import transformers
from torch.testing import assert_close

from bertrepro import BertConfig, BertForPreTraining, BertModel
from bertrepro.checkpoints import CheckpointError, from_hf, load_pretrained, load_state_dict_strict, save_pretrained

CFG = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                 max_position_embeddings=16)


def _hf_model(cls=transformers.BertForPreTraining):
    c = CFG.to_hf()
    c._attn_implementation = "eager"
    return cls(c).eval()


def test_loading_covers_every_key_both_ways():
    for hf_cls, ours_cls in ((transformers.BertModel, BertModel), (transformers.BertForPreTraining, BertForPreTraining)):
        hf = _hf_model(hf_cls)
        ours = from_hf(hf)
        assert isinstance(ours, ours_cls)
        hf_keys = {k for k in hf.state_dict() if not k.endswith(("position_ids", "token_type_ids"))}
        assert set(ours.state_dict()) == hf_keys
        for k, v in hf.state_dict().items():
            if k in hf_keys:
                assert torch.equal(ours.state_dict()[k], v), k


def test_hf_directory_round_trip(tmp_path):
    hf = _hf_model()
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    save_pretrained(ours, tmp_path / "ours")
    again = load_pretrained(tmp_path / "ours")
    back = transformers.BertForPreTraining.from_pretrained(tmp_path / "ours")  # HF reads what we write
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        assert_close(again(ids).prediction_logits, hf(input_ids=ids).prediction_logits, atol=1e-5, rtol=1e-5)
        assert_close(back(input_ids=ids).prediction_logits, hf(input_ids=ids).prediction_logits, atol=1e-5, rtol=1e-5)
    assert isinstance(from_hf(tmp_path / "ours", target="BertModel"), BertModel)


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        from_hf(tmp_path / "nope")
    save_pretrained(BertModel(CFG), tmp_path / "ck")
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "ck", broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        from_hf(broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        from_hf(broken)
    shutil.copytree(tmp_path / "ck", tmp_path / "badjson")
    (tmp_path / "badjson" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        from_hf(tmp_path / "badjson")


def test_mismatched_config_lists_keys(tmp_path):
    save_pretrained(BertModel(CFG), tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"missing keys: .*encoder\.layer\.2"):
        from_hf(tmp_path / "ck")
    cfg["num_hidden_layers"], cfg["intermediate_size"] = 2, 40
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="mismatched shapes: .*intermediate.dense"):
        from_hf(tmp_path / "ck")


def test_unexpected_keys_are_listed():
    m = BertModel(CFG)
    state = dict(m.state_dict())
    state["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys: encoder.layer.0.attention.self.rotary.weight"):
        load_state_dict_strict(BertModel(CFG), state)


def test_bad_target():
    with pytest.raises(ValueError, match="target"):
        from_hf(_hf_model(), target="GPT")
