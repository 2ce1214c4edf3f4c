"""BTF (read from the image) and DWARF (Debian's -dbg vmlinux) must agree field
by field on the structures armvmi reads.

The debug vmlinux is ~300 MB inside an 800 MB package, and loading its DWARF
takes about a minute, so this runs only when ARMVMI_VMLINUX_DBG points at
/usr/lib/debug/boot/vmlinux-6.1.0-56-arm64 from linux-image-6.1.0-56-arm64-dbg
(for example: apt-get download linux-image-6.1.0-56-arm64-dbg:arm64, then
dpkg-deb --fsys-tarfile ... | tar -x ./usr/lib/debug/boot/).
"""

from __future__ import annotations

import os

import pytest

import armvmi_cli
from armvmi_cli.symbols.dwarf import load_dwarf

STRUCTS = ("task_struct", "mm_struct", "list_head", "cred", "pid", "upid", "pid_namespace", "signal_struct",
           "kvm", "kvm_vcpu", "kvm_s2_mmu", "kvm_pgtable", "kvm_memory_slot", "kvm_memslots", "kvm_arch",
           "kvm_cpu_context", "xarray", "xa_node", "uts_namespace", "new_utsname")


@pytest.fixture(scope="module")
def dwarf():
    path = os.environ.get("ARMVMI_VMLINUX_DBG")
    if not path or not os.path.exists(path):
        pytest.skip("set ARMVMI_VMLINUX_DBG to the -dbg package's vmlinux to cross-check DWARF against BTF")
    return load_dwarf(path)


def _layout(st):
    return {n: (f.offset, f.bit_offset if f.bit_size else None, f.bit_size, f.type.resolve().size) for n, f in st.fields.items()}


def test_btf_and_dwarf_agree(dwarf, nokaslr_capture, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    btf = armvmi_cli.open(nokaslr_capture.image, system_map=nokaslr_capture.system_map).vm().kernel.types
    for name in STRUCTS:
        b, d = btf.struct(name), dwarf.struct(name)
        assert b.size == d.size, name
        assert _layout(b) == _layout(d), name
