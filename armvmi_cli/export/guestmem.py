"""One VM's guest-physical memory as the runs of pages that exist somewhere.

A guest page exists when stage 2 maps it to a host frame the image holds, or
(KVM fills stage 2 lazily, on the guest's first touch) when its memslot's
userspace address is mapped in the VMM's own page tables to a frame the image
holds.  Stage 2 wins where both reach a page: it is what the guest sees.  A
page of guest RAM that neither reaches is *absent*: its content is unknown,
so it is left out and counted, never zero-filled.

The result is a :class:`GuestPhysical` memory (the ``PhysicalMemory``
interface), so every writer and reader of images works on it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..memory.base import PhysicalMemory, Range

MAX_PIECES = 1 << 22  # far above any guest's runs; a malformed tree cannot make them unbounded


@dataclass
class Piece:
    gpa: int
    size: int
    layer: object  # where the bytes are read: the host image (or a plain guest image)
    addr: int  # address in ``layer``
    source: str  # "image", "stage2", "memslot"


@dataclass
class Coverage:
    """What was found: bytes per source, and the absent guest RAM."""

    by_source: dict = field(default_factory=dict)
    absent: int = 0  # bytes of guest RAM (memslots / the log's RAM) that exist nowhere
    absent_runs: list = field(default_factory=list)  # (gpa, size)
    expected: list = field(default_factory=list)  # (gpa_start, gpa_end) of the guest's RAM, when known
    problems: list = field(default_factory=list)


class GuestPhysical(PhysicalMemory):
    """The present pages of one VM, by guest physical address."""

    format = "guest-physical"
    layer_name = "guest physical"
    hole_reason = "guest page absent (neither stage 2 nor the VMM maps it to a frame in the image)"

    def __init__(self, pieces: list[Piece], coverage: Coverage, name: str = "guest"):
        super().__init__(name)
        self.pieces = sorted(pieces, key=lambda p: p.gpa)
        self.coverage = coverage
        self._set_ranges([Range(p.gpa, p.gpa + p.size) for p in self.pieces])

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:
        p = self.pieces[index]
        return p.layer.read(p.addr + (pa - p.gpa), n)

    def runs(self) -> list[tuple[int, int]]:
        """[start, end) runs contiguous in guest physical (across sources)."""
        out: list[list[int]] = []
        for p in self.pieces:
            if out and out[-1][1] == p.gpa:
                out[-1][1] += p.size
            else:
                out.append([p.gpa, p.gpa + p.size])
        return [(a, b) for a, b in out]


def _subtract(runs: list[tuple[int, int]], cover: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``runs`` minus ``cover`` (both sorted lists of [start, end))."""
    out = []
    j = 0
    for a, b in runs:
        cur = a
        while j < len(cover) and cover[j][1] <= cur:
            j += 1
        k = j
        while k < len(cover) and cover[k][0] < b:
            if cover[k][0] > cur:
                out.append((cur, cover[k][0]))
            cur = max(cur, cover[k][1])
            k += 1
        if cur < b:
            out.append((cur, b))
    return out


def _merge(runs):
    out: list[list[int]] = []
    for a, b in sorted(runs):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _intersect_pieces(layer, mappings, source, cov: Coverage):
    """Clip (gpa, out, size) mappings to what ``layer`` holds."""
    ranges = [(r.start, r.end) for r in layer.ranges()]
    import bisect

    starts = [a for a, _ in ranges]
    pieces = []
    for gpa, out, size in mappings:
        i = max(bisect.bisect_right(starts, out) - 1, 0)
        while i < len(ranges) and ranges[i][0] < out + size:
            lo, hi = max(ranges[i][0], out), min(ranges[i][1], out + size)
            if lo < hi:
                pieces.append(Piece(gpa + (lo - out), hi - lo, layer, lo, source))
            i += 1
        if len(pieces) > MAX_PIECES:
            cov.problems.append(f"{source}: more than {MAX_PIECES} runs; the rest left out")
            break
    return pieces


