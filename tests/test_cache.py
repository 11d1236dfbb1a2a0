"""The artifact cache cannot go stale: each edit that can change an artifact changes its fingerprint
(checked in a temporary copy of the package), edits that cannot (a chapter's prose, the scorecard's
rendering) do not, a damaged file is rebuilt with a warning naming it, and two writers sharing one
cache never expose half an artifact."""
from __future__ import annotations

import multiprocessing
import re
import shutil
import time
from pathlib import Path

import pytest

from bertrepro import cache
from bertrepro.ablation.experiment import results_inputs
from bertrepro.ablation.runs import settings_for
from bertrepro.pretrain import PretrainConfig
from bertrepro.pretrain.data import VOCAB_CODE
from bertrepro.pretrain.runs import run_inputs

ROOT = Path(__file__).resolve().parent.parent
RUN_ROOTS = ("bertrepro.pretrain.loop",)
RESULTS_ROOTS = ("bertrepro.ablation.runs", "bertrepro.ablation.measure")
VOCAB_ROOTS = VOCAB_CODE  # what a trained vocabulary is fingerprinted by


@pytest.fixture
def package(tmp_path):
    """A copy of the package and of one chapter, to edit."""
    shutil.copytree(ROOT / "bertrepro", tmp_path / "bertrepro", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("*.ipynb"))
    return tmp_path / "bertrepro"


def fp(roots, package_dir, config=None):
    return cache.fingerprint(cache.artifact_inputs(roots, config or {"x": 1}, None, "cpu", package_dir))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


CODE_EDITS = {  # file -> (a line of it, the line changed): each can change what a run trains
    "masking.py": ("from __future__ import annotations", "from __future__ import annotations\nSHIFT = 1"),
    "model.py": ("from __future__ import annotations", "from __future__ import annotations\nSHIFT = 1"),
    "pretrain/loop.py": ("from __future__ import annotations", "from __future__ import annotations\nSHIFT = 1"),
    "data.py": ("from __future__ import annotations", "from __future__ import annotations\nSHIFT = 1"),
}


@pytest.mark.parametrize("name", sorted(CODE_EDITS))
def test_a_code_edit_changes_the_runs_and_results_fingerprints(package, name):
    before = {r: fp(r, package) for r in (RUN_ROOTS, RESULTS_ROOTS)}
    old_inputs = cache.artifact_inputs(RUN_ROOTS, {}, None, "cpu", package)
    edit(package / name, *CODE_EDITS[name])
    for roots, value in before.items():
        assert fp(roots, package) != value, (roots, name)
    new_inputs = cache.artifact_inputs(RUN_ROOTS, {}, None, "cpu", package)
    assert cache.describe_changes(old_inputs, new_inputs) == f"code changed: bertrepro/{name}"


def test_masking_edit_leaves_the_vocabulary_alone(package):
    before = fp(VOCAB_ROOTS, package)
    edit(package / "masking.py", *CODE_EDITS["masking.py"])
    assert fp(VOCAB_ROOTS, package) == before  # train_wordpiece never imports the masking code


@pytest.mark.parametrize("table,old,new", [
    ("PRETRAIN", "batch_size=8, learning_rate=1e-3, warmup_steps=2, total_steps=20",
     "batch_size=8, learning_rate=1e-3, warmup_steps=2, total_steps=21"),
    ("FINETUNE", "max_seq_length=32, dev_per_class=2, max_per_class=4", "max_seq_length=32, dev_per_class=3, max_per_class=4"),
])
def test_a_profile_number_changes_the_fingerprints(package, table, old, new):
    before = {r: fp(r, package) for r in (RUN_ROOTS, RESULTS_ROOTS)}
    edit(package / "profiles.py", old, new)
    assert fp(RESULTS_ROOTS, package) != before[RESULTS_ROOTS]
    assert fp(RUN_ROOTS, package) != before[RUN_ROOTS]


def test_prose_and_rendering_edits_reuse(package):
    roots = (RUN_ROOTS, RESULTS_ROOTS, VOCAB_ROOTS)
    before = {r: fp(r, package) for r in roots}
    chapter = package.parent / "notebooks" / "09_pretraining.py"
    edit(chapter, "# %% [markdown]", "# %% [markdown]\n# A new sentence of prose.")
    edit(package / "scorecard.py", '"# Scorecard",', '"# The scorecard",')
    edit(package / "book.py", "from __future__ import annotations", "from __future__ import annotations\nX = 1")
    assert {r: fp(r, package) for r in roots} == before


def test_config_changes_are_named():
    a = run_inputs(PretrainConfig.for_profile("smoke", device="cpu"))
    b = run_inputs(PretrainConfig.for_profile("smoke", device="cpu", max_steps=8, checkpoint_every=2))
    assert cache.describe_changes(a, b) == ("config changed: pretrain.checkpoint_every 4 -> 2, "
                                            "pretrain.max_steps None -> 8")
    assert cache.fingerprint(a) != cache.fingerprint(b)


def test_results_cover_the_finetuning_budget(monkeypatch):
    import dataclasses

    settings = settings_for("smoke")
    before = results_inputs(settings, 0, "cpu")
    from bertrepro.finetune import curves

    monkeypatch.setitem(curves.BUDGETS, "smoke", dataclasses.replace(curves.BUDGETS["smoke"], dev_per_class=9))
    after = results_inputs(settings, 0, "cpu")
    assert cache.describe_changes(before, after).startswith("config changed: finetune.dev_per_class 2 -> 9")


