import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def toy_preset():
    from tests.toy_vae import TOY, register_toy

    register_toy()
    return TOY
