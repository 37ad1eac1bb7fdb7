"""Attacks on the multi-process paths fail: a crafted pickle in a job runs nothing, a rank without the
job token is refused before any job data moves, the rendezvous store listens on its given address only.

Real gloo process groups (one in this process, two spawned processes for the rogue rank).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from scribbles.core import TrainConfig
from scribbles.core.training import Group, rendezvous_store, run_job, write_job
from strategy_helpers import BASE, TRAIN, VALID, build, loss


class Touch:
    """Unpickling this runs ``touch PATH``: the classic code-from-a-pickle attack."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Any:
    """A real gloo process group of one rank in this process."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1, timeout=timedelta(seconds=60))
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["model.pt", "loss.pt", "data.pt", "checkpoint.pt"])
def test_a_crafted_pickle_in_a_job_runs_nothing(tmp_path: Path, one_rank_group: None, name: str) -> None:
    """A job whose tensor file is a pickle calling os.system fails to load; the command never runs."""
    job = tmp_path / "job"
    write_job(job, "ddp", build(), loss(), TRAIN, VALID, TrainConfig(**BASE))
    marker = tmp_path / "pwned"
    (job / name).write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(pickle.UnpicklingError):
        run_job(job, Group([str(job)], torch.device("cpu")))
    assert not marker.exists()


def test_the_job_spec_names_techniques_not_code(tmp_path: Path, one_rank_group: None) -> None:
    """The spec is JSON naming installed techniques; a made-up one is refused by the registry."""
    import json

    from scribbles.core import BadInput

    job = tmp_path / "job"
    write_job(job, "ddp", build(), loss(), TRAIN, VALID, TrainConfig(**BASE))
    spec = json.loads((job / "spec.json").read_text())
    assert spec["model"]["name"] == "mlp" and spec["loss"]["name"] == "cross_entropy"
    spec["model"]["name"] = "os.system"
    (job / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(BadInput, match=r"os\.system"):
        run_job(job, Group([str(job)], torch.device("cpu")))


def _rank(rank: int, port: int, token: str, marker: str, out: Any) -> None:
    """One rank of a 2-rank gloo group 'on two machines'; rank 1 is a rogue unless it holds the token."""
    os.environ.update({"SCRIBBLES_JOB_TOKEN": token, "LOCAL_WORLD_SIZE": "1"})
    store = dist.TCPStore("127.0.0.1", port, 2, is_master=rank == 0, timeout=timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        if rank == 1 and token.startswith("rogue"):
            # The rogue answers the handshake with garbage, then tries to slip a pickle to the host.
            from scribbles.core.training import wire

            wire.all_gather_bytes(os.urandom(16), torch.device("cpu"), 16)
            wire.all_gather_bytes(os.urandom(32), torch.device("cpu"), 32)
            wire.all_gather_bytes(pickle.dumps(Touch(Path(marker))), torch.device("cpu"))
            out.put((rank, "sent"))
            return
        group = Group(["/nonexistent-job"] if rank == 0 else None, torch.device("cpu"))
        out.put((rank, f"accepted writer={group.writer}"))
    except Exception as exc:
        out.put((rank, f"{type(exc).__name__}: {exc}"))
    finally:
        dist.destroy_process_group()


def _two_ranks(tokens: tuple[str, str], marker: Path) -> dict[int, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    procs = [context.Process(target=_rank, args=(r, port, tokens[r], str(marker), out)) for r in (0, 1)]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    return results


def test_a_rank_without_the_token_is_refused_and_its_pickle_never_loads(tmp_path: Path) -> None:
    """Both ranks holding the token form a group; a rogue rank is named and refused by the honest one,
    which then exchanges nothing (the pickle the rogue sends is never read)."""
    token = "the-shared-secret-of-this-job-0001"
    assert _two_ranks((token, token), tmp_path / "m0") == {0: "accepted writer=0", 1: "accepted writer=0"}
    marker = tmp_path / "pwned"
    results = _two_ranks((token, "rogue-without-the-real-token"), marker)
    assert results[0].startswith("NotAMember: rank(s) 1 did not prove the job token"), results
    assert not marker.exists()


def _listeners(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp, hex little-endian IPv4)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_the_rendezvous_store_listens_on_the_endpoint_address_only() -> None:
    """On several machines the store listens on train.rdzv_endpoint's address; on one, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for config in (TrainConfig(**BASE, nodes=2, rdzv_endpoint=f"127.0.0.1:{port}"), TrainConfig(**BASE)):
        with rendezvous_store(config) as (store, endpoint):
            store.set("k", "v")
            host, bound = endpoint.rsplit(":", 1)
            assert host == "127.0.0.1" and (config.nodes == 1 or int(bound) == port)
            assert _listeners(int(bound)) == {"127.0.0.1"}
            del store  # the context's own reference goes when it ends
        assert _listeners(int(bound)) == set()


