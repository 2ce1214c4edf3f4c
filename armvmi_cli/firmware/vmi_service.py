"""The EL3 introspection service (``vmi_std_interface``) and a PSCI stub.

``vmi_smc_handler`` is registered for OEN_TAP_START..OEN_TAP_END (48-49), fast and
yielding. It identifies the caller's world from ``flags`` (SCR_EL3.NS), then routes:

- fast VMI_EVENT (0xF0000001) → ``vmi_fast_runtime_entry``: DRIVER_INIT, VM_DESTROY
- yielding VMI_EVENT (0x70000001) → ``vmi_std_init_entry``: VM_CREATE, VM_RUN_CHANGE, VM_MIGRATION
- VMI_GET_INFORMATION (0xF0000002) → ``vmi_get_information``, secure world only

Return codes follow shared/spec/smclog.md: SMC_UNK for an unknown function or event, a
misrouted event, or a denied caller; INVALID_PARAM for unknown/duplicate vm_id or a full
registry. Decisions the spec leaves open, made here and documented:
VMI_EVENT from the secure world is a denied caller (SMC_UNK); any event before the first
DRIVER_INIT is refused (SMC_UNK: the front-end has not registered); an unknown
VMI_GET_INFORMATION request, or one for the host record before DRIVER_INIT, is INVALID_PARAM.
"""

from __future__ import annotations

from .registry import Registry
from .runtime_svc import DECLARE_RT_SVC, SMC_FROM_NON_SECURE, RtSvcDesc, SmcContext
from .smccc import (OEN_STD_START, OEN_TAP_END, OEN_TAP_START, SMC_INVALID_PARAM, SMC_OK, SMC_TYPE_FAST,
                    SMC_TYPE_YIELD, SMC_UNK)

OEN_TAP_INTERFACE = 48

VMI_EVENT_FAST = 0xF0000001
VMI_EVENT_YIELD = 0x70000001
VMI_GET_INFORMATION = 0xF0000002
VMI_FUNCTIONS = {VMI_EVENT_FAST: "VMI_EVENT", VMI_EVENT_YIELD: "VMI_EVENT", VMI_GET_INFORMATION: "VMI_GET_INFORMATION"}

DRIVER_INIT, VM_CREATE, VM_RUN_CHANGE, VM_MIGRATION, VM_DESTROY = range(5)
EVENT_NAMES = {DRIVER_INIT: "DRIVER_INIT", VM_CREATE: "VM_CREATE", VM_RUN_CHANGE: "VM_RUN_CHANGE",
               VM_MIGRATION: "VM_MIGRATION", VM_DESTROY: "VM_DESTROY"}
EVENT_BY_NAME = {v: k for k, v in EVENT_NAMES.items()}
FAST_EVENTS = frozenset({DRIVER_INIT, VM_DESTROY})
YIELD_EVENTS = frozenset({VM_CREATE, VM_RUN_CHANGE, VM_MIGRATION})

INFO_COUNT, INFO_VM, INFO_HOST = 0, 1, 2
INFO_NAMES = {INFO_COUNT: "COUNT", INFO_VM: "VM", INFO_HOST: "HOST"}

PSCI_VERSION = 0x84000000
PSCI_VERSION_1_1 = 0x10001


def event_name(x1: int) -> str:
    return EVENT_NAMES.get(x1, f"EVENT_{x1:#x}")


