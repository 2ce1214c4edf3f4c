"""A process's memory out of the image: one file per resident run of each VMA,
an index, and an ELF core (fs/binfmt_elf.c elf_core_dump's shape).

Nothing is invented: a page that is not resident (never touched, swapped
out, not in stage 2, outside the image) is a *hole* recorded in the index
with its reason, and the core has no PT_LOAD bytes for it (gdb then says it
cannot access that memory rather than showing zeros).  Output is written in a
fresh temporary directory and renamed into place, so a failed run leaves
nothing half-written.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ArmvmiError, UsageError
from .mm import VM_EXEC, VM_READ, VM_WRITE, VmaWalk, mm_layer, mm_pieces
from .proc import task_maps
from .tasks import for_each_thread

EM_AARCH64 = 183
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
NT_PRSTATUS, NT_PRPSINFO, NT_AUXV, NT_FILE = 1, 3, 6, 0x46494C45


@dataclass
class DumpResult:
    out_dir: Path
    index: dict
    bytes_written: int = 0
    holes: int = 0
    problems: list[str] = field(default_factory=list)
    complete: bool = True


# -- registers ---------------------------------------------------------------------------------------

def user_regs(kernel, task, vmas) -> tuple[int, ...] | None:
    """x0..x30, sp, pc, pstate of a stopped user thread: the ``pt_regs`` at the
    top of its kernel stack (task_pt_regs).  THREAD_SIZE is not in the type
    model, so each plausible size is tried and the one whose frame is an EL0
    frame with pc in an executable mapping and sp in a writable one wins."""
    try:
        stack = int(task.stack)
        size = kernel.type("pt_regs").resolve().size
    except ArmvmiError:
        return None
    page = kernel.info.page_size or 4096
    for thread_size in sorted({16384, 32768, 65536, page}):
        try:
            raw = kernel.read(stack + thread_size - size, 34 * 8)
        except ArmvmiError:
            continue
        regs = struct.unpack("<34Q", raw)
        sp, pc, pstate = regs[31], regs[32], regs[33]
        if pstate & 0x1F:  # not AArch64 EL0t
            continue
        if any(v.start <= pc < v.end and v.flags & VM_EXEC for v in vmas) and \
                any(v.start <= sp <= v.end and v.flags & VM_WRITE for v in vmas):
            return regs
    return None


# -- notes ---------------------------------------------------------------------------------------

def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    name += b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def _prstatus(pid: int, ppid: int, regs) -> bytes:
    # struct elf_prstatus (aarch64): siginfo 12, cursig 2+2, sigpend 8, sighold 8,
    # pid/ppid/pgrp/sid 16, 4 timevals 64, pr_reg 34*8, fpvalid 4 + pad 4 = 392 bytes.
    head = struct.pack("<iiih2xQQiiii", 0, 0, 0, 0, 0, 0, pid, ppid, pid, pid) + b"\0" * 64
    return head + struct.pack("<34Q", *(regs or (0,) * 34)) + struct.pack("<i4x", 0)


def _prpsinfo(task, argv: list[str]) -> bytes:
    from .tasks import task_info

    ti = task_info(task._kernel, task)
    args = " ".join(argv).encode()[:79]
    return struct.pack("<bbbb4xQIIiiii16s80s", ord(ti.state[0]) if ti.state else 0, ord(ti.state[0]) if ti.state else 0,
                       int(ti.state == "Z"), 0, ti.flags, ti.uid or 0, 0, ti.pid, ti.ppid, ti.pid, ti.pid,
                       ti.comm.encode()[:15], args)


def _nt_file(vmas, page: int) -> bytes:
    files = [v for v in vmas if v.file and v.path.startswith("/")]
    head = struct.pack("<QQ", len(files), page)
    body = b"".join(struct.pack("<QQQ", v.start, v.end, v.offset // page) for v in files)
    return head + body + b"".join(v.path.encode() + b"\0" for v in files)


def _auxv(mm) -> bytes:
    try:
        raw = mm.saved_auxv.read_bytes_()
    except ArmvmiError:
        return b""
    out = bytearray()
    for i in range(0, len(raw) - 15, 16):
        out += raw[i:i + 16]
        if raw[i:i + 8] == b"\0" * 8:  # AT_NULL ends it
            break
    return bytes(out)


# -- the dump ------------------------------------------------------------------------------------------

def _perm_flags(v) -> int:
    return (PF_R if v.flags & VM_READ else 0) | (PF_W if v.flags & VM_WRITE else 0) | (PF_X if v.flags & VM_EXEC else 0)


def _check_target(out_dir: Path, force: bool, inputs) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not force:
            raise UsageError(f"{out_dir} is not empty (use --force to write into it)")
    for p in inputs:
        try:
            if Path(p).resolve().parent == out_dir.resolve():
                raise UsageError(f"{out_dir} holds an input ({p}); choose another output directory")
        except OSError:
            continue


def procdump(kernel, task, out_dir, force: bool = False, inputs=()) -> DumpResult:
    """Dump ``task``'s memory into ``out_dir`` (see the module docstring)."""
    from ..view import to_json
    from .mm import cmdline

    out_dir = Path(out_dir)
    _check_target(out_dir, force, inputs)
    if not int(task.mm):
        raise UsageError(f"pid {task.pid} ({task.comm}) is a kernel thread: it has no user memory")
    mm = task.mm.deref()
    walk = VmaWalk()
    vmas = task_maps(kernel, task, walk)
    page = kernel.info.page_size or 4096
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    except OSError as e:
        raise UsageError(f"cannot create the dump directory beside {out_dir}: {e}") from None
    res = DumpResult(out_dir, {})
    res.problems = list(walk.problems)
    res.complete = walk.complete
    try:
        layer = mm_layer(kernel, mm)
        threads = [(t.pid, user_regs(kernel, t, vmas)) for t in for_each_thread(kernel, task)]
        argv = []
        try:
            argv = cmdline(task)
        except ArmvmiError as e:
            res.problems.append(f"argv unreadable: {e}")
        notes = b"".join(_note(b"CORE", NT_PRSTATUS, _prstatus(tid, task.ppid, regs)) for tid, regs in threads)
        notes += _note(b"CORE", NT_PRPSINFO, _prpsinfo(task, argv))
        auxv = _auxv(mm)
        if auxv:
            notes += _note(b"CORE", NT_AUXV, auxv)
        notes += _note(b"CORE", NT_FILE, _nt_file(vmas, page))
        core_name = f"core.{task.pid}"
        entries = []
        with _Core(tmp / core_name, notes) as core:
            for v in vmas:
                if v.flags & VM_READ:
                    runs = _dump_vma(kernel, mm, v, tmp, res, core)
                else:
                    runs = [{"start": v.start, "end": v.end, "hole": f"not readable ({v.perms})"}]
                    core.load(v.start, v.end - v.start, _perm_flags(v), 0)
                d = to_json(v)
                d.pop("line", None)
                d["runs"] = [{k: (f"{x:#x}" if k in ("start", "end") else x) for k, x in r.items()} for r in runs]
                entries.append(d)
        res.index = {
            "pid": task.pid, "comm": task.comm, "argv": argv, "page_size": page,
            "user_va_bits": 64 - (layer.tcr & 0x3F), "core": core_name,
            "threads": [{"tid": tid, "registers": regs is not None} for tid, regs in threads],
            "bytes": res.bytes_written, "holes": res.holes, "complete": res.complete, "problems": res.problems,
            "vmas": entries,
            "note": "each file holds one resident run; holes are pages this image does not hold (never zero-filled)",
        }
        with open(tmp / "index.json", "w") as f:
            json.dump(res.index, f, indent=1)
        _publish(tmp, out_dir)
    except OSError as e:
        raise ArmvmiError(f"cannot write the dump into {out_dir}: {e}") from None
    finally:
        if tmp.exists():
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()
    return res


