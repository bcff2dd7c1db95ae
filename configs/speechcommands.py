r"""Alias: ``configs/htsat/speechcommands.py``, or with ``:model=ast`` ``configs/ast/speechcommands.py`` (see those files).

    python -m htsat_jax.main --config configs/speechcommands.py[:model=ast,variant=tiny] --workdir W ...
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base", model="htsat")
    return common.load(f"{args.model}/speechcommands.py", f"variant={args.variant}")