def guest_memory(vm) -> GuestPhysical:
    """The present guest-physical pages of a session VM."""
    cov = Coverage()
    if vm.stage2 is None:
        # A plain guest dump (or the host as a VM): the image already is guest physical.
        pieces = [Piece(r.start, r.size, vm.gphys, r.start, "image") for r in vm.gphys.ranges()]
        cov.by_source["image"] = sum(p.size for p in pieces)
        return GuestPhysical(pieces, cov, vm.label)
    host = vm.stage2.lower
    faults: list = []
    s2 = [(m.va, m.out, m.size) for m in vm.stage2.mappings(faults=faults)]
    if faults:
        cov.problems.append(f"stage 2: {len(faults)} unreadable or malformed tables skipped")
    pieces = _intersect_pieces(host, s2, "stage2", cov)
    kvm = kvm_of(vm, cov.problems)
    if kvm is not None and kvm.memslots:
        cov.expected = _merge((m.base_gpa, m.base_gpa + m.size) for m in kvm.memslots)
    elif vm.ram and vm.ram[1]:
        cov.expected = [(vm.ram[0], vm.ram[0] + vm.ram[1])]
    if kvm is not None and kvm.memslots:
        pieces += _memslot_pieces(kvm, _merge((p.gpa, p.gpa + p.size) for p in pieces), cov)
    for p in pieces:
        cov.by_source[p.source] = cov.by_source.get(p.source, 0) + p.size
    have = _merge((p.gpa, p.gpa + p.size) for p in pieces)
    cov.absent_runs = _subtract(cov.expected, have)
    cov.absent = sum(b - a for a, b in cov.absent_runs)
    return GuestPhysical(pieces, cov, vm.label)


def kvm_of(vm, problems: list | None = None):
    """KVM's own ``struct kvm`` for a VM (memslots, VMM, vCPUs): the one it was
    found through, else (a VM from the event log) the one in host memory with
    the same stage-2 tables; None when the host kernel cannot be read."""
    kvm = getattr(vm, "kvm", None)
    if kvm is not None or vm.stage2 is None:
        return kvm
    from ..errors import ArmvmiError
    from ..host.kernel import host_kernel
    from ..host.kvm import vm_list

    try:
        scan = vm_list(host_kernel(vm.session, vm.session.host_system_map))
    except ArmvmiError as e:
        if problems is not None:
            problems.append(f"KVM's state not read (no memslot-only pages, no vCPU registers): {e}")
        return None
    for m in scan.vms:
        if m.pgd_phys == vm.stage2.base:
            vm.kvm = m
            return m
    if problems is not None:
        problems.append("no struct kvm in host memory has this VM's stage-2 tables (no memslot-only pages, no vCPU registers)")
    return None


def _memslot_pieces(kvm, have, cov: Coverage) -> list[Piece]:
    """Guest pages stage 2 does not map, reached through the VMM's mapping of their memslot."""
    from ..errors import ArmvmiError

    try:
        vmm = kvm.vmm_layer()
    except ArmvmiError as e:
        cov.problems.append(f"VMM page tables not usable, memslot-only pages left out: {e}")
        return []
    maps = []
    for slot in kvm.memslots:
        want = _subtract([(slot.base_gpa, slot.base_gpa + slot.size)], have)
        for a, b in want:
            hva = slot.userspace_addr + (a - slot.base_gpa)
            try:
                for m in vmm.mappings(hva, hva + (b - a)):
                    lo, hi = max(m.va, hva), min(m.va + m.size, hva + (b - a))
                    if lo < hi:
                        maps.append((a + (lo - hva), m.out + (lo - m.va), hi - lo))
            except ArmvmiError as e:
                cov.problems.append(f"memslot {slot.id}: VMM mapping unreadable: {e}")
    return _intersect_pieces(vmm.lower, maps, "memslot", cov)
