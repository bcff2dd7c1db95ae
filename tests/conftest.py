"""Test set-up: 8 simulated CPU devices, paths to the shared official fixtures."""

import os
import pathlib

# Must happen before anything imports jax: multi-device code is tested on 8 host devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Trainer tests compile the same programs several times (resume, reruns, subprocesses): a
# persistent compilation cache for the session turns the repeats into cache hits.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="htsat_jax_test_xla_cache_")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import pytest  # noqa: E402

# Test tiers: `make test-fast` runs "unit" (the development loop); `make test` and CI run all three.
# A test marked in its file keeps its tier; otherwise its module's tier below applies, else "unit".
TIERS = ("unit", "integration", "acceptance")
_MODULE_TIER = {
    "test_demo_acceptance": "acceptance",        # the demo model through the predict CLI
    "test_speechcommands_training": "acceptance",  # learning real spoken digits
    "test_distributed": "integration",           # two processes over loopback
    "test_preemption": "integration",            # SIGTERM and resume of a subprocess run
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(getattr(pytest.mark, _MODULE_TIER.get(item.module.__name__, "unit")))


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


@pytest.fixture(scope="session")
def synthetic_tiny_dir(tmp_path_factory) -> str:
    """TFDS data_dir holding synthetic_events/tiny (16 / 8 / 8 scenes of 10 s)."""
    from tfds_builders.synthetic_events import SyntheticEvents

    data_dir = str(tmp_path_factory.mktemp("tfds_synthetic_tiny"))
    SyntheticEvents(config="tiny", data_dir=data_dir).download_and_prepare()
    return data_dir