def test_join_without_a_token_refuses_and_says_how_to_set_one() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIBBLES_JOB_TOKEN")}
    done = subprocess.run([str(Path(sys.executable).with_name("scribbles")), "join", "127.0.0.1:29400"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines() + done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: join needs a shared job token"), lines
    assert "SCRIBBLES_JOB_TOKEN" in lines[0] and "Traceback" not in done.stderr


def test_fold_outputs_round_trip_and_a_crafted_pickle_runs_nothing(tmp_path: Path) -> None:
    """A fold task's outputs come back as the same model (torch and scikit-learn) with no pickle read;
    a pickle put in their place raises (tensors) or leaves the model out (estimator), running nothing."""
    import numpy as np
    from scribbles.core import ModelSpec, create, default_registry
    from scribbles.flows.fold_outputs import read_outputs, write_outputs

    registry, marker = default_registry(), tmp_path / "pwned"
    x = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    spec = ModelSpec("tabular", (6,), 2)
    torch_model = build()
    classic = create("model", "decision_tree").build(spec)
    classic.fit(x, y)
    for name, model in (("torch", torch_model), ("classic", classic)):
        path = write_outputs(tmp_path / name, model, {"mean": 0.5, "std": 2.0, "shape": [6]}, x[:5], y, y)
        back = read_outputs(str(path), registry)
        assert np.array_equal(back["y_true"], y) and np.array_equal(back["input_example"], x[:5])
        expected = model(torch.from_numpy((x - 0.5) / 2.0))
        torch.testing.assert_close(back["model"](torch.from_numpy(x)), expected)
    (tmp_path / "classic.skops").write_bytes(pickle.dumps(Touch(marker)))
    assert "model" not in read_outputs(str(tmp_path / "classic.pt"), registry)
    (tmp_path / "torch.pt").write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(pickle.UnpicklingError):
        read_outputs(str(tmp_path / "torch.pt"), registry)
    assert not marker.exists()


def _listening_sockets(pid: int) -> list[str]:
    """The local addresses (hex, as /proc/net/tcp* writes them) that process ``pid`` listens on."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                listening[fields[9]] = fields[1].rsplit(":", 1)[0]
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in listening:
            found.append(listening[link[8:-1]])
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket tables")
def test_a_one_machine_ddp_job_listens_on_loopback_only(tmp_path: Path) -> None:
    """While a 2-worker ddp job trains, every socket the launcher and the workers listen on is bound to
    127.0.0.1: none on every interface (the flow's own store: the test above)."""
    import threading
    import time

    from scribbles.core import create

    config = TrainConfig(**{**BASE, "epochs": 40, "lr": 1e-3, "workers": 2, "checkpoint_dir": str(tmp_path)})
    box: dict[str, Any] = {}

    def fit() -> None:
        box["result"] = create("strategy", "ddp").fit(
            build, loss(), torch.utils.data.TensorDataset(*TRAIN), torch.utils.data.TensorDataset(*VALID), config)

    thread = threading.Thread(target=fit)
    thread.start()
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    job = next(tmp_path.glob("*/checkpoint.pt")).parent
    workers = [int(p.read_text()) for p in (job / "pids").glob("*")]
    agents = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in workers}
    seen = {pid: _listening_sockets(pid) for pid in [*agents, *workers]}
    thread.join(timeout=300)
    assert "result" in box
    assert all(seen[pid] for pid in workers), seen  # the workers' own listeners were found
    assert {address for found in seen.values() for address in found} == {"0100007F"}, seen


def test_the_job_token_comes_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SCRIBBLES_JOB_TOKEN, else the file SCRIBBLES_JOB_TOKEN_FILE names; missing or short: a BadInput saying how."""
    from scribbles.core import BadInput
    from scribbles.core.training import job_token

    monkeypatch.delenv("SCRIBBLES_JOB_TOKEN", raising=False)
    monkeypatch.delenv("SCRIBBLES_JOB_TOKEN_FILE", raising=False)
    with pytest.raises(BadInput, match="join needs a shared job token: set SCRIBBLES_JOB_TOKEN"):
        job_token("join")
    (tmp_path / "token").write_text("from-a-file-0123456789\n")
    monkeypatch.setenv("SCRIBBLES_JOB_TOKEN_FILE", str(tmp_path / "token"))
    assert job_token("join") == b"from-a-file-0123456789"
    monkeypatch.setenv("SCRIBBLES_JOB_TOKEN", "short")
    with pytest.raises(BadInput, match="at least 16"):
        job_token("join")
