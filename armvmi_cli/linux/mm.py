"""A process's memory: ``struct mm_struct``, its page tables and its VMAs.

User memory is read the way the CPU reads it: ``mm->pgd`` as TTBR0_EL1 with
the user half's own geometry (T0SZ from ``mm->task_size``, the granule of the
kernel's pages, LPA2 for 52-bit 4K/16K), stacked on the same lower layer as
the kernel's stage 1 -- so on a host image every access also goes through the
VM's stage 2.  A page that is not there (never touched, swapped out, not yet
in stage 2, outside the image) raises :class:`NotResident`; nothing is ever
made up as zeros.

``for_each_vma`` walks ``mm->mm_mt`` (the maple tree, 6.1+) or the older
``mmap`` list, chosen by the type model.  :func:`vma_info` gives each VMA as
``/proc/PID/maps`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ArmvmiError, ExitCode, MemoryReadError, TranslationFault
from ..view import addr

VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYSHARE = 0x1, 0x2, 0x4, 0x8, 0x80
MAX_VMAS = 1 << 17  # far above vm.max_map_count's default (65530)
ANON_VMA_NAME_MAX_LEN = 80
ARG_MAX_READ = 1 << 21
PIECE_MAX = 4 << 20
PIECE_CHUNKS = 512  # below IOV_MAX (1024)  # a cmdline/environ larger than this is not believed


class NotResident(ArmvmiError):
    """A user page that cannot be read from this image, and why."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, address: int, length: int, why: str):
        self.address, self.length, self.why = address, length, why
        super().__init__(f"user address {address:#x} (+{length:#x}): {why}")


# -- the user address space ----------------------------------------------------------------------

def user_va_bits(kernel, mm) -> int:
    """The user half's VA size: ``mm->task_size`` is ``1 << vabits`` for a
    64-bit task (T0SZ may differ from the kernel's T1SZ); else the kernel's."""
    try:
        ts = int(mm.task_size)
    except ArmvmiError:
        ts = 0
    if ts and ts & (ts - 1) == 0 and 36 <= ts.bit_length() - 1 <= 52:
        return ts.bit_length() - 1
    if kernel.has_symbol("vabits_actual"):
        try:
            v = kernel.read_u64(kernel.symbol("vabits_actual"))
            if 36 <= v <= 52:
                return v
        except ArmvmiError:
            pass
    return kernel.info.va_bits or 48


def user_tcr(va_bits: int, page_size: int) -> int:
    """A TCR_EL1 for the user half only (EPD1 set): T0SZ, TG0, IPS 52 bits,
    TBI0 (Linux tags user pointers' top byte), DS for 52-bit 4K/16K (LPA2)."""
    from ..mmu.geometry import PS_ENCODING, Granule

    g = Granule.from_size(page_size)
    ds = va_bits > 48 and g != Granule.K64
    return (64 - va_bits) | (g.tg0 << 14) | (1 << 23) | (PS_ENCODING[52] << 32) | (1 << 37) | (int(ds) << 59)


def mm_layer(kernel, mm):
    """The Stage1 layer of ``mm``'s user half, over the kernel's lower layer (cached per mm)."""
    from ..mmu import Stage1
    from ..mmu.geometry import Granule

    cache = kernel.__dict__.setdefault("_mm_layers", {})
    key = int(mm.address_ if hasattr(mm, "address_") else mm)
    layer = cache.get(key)
    if layer is not None:
        return layer
    mm = _mm_object(kernel, mm)
    pgd_va = int(mm.pgd)
    try:
        pgd_pa = kernel.vmem.translate(pgd_va)
    except TranslationFault as e:
        raise NotResident(pgd_va, 1, f"mm->pgd {pgd_va:#x} does not translate ({e.reason})") from None
    va_bits = user_va_bits(kernel, mm)
    page = kernel.info.page_size or 4096
    ttbr0 = pgd_pa
    if va_bits > 48 or Granule.from_size(page) == Granule.K64:
        ttbr0 = (pgd_pa & 0xFFFF_FFFF_FFC0) | ((pgd_pa >> 48) & 0xF) << 2  # BADDR[51:48] in bits 5:2
    layer = Stage1(kernel.vmem.lower, ttbr0, None, user_tcr(va_bits, page), name=f"user stage1 mm {key:#x}")
    cache[key] = layer
    return layer


def _mm_object(kernel, mm):
    """An mm_struct Object from an Object, a Pointer or an address."""
    from .object import Pointer

    if isinstance(mm, Pointer):
        return mm.deref()
    if isinstance(mm, int):
        return kernel.object("mm_struct", mm)
    return mm


