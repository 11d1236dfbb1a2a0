"""Bad input gets a clear error naming the problem, and what is written is readable by others:
configurations (types, non-finite values, foreign or missing configs), chapter parameters, vocabularies,
text with lone surrogates, token ids outside the vocabulary, and the mode of atomically written files."""
import dataclasses
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from bertrepro import chapters, checkpoints, io
from bertrepro.config import BertConfig
from bertrepro.masking import mask_tokens
from bertrepro.tokenization import WordPieceTokenizer, bert_uncased_vocab_path, load_vocab

ROOT = Path(__file__).resolve().parent.parent
FLOAT_FIELDS = [f.name for f in dataclasses.fields(BertConfig) if f.type in ("float", float)]


# ----------------------------------------------------------------------------------------------
# BertConfig
# ----------------------------------------------------------------------------------------------


def test_every_float_field_is_checked():
    assert set(FLOAT_FIELDS) == {"hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps",
                                 "initializer_range"}


@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_float_field_given_a_string_names_field_value_and_type(name):
    with pytest.raises(TypeError) as e:
        BertConfig(**{name: "1e-12"})
    msg = str(e.value)
    assert f"BertConfig.{name}" in msg and "'1e-12'" in msg and "str" in msg, msg


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_float_field_must_be_finite(name, value):
    with pytest.raises(ValueError, match=rf"BertConfig\.{name} must be a finite number"):
        BertConfig(**{name: value})


@pytest.mark.parametrize("value", [0.0, -0.02])
@pytest.mark.parametrize("name", ["layer_norm_eps", "initializer_range"])
def test_positive_fields_reject_zero_and_negative(name, value):
    with pytest.raises(ValueError, match=rf"BertConfig\.{name} must be > 0"):
        BertConfig(**{name: value})


def test_infinite_initializer_range_would_give_nan_weights():
    # Why the check exists: the model's initialiser with an infinite std gives NaN weights.
    from bertrepro.model import init_weights

    layer = torch.nn.Linear(4, 4)
    init_weights(layer, math.inf)
    assert not torch.isfinite(layer.weight).all()
    with pytest.raises(ValueError, match="initializer_range"):
        BertConfig.tiny(initializer_range=math.inf)


def test_valid_numbers_still_accepted():
    cfg = BertConfig.tiny(layer_norm_eps=1e-5, initializer_range=1, hidden_dropout_prob=0)
    assert cfg.layer_norm_eps == 1e-5 and cfg.initializer_range == 1 and cfg.hidden_dropout_prob == 0


def test_from_hf_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        BertConfig.from_hf(str(missing))
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        BertConfig.from_hf(missing)


def test_from_hf_reads_a_directory_or_a_config_file(tmp_path):
    hf = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                                 vocab_size=100, layer_norm_eps=1e-7)
    hf.save_pretrained(tmp_path)
    expected = BertConfig.from_hf(hf)
    assert expected.hidden_size == 64 and expected.layer_norm_eps == 1e-7
    assert BertConfig.from_hf(tmp_path) == expected
    assert BertConfig.from_hf(str(tmp_path / "config.json")) == expected


def test_from_hf_rejects_other_architectures():
    with pytest.raises(ValueError, match="model_type 'roberta'"):
        BertConfig.from_hf(transformers.RobertaConfig())
    with pytest.raises(ValueError, match="model_type 'roberta'"):
        BertConfig.from_hf(transformers.RobertaConfig().to_dict())
    # Google's bert_config.json has no model_type: still a BERT configuration.
    assert BertConfig.from_hf({"hidden_size": 128, "num_attention_heads": 2}).hidden_size == 128


def test_from_hf_rejects_other_objects():
    with pytest.raises(TypeError, match="int"):
        BertConfig.from_hf(3)


# ----------------------------------------------------------------------------------------------
# Chapter parameters
# ----------------------------------------------------------------------------------------------

PARAMETERS_CELL = 'profile = None  # "smoke" | "cpu" | "gpu"\nseed = 0\ndevice = None\n'
SETUP_CELL = "from bertrepro.chapters import setup\n\nrun = setup(profile=profile, seed=seed, device=device)\n"


def test_misspelt_injected_parameter_is_found():
    history = ["", PARAMETERS_CELL, '# Parameters\nprofil = "smoke"\n', SETUP_CELL]
    assert chapters.unknown_injected_parameters(history) == (["profil"], ["device", "profile", "seed"])


def test_correct_injected_parameters_pass():
    history = ["", PARAMETERS_CELL, '# Parameters\nprofile = "smoke"\nseed = 3\n', SETUP_CELL]
    assert chapters.unknown_injected_parameters(history) == ([], ["device", "profile", "seed"])
    assert chapters.unknown_injected_parameters(["", PARAMETERS_CELL, SETUP_CELL])[0] == []


def test_a_parameter_the_chapter_declares_is_valid():
    history = ["", PARAMETERS_CELL + "steps = 10\n", "# Parameters\nsteps = 20\nstep = 3\n", SETUP_CELL]
    assert chapters.unknown_injected_parameters(history) == (["step"], ["device", "profile", "seed", "steps"])


