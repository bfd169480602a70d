import os

import pytest

# never a download from the tests: sweeps that say `fetch` see offline mode (the fetch
# tests go online against their own server on 127.0.0.1)
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture
def toy_preset():
    from tests.toy_vae import TOY, register_toy

    register_toy()
    return TOY


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """rFVD statistics and weights are looked up in a per-test cache, never in ~/.cache."""
    monkeypatch.setenv("VAE_BENCH_CACHE", str(tmp_path_factory.mktemp("vae-bench-cache")))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions run faster on one thread, and more steadily on shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
