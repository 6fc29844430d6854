"""Listing runs, finding a run by uid prefix, reopening, ``qd-bluesky runs``, a Tiled server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
import numpy as np
import ophyd
import pytest
from event_model import compose_run

from qd_bluesky.catalog import (
    CatalogError,
    get_run,
    iter_documents,
    list_runs,
    open_catalog,
)
from qd_bluesky.cli import main


def _emit_derived_run(writer, raw_uid: str, *, uid: str | None = None) -> str:
    """A derived run as the analyzer writes one: start carries raw_uid, one result event."""
    bundle = compose_run(uid=uid, metadata={"plan_name": "qd_analysis", "raw_uid": raw_uid})
    writer("start", bundle.start_doc)
    desc = bundle.compose_descriptor(
        name="lifetimes",
        data_keys={"tau_ns": {"source": "analysis", "dtype": "number", "shape": []}},
    )
    writer("descriptor", desc.descriptor_doc)
    writer("event", desc.compose_event(data={"tau_ns": 17.5}, timestamps={"tau_ns": time.time()}))
    writer("stop", bundle.compose_stop())
    return bundle.start_doc["uid"]


@pytest.fixture(scope="module")
def three_runs(catalog, RE):
    """A raw run, a derived run pointing at it, and a run that failed after one reading."""
    det = ophyd.Signal(name="det", value=1.5)
    (raw,) = RE(bp.count([det], num=2, md={"sample": "QD-7"}))
    derived = _emit_derived_run(catalog.writer, raw)

    @bpp.run_decorator(md={"plan_name": "doomed"})
    def doomed():
        yield from bps.trigger_and_read([det])
        raise RuntimeError("potentiostat lost")

    starts = []
    token = RE.subscribe(lambda name, doc: starts.append(doc["uid"]), "start")
    try:
        with pytest.raises(RuntimeError, match="potentiostat lost"):
            RE(doomed())
    finally:
        RE.unsubscribe(token)
    (failed,) = starts
    return {"raw": raw, "derived": derived, "failed": failed}


def _check_three(entries, three_runs):
    by_uid = {e["uid"]: e for e in entries}
    raw = by_uid[three_runs["raw"]]
    assert raw["kind"] == "raw" and "raw_uid" not in raw
    assert raw["plan_name"] == "count"
    assert raw["exit_status"] == "success"
    assert raw["num_events"] == {"primary": 2}
    assert isinstance(raw["scan_id"], int)
    derived = by_uid[three_runs["derived"]]
    assert derived["kind"] == "derived"
    assert derived["raw_uid"] == three_runs["raw"]
    assert derived["plan_name"] == "qd_analysis"
    assert derived["exit_status"] == "success"
    assert derived["scan_id"] is None
    assert derived["num_events"] == {"lifetimes": 1}
    failed = by_uid[three_runs["failed"]]
    assert failed["kind"] == "raw"
    assert failed["exit_status"] == "fail"
    assert failed["num_events"] == {"primary": 1}
    for entry in (raw, derived, failed):
        stamp = datetime.fromisoformat(entry["time"])
        assert stamp.utcoffset().total_seconds() == 0
        assert abs(stamp.timestamp() - time.time()) < 600  # written during this test session
    # Oldest first.
    times = [e["time"] for e in entries]
    assert times == sorted(times)


def test_list_runs_kind_raw_uid_and_exit_status(catalog, three_runs):
    _check_three(list_runs(catalog), three_runs)
    # The failed run keeps what it recorded before the failure.
    run = catalog.client[three_runs["failed"]]
    np.testing.assert_array_equal(run["primary"].read()["det"].values, [1.5])


def test_get_run_by_full_uid_and_by_prefix(catalog, three_runs):
    raw = three_runs["raw"]
    assert get_run(catalog, raw).metadata["start"]["uid"] == raw
    assert get_run(catalog, raw[:8]).metadata["start"]["uid"] == raw
    assert get_run(catalog, raw[:8].upper()).metadata["start"]["uid"] == raw
    # A plain Tiled client works too.
    assert get_run(catalog.client, raw[:13]).metadata["start"]["uid"] == raw


def test_get_run_errors_are_one_line(catalog, three_runs):
    # Two runs whose uids share the prefix "0ddba11".
    raw = three_runs["raw"]
    a = _emit_derived_run(catalog.writer, raw, uid="0ddba11a-0000-4000-8000-000000000001")
    b = _emit_derived_run(catalog.writer, raw, uid="0ddba11b-0000-4000-8000-000000000002")
    assert get_run(catalog, "0ddba11a").metadata["start"]["uid"] == a
    with pytest.raises(CatalogError, match="ambiguous") as err:
        get_run(catalog, "0ddba11")
    assert a in str(err.value) and b in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CatalogError, match="no run with uid 'fffffffffff'"):
        get_run(catalog, "fffffffffff")
    with pytest.raises(CatalogError, match="not a run uid"):
        get_run(catalog, "abc%")
    with pytest.raises(CatalogError, match="not a run uid"):
        list(iter_documents(catalog, ""))


def test_reopening_sees_earlier_runs_without_initializing(catalog, three_runs):
    with open_catalog(catalog.data_dir) as again:
        assert not again.created
        uids = {r["uid"] for r in list_runs(again)}
        assert set(three_runs.values()) <= uids
        values = again.client[three_runs["raw"]]["primary"].read()["det"].values
        np.testing.assert_array_equal(values, [1.5, 1.5])
    assert again.closed
    with pytest.raises(CatalogError, match="closed"):
        list_runs(again)


def _qd_bluesky_exe() -> str:
    exe = Path(sys.executable).with_name("qd-bluesky")
    return str(exe) if exe.exists() else shutil.which("qd-bluesky")


def _cli(args, cwd, **env):
    environ = {k: v for k, v in os.environ.items() if k != "QD_BLUESKY_DATA"}
    environ.update(env)
    return subprocess.run(
        [_qd_bluesky_exe(), *args], cwd=cwd, env=environ, capture_output=True, text=True
    )


def test_cli_runs_json_in_a_subprocess(catalog, three_runs, tmp_path):
    proc = _cli(["runs", "--data-dir", str(catalog.data_dir), "--json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)  # stdout is the JSON list and nothing else
    _check_three(entries, three_runs)
    assert entries == list_runs(catalog)


def test_cli_runs_data_dir_from_environment(catalog, three_runs, capsys, monkeypatch):
    monkeypatch.setenv("QD_BLUESKY_DATA", str(catalog.data_dir))
    assert main(["runs", "--json"]) == 0
    assert {e["uid"] for e in json.loads(capsys.readouterr().out)} >= set(three_runs.values())


def test_cli_runs_table(catalog, three_runs, capsys):
    assert main(["runs", "--data-dir", str(catalog.data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = ["uid", "scan", "time", "(UTC)", "plan", "kind", "raw", "exit", "events"]
    assert lines[0].split() == header
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    raw, derived, failed = (three_runs[k][:8] for k in ("raw", "derived", "failed"))
    assert rows[derived][5:8] == ["derived", raw, "success"]
    assert rows[failed][5:9] == ["raw", "-", "fail", "primary:1"]


def test_cli_runs_on_a_new_data_directory_lists_nothing(tmp_path):
    new = tmp_path / "never-used"
    proc = _cli(["runs", "--data-dir", str(new), "--json"], cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "[]\n", "")
    assert not new.exists(), "listing must not create a catalog"
    proc = _cli(["runs", "--data-dir", str(new)], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == f"no runs in {new}\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_unreachable_catalog_is_one_line(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}/api"
    proc = _cli(["runs", "--catalog", uri, "--json", "--data-dir", str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"qd-bluesky: error: cannot reach the Tiled server at {uri}")
    assert proc.stderr.count("\n") == 1


def test_unreachable_catalog_never_reaches_the_retrying_client(tmp_path, monkeypatch):
    # Tiled's client retries a refused connection for 45 s; the one-line error must come from
    # the single probe before it, so the client is never even constructed (shown without a
    # clock: the client's constructor is replaced by one that records its calls).
    import tiled.client

    calls = []
    monkeypatch.setattr(tiled.client, "from_uri", lambda *a, **kw: calls.append(a))
    uri = f"http://127.0.0.1:{_free_port()}/api"
    with pytest.raises(CatalogError, match=f"cannot reach the Tiled server at {re.escape(uri)}"):
        open_catalog(uri=uri)
    assert calls == []


def test_corrupt_catalog_file_is_one_line_error(tmp_path):
    (tmp_path / "catalog.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="not a catalog database") as err:
        open_catalog(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(CatalogError, match="no catalog in"):
        open_catalog(tmp_path / "missing", create=False)


@pytest.mark.parametrize(
    ("revision", "message"),
    [
        ("3e87cbeb195b", "made by an older Tiled; back it up, then run `tiled catalog upgrade"),
        ("0123456789ab", "made by a newer Tiled, or by another program"),
    ],
)
def test_catalog_of_another_tiled_version_is_one_line_error(catalog, tmp_path, revision, message):
    # A consistent copy of the live catalog (SQLite's backup API), stamped with another
    # alembic revision: an older one Tiled knows, and one it does not know.
    with (
        contextlib.closing(sqlite3.connect(catalog.data_dir / "catalog.db")) as src,
        contextlib.closing(sqlite3.connect(tmp_path / "catalog.db")) as dst,
    ):
        src.backup(dst)
        dst.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        dst.commit()
    with pytest.raises(CatalogError, match=re.escape(message)) as err:
        open_catalog(tmp_path)
    assert "\n" not in str(err.value)


# --- the same code against a Tiled server -----------------------------------------------------

SERVER_CONFIG = """\
catalog:
  uri: "sqlite:///{root}/catalog.db"
  init_if_not_exists: true
  specs:
    - name: CatalogOfBlueskyRuns
      version: "3.0"
  writable_storage:
    - "{root}/arrays"
    - "sqlite:///{root}/tables.sqlite"
  readable_storage:
    - "{root}/photons"
