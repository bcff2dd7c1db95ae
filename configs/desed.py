r"""Alias of ``configs/htsat/desed.py`` (see that file).

    python -m htsat_jax.main --config configs/desed.py --workdir W --config.data_dir=DATA --config.init_from=M
"""

from configs import common


def get_config(arg: str | None = None):
    return common.load("htsat/desed.py", arg)
