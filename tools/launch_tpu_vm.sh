#!/usr/bin/env bash
# Create a Cloud TPU VM (single host or pod slice), install htsat-jax on every worker, and start
# training on all workers at once. Rerunning the "train" step with the same WORKDIR resumes.
#
#   tools/launch_tpu_vm.sh create   NAME ZONE ACCELERATOR [--spot]   # e.g. v4-32 us-central2-b
#   tools/launch_tpu_vm.sh setup    NAME ZONE                         # copy repo, make venv, install
#   tools/launch_tpu_vm.sh train    NAME ZONE CONFIG WORKDIR [--config.x=y ...]
#   tools/launch_tpu_vm.sh logs     NAME ZONE                         # tail worker 0's log
#   tools/launch_tpu_vm.sh stop     NAME ZONE                         # SIGTERM: checkpoint and exit
#   tools/launch_tpu_vm.sh delete   NAME ZONE
#
# WORKDIR and --config.data_dir must be the same place for every worker. Give gs:// paths directly
# (gs://BUCKET/runs/x, gs://BUCKET/tfds): everything the trainer reads and writes goes through
# etils.epath / orbax / TFDS, which speak GCS (setup installs gcsfs for that). A gcsfuse mount
# (BUCKET=... at setup: /mnt/BUCKET on every worker) or Filestore/NFS works too. Needs the gcloud
# CLI, authenticated.
set -euo pipefail

cmd=${1:?usage: $0 create|setup|train|logs|stop|delete NAME ZONE ...}
name=${2:?TPU VM name}
zone=${3:?zone}
shift 3
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
REMOTE_DIR=${REMOTE_DIR:-htsat-jax}
here=$(cd "$(dirname "$0")/.." && pwd)

ssh_all() {  # run a command on every worker of the slice
  gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$1"
}

case "$cmd" in
  create)
    accel=${1:?accelerator type, e.g. v4-8 or v4-32}
    shift
    gcloud compute tpus tpu-vm create "$name" --zone "$zone" --accelerator-type "$accel" \
      --version "$RUNTIME" "$@"
    ;;
  setup)
    tar -C "$here" --exclude=.venv --exclude=.git --exclude=demo_out -czf /tmp/htsat-jax.tgz .
    gcloud compute tpus tpu-vm scp /tmp/htsat-jax.tgz "$name":~/htsat-jax.tgz --zone "$zone" --worker=all
    ssh_all "mkdir -p ~/$REMOTE_DIR && tar -C ~/$REMOTE_DIR -xzf ~/htsat-jax.tgz && cd ~/$REMOTE_DIR && \
      python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt && \
      .venv/bin/pip install -q 'jax[tpu]==$(grep '^jax==' "$here/requirements.txt" | cut -d= -f3)' && \
      .venv/bin/pip install -q gcsfs && .venv/bin/pip install -q --no-deps -e . && \
      .venv/bin/python -c 'import jax; print(jax.devices())'"
    if [[ -n "${BUCKET:-}" ]]; then
      ssh_all "(command -v gcsfuse || (export GCSFUSE_REPO=gcsfuse-\$(lsb_release -c -s) && \
        echo deb https://packages.cloud.google.com/apt \$GCSFUSE_REPO main | sudo tee /etc/apt/sources.list.d/gcsfuse.list && \
        curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add - && \
        sudo apt-get update -q && sudo apt-get install -yq gcsfuse)) && \
        sudo mkdir -p /mnt/$BUCKET && sudo chown \$USER /mnt/$BUCKET && \
        (mountpoint -q /mnt/$BUCKET || gcsfuse --implicit-dirs $BUCKET /mnt/$BUCKET)"
    fi
    ;;
  train)
    config=${1:?config, e.g. configs/htsat/audioset.py}
    workdir=${2:?workdir, e.g. gs://BUCKET/runs/htsat_audioset}
    shift 2
    # --distributed: jax.distributed.initialize() discovers the pod's workers by itself.
    ssh_all "cd ~/$REMOTE_DIR && nohup .venv/bin/python -m htsat_jax.main --distributed \
      --config $config --workdir $workdir $* > train.log 2>&1 &"
    echo "started on all workers; follow with: $0 logs $name $zone"
    ;;
  logs)
    gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=0 --command "tail -f ~/$REMOTE_DIR/train.log"
    ;;
  stop)
    ssh_all "pkill -TERM -f htsat_jax.main || true"
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$name" --zone "$zone" --quiet
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
