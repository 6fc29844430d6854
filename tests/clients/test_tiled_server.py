"""A Tiled server (``qd-bluesky serve-catalog``) on PostgreSQL and on SQLite, used by the CLI
as separate processes: ``run``, ``runs``, ``replay`` and ``report`` with ``--catalog URL``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .servers import (
    QD_BLUESKY,
    background,
    clean_env,
    free_port,
    postgres_server,
    qd,
    qd_sim,
    run_command,
    wait_for_port,
)

API_KEY = "qdtestkey"


def _serve(work: Path, data_dir: Path, database: str, config: Path | None = None):
    port = free_port()
    if config is None:
        args = qd(
            f"serve-catalog --data-dir {data_dir} --database {database} --port {port} "
            f"--api-key {API_KEY}"
        )
    else:  # a hand-written configuration, served by Tiled's own command
        args = [
            str(Path(QD_BLUESKY).with_name("tiled")),
            "serve",
            "config",
            str(config),
            "--port",
            str(port),
            "--api-key",
            API_KEY,
        ]
    server = background(args, env=clean_env(data_dir), cwd=work, name="tiled server")
    return server, f"http://127.0.0.1:{port}/api", port


def _client_env(data_dir: Path) -> dict[str, str]:
    return clean_env(data_dir, TILED_API_KEY=API_KEY)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_run_runs_replay_report_through_the_server(tmp_path, backend):
    data_dir = tmp_path / "data"
    ca_port = free_port()
    with (
        postgres_server(tmp_path) if backend == "postgresql" else _nothing("sqlite") as database,
        qd_sim(data_dir, ca_port, cwd=tmp_path),
    ):
        server, url, port = _serve(tmp_path, data_dir, database)
        with server as proc:
            wait_for_port(port, 60, proc)
            env = _client_env(data_dir)
            out = run_command(
                qd(f"run bias-steps --biases 0,-1.7 --dwell 3 --port {ca_port} --catalog {url}"),
                env=env,
                cwd=tmp_path,
            ).stdout
            assert "(success)" in out, out
            runs = json.loads(
                run_command(qd(f"runs --catalog {url} --json"), env=env, cwd=tmp_path).stdout
            )
            raw = [r for r in runs if r["kind"] == "raw"]
            derived = [r for r in runs if r["kind"] == "derived"]
            assert [r["plan_name"] for r in raw] == ["bias_steps"]
            assert derived[0]["raw_uid"] == raw[0]["uid"]
            assert raw[0]["num_events"]["primary"] == 2
            # The photon rows announced equal the rows Tiled serves from the HDF5 file.
            from tiled.client import from_uri

            client = from_uri(url, api_key=API_KEY)
            photons = client[raw[0]["uid"]]["photons"]
            key = next(iter(photons))
            assert len(photons[key].read()) == raw[0]["num_events"]["photons"] > 1000

            uid = raw[0]["uid"]
            replay = json.loads(
                run_command(
                    qd(f"replay {uid} --catalog {url} --json"), env=env, cwd=tmp_path
                ).stdout
            )
            assert replay["matches_live"] is True
            assert replay["live_uid"] == derived[0]["uid"]
            report_dir = tmp_path / "report"
            run_command(
                qd(f"report {uid} --catalog {url} --out {report_dir} --json"),
                env=env,
                cwd=tmp_path,
            )
            summary = json.loads((report_dir / "summary.json").read_text())
            assert [round(row["bias_v"], 2) for row in summary["per_bias"]] == [0.0, -1.7]


class _nothing:
    """A context manager that gives its value (the SQLite case needs no server)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __enter__(self) -> str:
        return self.value

    def __exit__(self, *exc: object) -> None:
        return None


def test_print_config_is_what_tiled_accepts(tmp_path):
    data_dir = tmp_path / "data"
    text = run_command(
        qd(
            f"serve-catalog --data-dir {data_dir} --print-config "
            "--database postgresql://qd:pw@db.example:5433/qd"
        ),
        env=clean_env(data_dir),
        cwd=tmp_path,
    ).stdout
    config = yaml.safe_load(text)
    args = config["trees"][0]["args"]
    assert args["uri"] == "postgresql://qd:pw@db.example:5433/qd"
    assert args["readable_storage"] == [str(data_dir.resolve() / "photons")]
    assert args["writable_storage"] == [str(data_dir.resolve() / "arrays"), args["uri"]]
    assert config["media_types"]["BlueskyRun"] == {
        "application/json-seq": "bluesky_tiled_plugins.exporters:json_seq_exporter"
    }
    from tiled.config import parse_configs

    path = tmp_path / "config.yml"
    path.write_text(text)
    parsed = parse_configs(path)  # Tiled's own schema validation
    assert parsed.media_types["BlueskyRun"]
    assert not (data_dir / "catalog.db").exists()  # printing creates nothing


def test_a_misconfigured_server_is_named_in_one_line(tmp_path):
    """Hand-written server configs, each missing one piece: the client names it at once."""
    data_dir = tmp_path / "data"
    ca_port = free_port()
    env = _client_env(data_dir)
    text = run_command(
        qd(f"serve-catalog --data-dir {data_dir} --print-config"),
        env=env,
        cwd=tmp_path,
    ).stdout
    configs = {"full": yaml.safe_load(text)}
    configs["media_types"] = yaml.safe_load(text)
    del configs["media_types"]["media_types"]
    configs["readable_storage"] = yaml.safe_load(text)
    del configs["readable_storage"]["trees"][0]["args"]["readable_storage"]
    configs["specs"] = yaml.safe_load(text)
    del configs["specs"]["trees"][0]["args"]["specs"]
    for name, config in configs.items():
        (tmp_path / f"{name}.yml").write_text(yaml.safe_dump(config))

    with qd_sim(data_dir, ca_port, cwd=tmp_path):
        # A run recorded through a complete server, so that there are photons to read.
        server, url, port = _serve(tmp_path, data_dir, "sqlite", config=tmp_path / "full.yml")
        with server as proc:
            wait_for_port(port, 60, proc)
            run_command(
                qd(f"run bias-steps --biases 0 --dwell 1 --port {ca_port} --catalog {url}"),
                env=env,
                cwd=tmp_path,
            )
    for drop, needle in [
        ("media_types", "cannot export Bluesky documents"),
        ("readable_storage", "cannot read the photon files"),
        ("specs", "does not serve a catalog of Bluesky runs"),
    ]:
        server, url, port = _serve(tmp_path, data_dir, "sqlite", config=tmp_path / f"{drop}.yml")
        with server as proc:
            wait_for_port(port, 60, proc)
            result = run_command(
                qd(f"runs --catalog {url}"),
                env=env,
                cwd=tmp_path,
                timeout=30,
                check=False,
            )
        assert result.returncode == 1, (drop, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("qd-bluesky: error: the Tiled server at"), lines[0]
        assert needle in lines[0], (drop, lines[0])
        assert "serve-catalog --print-config" in lines[0]