def why_not_resident(layer, va: int, err: Exception) -> str:
    """Name the reason a user page cannot be read (for the index and messages)."""
    if isinstance(err, MemoryReadError):
        return f"not in the image ({err})"
    if not isinstance(err, TranslationFault):
        return str(err)
    if err.layer and err.layer != layer.name:
        return f"not mapped in {err.layer} (stage 2 not filled for this page?): {err.reason}"
    trace = layer.walk(va)
    last = trace.steps[-1] if trace.steps else None
    desc = getattr(last, "descriptor", None) if last is not None else None
    if getattr(err, "kind", "translation") == "external":
        return f"a page table is not readable: {err.reason}"
    if desc:
        return f"not resident (swapped out or not yet faulted in: PTE {desc:#x} at level {last.level})"
    return f"not mapped (never touched, or freed): no entry at level {err.level}"


def mm_read(kernel, mm, address: int, n: int) -> bytes:
    """``n`` bytes of user memory at ``address``; raises :class:`NotResident`."""
    layer = mm_layer(kernel, mm)
    try:
        return layer.read(address, n)
    except (TranslationFault, MemoryReadError):
        for piece_addr, data, length, why in mm_pieces(kernel, mm, address, n):
            if data is None:
                raise NotResident(piece_addr, length, why) from None
        raise


def mm_pieces(kernel, mm, address: int, n: int, chunks: bool = False):
    """``(address, bytes or None, length, why)`` runs covering [address, address+n):
    readable runs with their bytes (at most PIECE_MAX each; with ``chunks``, a
    list of at most PIECE_CHUNKS bytes objects, for os.writev), holes with the
    reason of their first page.  The stage-1 tables are enumerated once (not
    walked per page), so dumping costs about one read per resident page."""
    join = (lambda parts: parts) if chunks else b"".join
    layer = mm_layer(kernel, mm)
    lower = layer.lower
    page = 1 << layer._tlb_shift
    end = address + n
    run_start, run, run_len = address, [], 0
    cur = address

    def hole(start, stop, err=None):
        if err is None:
            try:
                layer.translate(start)
                err = TranslationFault(0, "not readable", start, layer.name)
            except (TranslationFault, MemoryReadError) as e:
                err = e
        return (start, None, stop - start, why_not_resident(layer, start, err))

    for m in layer.mappings(address, end):
        s, e = max(m.va, address), min(m.va + m.size, end)
        if s > cur:
            if run:
                yield (run_start, join(run), run_len, "")
                run, run_len = [], 0
            yield hole(cur, s)
        try:
            whole = lower.read(m.out + (s - m.va), e - s)
        except (TranslationFault, MemoryReadError):
            whole = None
        if whole is None:
            # Part of this leaf is missing below (stage 2 not filled, a hole in the image): page by page.
            a = s
            while a < e:
                b = min(e, (a | (page - 1)) + 1)
                try:
                    data = lower.read(m.out + (a - m.va), b - a)
                except (TranslationFault, MemoryReadError) as err:
                    if run:
                        yield (run_start, join(run), run_len, "")
                        run, run_len = [], 0
                    yield hole(a, b, err)
                    a = b
                    continue
                if not run:
                    run_start = a
                run.append(data)
                run_len += b - a
                a = b
        else:
            if not run:
                run_start = s
            run.append(whole)
            run_len += e - s
        if run_len >= PIECE_MAX or len(run) >= PIECE_CHUNKS:  # bounded memory: long runs come in pieces
            yield (run_start, join(run), run_len, "")
            run, run_len = [], 0
        cur = e
    if run:
        yield (run_start, join(run), run_len, "")
    if cur < end:
        yield hole(cur, end)


# -- argv and environment, as /proc shows them ---------------------------------------------------

def _split(raw: bytes) -> list[str]:
    if not raw:
        return []
    parts = raw.split(b"\0")
    if raw.endswith(b"\0"):
        parts.pop()
    return [p.decode("utf-8", "backslashreplace") for p in parts]


def cmdline_bytes(kernel, mm) -> bytes:
    """What reading /proc/PID/cmdline returns (fs/proc/base.c get_mm_cmdline)."""
    mm = _mm_object(kernel, mm)
    arg_start, arg_end, env_start, env_end = mm.arg_start, mm.arg_end, mm.env_start, mm.env_end
    if arg_start >= arg_end:
        return b""
    # setproctitle() may run past argv into the environment, never elsewhere.
    if env_start != arg_end or env_end < env_start:
        env_start = env_end = arg_end
    length = env_end - arg_start
    if length > ARG_MAX_READ:
        raise ArmvmiError(f"argument area of {length:#x} bytes at {arg_start:#x} is not believable")
    last = mm_read(kernel, mm, arg_end - 1, 1)
    if last != b"\0":
        # argv's final NUL overwritten: the process rewrote its title; /proc
        # shows one page from arg_start up to the first NUL (get_mm_proctitle).
        page = kernel.info.page_size or 4096
        data = _readable_prefix(kernel, mm, arg_start, min(page, length))
        cut = data.find(b"\0")
        return data if cut < 0 else data[: cut + 1]
    return mm_read(kernel, mm, arg_start, arg_end - arg_start)


