"""``python -m htsat_jax.convert COMMAND INPUT OUTPUT_DIR [options]`` (also ``htsat-convert``).

Every converter module adds its own commands (``add_cli``); this file only lists the modules.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Converter modules offering commands; a new source layout adds its module here.
CLI_MODULES = ("htsat_jax.convert.torch_htsat", "htsat_jax.convert.ast", "htsat_jax.convert.yamnet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m htsat_jax.convert",
        description="Convert a released checkpoint into this project's model directory (config.json + orbax).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in CLI_MODULES:
        importlib.import_module(name).add_cli(sub)
    args = parser.parse_args(argv)

    from htsat_jax import checkpoint as ckpt_lib  # jax/orbax only when actually converting
    from htsat_jax.convert.common import CheckpointError

    try:
        config, weights, report = args.convert(args)
        names = (ckpt_lib.read_class_names(args.class_names) if getattr(args, "class_names", None)
                 else getattr(report, "class_names", None))
        if names is not None and len(names) != config.num_classes:
            raise CheckpointError(f"{args.class_names} lists {len(names)} classes, the checkpoint has "
                                  f"{config.num_classes}")
        ckpt_lib.save_weights(args.output_dir, config, weights, class_names=names,
                              extra={"converted_from": os.path.abspath(args.input)})
    except (CheckpointError, ckpt_lib.CheckpointDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
