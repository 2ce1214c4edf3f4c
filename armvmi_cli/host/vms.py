"""The VMs memory holds, paired with the VMs the event log says are live.

Pairing is by ``struct kvm`` address (the VM_CREATE's x3), then, for records
without one (migrated-in VMs) or whose address is wrong, by stage-2 table
base.  Whatever stays unpaired on either side is what ``verify`` reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ArmvmiError

KVM_MEM_READONLY = 1 << 1  # include/uapi/linux/kvm.h: flash/ROM slots
S2_BASE = 0x0000_FFFF_FFFF_FFFE


@dataclass
class Pairing:
    pairs: list = field(default_factory=list)  # (VmRecord, KvmVm, how)
    log_only: list = field(default_factory=list)  # VmRecord
    memory_only: list = field(default_factory=list)  # KvmVm

    def log_record_for(self, kvm_vm):
        for rec, m, _ in self.pairs:
            if m is kvm_vm:
                return rec
        return None


def pair(registry, vms) -> Pairing:
    out = Pairing()
    live = list(registry.live()) if registry is not None else []
    left = list(vms)
    for how, key_log, key_mem in (
        ("struct kvm address", lambda r: r.kvm_va, lambda m: m.address),
        ("stage-2 base", lambda r: r.vttbr & S2_BASE, lambda m: m.pgd_phys),
    ):
        rest = []
        for rec in live:
            k = key_log(rec)
            hit = next((m for m in left if k is not None and key_mem(m) == k), None)
            if hit is None:
                rest.append(rec)
                continue
            left.remove(hit)
            out.pairs.append((rec, hit, how))
        live = rest
    out.log_only, out.memory_only = live, left
    return out


def is_ram_slot(slot) -> bool:
    """A memslot that holds RAM: writable user memory of the VMM.  Read-only
    slots are flash/ROM (QEMU's pflash at guest-physical 0), never RAM."""
    return not slot.flags & KVM_MEM_READONLY and slot.userspace_addr != 0 and slot.npages > 0


def ram_slots(kvm_vm) -> list:
    return [m for m in kvm_vm.memslots if is_ram_slot(m)]


def ram_slot(kvm_vm):
    """The guest's main RAM: the largest RAM memslot (None when it has none)."""
    return max(ram_slots(kvm_vm), key=lambda m: m.npages, default=None)


def memory_vms(session, host_system_map=None) -> list:
    """One session VM per ``struct kvm`` in memory, its stage 2 from KVM's own
    fields (not the log's): the guest-side checks run on what memory says.
    ``vm_id`` is the log's id when the VM is paired with a log record."""
    from ..session import VM
    from .kernel import host_kernel
    from .kvm import vm_list

    hk = host_kernel(session, host_system_map)
    scan = vm_list(hk)
    pairing = pair(session.registry, scan.vms)
    kernels = hk.__dict__.setdefault("_guest_kernels", {})  # struct kvm VA -> guest Kernel (log-independent)
    out = []
    for m in scan.vms:
        rec = pairing.log_record_for(m)
        slot = ram_slot(m)
        vm_id = rec.vm_id if rec is not None else m.label
        label = f"vm {vm_id}" if rec is not None else f"{m.label} (from memory)"
        vm = VM(session, vm_id, label, m.stage2, stage2=m.stage2, record=rec,
                ram=(slot.base_gpa, slot.size) if slot else None)
        vm.kvm = m
        vm._kernel = kernels.get(m.address)
        if vm._kernel is None:
            try:
                kernels[m.address] = vm.kernel
            except ArmvmiError:
                pass  # raised again, with its reason, when the caller asks for vm.kernel
        out.append(vm)
    return out


def unlogged_vms(session) -> list:
    """(session VM, Finding) for each ``struct kvm`` on vm_list that the
    session's log does not hold live: never created, or destroyed in the log
    but still in memory.  Raises ArmvmiError when the host kernel or its
    vm_list cannot be read (a plain guest dump, a host with no KVM)."""
    from ..session import VM
    from ..view import Finding, hexs
    from .kernel import host_kernel
    from .kvm import vm_list

    hk = host_kernel(session)
    scan = vm_list(hk)
    reg = session.registry
    kernels = hk.__dict__.setdefault("_guest_kernels", {})
    out = []
    for m in pair(reg, scan.vms).memory_only:
        slot = ram_slot(m)
        vm = VM(session, m.label, f"{m.label} (from memory), NOT IN THE EVENT LOG", m.stage2, stage2=m.stage2,
                ram=(slot.base_gpa, slot.size) if slot else None)
        vm.kvm = m
        vm._kernel = kernels.get(m.address)
        gone = [h for h in (reg.history if reg is not None else ()) if h.kvm_va == m.address or (h.vttbr & S2_BASE) == m.pgd_phys]
        why = (f"the log destroyed it (vm {gone[-1].vm_id}, seq {gone[-1].ended_seq}) but it is still on vm_list"
               if gone else "the event log never created it")
        msg = (f"struct kvm {m.address:#x} (VMM pid {m.vmm_pid} {m.vmm_comm or '?'}, VTTBR {m.vttbr:#x}) is on KVM's "
               f"vm_list but {why}")
        out.append((vm, Finding("hidden-vm", "critical", vm.name, msg,
                                {"struct_kvm": hexs(m.address), "vttbr": hexs(m.vttbr), "vmm_pid": m.vmm_pid})))
    return out


def host_vm_rows(session, host_system_map=None) -> list[dict]:
    """``armvmi vms`` rows for the VMs found in host memory (with or without a log)."""
    from .kernel import host_kernel
    from .kvm import vm_list

    hk = host_kernel(session, host_system_map)
    scan = vm_list(hk)
    pairing = pair(session.registry, scan.vms)
    vhe, vhe_source = scan.vhe, scan.vhe_source
    if vhe is None and session.host is not None:
        vhe, vhe_source = session.host.vhe, "DRIVER_INIT x7 bit 0 in the event log (memory cannot tell)"
    rows = []
    for m in scan.vms:
        rec = pairing.log_record_for(m)
        slot = ram_slot(m)
        rows.append({
            "source": "memory",
            "vm_id": rec.vm_id if rec is not None else None,
            "in_log": rec is not None,
            "label": m.label,
            "struct_kvm": m.address,
            "struct_kvm_pa": m.pa,
            "vmid": m.vmid,
            "vttbr": m.vttbr,
            "vtcr": m.vtcr,
            "stage2_base": m.pgd_phys,
            "ipa_bits": m.ia_bits,
            "start_level": m.start_level,
            "ram_base": slot.base_gpa if slot else None,
            "ram_size": slot.size if slot else None,
            "memslots": [{"id": s.id, "base_gpa": s.base_gpa, "size": s.size, "userspace_addr": s.userspace_addr,
                          "flags": s.flags} for s in m.memslots],
            "vmm_pid": m.vmm_pid,
            "vmm_comm": m.vmm_comm,
            "vcpus": [{"idx": v.idx, "struct_kvm_vcpu": v.address, "tid": v.tid, "cpu": v.cpu, **v.regs}
                      for v in m.vcpus],
            "vhe": vhe,
            "vhe_source": vhe_source,
            "problems": m.problems,
        })
    return rows


def try_host_vm_rows(session, host_system_map=None) -> tuple[list[dict], str | None]:
    """Rows, or ([], why) when the host kernel cannot be read (a plain guest dump, no symbols...)."""
    try:
        return host_vm_rows(session, host_system_map), None
    except ArmvmiError as e:
        return [], str(e)