def _readable_prefix(kernel, mm, address: int, n: int) -> bytes:
    # access_remote_vm returns what it could read before the first fault.
    out = b""
    for _a, data, _l, _why in mm_pieces(kernel, mm, address, n):
        if data is None:
            break
        out += data
    return out


def environ_bytes(kernel, mm) -> bytes:
    """What reading /proc/PID/environ returns (environ_read): env_start..env_end."""
    mm = _mm_object(kernel, mm)
    start, end = mm.env_start, mm.env_end
    if not end or start >= end:
        return b""
    if end - start > ARG_MAX_READ:
        raise ArmvmiError(f"environment area of {end - start:#x} bytes at {start:#x} is not believable")
    return mm_read(kernel, mm, start, end - start)


def cmdline(task) -> list[str]:
    """argv of ``task`` as /proc/PID/cmdline shows it ([] for a kernel thread)."""
    mm = int(task.mm)
    return _split(cmdline_bytes(task._kernel, task.mm.deref())) if mm else []


def environ(task) -> list[str]:
    """The environment of ``task`` as /proc/PID/environ shows it."""
    mm = int(task.mm)
    return _split(environ_bytes(task._kernel, task.mm.deref())) if mm else []


# -- VMAs ---------------------------------------------------------------------------------------

@dataclass
class VmaWalk:
    problems: list[str] = field(default_factory=list)
    complete: bool = True

    def problem(self, msg: str) -> None:
        self.problems.append(msg)
        self.complete = False


def for_each_vma(kernel, mm, walk: VmaWalk | None = None):
    """Every ``vm_area_struct`` of ``mm`` in address order (maple tree on 6.1+,
    the ``mmap`` list before), each checked against the range the tree gives it."""
    walk = walk if walk is not None else VmaWalk()
    mm = _mm_object(kernel, mm)
    vma_t = kernel.type("vm_area_struct")
    from .object import Object

    if kernel.has_member("mm_struct", "mm_mt"):
        from .maple_tree import MapleWalk, mt_for_each

        mw = MapleWalk()
        off_start, off_end = kernel.offsetof("vm_area_struct", "vm_start"), kernel.offsetof("vm_area_struct", "vm_end")
        count = 0
        for first, last, entry in mt_for_each(kernel, mm.address_ + mm.offsetof_("mm_mt"), mw):
            count += 1
            if count > MAX_VMAS:
                walk.problem(f"more than {MAX_VMAS} VMAs")
                break
            try:
                start, end = kernel.read_u64(entry + off_start), kernel.read_u64(entry + off_end)
            except ArmvmiError as e:
                walk.problem(f"VMA at {entry:#x} for {first:#x}-{last + 1:#x} unreadable: {e}")
                break
            if start != first or end != last + 1:
                walk.problem(f"VMA at {entry:#x} says {start:#x}-{end:#x} but the maple tree files it "
                             f"under {first:#x}-{last + 1:#x}: the tree or the VMA is corrupt")
                break
            yield Object(kernel, vma_t, entry)
        for p in mw.problems:
            walk.problem(str(p))
        return
    # Before 6.1: the sorted vm_next list (the rb-tree holds the same VMAs).
    seen, prev_end = set(), 0
    node = int(mm.mmap)
    while node:
        if node in seen or len(seen) >= MAX_VMAS:
            walk.problem(f"VMA list loops or is too long at {node:#x}")
            return
        seen.add(node)
        vma = Object(kernel, vma_t, node)
        try:
            start, end, nxt = vma.vm_start, vma.vm_end, int(vma.vm_next)
        except ArmvmiError as e:
            walk.problem(f"VMA at {node:#x} unreadable: {e}")
            return
        if start < prev_end or end <= start:
            walk.problem(f"VMA at {node:#x} ({start:#x}-{end:#x}) is out of order")
            return
        prev_end = end
        yield vma
        node = nxt


def perms(flags: int) -> str:
    return "".join((
        "r" if flags & VM_READ else "-",
        "w" if flags & VM_WRITE else "-",
        "x" if flags & VM_EXEC else "-",
        "s" if flags & VM_MAYSHARE else "p",
    ))


