"""A VM's guest-physical memory as a kdump-style ELF core, or as LiME.

The ELF core is what ``/proc/vmcore`` and QEMU's ``dump-guest-memory`` give
(ET_CORE, EM_AARCH64): one PT_NOTE, then one PT_LOAD per run of present guest
pages, addressed by ``p_paddr`` = guest physical address.  ``p_vaddr`` is 0
(as QEMU writes without paging): the reader finds the kernel from the
VMCOREINFO note and walks its page tables, which also holds under KASLR.

Notes, in the kernel's own format (``crash_save_vmcoreinfo``,
``elf_core_dump``):
- ``VMCOREINFO`` (type 0): the guest kernel's own VMCOREINFO text as found in
  its memory, with what it lacks added from what armvmi found;
- ``CORE``/``NT_PRSTATUS`` per vCPU: KVM's saved ``kvm_cpu_context`` (x0-x30,
  SP for the vCPU's mode, PC, PSTATE), when the host image has them.

Everything is streamed: headers first (the runs are known before any byte is
copied), then each run in chunks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import ArmvmiError

EM_AARCH64 = 183
ET_CORE = 4
PT_LOAD, PT_NOTE = 1, 4
PF_R, PF_W, PF_X = 4, 2, 1
PN_XNUM = 0xFFFF
NT_PRSTATUS = 1
VMCOREINFO_NOTE_TYPE = 0
EHDR_SIZE, PHDR_SIZE, SHDR_SIZE = 64, 56, 64
PRSTATUS_SIZE = 392  # struct elf_prstatus on arm64
PRSTATUS_PID_OFF, PRSTATUS_REG_OFF = 32, 112
ALIGN = 4096
CHUNK = 4 << 20

# PSTATE.M[3:0] (AArch64): which stack pointer is SP
_MODE_SP = {0b0000: "SP_EL0", 0b0100: "SP_EL0", 0b0101: "SP_EL1"}


def note(name: str, ntype: int, desc: bytes) -> bytes:
    n = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def prstatus(pid: int, regs: list[int]) -> bytes:
    """struct elf_prstatus for arm64: pr_pid, pr_reg = x0-x30, sp, pc, pstate."""
    if len(regs) != 34:
        raise ValueError("arm64 pr_reg holds 34 registers")
    b = bytearray(PRSTATUS_SIZE)
    struct.pack_into("<i", b, PRSTATUS_PID_OFF, pid)
    struct.pack_into("<34Q", b, PRSTATUS_REG_OFF, *(r & (2**64 - 1) for r in regs))
    return bytes(b)


# -- VMCOREINFO ------------------------------------------------------------------
def vmcoreinfo_text(kernel) -> tuple[str, list[str]]:
    """The kernel's VMCOREINFO text, completed: (text, keys armvmi added)."""
    vi = kernel.vmcoreinfo
    raw = dict(vi.raw) if vi is not None else {}
    info = kernel.info
    added: list[str] = []
    mask = 2**64 - 1

    def put(key, value):
        if key not in raw and value is not None:
            raw[key] = value
            added.append(key)

    put("OSRELEASE", info.release)
    put("BUILD-ID", info.build_id)
    put("PAGESIZE", str(info.page_size) if info.page_size else None)
    for name in ("init_uts_ns", "swapper_pg_dir", "_stext"):
        if kernel.has_symbol(name):
            put(f"SYMBOL({name})", f"{kernel.symbol(name) & mask:x}")
    put("NUMBER(VA_BITS)", str(info.va_bits) if info.va_bits else None)
    put("NUMBER(kimage_voffset)", f"{info.kimage_voffset & mask:#x}" if info.kimage_voffset is not None else None)
    put("NUMBER(PHYS_OFFSET)", _phys_offset(kernel))
    put("NUMBER(TCR_EL1_T1SZ)", f"{64 - info.va_bits:#x}" if info.va_bits else None)
    put("KERNELOFFSET", f"{info.slide & mask:x}")
    return "".join(f"{k}={v}\n" for k, v in raw.items()), added


def _phys_offset(kernel) -> str | None:
    """PHYS_OFFSET is ``memstart_addr`` (arm64 memory.h)."""
    if kernel.info.phys_offset is not None:
        return f"{kernel.info.phys_offset & (2**64 - 1):#x}"
    try:
        return f"{kernel.read_u64(kernel.symbol('memstart_addr')):#x}"
    except ArmvmiError:
        return None


# -- vCPU registers ----------------------------------------------------------------
def vcpu_registers(vm) -> tuple[list[tuple[int, list[int]]], list[str]]:
    """[(pr_pid, pr_reg)] per vCPU from KVM's saved context (host memory), and
    why any is missing.  pr_pid is the vCPU index + 1, as QEMU writes it."""
    from .guestmem import kvm_of

    kvm = kvm_of(vm)
    if kvm is None:
        return [], []
    k = kvm._host.kernel
    out, problems = [], []
    try:
        regs_off = k.offsetof("kvm_vcpu", "arch.ctxt.regs")
        sys_off = k.offsetof("kvm_vcpu", "arch.ctxt.sys_regs")
        sysidx = getattr(k.type("vcpu_sysreg"), "values", {})
    except ArmvmiError as e:
        return [], [f"vCPU registers not read: {e}"]
    for v in kvm.vcpus:
        try:
            # struct user_pt_regs: regs[31], sp (SP_EL0), pc, pstate
            gp = struct.unpack("<34Q", k.read(v.address + regs_off, 34 * 8))
            x, sp_el0, pc, pstate = list(gp[:31]), gp[31], gp[32], gp[33]
            sp = sp_el0
            if _MODE_SP.get(pstate & 0xF) == "SP_EL1" and "SP_EL1" in sysidx:
                sp = k.read_u64(v.address + sys_off + 8 * sysidx["SP_EL1"])
            out.append((v.idx + 1, x + [sp, pc, pstate]))
        except ArmvmiError as e:
            problems.append(f"vcpu {v.idx}: registers unreadable: {e}")
    return out, problems


