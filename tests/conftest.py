"""Shared pytest options."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite the golden files under tests/golden/ instead of comparing (also: ARCHCALC_UPDATE_GOLDEN=1)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether golden-file tests should rewrite their files (review the diff before committing)."""
    return bool(request.config.getoption("--update-golden") or os.environ.get("ARCHCALC_UPDATE_GOLDEN"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: torch's thread pool costs more than it gives (3x slower on 2 cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def torchvision_models():
    """torchvision.models (imported beside a CPU-only torch by archcalc.torchvision_check), or skip."""
    pytest.importorskip("torch")
    try:
        from archcalc.torchvision_check import import_torchvision

        return import_torchvision()
    except ImportError:
        pytest.skip("torchvision is not installed")
