"""KVM's own view of its VMs, read from the host kernel: ``vm_list`` → ``struct kvm``.

Everything here comes from host memory and the host's type model (BTF), so it
stands without an event log and is what ``verify`` holds the log against:

- stage 2: ``kvm.arch.mmu`` (``pgd_phys``, ``pgt`` → ``kvm_pgtable``
  ia_bits/start_level, ``vmid.id``) and ``kvm.arch.vtcr``; the VTTBR KVM would
  load is ``VMID << 48 | pgd_phys`` (arch/arm64/include/asm/kvm_mmu.h
  ``kvm_get_vttbr``; the VMID is the low ``kvm_arm_vmid_bits`` of
  ``vmid.id``, whose upper bits are the rollover generation);
- memslots: ``kvm.memslots[0]`` → ``kvm_memslots.gfn_tree`` (an rb-tree of
  ``kvm_memory_slot.gfn_node[node_idx]``);
- the VMM: ``kvm.userspace_pid`` → its task (comm, ``mm->pgd``);
- vCPUs: the ``vcpu_array`` xarray → ``kvm_vcpu.arch.ctxt.sys_regs[]``
  (indices from the ``vcpu_sysreg`` enum).

``struct kvm`` is kzalloc'ed (linear map) on nVHE hosts and vzalloc'ed on VHE
hosts (``kvm_arch_alloc_vm``), so every VA goes through the host's own page
tables, never a linear-map shortcut.  Walks are defensive: a bad pointer ends
that walk with a problem noted, never the whole listing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import ArmvmiError, SymbolError, TranslationFault

SYSREGS = ("TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "SCTLR_EL1")
MAX_RB_NODES = 1 << 16
VTCR_VS = 1 << 19  # VTCR_EL2.VS: 16-bit VMIDs
PIDTYPE_PID = 0


@dataclass
class Memslot:
    id: int
    base_gfn: int
    npages: int
    userspace_addr: int
    flags: int
    address: int  # struct kvm_memory_slot VA

    @property
    def base_gpa(self) -> int:
        return self.base_gfn << 12

    @property
    def size(self) -> int:
        return self.npages << 12

    def contains(self, gpa: int, page_shift: int = 12) -> bool:
        return self.base_gfn <= gpa >> page_shift < self.base_gfn + self.npages


@dataclass
class Vcpu:
    idx: int
    vcpu_id: int
    address: int
    regs: dict[str, int]  # saved EL1 registers (kvm_cpu_context.sys_regs)
    cpu: int  # -1 when not loaded
    tid: int | None = None
    kvm_backpointer_ok: bool = True


@dataclass
class KvmVm:
    """One ``struct kvm`` as KVM holds it."""

    address: int  # host VA
    pa: int | None
    vmid: int
    vmid_raw: int
    vmid_bits: int
    pgd_phys: int
    vtcr: int
    ia_bits: int | None
    start_level: int | None
    pgt_pgd: int | None  # kvm_pgtable.pgd VA
    pgt_pgd_pa: int | None
    memslots: list[Memslot] = field(default_factory=list)
    vmm_pid: int | None = None
    vmm_comm: str | None = None
    vmm_task: int | None = None
    vmm_pgd_pa: int | None = None
    stats_id: str | None = None
    vcpus: list[Vcpu] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _host: object = None
    _stage2: object = None
    _vmm_layer: object = None

    @property
    def vttbr(self) -> int:
        return (self.vmid << 48) | self.pgd_phys

    @property
    def label(self) -> str:
        return self.stats_id or f"kvm@{self.address:#x}"

    @property
    def stage2(self):
        if self._stage2 is None:
            from ..mmu import Stage2

            self._stage2 = Stage2(self._host.kernel.vmem.lower, self.vttbr, self.vtcr, name=f"stage2 {self.label}")
        return self._stage2

    def ram_ranges(self) -> list[tuple[int, int]]:
        """Guest-physical [start, end) of every writable memslot (RAM; read-only slots are flash/ROM)."""
        return sorted((m.base_gpa, m.base_gpa + m.size) for m in self.memslots)

    def memslot_for(self, gpa: int) -> Memslot | None:
        for m in self.memslots:
            if m.contains(gpa):
                return m
        return None

    def vmm_layer(self):
        """The VMM's user address space (its ``mm->pgd`` as TTBR0) over host physical."""
        if self._vmm_layer is None:
            if self.vmm_pgd_pa is None:
                raise ArmvmiError(f"{self.label}: the VMM's page tables are unknown (no task for userspace_pid)")
            from ..mmu import Stage1

            hk = self._host
            info = hk.kernel.info
            self._vmm_layer = Stage1.for_kernel(hk.kernel.vmem.lower, hk.swapper_pa, info.va_bits, info.page_size,
                                                name=f"vmm {self.vmm_pid} stage1", ttbr0_baddr=self.vmm_pgd_pa)
        return self._vmm_layer

    def gpa_to_hpa(self, gpa: int) -> tuple[int, str]:
        """Guest physical -> host physical: stage 2 when it maps the page, else
        (KVM fills stage 2 lazily, on the guest's first touch) the memslot's
        userspace address through the VMM's own page tables."""
        try:
            return self.stage2.translate(gpa), "stage2"
        except TranslationFault as first:
            slot = self.memslot_for(gpa)
            if slot is None:
                raise
            hva = slot.userspace_addr + (gpa - slot.base_gpa)
            try:
                return self.vmm_layer().translate(hva), "memslot+vmm-page-tables"
            except TranslationFault as e:
                raise TranslationFault(e.level, f"no stage-2 entry ({first.reason}) and the VMM's page for "
                                       f"HVA {hva:#x} is not mapped either ({e.reason})", gpa, self.label) from None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        d["memslots"] = [asdict(m) for m in self.memslots]
        d["vcpus"] = [asdict(v) for v in self.vcpus]
        d["vttbr"] = self.vttbr
        d["label"] = self.label
        return d