def test_device_and_torch_are_inputs():
    a = cache.artifact_inputs(VOCAB_ROOTS, {}, None, "cpu")
    b = {**cache.artifact_inputs(VOCAB_ROOTS, {}, None, "meta"), "torch": "0.0"}
    assert cache.describe_changes(a, b) == f"torch changed: {a['torch']} -> 0.0; device changed: cpu -> meta"


def test_unknown_root_is_named():
    with pytest.raises(ValueError, match="no module 'bertrepro.nothing'"):
        cache.code_closure(["bertrepro.nothing"])


def write(text):
    def build(path: Path) -> None:
        path.write_text(text)
    return build


def test_reuse_then_rebuild_on_damage(tmp_path, capsys):
    inputs = cache.artifact_inputs(VOCAB_ROOTS, {"v": 1}, None, "cpu")
    target = tmp_path / "vocab.txt"
    assert cache.cached_file(target, inputs, write("a\nb\n")) is False
    assert re.search(r"cache: computing .*vocab.txt \(fingerprint [0-9a-f]{12}\): not in the cache", capsys.readouterr().out)
    assert cache.cached_file(target, inputs, write("other")) is True and target.read_text() == "a\nb\n"
    assert re.search(r"cache: reused .*vocab.txt \(fingerprint [0-9a-f]{12}\)", capsys.readouterr().out)
    target.write_text("a\n")  # truncated
    with pytest.warns(UserWarning, match=r"vocab.txt is damaged"):
        assert cache.cached_file(target, inputs, write("a\nb\n")) is False
    assert target.read_text() == "a\nb\n"
    changed = cache.artifact_inputs(VOCAB_ROOTS, {"v": 2}, None, "cpu")
    assert cache.check(target, changed) == "config changed: v 1 -> 2"


def test_a_folder_with_a_missing_file_is_rebuilt(tmp_path):
    inputs = cache.artifact_inputs(VOCAB_ROOTS, {}, None, "cpu")

    def build(path: Path) -> None:
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "w.bin").write_bytes(b"123")

    cache.cached_dir(tmp_path / "run", inputs, build)
    (tmp_path / "run" / "sub" / "w.bin").unlink()
    with pytest.warns(UserWarning, match=r"w.bin is missing"):
        assert cache.cached_dir(tmp_path / "run", inputs, build) is False
    assert (tmp_path / "run" / "sub" / "w.bin").read_bytes() == b"123"


def _slow_writer(target: str, log: str) -> None:
    inputs = cache.artifact_inputs(VOCAB_ROOTS, {}, None, "cpu")

    def build(path: Path) -> None:
        path.mkdir()
        for i in range(5):
            (path / f"part{i}").write_text("x" * 1000)
            time.sleep(0.05)
        with open(log, "a") as f:
            f.write("built\n")

    cache.cached_dir(target, inputs, build)


def test_concurrent_writers_never_expose_half_an_artifact(tmp_path):
    target, log = tmp_path / "shared", tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_slow_writer, args=(str(target), str(log))) for _ in range(2)]
    for w in writers:
        w.start()
    inputs = cache.artifact_inputs(VOCAB_ROOTS, {}, None, "cpu")
    seen = []
    while any(w.is_alive() for w in writers):
        if cache.manifest_path(target).is_file() and cache.check(target, inputs) is None:
            seen.append(sorted(p.name for p in target.iterdir()))
        time.sleep(0.01)
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert log.read_text() == "built\n"  # the second writer waited, then reused
    assert all(names == [f"part{i}" for i in range(5)] for names in seen)
    assert cache.check(target, inputs) is None
    assert not list(tmp_path.glob(".shared.*.tmp"))


def test_cache_key_command(capsys):
    assert cache.main(["key"]) == 0
    assert re.fullmatch(r"[0-9a-f]{64}\n", capsys.readouterr().out)
    assert cache.main([]) == 2


@pytest.mark.parametrize("library", ["tokenizers", "transformers", "numpy"])
def test_library_versions_are_inputs(library, monkeypatch):
    """A new tokenizers, transformers or numpy changes every fingerprint (the vocabulary's included),
    and the stale line names it."""
    import importlib.metadata

    before = cache.artifact_inputs(VOCAB_ROOTS, {}, None, "cpu")
    assert before["versions"][library] == importlib.metadata.version(library)
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda n: "9.9.9" if n == library else real(n))
    after = cache.artifact_inputs(VOCAB_ROOTS, {}, None, "cpu")
    assert cache.fingerprint(before) != cache.fingerprint(after)
    assert cache.describe_changes(before, after) == f"versions changed: {library} {before['versions'][library]} -> 9.9.9"


def test_the_vocabulary_fingerprint_covers_the_code_that_makes_its_text():
    """The sentence splitting (bertrepro/data.py) and the document loading (bertrepro/pretrain/data.py)
    decide the text WordPiece is trained on: both are in the vocabulary's closure, as is the tokenizer."""
    from bertrepro.cache import code_closure

    files = set(code_closure(VOCAB_CODE))
    assert {"bertrepro/tokenization.py", "bertrepro/data.py"} <= files, sorted(files)
    import bertrepro.data as d
    import bertrepro.pretrain.data as pd

    assert pd._load_splits is d.load_document_splits  # pre-training reads its documents through that code
