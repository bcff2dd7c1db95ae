"""One process of the two-process training test (tests/test_distributed.py).

    python tests/distributed_worker.py PROCESS_ID PORT DATA_DIR WORKDIR OUT.npz

Joins a 2-process JAX cluster on loopback (2 CPU devices each), runs the trainer on the tiny
synthetic dataset, and saves this process's own replica of the final parameters.
"""

import os
import sys

os.environ.pop("XLA_FLAGS", None)  # the device count comes from jax_num_cpu_devices below
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 2)


def main(process_id: int, port: int, data_dir: str, workdir: str, out: str) -> None:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               coordinator_bind_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=120)
    assert jax.process_count() == 2 and jax.device_count() == 4

    import numpy as np
    from flax import nnx

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_train import tiny_synthetic_config
    from htsat_jax.training import train

    config = tiny_synthetic_config(data_dir, total_steps=3, checkpoint_every_steps=2)
    results, state = train.train_and_evaluate(config, workdir, return_state=True)
    flat = nnx.to_flat_state(state.params)
    local = {"/".join(map(str, path)): np.asarray(var[...].addressable_data(0)) for path, var in flat}
    local["__step__"] = np.asarray(results["step"])
    local["__test_map__"] = np.asarray(results["test"]["mAP"])
    np.savez(out, **local)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