@dataclass
class KvmScan:
    vms: list[KvmVm]
    problems: list[str]
    complete: bool
    vhe: bool | None
    vhe_source: str


def vm_list(hk) -> KvmScan:
    """Every ``struct kvm`` on the host's ``vm_list`` (cached on the HostKernel)."""
    cached = getattr(hk, "_kvm_scan", None)
    if cached is not None:
        return cached
    from ..linux.list import ListWalk, list_for_each_entry

    k = hk.kernel
    walk = ListWalk()
    vms: list[KvmVm] = []
    problems: list[str] = []
    head = vm_list_head(hk)  # no head, no listing: raise rather than report "no VMs"
    head_ok = True
    try:
        for kvm in list_for_each_entry(k, "kvm", head, "vm_list", walk):
            try:
                vms.append(read_kvm(hk, kvm))
            except ArmvmiError as e:
                problems.append(f"struct kvm at {kvm.address_:#x} unreadable: {e}")
    except ArmvmiError as e:
        problems.append(f"vm_list unreadable: {e}")
        head_ok = False
    problems[:0] = [f"vm_list: {p}" for p in walk.problems]
    vhe, src = infer_vhe(hk, vms)
    for vm in vms:
        if vhe:
            for v in vm.vcpus:
                if v.cpu >= 0:
                    vm.problems.append(f"vcpu {v.idx} is loaded on cpu {v.cpu} of a VHE host: its saved EL1 "
                                       "registers in memory date from its last vcpu_put and may be stale")
    scan = KvmScan(vms, problems, head_ok and walk.complete, vhe, src)
    hk._kvm_scan = scan
    return scan


# Functions that walk or edit vm_list (virt/kvm/kvm_main.c): their code holds its address.
ANCHOR_WINDOW = 0x200
VM_LIST_USERS = ("vm_stat_get", "vcpu_stat_get", "vm_stat_clear", "kvm_dev_ioctl", "kvm_destroy_vm")


def vm_list_head(hk) -> int:
    """The address of KVM's ``vm_list``: its symbol, else (kallsyms without
    data symbols) the one address referenced by KVM's code that heads a list
    of valid ``struct kvm``.  A SymbolError when it cannot be known."""
    k = hk.kernel
    if k.has_symbol("vm_list"):
        return k.symbol("vm_list")
    cached = getattr(hk, "_vm_list_head", None)
    if cached is not None:
        return cached
    from .adrp import function_references

    refs = {a for f in VM_LIST_USERS for a in function_references(k, f)}
    # GCC addresses neighbouring globals from one anchor (``adrp x19, kvm_lock`` then
    # ``[x19, #0x20]`` for vm_list), so look a little past each referenced address.
    cands = {a + off for a in refs for off in range(0, ANCHOR_WINDOW, 8)}
    good = sorted(a for a in cands if _heads_kvm_list(hk, a))
    if len(good) != 1:
        why = "none" if not good else f"{len(good)} ({', '.join(hex(a) for a in good)})"
        raise SymbolError(f"the host's symbols ({k.info.symbols_source}) do not include vm_list, and {why} of the "
                          f"{len(refs)} addresses KVM's code refers to heads a list of struct kvm (no VM running, "
                          "or the functions are not in kallsyms): give --host-system-map")
    hk._vm_list_head = good[0]
    hk.notes.append(f"vm_list found at {good[0]:#x} from the code of {', '.join(VM_LIST_USERS)} (no data symbols)")
    return good[0]


