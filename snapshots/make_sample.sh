#!/usr/bin/env bash
# Remake the shipped sample from the real capture, with armvmi's own commands:
# record the physical pages that `ps` (and `ps --threads`) read, then pack only
# those pages into a sparse .armvmi snapshot. Holes read as errors, as in any
# sparse image. Needs ../shared/captures (zstd-compressed) and an installed armvmi.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cap=${1:-$here/../../shared/captures/deb61-generic-nokaslr}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
zstd -q -d "$cap/dump.elf.zst" -o "$work/dump.elf"
zstd -q -d "$cap/System.map.zst" -o "$work/System.map"
armvmi ps "$work/dump.elf" -m "$work/System.map" --record-pages "$work/p1" >/dev/null
armvmi ps "$work/dump.elf" -m "$work/System.map" --threads --record-pages "$work/p2" >/dev/null
sort -u "$work/p1" "$work/p2" > "$work/pages"
armvmi snapshot pack "$work/dump.elf" "$here/deb61-generic-nokaslr.armvmi" --pages-from "$work/pages" -m "$work/System.map" --force \
  --host-name deb61-generic-nokaslr --note "sparse sample: only the pages armvmi ps reads (snapshots/make_sample.sh)"
# The truth the sample is tested against: the task list printed inside the guest.
python3 - "$cap/ground_truth.json" "$here/deb61-generic-nokaslr.truth.json" <<'PY'
import json, sys
gt = json.load(open(sys.argv[1]))
keep = ("pid", "ppid", "comm_task_struct", "uid", "is_kernel_thread", "threads")
out = {"source": "ground_truth.json of ../shared/captures/deb61-generic-nokaslr (printed inside the guest)",
       "kernel_release": gt["kernel_release"], "kaslr_slide": gt["kaslr"]["slide"],
       "tasks": [{k: t[k] for k in keep} for t in gt["tasks"]]}
json.dump(out, open(sys.argv[2], "w"), indent=1)
PY