# -- writers -------------------------------------------------------------------------
@dataclass
class ExtractSummary:
    path: str
    format: str
    segments: int = 0
    bytes: int = 0
    by_source: dict = field(default_factory=dict)
    absent: int = 0
    absent_pages: int = 0
    page_size: int = 4096
    vcpus: int = 0
    vmcoreinfo: bool = False
    vmcoreinfo_added: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def line(self) -> str:
        src = ", ".join(f"{k} {v >> 20} MiB" for k, v in sorted(self.by_source.items())) or "nothing"
        s = (f"wrote {self.path} ({self.format}): {self.segments} runs, {self.bytes >> 20} MiB of guest memory ({src}); "
             f"{self.absent_pages} absent pages ({self.absent >> 10} KiB) left out")
        if self.format == "elf":
            s += f"; VMCOREINFO {'note' if self.vmcoreinfo else 'MISSING'}"
            if self.vmcoreinfo_added:
                s += f" (added {', '.join(self.vmcoreinfo_added)})"
            s += f"; {self.vcpus} NT_PRSTATUS"
        return s

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def write_elf(f, mem, notes: bytes) -> int:
    """Write ``mem`` (a PhysicalMemory) with ``notes`` as an ELF core to file ``f``; returns the PT_LOAD count."""
    runs = _runs(mem)
    nph = 1 + len(runs)
    xnum = nph >= PN_XNUM
    phoff = EHDR_SIZE
    shoff = phoff + nph * PHDR_SIZE if xnum else 0
    note_off = phoff + nph * PHDR_SIZE + (SHDR_SIZE if xnum else 0)
    data_off = -(-(note_off + len(notes)) // ALIGN) * ALIGN
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELFCLASS64, little endian, EV_CURRENT, SYSV
    f.write(ident + struct.pack("<HHIQQQIHHHHHH", ET_CORE, EM_AARCH64, 1, 0, phoff, shoff, 0, EHDR_SIZE, PHDR_SIZE,
                                PN_XNUM if xnum else nph, SHDR_SIZE if xnum else 0, 1 if xnum else 0, 0))
    f.write(struct.pack("<IIQQQQQQ", PT_NOTE, 0, note_off, 0, 0, len(notes), len(notes), 0))
    off = data_off
    for a, b in runs:
        f.write(struct.pack("<IIQQQQQQ", PT_LOAD, PF_R | PF_W | PF_X, off, 0, a, b - a, b - a, 0))
        off += b - a
    if xnum:  # fs/binfmt_elf.c fill_extnum_info: section 0 carries the real count
        f.write(struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 1, 0, nph, 0, 0))
    f.write(notes)
    f.write(bytes(data_off - note_off - len(notes)))
    for a, b in runs:
        _copy(f, mem, a, b)
    return len(runs)


def write_lime(f, mem) -> int:
    from ..memory.lime import LIME_MAGIC, LIME_VERSION, range_header

    runs = _runs(mem)
    for a, b in runs:
        f.write(range_header.build(dict(magic=LIME_MAGIC, version=LIME_VERSION, s_addr=a, e_addr=b - 1, reserved=bytes(8))))
        _copy(f, mem, a, b)
    return len(runs)


def _runs(mem) -> list[tuple[int, int]]:
    """Runs contiguous in guest physical address (pieces from different host frames merge)."""
    if callable(getattr(mem, "runs", None)):
        return mem.runs()
    return [(r.start, r.end) for r in mem.ranges()]


def _copy(f, mem, a: int, b: int) -> None:
    pa = a
    while pa < b:
        n = min(CHUNK, b - pa)
        f.write(mem.read(pa, n))
        pa += n


def extract(vm, out, fmt: str = "elf", inputs=(), force: bool = False) -> ExtractSummary:
    """Write ``vm``'s guest-physical memory to ``out`` (atomically)."""
    from .guestmem import guest_memory
    from ..output import Output, check_output

    if fmt not in ("elf", "lime"):
        from ..errors import UsageError

        raise UsageError(f"--format {fmt!r}: choose elf or lime")
    check_output(out, inputs, force)  # fail before the work, not after it
    mem = guest_memory(vm)
    cov = mem.coverage
    summ = ExtractSummary(str(out), fmt, by_source=dict(cov.by_source), absent=cov.absent, problems=list(cov.problems))
    notes = b""
    if fmt == "elf":
        try:
            k = vm.kernel
            summ.page_size = k.info.page_size or 4096
            text, summ.vmcoreinfo_added = vmcoreinfo_text(k)
            notes += note("VMCOREINFO", VMCOREINFO_NOTE_TYPE, text.encode())
            summ.vmcoreinfo = True
        except ArmvmiError as e:
            summ.problems.append(f"no VMCOREINFO note: the guest kernel could not be read ({e})")
        regs, problems = vcpu_registers(vm)
        summ.problems += problems
        for pid, r in regs:
            notes += note("CORE", NT_PRSTATUS, prstatus(pid, r))
        summ.vcpus = len(regs)
    summ.absent_pages = -(-cov.absent // summ.page_size)
    if not mem.ranges():
        from ..errors import ExitCode

        err = ArmvmiError(f"{vm.label}: no guest page exists in this image; nothing to extract")
        err.exit_code = ExitCode.NOT_FOUND
        raise err
    with Output(out, inputs, force) as o:
        f = o.file()
        summ.segments = write_elf(f, mem, notes) if fmt == "elf" else write_lime(f, mem)
    summ.bytes = mem.size
    return summ
