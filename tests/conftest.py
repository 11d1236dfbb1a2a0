import os

import pytest
import torch

# Offline by default: nothing in the test suite may reach a hub.
for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
