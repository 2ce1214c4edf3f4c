"""A sparse snapshot that holds neither the kernel's kallsyms nor its BTF still
reads: ``snapshot pack`` carried both in (real capture)."""

from __future__ import annotations

import json

from armvmi_cli.cli.app import main


def test_sparse_snapshot_without_btf_or_kallsyms_pages(nokaslr_capture, tmp_path, monkeypatch, capsys):
    cap = nokaslr_capture
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    pages = tmp_path / "pages"
    # types from the ISF: the pages ps reads are the task structures, not the BTF
    assert main(["ps", str(cap.image), "-m", str(cap.system_map), "--isf", str(cap.isf), "--record-pages", str(pages)]) == 0
    # ... and leave out any page of the BTF blob (and of kallsyms) the walk may have touched
    import armvmi_cli

    with armvmi_cli.open(cap.image, system_map=cap.system_map) as s:
        k = s.vm().kernel
        drop = [(k.vmem.translate(k.symbol(a)), k.vmem.translate(k.symbol(b)))
                for a, b in (("__start_BTF", "__stop_BTF"), ("kallsyms_offsets", "kallsyms_token_index"))]
    kept = [line for line in pages.read_text().split() if not any(lo - 4096 < int(line, 16) < hi for lo, hi in drop)]
    assert kept and len(kept) < len(pages.read_text().split())
    pages.write_text("\n".join(kept) + "\n")
    snap = tmp_path / "s.armvmi"
    assert main(["snapshot", "pack", str(cap.image), str(snap), "--pages-from", str(pages), "-m", str(cap.system_map)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("ARMVMI_PROFILES", str(tmp_path / "none"))
    monkeypatch.setattr("armvmi_cli.symbols.profiles.search_path", lambda: [tmp_path / "none"])
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache2"))  # no cached types either
    assert main(["info", str(snap), "--json"]) == 0
    (vm,) = json.loads(capsys.readouterr().out)["vms"]
    assert "embedded in the snapshot" in vm["kernel"]["symbols"] and vm["kernel"]["types"] == "BTF embedded in the snapshot"
    assert main(["ps", str(snap), "--json"]) == 0
    (vm,) = json.loads(capsys.readouterr().out)["vms"]
    gt = cap.ground_truth
    assert {(t["pid"], t["ppid"], t["comm"]) for t in vm["tasks"]} == {(t["pid"], t["ppid"], t["comm_task_struct"]) for t in gt["tasks"]}