def _heads_kvm_list(hk, head: int) -> bool:
    """A non-empty list whose first entry is a struct kvm: its stage-2
    ``kvm_pgtable`` points back at ``kvm.arch.mmu`` and the links agree."""
    k = hk.kernel
    try:
        first = k.read_u64(head)
        if first == head or k.read_u64(first + 8) != head:
            return False
        kvm = k.container_of(first, "kvm", "vm_list")
        mmu = kvm.address_ + k.offsetof("kvm", "arch.mmu")
        return int(kvm.arch.mmu.pgt.mmu) == mmu
    except (ArmvmiError, AttributeError):
        return False


def infer_vhe(hk, vms) -> tuple[bool | None, str]:
    """VHE or nVHE from memory alone: kvm_arch_alloc_vm kzallocs struct kvm on
    nVHE (linear map) and vzallocs it on VHE (vmalloc space)."""
    if vms:
        linear = [hk.is_linear(v.address) for v in vms]
        if all(linear):
            return False, "struct kvm is in the linear map (kzalloc: nVHE)"
        if not any(linear):
            return True, "struct kvm is in vmalloc space (vzalloc: VHE)"
        return None, "struct kvm allocations are in both the linear map and vmalloc space"
    return None, "unknown (no VM to infer it from)"


def _u(v) -> int:
    return int(v)


def read_kvm(hk, kvm) -> KvmVm:
    k = hk.kernel
    addr = kvm.address_
    mmu = kvm.arch.mmu
    vmid_raw = _u(mmu.vmid.id.counter) if hasattr(mmu.vmid.id, "member_") else _u(mmu.vmid.id)
    vtcr = _u(kvm.arch.vtcr)
    bits = _vmid_bits(k, vtcr)
    vm = KvmVm(addr, _pa(hk, addr), vmid_raw & ((1 << bits) - 1), vmid_raw, bits, _u(mmu.pgd_phys), vtcr,
               None, None, None, None, _host=hk)
    try:
        pgt = mmu.pgt.deref()
        vm.ia_bits, vm.start_level, vm.pgt_pgd = _u(pgt.ia_bits), _u(pgt.start_level), _u(pgt.pgd)
        vm.pgt_pgd_pa = _pa(hk, vm.pgt_pgd)
    except ArmvmiError as e:
        vm.problems.append(f"kvm_pgtable unreadable: {e}")
    if kvm.has_member_("stats_id"):
        try:
            vm.stats_id = kvm.stats_id or None
        except ArmvmiError:
            pass
    vm.memslots = _memslots(k, kvm, vm.problems)
    _vmm(hk, kvm, vm)
    vm.vcpus = _vcpus(hk, kvm, vm.problems)
    return vm


def _pa(hk, va: int) -> int | None:
    try:
        return hk.va_to_pa(va)
    except ArmvmiError:
        return None


def _vmid_bits(k, vtcr: int) -> int:
    """``kvm_arm_vmid_bits`` when the symbol is known, else VTCR_EL2.VS."""
    if k.has_symbol("kvm_arm_vmid_bits"):
        try:
            bits = k.read_u32(k.symbol("kvm_arm_vmid_bits"))
            if bits in (8, 16):
                return bits
        except ArmvmiError:
            pass
    return 16 if vtcr & VTCR_VS else 8


def _memslots(k, kvm, problems: list[str]) -> list[Memslot]:
    """The address space 0 memslots, by walking ``gfn_tree`` in order."""
    out: list[Memslot] = []
    try:
        slots = kvm.memslots[0].deref()
        idx = _u(slots.node_idx)
        root = _u(slots.gfn_tree.rb_node)
    except ArmvmiError as e:
        problems.append(f"memslots unreadable: {e}")
        return out
    if idx not in (0, 1):
        problems.append(f"kvm_memslots.node_idx is {idx}, not 0 or 1")
        return out
    node_off = k.offsetof("kvm_memory_slot", f"gfn_node[{idx}]")
    for node in rb_inorder(k, root, problems):
        try:
            s = k.object("kvm_memory_slot", node - node_off)
            out.append(Memslot(_u(s.id), _u(s.base_gfn), _u(s.npages), _u(s.userspace_addr), _u(s.flags), s.address_))
        except ArmvmiError as e:
            problems.append(f"memslot at {node - node_off:#x} unreadable: {e}")
    return out


