"""Host-memory settings that decide CPU step time: huge pages for XLA's step buffers, and the
XLA CPU scheduler flag that bounds the step's temporary memory.

Why: XLA:CPU allocates a compiled step's temporaries as one large block per execution (2.2 GiB
for the paper model's train step at batch 8). glibc serves blocks that large with a fresh
``mmap`` and unmaps them on free, so every step page-faults and zero-fills all of it again:
~590k minor faults and ~2.3 s of kernel time per step on the 2-core dev VM, a third of the step.
glibc's ``glibc.malloc.hugetlb=1`` tunable makes malloc ask for transparent huge pages on those
blocks (2 MiB instead of 4 KiB pages: ~2k faults, ~0.3 s). Tunables are read when a process
starts, so the entry points re-execute themselves once with the setting
(:func:`reexec_with_host_settings`); ``HTSAT_JAX_HOST_SETTINGS=0`` turns that off.

``--xla_cpu_enable_concurrency_optimized_scheduler=false`` makes XLA:CPU schedule the step for
memory instead of op concurrency: the train step's temporaries drop (BENCHMARKS.md) at no cost
in speed on this CPU. It is appended to ``XLA_FLAGS`` by the same re-execution (and harmless on
GPU/TPU, whose compilers ignore CPU flags).
"""

from __future__ import annotations

import os
import sys

HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
_OPT_OUT = "HTSAT_JAX_HOST_SETTINGS"


def with_host_settings(env: dict[str, str]) -> dict[str, str]:
    """``env`` plus the huge-page tunable and the CPU scheduler flag (kept if already chosen)."""
    env = dict(env)
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        env["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, HUGEPAGE_TUNABLE) if t)
    flags = env.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        env["XLA_FLAGS"] = " ".join(f for f in (flags, CPU_SCHEDULER_FLAG) if f)
    return env


def host_settings_active(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return with_host_settings(dict(env)) == dict(env)


def reexec_with_host_settings() -> None:
    """Restart this process with :func:`with_host_settings` applied, once, before jax is imported.

    Call it first in an entry point, before any work with side effects: the process starts over.
    No-op when the settings are already there, off Linux, or when ``HTSAT_JAX_HOST_SETTINGS=0``.
    """
    if (not sys.platform.startswith("linux") or os.environ.get(_OPT_OUT) == "0" or host_settings_active()
            or not getattr(sys, "orig_argv", None)):
        return
    env = with_host_settings(dict(os.environ))
    env[_OPT_OUT] = "0"  # never loop, whatever happens to the variables below
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``); a no-op elsewhere.

    Initialising the model and compiling the step free several hundred MiB that glibc keeps
    mapped; returned before the first step, they no longer add to the process's peak.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to do
        pass