@dataclass
class VmaInfo:
    """One line of /proc/PID/maps, plus what it was made from."""

    pid: int
    comm: str
    start: int = addr(0)
    end: int = addr(0)
    perms: str = ""
    offset: int = addr(0)
    dev: str = "00:00"
    inode: int = 0
    path: str = ""
    flags: int = addr(0)  # vm_flags
    vma: int = addr(0)  # the vm_area_struct's address
    file: int = addr(0)  # vm_file
    kind: str = "anon"  # file, memfd, anon, heap, stack, special, anon-named
    deleted: bool = False
    line: str = ""  # the /proc/PID/maps line

    __view_record__ = True

    @property
    def raw(self) -> str:
        """The line exactly as /proc/PID/maps prints it (show_map_vma)."""
        head = f"{self.start:08x}-{self.end:08x} {self.perms} {self.offset:08x} {self.dev} {self.inode} "
        if not self.path:
            return head
        return head.ljust(25 + 8 * 6 - 1) + " " + self.path



def _dev(s_dev: int) -> str:
    # new_encode_dev layout inside the kernel: MAJOR = dev >> 20, MINOR = dev & 0xfffff
    return f"{s_dev >> 20:02x}:{s_dev & 0xFFFFF:02x}"


def _special_name(kernel, vma) -> str | None:
    """vm_ops->name(vma): special mappings ([vdso], [vvar], [sigpage]) name
    themselves through their ``vm_special_mapping`` in vm_private_data."""
    ops = int(vma.vm_ops)
    if not ops:
        return None
    named = None
    if kernel.has_symbol("special_mapping_vmops"):
        named = ops == kernel.symbol("special_mapping_vmops")
    elif kernel.has_symbol("special_mapping_name"):
        try:
            named = kernel.read_u64(ops + kernel.offsetof("vm_operations_struct", "name")) == kernel.symbol("special_mapping_name")
        except ArmvmiError:
            named = None
    priv = int(vma.vm_private_data)
    if named is False or not priv:
        return None
    try:
        sm = kernel.object("vm_special_mapping", priv)
        name_ptr = int(sm.name)
        from ..memory.scan import read_cstring

        name = read_cstring(kernel.vmem, name_ptr, 64).decode("utf-8", "replace") if name_ptr else None
    except ArmvmiError:
        return None
    if named is None and not (name and name.startswith("[") and name.endswith("]")):
        return None  # without symbols only a bracketed name is believed
    return name


def _anon_name(kernel, vma, has_file: bool) -> str | None:
    if not vma.has_member_("anon_name"):
        return None
    shared_union = vma.has_member_("shared") and vma.offsetof_("anon_name") == vma.offsetof_("shared")
    if has_file and shared_union:
        return None  # anon_vma_name(): the union holds i_mmap linkage for file VMAs
    ptr = int(vma.anon_name)
    if not ptr:
        return None
    from ..memory.scan import read_cstring

    try:
        off = kernel.offsetof("anon_vma_name", "name")
        return read_cstring(kernel.vmem, ptr + off, ANON_VMA_NAME_MAX_LEN).decode("utf-8", "replace")
    except ArmvmiError:
        return None


def file_path(kernel, file_ptr: int) -> str:
    """The path /proc prints for a ``struct file`` (fs.d_path of its f_path)."""
    from .fs import file_path as fs_file_path

    return fs_file_path(kernel, file_ptr)


def vma_info(kernel, mm, vma, pid: int = 0, comm: str = "") -> VmaInfo:
    """A VMA as /proc/PID/maps shows it (fs/proc/task_mmu.c show_map_vma)."""
    info = _vma_info(kernel, mm, vma, pid, comm)
    info.line = info.raw
    return info


def _vma_info(kernel, mm, vma, pid: int, comm: str) -> VmaInfo:
    flags = vma.vm_flags
    info = VmaInfo(pid, comm, vma.vm_start, vma.vm_end, perms(flags), flags=flags, vma=vma.address_)
    fptr = int(vma.vm_file)
    info.file = fptr
    anon_name = _anon_name(kernel, vma, bool(fptr))
    if fptr:
        f = kernel.object("file", fptr)
        inode = f.f_inode
        info.dev = _dev(inode.i_sb.s_dev)
        info.inode = inode.i_ino
        info.offset = vma.vm_pgoff << ((kernel.info.page_size or 4096).bit_length() - 1)  # PAGE_SHIFT
        if anon_name is not None:
            info.path, info.kind = f"[anon_shmem:{anon_name}]", "anon-named"
        else:
            info.path = file_path(kernel, fptr).replace("\n", "\\012")
            info.deleted = info.path.endswith(" (deleted)")
            info.kind = "memfd" if info.path.startswith("/memfd:") else "file"
        return info
    name = _special_name(kernel, vma)
    if name:
        info.path, info.kind = name, "special"
        return info
    if vma.vm_start <= mm.brk and vma.vm_end >= mm.start_brk:
        info.path, info.kind = "[heap]", "heap"
    elif vma.vm_start <= mm.start_stack <= vma.vm_end:
        info.path, info.kind = "[stack]", "stack"
    elif anon_name is not None:
        info.path, info.kind = f"[anon:{anon_name}]", "anon-named"
    return info