media_types:
  BlueskyRun:
    application/json-seq: bluesky_tiled_plugins.exporters:json_seq_exporter
authentication:
  single_user_api_key: "{api_key}"
"""


@pytest.fixture(scope="module", autouse=True)
def _tiled_server_process(tmp_path_factory):
    """``tiled serve config`` on a free port, with the configuration of docs/catalog.md.

    Started when this module starts (autouse), so that its few seconds of start-up overlap
    the other tests; :func:`tiled_server` waits until it accepts connections.
    (Tiled wants an alphanumeric API key.)
    """
    root = tmp_path_factory.mktemp("server-data")
    for sub in ("arrays", "photons"):
        (root / sub).mkdir()
    config = root / "config.yml"
    api_key = "qdtestkey"
    config.write_text(SERVER_CONFIG.format(root=root, api_key=api_key))
    port = _free_port()
    log_path = root / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tiled", "serve", "config", str(config), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, port, api_key, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def tiled_server(_tiled_server_process):
    proc, port, api_key, log_path = _tiled_server_process
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"tiled serve exited: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("tiled serve did not start within 60 s")
            time.sleep(0.2)
    return f"http://127.0.0.1:{port}/api", api_key


def test_same_code_against_a_tiled_server(tiled_server, tmp_path, capsys, monkeypatch):
    from bluesky import RunEngine

    uri, api_key = tiled_server
    with open_catalog(tmp_path, uri=uri, api_key=api_key) as remote:
        assert not remote.embedded and remote.uri == uri
        assert remote.photon_dir == tmp_path.resolve() / "photons"
        engine = RunEngine({})
        engine.subscribe(remote.writer)
        det = ophyd.Signal(name="det", value=0.0)
        values = iter([2.5, -0.75, 1e-3])

        def per_shot(detectors):
            yield from bps.mv(det, next(values))
            yield from bps.trigger_and_read(detectors)

        (uid,) = engine(bp.count([det], num=3, per_shot=per_shot))
        derived = _emit_derived_run(remote.writer, uid)
        np.testing.assert_array_equal(
            remote.client[uid]["primary"].read()["det"].values, [2.5, -0.75, 1e-3]
        )
        entries = {e["uid"]: e for e in list_runs(remote)}
        assert entries[derived]["raw_uid"] == uid and entries[uid]["kind"] == "raw"
        docs = list(iter_documents(remote, uid[:10]))
        assert [e["data"]["det"] for name, e in docs if name == "event"] == [2.5, -0.75, 1e-3]

    # `qd-bluesky runs --catalog URI`, the key from $TILED_API_KEY.
    monkeypatch.setenv("TILED_API_KEY", api_key)
    assert main(["runs", "--catalog", uri, "--json", "--data-dir", str(tmp_path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {e["uid"] for e in listed} == {uid, derived}

    with pytest.raises(CatalogError, match="refused: 401"):
        open_catalog(tmp_path, uri=uri, api_key="notthekey")
    monkeypatch.delenv("TILED_API_KEY")
    with pytest.raises(CatalogError, match="requires an API key"):
        open_catalog(tmp_path, uri=uri)
