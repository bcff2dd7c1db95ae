r"""Train / evaluate HTS-AT from a config.

    python -m htsat_jax.main --config configs/audioset.py --workdir WORKDIR [--config.batch_size=64 ...]

Rerunning the same command with the same ``--workdir`` resumes from its last checkpoint.

Multi-host: on a Cloud TPU VM pod run the same command on every worker with ``--distributed``
(``jax.distributed.initialize()`` finds the pod by itself); on GPU hosts or for local tests give
``--coordinator_address HOST:PORT --num_processes N --process_id I`` on each process.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:args]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and results go.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() (Cloud TPU pods, SLURM, ...).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (multi-process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
_LOCAL_DEVICES = flags.DEFINE_integer("num_cpu_devices", None,
                                      "Simulate this many CPU devices (tests, CPU clusters).")


def _initialise_jax() -> None:
    import jax

    if _LOCAL_DEVICES.value:
        jax.config.update("jax_num_cpu_devices", _LOCAL_DEVICES.value)
    if _COORDINATOR.value:
        if _NUM_PROCESSES.value is None or _PROCESS_ID.value is None:
            raise app.UsageError("--coordinator_address needs --num_processes and --process_id")
        host = _COORDINATOR.value.rsplit(":", 1)[0]
        kwargs = {}
        if host in ("127.0.0.1", "localhost"):
            kwargs["coordinator_bind_address"] = _COORDINATOR.value  # stay on loopback
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value, **kwargs)
    elif _DISTRIBUTED.value:
        jax.distributed.initialize()


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _WORKDIR.value is None:
        raise app.UsageError("--workdir is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr, force=True)
    for noisy in ("absl", "jax._src", "orbax", "tensorflow_datasets", "grain"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _initialise_jax()

    import jax
    from htsat_jax.training import train

    config = _CONFIG.value
    logging.getLogger("htsat_jax").info("process %d of %d, %d local / %d global devices (%s)",
                                        jax.process_index(), jax.process_count(), jax.local_device_count(),
                                        jax.device_count(), jax.default_backend())
    if config.mode == "evaluate":
        train.evaluate_checkpoint(config, _WORKDIR.value)
    elif config.cross_validation_folds:
        train.cross_validate(config, _WORKDIR.value)
    elif config.mode == "train":
        train.train_and_evaluate(config, _WORKDIR.value)
    else:
        raise app.UsageError(f"config.mode must be 'train' or 'evaluate', got {config.mode!r}")
    return 0


def run() -> None:
    """Console-script entry: restart once with the host-memory settings (huge pages for XLA's step
    buffers, the memory-lean CPU scheduler; ``htsat_jax/utils/host_memory.py``), then train."""
    from htsat_jax.utils import host_memory

    host_memory.reexec_with_host_settings()
    flags.mark_flags_as_required(["config"])
    app.run(main)


if __name__ == "__main__":
    run()
