"""The EL3 VM registry: one host record, live VMs in a 64-slot array and a hash table
by vm_id, and the history (VMs that migrated away or were destroyed, earlier host epochs).

Every mutator takes the call's :class:`~.runtime_svc.SmcContext` and returns x0:
rejections go through ``ctx.reject`` (exactly one record-scope anomaly), suspicious
but accepted calls through ``ctx.note``. History is bounded so that replay memory does
not grow with the log (counts of what was dropped are kept).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .smccc import SMC_INVALID_PARAM, SMC_OK

MAX_VMS = 64
KVM_MAX_VCPUS = 512  # arm64 KVM_MAX_VCPUS: bounds per-VM state a hostile log can make us hold
HISTORY_LIMIT = 4096

RUN_STATES = {0: "stopped", 1: "running", 2: "paused"}

# lifecycle states
CREATED = "created"
MIGRATED_IN = "migrated-in"
MIGRATING_OUT = "migrating-out"
MIGRATED_AWAY = "migrated-away"
DESTROYED = "destroyed"


@dataclass(slots=True)
class HostRecord:
    epoch: int
    phys_offset: int  # memstart_addr
    page_offset: int
    kimage_voffset: int
    ttbr1: int
    tcr: int
    vhe: bool
    x7: int
    seq: int
    time_ns: int
    cpu: int


@dataclass(slots=True)
class VcpuState:
    index: int
    ttbr0: int
    ttbr1: int
    tcr: int
    run_state: int
    seq: int
    time: int
    cpu: int
    changes: int = 1

    @property
    def run_state_name(self) -> str:
        return RUN_STATES.get(self.run_state, str(self.run_state))


@dataclass(slots=True)
class VmRecord:
    vm_id: int
    slot: int
    state: str
    kvm_va: int | None  # host VA of struct kvm (unknown for a migrated-in VM)
    vttbr: int
    vtcr: int
    ram_base: int
    ram_size: int
    created_seq: int
    created_ns: int
    epoch: int
    origin: str = CREATED  # or MIGRATED_IN
    vcpus: dict[int, VcpuState] = field(default_factory=dict)
    last_seq: int = 0
    last_ns: int = 0
    ended_seq: int | None = None
    ended_ns: int | None = None

    @property
    def vmid(self) -> int:
        return self.vttbr >> 48

    @property
    def stage2_base(self) -> int:
        return self.vttbr & 0x0000_FFFF_FFFF_FFFE


class Registry:
    def __init__(self, max_vms: int = MAX_VMS, history_limit: int = HISTORY_LIMIT):
        self.max_vms = max_vms
        self.slots: list[VmRecord | None] = [None] * max_vms
        self.by_id: dict[int, VmRecord] = {}  # the hash table
        self.host: HostRecord | None = None
        self.epoch = 0
        self.host_history: deque[HostRecord] = deque(maxlen=history_limit)
        self.history: deque[VmRecord] = deque(maxlen=history_limit)
        self.history_total = 0  # including records the bounded deque dropped
        self.host_history_total = 0

    # ---- queries ----------------------------------------------------------------------------------
    def live(self) -> list[VmRecord]:
        return [vm for vm in self.slots if vm is not None]

    def get(self, vm_id: int) -> VmRecord | None:
        return self.by_id.get(vm_id)

    def __len__(self) -> int:
        return len(self.by_id)

    def _free_slot(self) -> int | None:
        for i, vm in enumerate(self.slots):
            if vm is None:
                return i
        return None

    def _retire(self, vm: VmRecord, state: str, seq: int, ts: int) -> None:
        del self.by_id[vm.vm_id]
        self.slots[vm.slot] = None
        vm.state = state
        vm.ended_seq, vm.ended_ns, vm.last_seq, vm.last_ns = seq, ts, seq, ts
        self.history.append(vm)
        self.history_total += 1

    # ---- events (the ctx is the SMC's context; see runtime_svc.SmcContext) ------------------------------
    def driver_init(self, ctx, phys_offset, page_offset, kimage_voffset, ttbr1, tcr, x7) -> int:
        rec = ctx.record
        if self.host is not None:
            self.host_history.append(self.host)
            self.host_history_total += 1
            ctx.note("new-host-epoch", f"DRIVER_INIT again: host epoch {self.epoch + 1} replaces epoch {self.epoch}"
                     f" (set at seq {self.host.seq}); {len(self.by_id)} live VM(s) carried over", "error")
        self.epoch += 1
        if x7 & ~1:
            ctx.note("reserved-bits", f"DRIVER_INIT x7 {x7:#x} has bits other than bit 0 (VHE)")
        if ttbr1 == 0 or tcr == 0:
            ctx.note("host-context", "DRIVER_INIT carries a zero host TTBR1_EL1 or TCR_EL1")
        self.host = HostRecord(self.epoch, phys_offset, page_offset, kimage_voffset, ttbr1, tcr, bool(x7 & 1), x7,
                               rec.seq, rec.timestamp_ns, rec.cpu)
        ctx.detail = f"host epoch {self.epoch}"
        return SMC_OK

    def _add_vm(self, ctx, vm_id, kvm_va, vttbr, vtcr, ram_base, ram_size, origin) -> int:
        rec = ctx.record
        if vm_id == 0:
            return ctx.reject(SMC_INVALID_PARAM, "bad-vm-id", "vm_id 0 is not allowed")
        if vm_id in self.by_id:
            other = self.by_id[vm_id]
            return ctx.reject(SMC_INVALID_PARAM, "duplicate-vm-id",
                              f"vm_id {vm_id} is already live (slot {other.slot}, since seq {other.created_seq})")
        slot = self._free_slot()
        if slot is None:
            return ctx.reject(SMC_INVALID_PARAM, "registry-full",
                              f"registry full: {self.max_vms} live VMs, vm_id {vm_id} refused")
        base = vttbr & 0x0000_FFFF_FFFF_FFFE
        if base == 0:
            ctx.note("stage2-base", f"vm_id {vm_id}: VTTBR_EL2 {vttbr:#x} has a zero stage-2 base")
        if ram_size == 0:
            ctx.note("ram-size", f"vm_id {vm_id}: guest RAM size is 0")
        for other in self.by_id.values():  # at most 63: creates are rare
            if base and other.stage2_base == base:
                ctx.note("shared-stage2", f"vm_id {vm_id} shares stage-2 tables {base:#x} with live vm_id {other.vm_id}",
                         "error")
            elif other.vmid == vttbr >> 48:
                ctx.note("shared-vmid", f"vm_id {vm_id} has the same VMID {vttbr >> 48} as live vm_id {other.vm_id}")
        vm = VmRecord(vm_id, slot, origin, kvm_va, vttbr, vtcr, ram_base, ram_size, rec.seq, rec.timestamp_ns,
                      self.epoch, origin, last_seq=rec.seq, last_ns=rec.timestamp_ns)
        self.slots[slot] = vm
        self.by_id[vm_id] = vm
        ctx.detail = f"vm {vm_id} in slot {slot}"
        return SMC_OK

    def vm_create(self, ctx, vm_id, kvm_va, vttbr, vtcr, ram_base, ram_size) -> int:
        return self._add_vm(ctx, vm_id, kvm_va, vttbr, vtcr, ram_base, ram_size, CREATED)

    def vm_run_change(self, ctx, vm_id, vcpu, ttbr0, ttbr1, tcr, run_state) -> int:
        vm = self.by_id.get(vm_id)
        if vm is None:
            return ctx.reject(SMC_INVALID_PARAM, "unknown-vm-id", f"VM_RUN_CHANGE for vm_id {vm_id}, which is not live")
        if vcpu >= KVM_MAX_VCPUS:
            return ctx.reject(SMC_INVALID_PARAM, "bad-vcpu", f"vm_id {vm_id}: vcpu index {vcpu} >= {KVM_MAX_VCPUS}")
        if run_state > 2:
            return ctx.reject(SMC_INVALID_PARAM, "bad-run-state", f"vm_id {vm_id} vcpu {vcpu}: run state {run_state}")
        rec = ctx.record
        v = vm.vcpus.get(vcpu)
        if v is None:
            vm.vcpus[vcpu] = VcpuState(vcpu, ttbr0, ttbr1, tcr, run_state, rec.seq, rec.timestamp_ns, rec.cpu)
        else:
            v.ttbr0, v.ttbr1, v.tcr, v.run_state, v.seq, v.time, v.cpu = ttbr0, ttbr1, tcr, run_state, rec.seq, rec.timestamp_ns, rec.cpu
            v.changes += 1
        vm.last_seq, vm.last_ns = rec.seq, rec.timestamp_ns
        return SMC_OK

    def vm_migration(self, ctx, vm_id, phase, vttbr, vtcr, ram_base, ram_size) -> int:
        rec = ctx.record
        if phase == 3:
            r = self._add_vm(ctx, vm_id, None, vttbr, vtcr, ram_base, ram_size, MIGRATED_IN)
            if r == SMC_OK:
                ctx.detail = f"vm {vm_id} migrated in, slot {self.by_id[vm_id].slot}"
            return r
        if phase not in (1, 2):
            return ctx.reject(SMC_INVALID_PARAM, "bad-migration-phase", f"vm_id {vm_id}: migration phase {phase}")
        vm = self.by_id.get(vm_id)
        if vm is None:
            return ctx.reject(SMC_INVALID_PARAM, "unknown-vm-id", f"VM_MIGRATION phase {phase} for vm_id {vm_id}, which is not live")
        if vttbr or vtcr or ram_base or ram_size:
            ctx.note("reserved-args", f"VM_MIGRATION phase {phase} carries non-zero x4..x7", "info")
        if phase == 1:
            if vm.state == MIGRATING_OUT:
                ctx.note("migration-order", f"vm_id {vm_id}: migrate-out begins twice")
            vm.state = MIGRATING_OUT
            vm.last_seq, vm.last_ns = rec.seq, rec.timestamp_ns
            ctx.detail = f"vm {vm_id} migrate-out begins"
        else:
            if vm.state != MIGRATING_OUT:
                ctx.note("migration-order", f"vm_id {vm_id}: migrate-out done without migrate-out begin")
            self._retire(vm, MIGRATED_AWAY, rec.seq, rec.timestamp_ns)
            ctx.detail = f"vm {vm_id} left this host"
        return SMC_OK

    def vm_destroy(self, ctx, vm_id, x3, x4, x5, x6, x7) -> int:
        rec = ctx.record
        vm = self.by_id.get(vm_id)
        if vm is None:
            return ctx.reject(SMC_INVALID_PARAM, "unknown-vm-id", f"VM_DESTROY for vm_id {vm_id}, which is not live")
        if x3 or x4 or x5 or x6 or x7:
            ctx.note("reserved-args", "VM_DESTROY carries non-zero x3..x7", "info")
        self._retire(vm, DESTROYED, rec.seq, rec.timestamp_ns)
        ctx.detail = f"vm {vm_id} destroyed (slot {vm.slot} free)"
        return SMC_OK
