"""Build event logs the way the front-end would write them (fixtures, benchmarks, hand-made cases).

    b = LogBuilder()
    b.driver_init(ttbr1=..., tcr=...)
    b.vm_create(7, kvm_va=..., vttbr=..., vtcr=..., ram_base=0x40000000, ram_size=128 << 20)
    b.vm_run_change(7, vcpu=0, ttbr0=..., ttbr1=..., tcr=..., run_state=1)
    data = b.bytes()

Each call appends one record with the next seq and a later timestamp; ``ret`` defaults to
what the spec says EL3 answers for a well-formed call (SMC_OK) and can be overridden.
"""

from __future__ import annotations

import uuid

from .smccc import SMC_OK
from .smclog import LogHeader, Record, build_log, make_record, write_log
from .vmi_service import (DRIVER_INIT, PSCI_VERSION, VM_CREATE, VM_DESTROY, VM_MIGRATION, VM_RUN_CHANGE,
                          VMI_EVENT_FAST, VMI_EVENT_YIELD, VMI_GET_INFORMATION)

# Synthetic defaults, composed from the register fields (not taken from any capture):
# stage 2 with a 4K granule, 40-bit IPA starting at level 1 (2 concatenated tables), 40-bit PA,
# write-back inner-shareable walks; stage 1 with 4K granules and 48-bit VAs in both halves, ASID from
# TTBR1 (TCR.A1, as Linux sets it).
DEFAULT_VTCR = (1 << 31) | (0b010 << 16) | (0b00 << 14) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (1 << 6) | (64 - 40)
DEFAULT_TCR = (0b101 << 32) | (0b10 << 30) | (0b11 << 28) | (0b01 << 26) | (0b01 << 24) | (1 << 22) | ((64 - 48) << 16) \
    | (0b00 << 14) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (64 - 48)
_PAGE_OFFSET_48 = (-(1 << 48)) & 0xFFFF_FFFF_FFFF_FFFF  # start of the linear map with 48-bit VAs
_KIMAGE_VADDR = 0xFFFF_8000_0800_0000  # where arm64 links the kernel image (48-bit VAs)
_RAM = 0x8000_0000


class LogBuilder:
    def __init__(self, boot_id: uuid.UUID | None = None, created_ns: int = 1_700_000_000_000_000_000,
                 t0: int = 1_000_000, step_ns: int = 1000, cpu: int = 0):
        self.header = LogHeader(boot_id=boot_id or uuid.UUID(int=0x1234), created_ns=created_ns)
        self.records: list[Record] = []
        self.crcs: dict[int, int] = {}
        self.seq = 0
        self.time = t0
        self.step_ns = step_ns
        self.cpu = cpu

    def smc(self, x0: int, *args: int, caller: int = 0, ret: int | None = SMC_OK, cpu: int | None = None,
            seq: int | None = None, rflags: int | None = None) -> Record:
        """Append a raw SMC: x0 and up to seven arguments."""
        if seq is not None:
            self.seq = seq
        rec = make_record(self.seq, (x0, *args), timestamp_ns=self.time, cpu=self.cpu if cpu is None else cpu,
                          caller=caller, ret=ret, rflags=rflags)
        self.records.append(rec)
        self.seq += 1
        self.time += self.step_ns
        return rec

    def corrupt_last(self, crc: int = 0xDEADBEEF) -> None:
        """Give the last record a wrong CRC."""
        self.crcs[len(self.records) - 1] = crc

    # ---- the spec's events ---------------------------------------------------------------------------
    def driver_init(self, phys_offset=_RAM, page_offset=_PAGE_OFFSET_48,
                    kimage_voffset=_KIMAGE_VADDR - _RAM, ttbr1=_RAM + 0x0100_0000, tcr=DEFAULT_TCR, vhe=False, **kw):
        return self.smc(VMI_EVENT_FAST, DRIVER_INIT, phys_offset, page_offset, kimage_voffset, ttbr1, tcr, int(vhe), **kw)

    def vm_create(self, vm_id, kvm_va=None, vttbr=None, vtcr=DEFAULT_VTCR, ram_base=0x40000000,
                  ram_size=128 << 20, fast=False, **kw):
        if kvm_va is None:  # a linear-map address, distinct per VM
            kvm_va = _PAGE_OFFSET_48 + 0x0200_0000 + (vm_id << 16)
        if vttbr is None:
            vttbr = (vm_id & 0xFF) << 48 | (0x43000000 + (vm_id << 16))
        return self.smc(VMI_EVENT_FAST if fast else VMI_EVENT_YIELD, VM_CREATE, vm_id, kvm_va, vttbr, vtcr, ram_base,
                        ram_size, **kw)

    def vm_run_change(self, vm_id, vcpu=0, ttbr0=0x4400_0000, ttbr1=(1 << 48) | 0x4100_0000, tcr=DEFAULT_TCR, run_state=1,
                      fast=False, **kw):
        return self.smc(VMI_EVENT_FAST if fast else VMI_EVENT_YIELD, VM_RUN_CHANGE, vm_id, vcpu, ttbr0, ttbr1, tcr,
                        run_state, **kw)

    def vm_migration(self, vm_id, phase, vttbr=0, vtcr=0, ram_base=0, ram_size=0, **kw):
        return self.smc(VMI_EVENT_YIELD, VM_MIGRATION, vm_id, phase, vttbr, vtcr, ram_base, ram_size, **kw)

    def vm_destroy(self, vm_id, fast=True, **kw):
        return self.smc(VMI_EVENT_FAST if fast else VMI_EVENT_YIELD, VM_DESTROY, vm_id, 0, 0, 0, 0, 0, **kw)

    def get_information(self, request, vm_id=0, caller=1, **kw):
        return self.smc(VMI_GET_INFORMATION, request, vm_id, caller=caller, **kw)

    def psci_version(self, **kw):
        return self.smc(PSCI_VERSION, ret=kw.pop("ret", 0x10001), **kw)

    # ---- output -------------------------------------------------------------------------------------
    def bytes(self, record_count: int | None = None) -> bytes:
        return build_log(self.records, self.header, record_count, self.crcs)

    def write(self, path, record_count: int | None = None) -> int:
        return write_log(path, self.records, self.header, record_count, self.crcs)
