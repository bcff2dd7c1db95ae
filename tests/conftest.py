"""Test set-up: 8 simulated CPU devices, paths to the shared official fixtures."""

import os
import pathlib

# In-process tests compile far more than they run (tiny models, a few steps): LLVM's cheap code
# generation takes 4-25 % off such a test (measured: the jitted training-step test 24 -> 18 s, the
# float64 parity test 18 -> 14 s). XLA's own (HLO) optimisations are unchanged and nothing enables
# fast-math, so the numbers are the same at the tests' tolerances (parity included).
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# Must happen before anything imports jax: multi-device code is tested on 8 host devices.
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE_FLAGS}")
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


# `make test` runs two pytest workers (pytest-xdist, one module per unit of work, handed out in
# collection order): the longest modules go first, so the end of the run is not one long module
# on one worker while the other idles. Ordered by their time in one process on the 2-core VM
# (2026-12-02: test_lean 378 s ... test_perf_paths 49 s; every other module under 45 s).
_LONG_MODULES = ("test_lean", "test_finetune", "test_demo_acceptance", "test_accelerator_check",
                 "test_distributed", "test_speechcommands_training", "test_train", "test_preemption",
                 "test_model", "test_parity", "test_perf_paths")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(getattr(pytest.mark, _MODULE_TIER.get(item.module.__name__, "unit")))
    rank = {name: i for i, name in enumerate(_LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: file order within


def one_device_env() -> dict[str, str]:
    """The environment for a subprocess that runs as a user would: one CPU device (no simulated
    8-device host) and XLA's default code generation. The fast-compile flags stay out: these runs
    train for hundreds of steps, where unoptimised code costs more than it saves (the demo run took
    327 s with them, 160 s without, both beside a second pytest worker)."""
    return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}


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
