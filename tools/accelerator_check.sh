#!/usr/bin/env bash
# Every accelerator measurement the project promises, in one run on a GPU or TPU host (under 8 minutes),
# ending in one table.
#
#   tools/accelerator_check.sh                          # on the GPU / TPU machine, from anywhere
#   ALLOW_CPU=1 QUICK=1 tools/accelerator_check.sh      # tiny CPU rehearsal of every stage (2-4 min, 2 cores)
#
# Stages, in this order (each under `timeout`; a failed or timed-out stage is named and the rest still run):
#   train     tools/bench_train.py --variant base --batch 32 128 --dtype float32 bfloat16 --steps 5
#   forward   tools/bench_infer.py --variant base --batch 32 128 --repeats 5
#   compare   tools/compare_models.py --batch 32 --dtype bfloat16 --steps 5 --no_max_batch   (HTS-AT vs AST)
#   input     tools/bench_input.py --num_scenes 256 --threads 8 --workers 0 --repeats 1, its "x accelerator"
#             against the train step measured above (the largest batch's fastest dtype)
# Every tool appends its rows to one JSON-lines file (--jsonl); the table is made from that file.
#
# Environment:
#   PY         python with the project installed (default .venv/bin/python, relative to the repo root)
#   OUT_DIR    where the raw outputs go (default: a new /tmp/accelerator_check.XXXXXX)
#   BUDGET_S   seconds for all stages together (default 450): each stage's timeout is the smaller of its
#              own cap (TRAIN_S 240, FORWARD_S 90, COMPARE_S 120, INPUT_S 60) and what is left of it
#   MAX_BATCH  1: also run compare_models' largest-batch search (two more compiles; may not fit the budget)
#   ALLOW_CPU  1: run on a CPU backend too (otherwise refused with exit status 2)
#   QUICK      1: tiny variants, batch 2, 1 s clips, 2 steps, fast-compiling XLA flags, one dtype per stage
#              (train bfloat16, forward and compare float32: every code path with the fewest compiles),
#              stage caps of 600 s and a 1500 s budget (a rehearsal on a busy CPU checks the tools, not
#              the time): checks the script and the tools end to end, its timings mean nothing
#              (tests/test_accelerator_check.py)
# Exit status: 0 when every stage gave its rows, 1 when one failed or timed out, 2 when refused.
set -u -o pipefail

