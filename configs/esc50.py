r"""Alias: ``configs/htsat/esc50.py``, or with ``:model=ast`` ``configs/ast/esc50.py`` (see those files).

    python -m htsat_jax.main --config configs/esc50.py[:model=ast,variant=tiny] --workdir W ...
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base", model="htsat")
    return common.load(f"{args.model}/esc50.py", f"variant={args.variant}")
