#!/usr/bin/env python3
"""The everyday command: wall time of a repeated ``armvmi ps`` on a guest dump,
against drgn listing the same tasks, run in alternation.

    python bench/bench_prompt.py [--repeat 9] [--capture deb61-cloud-kaslr] [--vmlinux PATH]

armvmi runs on the decompressed capture with its System.map: once with an
empty ARMVMI_CACHE ("first run"), then ``--repeat`` times with the cache warm,
stdout a pipe (plain columns), and a few times on a pseudo-terminal (the rich table).  drgn runs when it is importable *and* a DWARF
vmlinux for the capture's kernel is given (``--vmlinux``, e.g. from Debian's
``linux-image-<release>-dbg``): drgn has no BTF reader, so without a vmlinux it
cannot name a field.  The dumps carry no VMCOREINFO note (QEMU adds one only
with a vmcoreinfo device), so drgn is handed the guest's own VMCOREINFO from
ground_truth.json.  Each drgn run prints the same pid/comm list armvmi does.
Targets (issue 15): repeated <= 0.5x drgn (~0.2 s here), first run <= 0.6 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

DRGN_SCRIPT = r"""
import sys, drgn
from drgn.helpers.linux.pid import for_each_task
core, vmlinux, vmcoreinfo = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read()
prog = drgn.Program(vmcoreinfo=vmcoreinfo)
prog.set_core_dump(core)
prog.load_debug_info([vmlinux])
out = []
for t in for_each_task(prog):
    out.append(f"{int(t.pid):>6} {int(t.real_parent.tgid):>6} {t.comm.string_().decode(errors='replace')}")
sys.stdout.write("\n".join(out) + "\n")
"""

PYC = Path(tempfile.gettempdir()) / "armvmi-bench-pyc"


def armvmi_cmd() -> list[str]:
    exe = shutil.which("armvmi")
    return [exe] if exe else [sys.executable, "-m", "armvmi_cli"]


def child_env(cache: Path) -> dict:
    # An installed armvmi has bytecode compiled at install time; this checkout may run with
    # PYTHONDONTWRITEBYTECODE, so give the children a bytecode cache outside the tree.
    env = dict(os.environ, ARMVMI_CACHE=str(cache), PYTHONPYCACHEPREFIX=str(PYC))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(argv, env) -> tuple[float, int, float, float]:
    """Wall seconds, output lines, CPU seconds (user+sys: on a shared box wall
    time includes waiting for a CPU) and peak RSS in MB."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines = sum(1 for _ in p.stdout)
    err = p.stderr.read()
    _pid, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc not in (0, 1):
        raise SystemExit(f"bench_prompt: {' '.join(argv)} exited {rc}: {err.decode().strip()}")
    return dt, lines, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run_tty(argv, env) -> tuple[float, float]:
    """Wall and CPU seconds with stdout on a pseudo-terminal (the rich table)."""
    import pty

    master, slave = pty.openpty()
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=slave, stderr=subprocess.DEVNULL, env=dict(env, COLUMNS="200"))
    os.close(slave)
    while True:
        try:
            if not os.read(master, 65536):
                break
        except OSError:  # EIO: the child closed the terminal
            break
    _pid, _status, usage = os.wait4(p.pid, 0)
    os.close(master)
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--capture", default="deb61-cloud-kaslr")
    ap.add_argument("--vmlinux", type=Path, help="DWARF vmlinux of the capture's kernel (enables the drgn runs)")
    a = ap.parse_args(argv)

    import conftest

    src = conftest.SHARED_CAPTURES / a.capture
    if not (src / "ground_truth.json").exists():
        sys.exit(f"bench_prompt: capture {a.capture} not found under {conftest.SHARED_CAPTURES}")
    cap = conftest.Capture(a.capture, src)
    cache = Path(tempfile.mkdtemp(prefix="armvmi-bench-cache-"))
    env = child_env(cache)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "armvmi_cli")], env=env,
                   stdout=subprocess.DEVNULL, check=False)
    armvmi = [*armvmi_cmd(), "ps", str(cap.image), "--system-map", str(cap.system_map)]

    drgn = None
    why_no_drgn = None
    try:
        import drgn as _drgn  # noqa: F401
    except ImportError:
        why_no_drgn = "drgn is not installed (pip install drgn)"
    if why_no_drgn is None and a.vmlinux is None:
        why_no_drgn = "no --vmlinux given (drgn needs DWARF; it reads no BTF)"
    if why_no_drgn is None:
        vi = cap.ground_truth["vmcoreinfo"]
        vi_file = cache / "vmcoreinfo.txt"
        vi_file.write_text("".join(f"{k}={v}\n" for k, v in vi.items()) if isinstance(vi, dict) else str(vi))
        script = cache / "drgn_ps.py"
        script.write_text(DRGN_SCRIPT)
        drgn = [sys.executable, str(script), str(cap.image), str(a.vmlinux), str(vi_file)]

    try:
        first, lines, first_cpu, _ = run_once(armvmi, env)
        arm, dr = [], []
        for _ in range(a.repeat):
            arm.append(run_once(armvmi, env))
            if drgn:
                dr.append(run_once(drgn, env))
        tty = [run_tty(armvmi, env) for _ in range(max(3, a.repeat // 2))]
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    print(f"armvmi ps on {a.capture} ({cap.image.stat().st_size >> 20} MiB ELF core, {lines} lines); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; seconds wall (cpu = user+sys)")
    print(f"  armvmi first run (empty cache)  {first:6.3f} ({first_cpu:.3f} cpu)  target <= 0.6 s  "
          f"{'ok' if first <= 0.6 else 'MISSED'}")
    med, med_cpu = statistics.median(r[0] for r in arm), statistics.median(r[2] for r in arm)
    rss = max(r[3] for r in arm)
    print(f"  armvmi repeated, median of {a.repeat}  {med:6.3f} ({med_cpu:.3f} cpu)  best {min(r[0] for r in arm):.3f}; "
          f"peak RSS {rss:.0f} MB")
    tmed, tcpu = statistics.median(t[0] for t in tty), statistics.median(t[1] for t in tty)
    print(f"  armvmi repeated on a terminal    {tmed:6.3f} ({tcpu:.3f} cpu)  (rich table; the lines above are piped)")
    result = {"tty_median": tmed, "tty_cpu": tcpu, "first": first, "first_cpu": first_cpu, "repeated_median": med, "repeated_cpu": med_cpu, "rss_mb": rss}
    if drgn:
        dmed, dmed_cpu = statistics.median(r[0] for r in dr), statistics.median(r[2] for r in dr)
        ratio = med / dmed
        print(f"  drgn (vmlinux DWARF), median     {dmed:6.3f} ({dmed_cpu:.3f} cpu)  best {min(r[0] for r in dr):.3f}")
        print(f"  ratio armvmi/drgn                {ratio:6.2f} ({med_cpu / dmed_cpu:.2f} cpu)  target <= 0.5  "
              f"{'ok' if ratio <= 0.5 else 'MISSED'}")
        result.update(drgn_median=dmed, drgn_cpu=dmed_cpu, ratio=ratio)
    else:
        print(f"  drgn not run: {why_no_drgn}; absolute target ~0.2 s: {'ok' if med <= 0.2 else 'MISSED'}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