if [[ -n "${OUT_DIR:-}" && "${OUT_DIR}" != /* ]]; then OUT_DIR="$PWD/$OUT_DIR"; fi
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PY=${PY:-.venv/bin/python}
QUICK=${QUICK:-0}
ALLOW_CPU=${ALLOW_CPU:-0}

probe=$("$PY" -c 'import jax; print("@backend", jax.default_backend()); print("@jax", jax.__version__)
print("@devices", jax.devices())' 2>&1 </dev/null)
backend=$(sed -n 's/^@backend //p' <<<"$probe")
if [[ -z "$backend" ]]; then
    echo "accelerator_check: cannot import jax with $PY: $(tail -n 1 <<<"$probe")" >&2
    exit 1
fi
if [[ "$backend" == cpu && "$ALLOW_CPU" != 1 ]]; then
    echo "accelerator_check: no GPU or TPU here (jax backend: cpu; is an accelerator jaxlib installed?): run it on an accelerator host, or set ALLOW_CPU=1 (with QUICK=1 for the tiny rehearsal)" >&2
    exit 2
fi

OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/accelerator_check.XXXXXX")}
mkdir -p "$OUT_DIR" || exit 1
JSONL="$OUT_DIR/results.jsonl"
: >"$JSONL"
export PYTHONUNBUFFERED=1

echo "== accelerator check, $(date '+%Y-%m-%d %H:%M:%S %Z')"
echo "devices: $(sed -n 's/^@devices //p' <<<"$probe") (backend $backend, jax $(sed -n 's/^@jax //p' <<<"$probe"))"
echo "host: $(uname -n), $(nproc) CPUs; repo $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + local changes')"

if [[ "$QUICK" == 1 ]]; then
    # Tiny rehearsal: every stage and code path of the real run, with sizes that compile and run in seconds.
    export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    echo "QUICK=1: tiny variants, batch 2, 1 s clips, unoptimised XLA code: the figures below test the tools, they measure nothing"
    size=(--variant tiny --seconds 1)
    batches=(2)
    steps=2
    train_dtypes=(bfloat16)
    compare_dtype=float32
    compare_batch=2
    cap=600
    BUDGET_S=${BUDGET_S:-1500}
    input_args=(--num_scenes 16 --batch_size 2 --threads 2 --workers 0 --num_batches 4 --warmup_batches 1 --repeats 1)
else
    size=(--variant base)
    batches=(32 128)
    steps=5
    train_dtypes=(float32 bfloat16)
    compare_dtype=bfloat16
    compare_batch=32
    cap=
    input_args=(--num_scenes 256 --threads 8 --workers 0 --repeats 1)
fi
max_batch=(--no_max_batch)
if [[ "${MAX_BATCH:-0}" == 1 ]]; then max_batch=(); fi

BUDGET_S=${BUDGET_S:-450}
START=$SECONDS
STATUS=()  # "stage<TAB>what happened", in order
FAILED=0

run_stage() {  # run_stage NAME CAP_SECONDS COMMAND...: stdout to the console and NAME.log, stderr to NAME.err
    local name=$1 cap=$2
    shift 2
    local left=$((BUDGET_S - (SECONDS - START)))
    local limit=$((cap < left ? cap : left))
    if ((left < 10)); then
        echo "== $name: SKIPPED, the ${BUDGET_S} s budget is spent"
        STATUS+=("$name	skipped: budget spent")
        FAILED=1
        return
    fi
    echo
    echo "== $name (timeout ${limit} s): $*"
    local t0=$SECONDS rc
    timeout -k 5 "$limit" "$@" </dev/null 2>"$OUT_DIR/$name.err" | tee "$OUT_DIR/$name.log"
    rc=${PIPESTATUS[0]}
    local took=$((SECONDS - t0))
    if ((rc == 0)); then
        STATUS+=("$name	ok in ${took} s")
        return
    fi
    FAILED=1
    if ((rc == 124 || rc == 137)); then
        echo "== $name FAILED: timed out after ${limit} s (rows measured before that are kept)"
        STATUS+=("$name	TIMED OUT after ${limit} s")
    else
        echo "== $name FAILED: exit status $rc after ${took} s; last lines of $OUT_DIR/$name.err:"
        tail -n 5 "$OUT_DIR/$name.err" | sed 's/^/   /'
        STATUS+=("$name	FAILED: exit status $rc")
    fi
}

run_stage train "${TRAIN_S:-${cap:-240}}" "$PY" tools/bench_train.py "${size[@]}" --batch "${batches[@]}" \
    --dtype "${train_dtypes[@]}" --steps "$steps" --jsonl "$JSONL"

run_stage forward "${FORWARD_S:-${cap:-90}}" "$PY" tools/bench_infer.py "${size[@]}" --batch "${batches[@]}" \
    --repeats "$steps" --jsonl "$JSONL"

run_stage compare "${COMPARE_S:-${cap:-120}}" "$PY" tools/compare_models.py "${size[@]}" --batch "$compare_batch" \
    --dtype "$compare_dtype" --steps "$steps" "${max_batch[@]}" --jsonl "$JSONL"

# What one accelerator consumes: the train step just measured at the largest batch, fastest dtype.
consume=$("$PY" - "$JSONL" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
train = [r for r in rows if r.get("tool") == "bench_train" and "error" not in r
         and r.get("impl", "").startswith("htsat-jax")]
if train:
    largest = max(r["batch"] for r in train)
    print(max(r["clips_per_s"] for r in train if r["batch"] == largest))
EOF
)
consume_args=()
if [[ -n "$consume" ]]; then consume_args=(--consume_clips_per_s "$consume"); fi
run_stage input "${INPUT_S:-${cap:-60}}" "$PY" tools/bench_input.py "${input_args[@]}" "${consume_args[@]}" --jsonl "$JSONL"

echo
echo "== results ($(date '+%Y-%m-%d %H:%M:%S %Z'), stages took $((SECONDS - START)) s)"
"$PY" - "$JSONL" "$OUT_DIR/table.txt" <<'EOF'
import json
import sys

rows = []
for line in open(sys.argv[1]):
    try:
        rows.append(json.loads(line))
    except ValueError:
        pass


def num(x):
    if x is None:
        return "-"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) >= 1 else f"{x:.3g}"


table = []
missing = []


def add(measurement, model, batch, dtype, clips=None, ms=None, peak=None, notes=""):
    table.append((measurement, str(model), str(batch), str(dtype), num(clips), num(ms),
                  peak if isinstance(peak, str) else num(peak), notes))


# train step: bench_train rows (one subprocess each)
train = [r for r in rows if r.get("tool") == "bench_train"]
ok = {(r["batch"], r["dtype"]): r for r in train if "error" not in r and r.get("impl", "").startswith("htsat-jax")}
for r in train:
    if "error" in r:
        add("train step", r.get("model", "?"), r.get("batch"), r.get("dtype"), notes=f"FAILED: {r['error'][:70]}")
        continue
    notes = [f"compile {r['compile_s']:.0f} s", f"XLA temp {r['xla_temp_GiB']:.2f} GiB"]
    f32 = ok.get((r["batch"], "float32"))
    if r["dtype"] != "float32" and f32:
        notes.insert(0, f"{r['clips_per_s'] / f32['clips_per_s']:.2f}x float32 speed")
    add("train step", r["model"], r["batch"], r["dtype"], r["clips_per_s"], r["ms"], r["peak_GiB"], "; ".join(notes))
if not ok:
    missing.append("train")

# eval forward: bench_infer rows
forward = [r for r in rows if r.get("tool") == "bench_infer"]
for r in forward:
    notes = [f"{r['of_ceiling']:.0%} of the {r['ceiling_gflops']:.0f} GFLOP/s matmul ceiling",
             f"{r['gflop'] / r['batch']:.1f} GFLOP/clip"] if "of_ceiling" in r else []
    notes.append(f"compile {r['compile_s']:.0f} s")
    add("forward", r["model"], r["batch"], r["dtype"], r["clips_per_s"], r["ms"], r["peak_GiB"], "; ".join(notes))
if not forward:
    missing.append("forward")

# HTS-AT vs AST: compare_models rows, the first model against each other one
compare = [r for r in rows if r.get("tool") == "compare_models"]
first, prev_peak = (compare[0] if compare else None), None
for r in compare:
    name = f"{r['model']}-{r.get('variant', 'base')}"
    vs = r is not first and first is not None
    fwd_notes = [f"{r['params_m']:.2f}M params"]
    train_notes = [f"XLA step {r['step_gib']:.2f} GiB"]
    if r.get("gflops_per_clip"):
        train_notes.append(f"{r['gflops_per_clip']:.1f} GFLOP/clip")
    if r.get("max_batch") is not None:
        train_notes.append(f"largest batch {r['max_batch']}")
    if vs:
        pair = f"{first['model']}/{r['model']}"
        fwd_notes.insert(0, f"{pair} speed {first['fwd_clips_s'] / r['fwd_clips_s']:.2f}x, "
                            f"params {first['params_m'] / r['params_m']:.2f}x")
        train_notes.insert(0, f"{pair} speed {first['train_clips_s'] / r['train_clips_s']:.2f}x, "
                              f"step memory {first['step_gib'] / r['step_gib']:.2f}x")
    # the allocator's peak is per process, and the models run one after the other in one process
    peak = r.get("peak_gib")
    if peak is not None and prev_peak is not None and peak <= prev_peak:
        peak = f"<={peak:.2f}"
    prev_peak = r.get("peak_gib") if r.get("peak_gib") is not None else prev_peak
    add("compare forward", name, r["batch"], r["dtype"], r["fwd_clips_s"], 1000 * r["batch"] / r["fwd_clips_s"],
        None, "; ".join(fwd_notes))
    add("compare train step", name, r["batch"], r["dtype"], r["train_clips_s"],
        1000 * r["batch"] / r["train_clips_s"], peak, "; ".join(train_notes))
if len(compare) < 2:
    missing.append("compare")

# input pipeline: bench_input rows, against the train steps measured above at their largest batch
inputs = [r for r in rows if r.get("tool") == "bench_input"]
largest = max((b for b, _ in ok), default=None)
for r in inputs:
    notes = [f"{r['threads']} threads, {r['workers']} workers"]
    fed = [(d, t["clips_per_s"]) for (b, d), t in sorted(ok.items()) if b == largest]
    if fed:
        notes.append("feeds " + ", ".join(f"{r['clips_per_s'] / c:.1f} accelerators at {d} batch {largest}"
                                          for d, c in fed))
    else:
        notes.append(f"{r['x_accelerator']:.1f}x an ASSUMED {r['consume_clips_per_s']:.0f} clips/s accelerator")
    add("input pipeline", r["model"], r["batch"], r["dtype"], r["clips_per_s"], r["ms"], None, "; ".join(notes))
if not inputs:
    missing.append("input")

header = ("measurement", "model", "batch", "dtype", "clips/s", "step/fwd ms", "peak GiB", "ratio / notes")
widths = [max(len(row[i]) for row in [header] + table) for i in range(len(header) - 1)]
right = {2, 4, 5, 6}


def line(cells):
    return " | ".join([c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
                      + [cells[-1]]).rstrip()


out = [line(header), "-+-".join("-" * w for w in widths) + "-+-" + "-" * 13] + [line(row) for row in table]
backends = sorted({r["backend"] for r in rows if r.get("backend") and r.get("tool") != "bench_input"})
out.append(f"backend: {'; '.join(backends) or '?'}. ms: per step (train) or per batch (forward, input); "
           "peak: the device allocator's (CPU: process RSS for train, none otherwise)")
if missing:
    out.append("NO RESULT from: " + ", ".join(missing))
print("\n".join(out))
with open(sys.argv[2], "w") as f:
    f.write("\n".join(out) + "\n")
sys.exit(1 if missing or any("error" in r for r in rows) else 0)
EOF
table_rc=$?
if ((table_rc != 0)); then FAILED=1; fi

echo
echo "stages:"
for s in "${STATUS[@]}"; do printf '  %-8s %s\n' "${s%%	*}" "${s#*	}"; done
echo "raw outputs: $OUT_DIR (results.jsonl: every row as JSON; table.txt: the table above;"
echo "  <stage>.log / <stage>.err: each tool's printed output / stderr)"
exit $FAILED
