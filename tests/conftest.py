"""Test set-up: 8 simulated CPU devices, paths to the shared official fixtures."""

import os
import pathlib

# Must happen before anything imports jax: multi-device code is tested on 8 host devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "official_htsat"


def require(path: pathlib.Path) -> pathlib.Path:
    """The shared reference folder sits beside the repo on dev machines and in CI."""
    if not path.exists():
        pytest.fail(f"missing shared reference file {path} (expected ../shared beside the repository)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    return require(FIXTURES)