class VmiService:
    """vmi_std_interface: the handlers over one :class:`Registry`."""

    def __init__(self, registry: Registry | None = None):
        self.registry = registry if registry is not None else Registry()
        self.initialised = False

    def init(self) -> int:
        self.initialised = True
        return 0

    def descriptors(self) -> list[RtSvcDesc]:
        # As in TF-A's tspd/opteed: only one of the fast/yield pair has an init.
        return [
            DECLARE_RT_SVC("vmi_std_interface_fast", OEN_TAP_START, OEN_TAP_END, SMC_TYPE_FAST, self.init,
                           self.vmi_smc_handler),
            DECLARE_RT_SVC("vmi_std_interface_std", OEN_TAP_START, OEN_TAP_END, SMC_TYPE_YIELD, None,
                           self.vmi_smc_handler),
        ]

    # ---- the handler -------------------------------------------------------------------------------
    def vmi_smc_handler(self, smc_fid: int, x1: int, x2: int, x3: int, x4: int, cookie, handle: SmcContext,
                        flags: int) -> int:
        ns = flags & SMC_FROM_NON_SECURE
        if smc_fid == VMI_EVENT_FAST or smc_fid == VMI_EVENT_YIELD:
            handle.event = EVENT_NAMES.get(x1)
            if not ns:
                handle.route = "vmi_smc_handler"
                return handle.reject(SMC_UNK, "denied-caller",
                                     f"VMI_EVENT {event_name(x1)} from the secure world: only the front-end sends events")
            if smc_fid == VMI_EVENT_FAST:
                if x1 in FAST_EVENTS:
                    return self.vmi_fast_runtime_entry(x1, x2, x3, x4, handle)
                return self._misrouted(handle, x1, "fast", YIELD_EVENTS)
            if x1 in YIELD_EVENTS:
                return self.vmi_std_init_entry(x1, x2, x3, x4, handle)
            return self._misrouted(handle, x1, "yielding", FAST_EVENTS)
        if smc_fid == VMI_GET_INFORMATION:
            handle.event = "GET_INFORMATION"
            if ns:
                handle.route = "vmi_smc_handler"
                return handle.reject(SMC_UNK, "non-secure-get-information",
                                     f"VMI_GET_INFORMATION (request {x1}) from the non-secure world: an attempt to"
                                     " read the registry from outside TrustZone", "critical")
            return self.vmi_get_information(x1, x2, handle)
        handle.route = "vmi_smc_handler"
        return handle.reject(SMC_UNK, "unknown-function",
                             f"function id {smc_fid:#010x} is in the VMI range (OEN {smc_fid >> 24 & 0x3F}) but is not a VMI function",
                             "warning")

    @staticmethod
    def _misrouted(handle: SmcContext, x1: int, kind: str, other: frozenset) -> int:
        handle.route = "vmi_smc_handler"
        if x1 in other:
            return handle.reject(SMC_UNK, "misrouted",
                                 f"{event_name(x1)} sent as a {kind} call: it belongs to the other call type")
        return handle.reject(SMC_UNK, "unknown-event", f"unknown VMI event {x1:#x}")

    def _no_host(self, handle: SmcContext, x1: int) -> int | None:
        if self.registry.host is None and x1 != DRIVER_INIT:
            return handle.reject(SMC_UNK, "no-driver-init",
                                 f"{event_name(x1)} before any DRIVER_INIT: the front-end has not registered")
        return None

    def vmi_fast_runtime_entry(self, x1: int, x2: int, x3: int, x4: int, handle: SmcContext) -> int:
        handle.route = "vmi_fast_runtime_entry"
        rec = handle.record
        if self._no_host(handle, x1) is not None:
            return handle.ret
        reg = self.registry
        if x1 == DRIVER_INIT:
            r = reg.driver_init(handle, x2, x3, x4, rec.x5, rec.x6, rec.x7)
        else:
            r = reg.vm_destroy(handle, x2, x3, x4, rec.x5, rec.x6, rec.x7)
        handle.applied = r == SMC_OK
        return handle.ret1(r)

    def vmi_std_init_entry(self, x1: int, x2: int, x3: int, x4: int, handle: SmcContext) -> int:
        handle.route = "vmi_std_init_entry"
        reg = self.registry
        if reg.host is None:
            self._no_host(handle, x1)
            return handle.ret
        rec = handle.record
        if x1 == VM_RUN_CHANGE:  # by far the most frequent event
            r = reg.vm_run_change(handle, x2, x3, x4, rec.x5, rec.x6, rec.x7)
        elif x1 == VM_CREATE:
            r = reg.vm_create(handle, x2, x3, x4, rec.x5, rec.x6, rec.x7)
        else:
            r = reg.vm_migration(handle, x2, x3, x4, rec.x5, rec.x6, rec.x7)
        handle.applied = r == SMC_OK
        handle.ret = r  # SMC_RET1
        return r

    def vmi_get_information(self, request: int, x2: int, handle: SmcContext) -> int:
        """Core-library queries: answered from the registry, no state change."""
        handle.route = "vmi_get_information"
        reg = self.registry
        if request == INFO_COUNT:
            handle.answer = {"live_vms": len(reg)}
        elif request == INFO_VM:
            vm = reg.get(x2)
            if vm is None:
                return handle.reject(SMC_INVALID_PARAM, "unknown-vm-id", f"VMI_GET_INFORMATION for vm_id {x2}, which is not live")
            handle.answer = {"vm_id": vm.vm_id, "slot": vm.slot, "vttbr": vm.vttbr}
        elif request == INFO_HOST:
            if reg.host is None:
                return handle.reject(SMC_INVALID_PARAM, "no-driver-init", "VMI_GET_INFORMATION(HOST) before any DRIVER_INIT")
            handle.answer = {"epoch": reg.host.epoch}
        else:
            return handle.reject(SMC_INVALID_PARAM, "unknown-request", f"VMI_GET_INFORMATION request {request}")
        handle.detail = f"{INFO_NAMES[request]} → {handle.answer}"
        handle.applied = True
        return handle.ret1(SMC_OK)


class PsciStub:
    """A second, unrelated service at the standard-service OEN: only PSCI_VERSION is modelled."""

    def init(self) -> int:
        return 0

    def descriptors(self) -> list[RtSvcDesc]:
        return [DECLARE_RT_SVC("std_svc", OEN_STD_START, OEN_STD_START, SMC_TYPE_FAST, self.init, self.std_svc_smc_handler)]

    def std_svc_smc_handler(self, smc_fid, x1, x2, x3, x4, cookie, handle: SmcContext, flags) -> int:
        handle.route = "std_svc_smc_handler"
        if smc_fid == PSCI_VERSION:
            handle.event = "PSCI_VERSION"
            handle.detail = "PSCI 1.1"
            handle.applied = True
            return handle.ret1(PSCI_VERSION_1_1)
        return handle.reject(SMC_UNK, "unknown-function", f"standard service function {smc_fid:#010x} is not modelled", "warning")
