"""armvmi events / events import / vms, through the real entry point (exit codes included)."""

import json
import shutil

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.firmware.builder import LogBuilder
from armvmi_cli.firmware.smccc import SMC_UNK


@pytest.fixture
def clean_log(tmp_path):
    b = LogBuilder()
    b.driver_init()
    b.vm_create(7, kvm_va=0xFFFF000012340000)
    b.vm_run_change(7, vcpu=0)
    b.vm_run_change(7, vcpu=1, run_state=2)
    b.vm_create(8)
    b.vm_destroy(8)
    p = tmp_path / "clean.smclog"
    b.write(p)
    return p


@pytest.fixture
def bad_log(tmp_path):
    b = LogBuilder()
    b.driver_init()
    b.vm_create(7)
    b.vm_create(7, fast=True, ret=SMC_UNK)  # misrouted
    b.get_information(0, caller=0, ret=SMC_UNK)  # non-secure query
    b.vm_run_change(7)
    b.corrupt_last()
    p = tmp_path / "bad.smclog"
    p.write_bytes(b.bytes() + b"\0" * 10)
    return p


def _jsonl(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_events_text_rows_and_exit_0(clean_log, capsys):
    assert main(["events", str(clean_log)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if not line.startswith("#") and "SEQ" not in line]
    assert len(rows) == 6
    assert "DRIVER_INIT" in rows[0] and "non-secure" in rows[0] and "VMI_EVENT (fast)" in rows[0]
    assert "VM_CREATE" in rows[1] and "VMID 7" in rows[1] and "IPA 40b 4K L1x2" in rows[1]
    assert "paused" in rows[3] and rows[3].split()[0] == "3"


def test_events_json_filters_and_anomalies_exit_1(bad_log, capsys):
    assert main(["events", str(bad_log), "--json"]) == 1
    objs = _jsonl(capsys.readouterr().out)
    assert objs[0]["type"] == "header" and objs[-1]["type"] == "summary"
    recs = [o for o in objs if o["type"] == "record"]
    assert [r["verdict"] for r in recs] == ["ok", "ok", "rejected", "rejected", "corrupt"]
    assert recs[2]["anomalies"][0]["kind"] == "misrouted" and recs[2]["handler"] == "vmi_smc_handler"
    assert recs[3]["anomalies"][0]["severity"] == "critical"
    assert recs[1]["context"]["vttbr_decoded"]["vmid"] == 7 and recs[1]["x0"] == "0x70000001"
    assert [o["kind"] for o in objs if o["type"] == "anomaly"] == ["torn-tail"]
    summary = objs[-1]
    assert summary["records_seen"] == 5 and summary["records_ok"] == 2 and summary["records_corrupt"] == 1

    assert main(["events", str(bad_log), "--json", "--anomalies"]) == 1
    kinds = [o.get("kind") or o["anomalies"][0]["kind"] for o in _jsonl(capsys.readouterr().out)
             if o["type"] in ("record", "anomaly")]
    assert kinds == ["misrouted", "non-secure-get-information", "crc", "torn-tail"]

    assert main(["events", "--event", "vm-create", "--vm", "7", str(bad_log), "--json"]) == 1
    recs = [o for o in _jsonl(capsys.readouterr().out) if o["type"] == "record"]
    assert [r["seq"] for r in recs] == [1, 2]

    assert main(["events", str(bad_log), "--until", "1"]) == 0  # the prefix is clean
    assert "stopped after seq 1" in capsys.readouterr().out


def test_export_import_round_trip(clean_log, bad_log, tmp_path, capsys):
    for log in (clean_log, bad_log):
        main(["events", str(log), "--json"])
        jl = tmp_path / (log.stem + ".jsonl")
        jl.write_text(capsys.readouterr().out)
        out = tmp_path / (log.stem + ".out.smclog")
        assert main(["events", "import", str(jl), str(out), "--keep-crc"]) == 0
        assert "wrote" in capsys.readouterr().out
        data = log.read_bytes()
        assert out.read_bytes() == data[: 64 + (len(data) - 64) // 96 * 96]  # all but the torn tail
    capsys.readouterr()
    # refuses to overwrite, and reports bad input with exit 2
    assert main(["events", "import", str(jl), str(out)]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n")
    assert main(["events", "import", str(bad), str(tmp_path / "n.smclog")]) == 2
    assert not (tmp_path / "n.smclog").exists() and not (tmp_path / "n.smclog.part").exists()
    assert "line 1: not JSON" in capsys.readouterr().err


def test_events_bad_inputs_exit_2(tmp_path, capsys):
    assert main(["events", str(tmp_path / "missing.smclog")]) == 2
    junk = tmp_path / "junk.smclog"
    junk.write_bytes(b"ARMVMIEV" + b"\x09" * 100)
    assert main(["events", str(junk)]) == 2
    assert "version" in capsys.readouterr().err
    img = tmp_path / "img.raw"
    img.write_bytes(bytes(4096))
    assert main(["events", str(img)]) == 2


def test_image_argument_finds_its_sibling_log(clean_log, tmp_path, capsys):
    img = tmp_path / "host.raw"
    img.write_bytes(bytes(8192))
    shutil.copy(clean_log, tmp_path / "host.raw.smclog")
    assert main(["events", str(img), "--json"]) == 0
    assert sum(o["type"] == "record" for o in _jsonl(capsys.readouterr().out)) == 6


def test_vms_text_and_json(clean_log, capsys):
    assert main(["vms", str(clean_log)]) == 0
    out = capsys.readouterr().out
    assert "live VMs" in out and "0xffff000012340000" in out and "destroyed" in out
    assert main(["vms", str(clean_log), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    live = [v for v in doc["vms"] if v["live"]]
    assert [v["vm_id"] for v in live] == [7] and live[0]["struct_kvm_va"] == "0xffff000012340000"
    assert [c["run_state"] for c in live[0]["vcpus"]] == ["running", "paused"]
    assert [v["state"] for v in doc["vms"] if not v["live"]] == ["destroyed"]
    assert doc["summary"]["anomalies"] == 0 and doc["host"]["epoch"] == 1
    assert main(["vms", str(clean_log), "--json", "--until", "4"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(v["vm_id"] for v in doc["vms"]) == [7, 8]


def test_vms_exit_1_with_anomalies(bad_log, capsys):
    assert main(["vms", str(bad_log)]) == 1
    out = capsys.readouterr().out
    assert "critical" in out and "non-secure-get-information" in out


def test_real_capture_cli(nested_capture, capsys):
    assert main(["vms", str(nested_capture.smclog), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    truth = nested_capture.ground_truth["vms"][0]
    (vm,) = doc["vms"]
    assert vm["vm_id"] == truth["vm_id"] and vm["vttbr"] == truth["vttbr"] and vm["struct_kvm_va"] == truth["struct_kvm_va"]
    assert main(["events", str(nested_capture.smclog)]) == 0
