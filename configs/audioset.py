r"""Alias: ``configs/htsat/audioset.py``, or with ``:model=ast`` ``configs/ast/audioset.py`` (see those files).

    python -m htsat_jax.main --config configs/audioset.py[:model=ast,variant=tiny] --workdir W ...
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base", model="htsat")
    return common.load(f"{args.model}/audioset.py", f"variant={args.variant}")