def _dump_vma(kernel, mm, v, tmp: Path, res: DumpResult, core: "_Core") -> list[dict]:
    """Write each resident run of ``v`` to its own file and to the core; return the runs and holes."""
    runs: list[dict] = []
    f = None
    flags = _perm_flags(v)

    def close():
        nonlocal f
        if f is not None:
            f.close()
            f = None
            r = runs[-1]
            name = f"{r['start']:016x}-{r['end']:016x}.bin"
            os.rename(tmp / f"{r['start']:016x}.part", tmp / name)
            r["file"] = name
            core.load(r["start"], r["end"] - r["start"], flags, r["end"] - r["start"])

    try:
        for a, data, n, why in mm_pieces(kernel, mm, v.start, v.end - v.start, chunks=True):
            if data is None:
                close()
                runs.append({"start": a, "end": a + n, "hole": why})
                res.holes += 1
                continue
            if f is None or runs[-1]["end"] != a:
                close()
                runs.append({"start": a, "end": a, "file": None})
                f = open(tmp / f"{a:016x}.part", "wb", buffering=0)
                core.begin()
            _writev(f, data)
            core.write(data)
            runs[-1]["end"] = a + n
            res.bytes_written += n
    finally:
        close()
    return runs


def _writev(f, chunks: list) -> int:
    """All of ``chunks`` to ``f`` in one system call (a short write -- a full disk -- is an error)."""
    n = os.writev(f.fileno(), chunks)
    want = sum(map(len, chunks))
    if n != want:
        raise OSError(f"short write to {f.name}: {n} of {want} bytes (disk full?)")
    return n


class _Core:
    """An ELF core written in one pass: header, notes, then each segment's bytes
    as they are read, and the program headers at the end (e_phoff says where),
    because how many PT_LOADs there are is known only once the holes are."""

    def __init__(self, path: Path, notes: bytes):
        self.f = open(path, "wb", buffering=0)
        self.notes_off = 64
        self.notes_len = len(notes)
        self.f.write(b"\0" * 64 + notes)
        self.pos = 64 + len(notes)
        self.seg_off = None
        self.phdrs: list[bytes] = []

    def begin(self) -> None:
        self.pos = (self.pos + 4095) & ~4095  # page-aligned segments, as the kernel writes them
        self.f.seek(self.pos)
        self.seg_off = self.pos

    def write(self, chunks: list) -> None:
        self.pos += _writev(self.f, chunks)

    def load(self, vaddr: int, memsz: int, flags: int, filesz: int) -> None:
        off = self.seg_off if filesz else self.pos
        self.phdrs.append(struct.pack("<IIQQQQQQ", PT_LOAD, flags, off, vaddr, 0, filesz, memsz, 4096))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                phoff = (self.pos + 7) & ~7
                note = struct.pack("<IIQQQQQQ", PT_NOTE, 0, self.notes_off, 0, 0, self.notes_len, 0, 4)
                phdrs = [note] + self.phdrs
                self.f.seek(phoff)
                self.f.write(b"".join(phdrs))
                self.f.seek(0)
                self.f.write(struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 4, EM_AARCH64, 1, 0,
                                         phoff, 0, 0, 64, 56, len(phdrs), 64, 0, 0))
        finally:
            self.f.close()


def _publish(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    try:
        os.rename(tmp, out_dir)  # an empty directory is replaced whole
        return
    except OSError:
        pass
    # --force into a non-empty directory: each file replaced atomically, index last;
    # nothing else there is touched.
    names = sorted(p.name for p in tmp.iterdir())
    names.remove("index.json")
    for name in names + ["index.json"]:
        os.replace(tmp / name, out_dir / name)