def test_setup_raises_on_a_misspelt_injected_parameter(monkeypatch):
    monkeypatch.setattr(chapters, "_kernel_inputs",
                        lambda: ["", PARAMETERS_CELL, '# Parameters\nprofil = "smoke"\n', SETUP_CELL])
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['profil'\].*valid parameters are device, profile, seed"):
        chapters.setup(profile="smoke")


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_setup_rejects_a_bad_seed(seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative int"):
        chapters.setup(profile="smoke", seed=seed)


def _papermill(tmp_path, *params):
    nb = ROOT / "notebooks" / "03_positional_encoding.ipynb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTREPRO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "papermill", str(nb), str(tmp_path / "out.ipynb"), "-k", "python3",
                           *params], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("params, message", [
    (["-p", "profil", "smoke"], "unknown parameter(s) ['profil'] given to this chapter (papermill -p); "
                                "valid parameters are device, profile, seed"),
    (["-p", "profile", "smoke", "-p", "seed", "-1"], "seed must be a non-negative int (0, 1, 2, ...), got -1"),
])
def test_chapter_fails_in_its_first_cell_on_a_bad_parameter(tmp_path, params, message):
    out = _papermill(tmp_path, *params)
    assert out.returncode != 0, "the chapter ran despite a bad parameter"
    assert message in out.stdout + out.stderr, out.stderr[-2000:]
    import nbformat

    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in code]
    first = next(i for i, t in enumerate(tags) if "parameters" not in t and "injected-parameters" not in t)
    assert any(o.get("output_type") == "error" for o in code[first].outputs), "the error is not in the first cell"
    assert all(c.execution_count is None for c in code[first + 1:]), "cells after the first one ran"


# ----------------------------------------------------------------------------------------------
# Tokenization
# ----------------------------------------------------------------------------------------------


def test_latin1_vocabulary_gets_a_clear_error(tmp_path):
    bad = tmp_path / "vocab.txt"
    bad.write_bytes("[PAD]\n[UNK]\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError) as e:
        load_vocab(bad)
    assert str(bad) in str(e.value) and "must be UTF-8" in str(e.value) and "byte 0xe9 on line 3" in str(e.value)


def test_non_utf8_byte_far_into_a_large_vocabulary_is_located(tmp_path):
    bad = tmp_path / "vocab.txt"
    lines = [f"piece{i}" for i in range(5000)]
    bad.write_bytes(("\n".join(lines[:4321]) + "\n\u00fcber\n" + "\n".join(lines[4321:]) + "\n").encode("latin-1"))
    with pytest.raises(ValueError, match="byte 0xfc on line 4322"):
        load_vocab(bad)


@pytest.fixture(scope="module")
def uncased():
    return WordPieceTokenizer.from_vocab(bert_uncased_vocab_path())


@pytest.mark.parametrize("text, clean", [
    ("a\ud800b", "ab"),
    ("hello \udfff world", "hello  world"),
    ("\ud83d\ude00 lone \udc00", " lone "),  # two lone surrogates in a row are still two lone ones
])
def test_lone_surrogates_are_dropped_by_both_paths(uncased, text, clean):
    docs = [[text, "the end."]]
    python = uncased.encode_corpus(docs, backend="python")
    fast = uncased.encode_corpus(docs, backend="fast")
    # The reference: the tokenizers library on the text without the surrogates.
    reference = [uncased.fast.encode(t, add_special_tokens=False).ids for t in (clean, "the end.")]
    assert python == fast == [reference]


# ----------------------------------------------------------------------------------------------
# Masking
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [100, 1000, -5])
def test_mask_tokens_rejects_ids_outside_the_vocabulary(bad):
    ids = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0]])
    ids[1, 2] = bad
    special = (ids == 1) | (ids == 2) | (ids == 0)
    with pytest.raises(ValueError) as e:
        mask_tokens(ids, special, vocab_size=100, mask_token_id=3, generator=torch.Generator().manual_seed(0))
    assert "vocab_size=100" in str(e.value) and f"{bad} at row 1, position 2" in str(e.value)


def test_mask_tokens_accepts_the_largest_id():
    ids = torch.tensor([[1, 99, 98, 97, 96, 95, 94, 2]])
    special = (ids == 1) | (ids == 2)
    masked, labels = mask_tokens(ids, special, vocab_size=100, mask_token_id=3,
                                 generator=torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert chosen.any() and torch.equal(labels[chosen], ids[chosen]) and int(masked.max()) < 100


# ----------------------------------------------------------------------------------------------
# Atomic writes: the usual file mode, data and directory flushed
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o027, 0o640)])
def test_atomic_write_gives_the_mode_of_an_ordinary_write(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        ours = io.atomic_write_bytes(tmp_path / "sub" / "scorecard.json", b"{}")
        plain = tmp_path / "plain.json"
        plain.write_bytes(b"{}")  # the reference: what open(..., "w") gives under this umask
        text = io.atomic_write_text(tmp_path / "vocab.txt", "[PAD]\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(ours.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == mode
    assert stat.S_IMODE(text.stat().st_mode) == mode
    assert ours.read_bytes() == b"{}" and sorted(p.name for p in ours.parent.iterdir()) == ["scorecard.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX directory fsync")
def test_atomic_write_flushes_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        return real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    io.atomic_write_bytes(tmp_path / "w.bin", b"x" * 10)
    assert events == ["fsync file", "replace", "fsync dir"]


def test_save_pretrained_files_are_readable_by_others(tmp_path):
    from bertrepro.model import BertForPreTraining

    old = os.umask(0o022)
    try:
        checkpoints.save_pretrained(BertForPreTraining(BertConfig.tiny(vocab_size=50)), tmp_path / "m")
    finally:
        os.umask(old)
    files = sorted((tmp_path / "m").iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files), [
        (f.name, oct(f.stat().st_mode)) for f in files]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "bert"


def test_checkpoint_from_hf_rejects_a_roberta_model(tmp_path):
    # RoBERTa's weights have BERT's names and shapes, but its positions start at padding_idx + 1:
    # loaded as BERT they would run silently with shifted position embeddings.
    cfg = transformers.RobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=40)
    roberta = transformers.RobertaModel(cfg)
    with pytest.raises(ValueError, match="model_type 'roberta'"):
        checkpoints.from_hf(roberta)
    roberta.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'roberta'"):
        checkpoints.from_hf(tmp_path)