def rb_inorder(k, root: int, problems: list[str], limit: int = MAX_RB_NODES):
    """Yield every node of an rb-tree in key order; a cycle or an unreadable
    node ends that branch with a problem noted."""
    off_l = k.offsetof("rb_node", "rb_left")
    off_r = k.offsetof("rb_node", "rb_right")
    seen: set[int] = set()
    stack: list[int] = []
    node = root
    while stack or node:
        while node:
            if node in seen or len(seen) >= limit:
                problems.append(f"rb-tree node {node:#x} revisited or tree too large: walk cut")
                node = 0
                break
            seen.add(node)
            stack.append(node)
            try:
                node = k.read_u64(node + off_l)
            except ArmvmiError as e:
                problems.append(f"rb-tree node {node:#x} unreadable: {e}")
                stack.pop()
                node = 0
        if not stack:
            break
        node = stack.pop()
        yield node
        try:
            node = k.read_u64(node + off_r)
        except ArmvmiError as e:
            problems.append(f"rb-tree node {node:#x} unreadable: {e}")
            node = 0


def pid_task(k, pid_ptr: int):
    """The task of a ``struct pid`` (``pid->tasks[PIDTYPE_PID].first``), and its nr."""
    pid = k.object("pid", pid_ptr)
    nr = _u(pid.numbers[0].nr)
    first = k.read_u64(pid_ptr + k.offsetof("pid", "tasks") + PIDTYPE_PID * 8)
    if not first:
        return nr, None
    return nr, k.container_of(first, "task_struct", "pid_links")


def _vmm(hk, kvm, vm: KvmVm) -> None:
    """``userspace_pid`` is a pid_t in 6.1 (a ``struct pid *`` in later kernels)."""
    from ..linux.object import Pointer

    k = hk.kernel
    try:
        raw = kvm.userspace_pid
        if isinstance(raw, Pointer):
            if not int(raw):
                vm.problems.append("kvm.userspace_pid is NULL")
                return
            vm.vmm_pid, task = pid_task(k, int(raw))
        else:
            vm.vmm_pid = int(raw)
            task = host_processes(hk).get(vm.vmm_pid)
        if task is None:
            vm.problems.append(f"VMM pid {vm.vmm_pid} has no task in the host's task list (exited, or hidden)")
            return
        vm.vmm_task, vm.vmm_comm = task.address_, task.comm
        mm = _u(task.mm)
        if mm != _u(kvm.mm):
            vm.problems.append(f"VMM task's mm {mm:#x} is not kvm.mm {_u(kvm.mm):#x}")
        if mm:
            vm.vmm_pgd_pa = hk.va_to_pa(_u(task.mm.pgd))
    except ArmvmiError as e:
        vm.problems.append(f"VMM process unreadable: {e}")


def host_processes(hk) -> dict:
    """tgid -> task_struct Object of every host process (one task-list walk, cached)."""
    procs = getattr(hk, "_processes", None)
    if procs is None:
        from ..linux.tasks import for_each_task

        procs = {}
        for task in for_each_task(hk.kernel):
            try:
                procs.setdefault(int(task.tgid), task)
            except ArmvmiError:
                continue
        hk._processes = procs
    return procs


def sysreg_indices(k) -> dict[str, int]:
    enum = k.type("vcpu_sysreg")
    values = getattr(enum, "values", {})
    return {r: values[r] for r in SYSREGS if r in values}


def _vcpus(hk, kvm, problems: list[str]) -> list[Vcpu]:
    from ..linux.pid import xa_entries

    k = hk.kernel
    out: list[Vcpu] = []
    try:
        idx = sysreg_indices(k)
        head = _u(kvm.vcpu_array.xa_head)
        sysregs_off = k.offsetof("kvm_vcpu", "arch.ctxt.sys_regs")
    except ArmvmiError as e:
        problems.append(f"vcpus unreadable: {e}")
        return out
    xa_problems: list[str] = []
    for i, addr in xa_entries(k, head, xa_problems):
        try:
            v = k.object("kvm_vcpu", addr)
            regs = {name: k.read_u64(addr + sysregs_off + 8 * n) for name, n in idx.items()}
            vc = Vcpu(_u(v.vcpu_idx), _u(v.vcpu_id), addr, regs, _u(v.cpu))
            vc.kvm_backpointer_ok = _u(v.kvm) == kvm.address_
            if not vc.kvm_backpointer_ok:
                problems.append(f"vcpu {i} at {addr:#x}: vcpu->kvm is {_u(v.kvm):#x}, not this struct kvm")
            try:
                pid_ptr = _u(v.pid)
                vc.tid = pid_task(k, pid_ptr)[0] if pid_ptr else None
            except ArmvmiError:
                pass
            out.append(vc)
        except ArmvmiError as e:
            problems.append(f"vcpu {i} at {addr:#x} unreadable: {e}")
    problems += [f"vcpu_array: {p}" for p in xa_problems]
    return out
