"""Distributed training through torch's elastic launcher (``torch.distributed.run``).

The parent process (the flow) writes a job folder - the model's and loss's recipes (technique names,
params, the data spec) with the train config as JSON, their initial state dicts and the data as
tensors - and starts ``python -m torch.distributed.run ... -m scribbles.core.training._distributed
JOB_DIR``. The launcher starts the workers, restarts the whole group from the last checkpoint when
one dies (``train.restarts`` times), and carries the job to other machines that ran
``scribbles join HOST:PORT`` (their agents join the same c10d rendezvous).

Workers on this machine read the job folder; workers elsewhere get its files broadcast from the
writer rank (the lowest rank that has the folder), which also writes the per-epoch checkpoint, the
metrics the parent turns into tracker calls (so trackers see each epoch once, whatever the world
size) and the final weights. The parent watches heartbeats: no progress from any worker for
``train.timeout`` seconds fails the run with a message instead of a silent stall.

Trust: nothing a worker receives can run code. Modules are rebuilt from this machine's installed
techniques (``core.recipe``), tensors load with ``weights_only=True``, and workers exchange bytes and
JSON (``core.wire``), never pickles. On several machines every rank first proves it holds the shared
job token; the rendezvous store listens on the address of ``train.rdzv_endpoint`` only (on loopback
for one machine), as does worker rank 0's store on its own address.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..config import TrainConfig
from ..contracts import TrainResult
from ..errors import BadInput, ConfigError, ScribblesError
from . import _checkpoint as checkpoints
from . import _wire as wire
from ._job_token import job_token
from ._recipe import rebuild, recipe_of
from ._torch_strategy import TorchStrategy
from ._training import cpu_threads

JOB_FILES = ("spec.json", "model.pt", "loss.pt", "data.pt")
#: The c10d rendezvous id shared by the machine that runs the flow and those that join it.
RDZV_ID = "scribbles"
#: Errors that a restart cannot cure: the parent stops the launcher at once instead of retrying.
FINAL_ERRORS = ("FloatingPointError", "Diverged", "BadInput", "ConfigError", "TypeError", "AttributeError",
                "KeyError", "NotAMember")


class TrainingFailed(ScribblesError):
    """The distributed job failed (after the launcher's restarts) or stalled."""


# ---------------------------------------------------------------------------- the parent side


def write_job(job_dir: Path, strategy: str, model: nn.Module, loss_fn: nn.Module,
              train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor],
              config: TrainConfig) -> None:
    """The files a worker needs, written into ``job_dir`` (kept: checkpoint.pt and final.pt)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.jsonl",):
        (job_dir / stale).unlink(missing_ok=True)
    # Recipes, not pickles: a worker builds the modules from its own installed techniques, then loads
    # the initial weights (pretrained ones included) as plain tensors.
    spec = {"strategy": strategy, "train": config.model_dump(mode="json"),
            "model": recipe_of(model, "model"), "loss": recipe_of(loss_fn, "loss")}
    (job_dir / "spec.json").write_text(json.dumps(spec))
    torch.save(model.state_dict(), job_dir / "model.pt")
    torch.save(loss_fn.state_dict(), job_dir / "loss.pt")
    torch.save({"train_x": train[0], "train_y": train[1], "valid_x": valid[0], "valid_y": valid[1]},
               job_dir / "data.pt")


def launcher_command(job_args: Sequence[str], workers: int, nodes: int = 1, endpoint: str | None = None,
                     restarts: int = 0, local_addr: str | None = None) -> list[str]:
    """``python -m torch.distributed.run`` with the rendezvous for one machine or several.

    With an ``endpoint`` no agent hosts the rendezvous store (``is_host=false``): the flow's process
    serves it, bound to the endpoint's address (``rendezvous_store``); ``local_addr`` is the address
    this machine's workers are reached at (default: the host name's). Without one (one machine only)
    torch's ``--standalone`` rendezvous is used.
    """
    if nodes == 1 and endpoint is None:
        rendezvous = ["--standalone"]
    else:
        rendezvous = ["--nnodes", str(nodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", str(endpoint),
                      "--rdzv-id", RDZV_ID, "--rdzv-conf", "is_host=false"]
        if local_addr:
            rendezvous += ["--local-addr", local_addr]
    return [sys.executable, "-m", "torch.distributed.run", *rendezvous, "--nproc-per-node", str(workers),
            "--max-restarts", str(restarts), "--monitor-interval", "0.2",
            "-m", "scribbles.core.training._distributed", *job_args]


def launcher_env() -> dict[str, str]:
    """The launcher's environment: the agents share no store of their own (torch's shared one listens on
    every interface); worker rank 0 serves one bound to its own address instead (see ``_init_group``)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def bound_store(host: str, port: int, timeout: timedelta, world_size: int | None = None) -> dist.TCPStore:
    """A TCPStore server listening on ``host:port`` only (torch's own binds every interface); port 0
    picks a free one (the store's ``port``)."""
    listener = socket.create_server((host, port), backlog=1024)
    port = listener.getsockname()[1]
    # The store takes the listening socket over (and closes it when it goes).
    return dist.TCPStore(host, port, world_size, is_master=True, timeout=timeout, wait_for_workers=False,
                         master_listen_fd=listener.detach())


@contextlib.contextmanager
def rendezvous_store(config: TrainConfig) -> Iterator[tuple[dist.TCPStore, str]]:
    """The c10d rendezvous store of a job and its endpoint, served by this process: at ``rdzv_endpoint``
    on several machines, on a free loopback port on one."""
    host, port = str(config.rdzv_endpoint).rsplit(":", 1) if config.nodes > 1 else ("127.0.0.1", "0")
    try:
        store = bound_store(host, int(port), timedelta(seconds=config.timeout))
    except OSError as exc:
        raise BadInput(f"train.rdzv_endpoint: cannot listen on {config.rdzv_endpoint} ({exc.strerror}); use an "
                       f"address of this machine and a free port") from None
    try:
        yield store, f"{host}:{store.port}"
    finally:
        del store


def _read_metrics(path: Path) -> dict[int, dict[str, float]]:
    found: dict[int, dict[str, float]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written right now
            item = json.loads(line)
            found[int(item["epoch"])] = item["metrics"]
    return found


def _errors(job_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted((job_dir / "errors").glob("*.json"), key=lambda p: p.stat().st_mtime):
        with contextlib.suppress(ValueError, OSError):
            found.append(json.loads(path.read_text()))
    return found


def _kill(proc: subprocess.Popen[bytes], job_dir: Path) -> None:
    """Stop the launcher and every worker it started (each runs in a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid_file in (job_dir / "pids").glob("*"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError, OSError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    proc.wait()


def _dump_stacks(job_dir: Path) -> None:
    """Ask every worker to print its Python stack into the launcher log (see ``faulthandler`` in main)."""
    for pid_file in (job_dir / "pids").glob("*"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError, OSError):
            os.kill(int(pid_file.read_text()), signal.SIGUSR1)
    time.sleep(0.5)


def _failure(job_dir: Path, config: TrainConfig, log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    killed = _killed(text)
    if killed:  # the root cause; the other ranks' errors ("connection closed") only follow from it
        rank, name = killed
        return (f"worker rank {rank} was killed by {name} after {config.restarts} restart(s) (train.restarts); "
                f"raise train.restarts, or find what stopped it (out of memory: `dmesg`; launcher log: {log}), "
                "then `scribbles resume RUN_ID` finishes the run")
    errors = _errors(job_dir)
    if errors:
        first = errors[0]
        text = f"{first['type']}: {first['message']}"
        if "timed out" in text.lower() or "timeout" in text.lower():
            return (f"a worker stopped responding: rank {first['rank']} waited more than train.timeout="
                    f"{config.timeout:g}s for the others ({text})")
        return f"rank {first['rank']} failed: {text} (its traceback: {log})"
    tail = text.strip().splitlines()[-5:]
    return "the launcher failed: " + " | ".join(tail)


def _killed(log_text: str) -> tuple[str, str] | None:
    """(rank, signal name) of the worker torchelastic's summary gives as the root cause when a signal ended it
    (SIGKILL: the out-of-memory killer, say); None otherwise."""
    _, _, root = log_text.rpartition("Root Cause")
    found = re.search(r"^\s*rank\s*:\s*(\d+).*?^\s*exitcode\s*:\s*(-\d+)", root, re.M | re.S)
    if found is None or -int(found[2]) not in signal.valid_signals():
        return None
    return found[1], signal.Signals(-int(found[2])).name


def _not_started(config: TrainConfig, log: Path) -> str:
    """Why no worker started within ``train.timeout``: machines that never joined, or a launcher stuck."""
    if config.nodes > 1:
        return (f"no worker started within train.timeout={config.timeout:g}s: {config.nodes - 1} other "
                f"machine(s) must join the rendezvous at {config.rdzv_endpoint} (`scribbles join "
                f"{config.rdzv_endpoint} --nodes {config.nodes}` on each); launcher log: {log}")
    return f"no worker started within train.timeout={config.timeout:g}s; launcher log: {log}"


class _Stalled(Exception):
    """No worker made progress for ``train.timeout`` seconds."""


def _start(command: list[str], job_dir: Path, log: Path, config: TrainConfig) -> subprocess.Popen[bytes]:
    """Start the launcher ``command`` (a session of its own, output into ``log``)."""
    for folder in ("errors", "heartbeats", "pids"):
        shutil.rmtree(job_dir / folder, ignore_errors=True)
        (job_dir / folder).mkdir()
    env = launcher_env()
    env.setdefault("OMP_NUM_THREADS", str(cpu_threads(config)))
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _supervise(proc: subprocess.Popen[bytes], job_dir: Path, config: TrainConfig, log: Path,
               callbacks: Sequence[Callable[[int, Mapping[str, float]], None]], reported: list[int]) -> int:
    """Relay the writer's per-epoch metrics to ``callbacks`` until the launcher exits; ``reported[0]``
    counts the epochs already relayed, across attempts, so each is relayed once. Stops the launcher at
    once on an error no restart can cure, when every worker stalls, or when no worker has started
    within ``train.timeout`` (with ``train.nodes`` > 1: the other machines never joined)."""
    started = time.monotonic()
    while True:
        code = proc.poll()
        metrics = _read_metrics(job_dir / "metrics.jsonl")
        while reported[0] in metrics:
            for callback in callbacks:
                callback(reported[0], metrics[reported[0]])
            reported[0] += 1
        if code is not None:
            return code
        final = [e for e in _errors(job_dir) if e["type"] in FINAL_ERRORS]
        if final:
            _kill(proc, job_dir)
            bad_input = final[0]["type"] in ("BadInput", "ConfigError")
            raise (BadInput if bad_input else TrainingFailed)(
                f"rank {final[0]['rank']} failed: {final[0]['type']}: {final[0]['message']}"
                + ("" if bad_input else f" (its traceback: {log})"))
        beats = [p.stat().st_mtime for p in (job_dir / "heartbeats").glob("*")]
        if not beats and reported[0] == 0 and time.monotonic() - started > config.timeout:
            _kill(proc, job_dir)
            raise TrainingFailed(_not_started(config, log))
        if beats and time.time() - max(beats) > config.timeout:
            _dump_stacks(job_dir)
            _kill(proc, job_dir)
            raise _Stalled(
                f"no worker made progress for {config.timeout:g}s (train.timeout): a worker hangs "
                f"or a step takes longer than that; raise train.timeout if steps are that slow "
                f"(worker stacks: {log})")
        time.sleep(0.2)


def launch(strategy: str, model: nn.Module, loss_fn: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
           valid: tuple[torch.Tensor, torch.Tensor], config: TrainConfig,
           callbacks: Sequence[Callable[[int, Mapping[str, float]], None]], job_dir: Path) -> TrainResult:
    """Train ``model`` with ``strategy`` on ``config.workers`` processes per machine; returns it trained.

    The launcher restarts failed workers itself (``train.restarts`` times). A job that stalls is
    stopped after ``train.timeout`` and launched afresh from its checkpoint while restarts remain
    (a restarted group can wedge while connecting, seen under heavy CPU load). ``job_dir`` keeps
    the checkpoint between attempts, so a retried call resumes too; it is removed once the weights
    are back.
    """
    if config.nodes > 1:
        job_token(f"train.nodes={config.nodes}")  # refuse before any work, saying how to set it
    write_job(job_dir, strategy, model, loss_fn, train, valid, config)
    log = job_dir / "launcher.log"
    reported = [0]
    for attempt in range(config.restarts + 1):
        # A fresh store per attempt: a relaunched agent must not find the last attempt's closed round.
        with rendezvous_store(config) as (_, endpoint):
            command = launcher_command([str(job_dir)], config.workers, config.nodes, endpoint, config.restarts,
                                       local_addr=endpoint.rsplit(":", 1)[0])
            proc = _start(command, job_dir, log, config)
            try:
                code = _supervise(proc, job_dir, config, log, callbacks, reported)
            except _Stalled as stall:
                if attempt < config.restarts:
                    continue
                raise TrainingFailed(str(stall)) from None
            except BaseException:
                if proc.poll() is None:
                    _kill(proc, job_dir)
                raise
        break
    if code != 0 or not (job_dir / "final.pt").exists():
        raise TrainingFailed(_failure(job_dir, config, log))
    final_state = checkpoints.load(job_dir / "final.pt")
    model.load_state_dict(final_state["model"])
    model.eval()
    result = TrainResult(model=model, history=[dict(h) for h in final_state["history"]],
                         world_size=int(final_state["world_size"]))
    shutil.rmtree(job_dir, ignore_errors=True)
    return result


# ---------------------------------------------------------------------------- the worker side


class Group:
    """This worker's place in the job: rank, world, the writer rank and where the files are."""

    def __init__(self, job_dirs: Sequence[str] | None, device: torch.device) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = device
        if int(os.environ.get("LOCAL_WORLD_SIZE", self.world)) < self.world:  # other machines take part
            wire.prove_membership(job_token("a training job on several machines"), device)
        everyone = wire.all_gather_json(list(job_dirs) if job_dirs else None, device)
        holders = [r for r, dirs in enumerate(everyone) if dirs]
        if not holders:
            raise BadInput("no worker has the job folder: start the training from the flow, not only joiners")
        self.writer = holders[0]
        self.job_dirs = [str(d) for d in everyone[self.writer]]
        self.local = bool(job_dirs)
        self.files_everywhere = len(holders) == self.world

    def fetch(self, job_dir: Path, name: str) -> bytes | None:
        """The bytes of one job file on every rank (``None`` when it does not exist): read from disk
        where every rank has the folder, else read by the writer and broadcast."""
        if self.files_everywhere:
            path = job_dir / name
            return path.read_bytes() if path.exists() else None
        data = None
        if self.rank == self.writer:
            path = job_dir / name
            data = path.read_bytes() if path.exists() else None
        return wire.broadcast_bytes(data, self.writer, self.device)


class _Beat:
    """Touches this rank's heartbeat file, at most twice a second."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.last = path, 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if self.path is not None and now - self.last > 0.5:
            self.path.touch()
            self.last = now


def run_job(job_dir: Path, group: Group) -> None:
    """Train one job (or skip it when its final weights exist) on every rank."""
    from ..registry import default_registry
    from ._loop import run

    finished = (job_dir / "final.pt").exists() if group.rank == group.writer else False
    if wire.broadcast_bytes(b"1" if finished else b"", group.writer, group.device):
        return  # an earlier attempt finished this job; its weights are waiting for the parent
    files = {name: group.fetch(job_dir, name) for name in JOB_FILES}
    spec = json.loads(files["spec.json"] or b"{}")
    config = TrainConfig(**spec["train"])
    if group.device.type == "cpu":
        torch.set_num_threads(cpu_threads(config))
    # Built from this machine's techniques, then the sent weights: plain tensors, no code.
    registry = default_registry()
    model, loss_fn = rebuild(spec["model"], registry), rebuild(spec["loss"], registry)
    model.load_state_dict(_tensors(files["model.pt"]))
    loss_fn.load_state_dict(_tensors(files["loss.pt"]))
    data = _tensors(files["data.pt"])
    strategy = strategy_class(spec["strategy"], registry)(group.device, group.rank, group.world, group.writer)
    strategy.params = strategy_params(spec["strategy"], spec["train"].get("strategy"), registry)
    strategy.setup(model, config)
    saved_bytes = group.fetch(job_dir, "checkpoint.pt")
    saved = checkpoints.load(saved_bytes) if saved_bytes is not None else None
    writer = group.rank == group.writer
    beat = _Beat(job_dir / "heartbeats" / str(group.rank) if group.local else None)
    beat()
    metrics_path = job_dir / "metrics.jsonl"

    def report(epoch: int, metrics: Mapping[str, float]) -> None:
        with open(metrics_path, "a") as handle:
            handle.write(json.dumps({"epoch": epoch, "metrics": dict(metrics)}) + "\n")

    if writer and saved is not None:
        for epoch, metrics in enumerate(saved["history"]):
            report(epoch, metrics)
    history = run(
        strategy, loss_fn, (data["train_x"], data["train_y"]), (data["valid_x"], data["valid_y"]), config,
        saved=saved, checkpointing=True,
        save=(lambda state: checkpoints.atomic_save(state, job_dir / "checkpoint.pt")) if writer else None,
        report=report, beat=beat,
    )
    final = strategy.model_state()
    if writer:
        checkpoints.atomic_save({"model": final, "history": history, "world_size": group.world},
                                job_dir / "final.pt")
    dist.barrier()


def strategy_class(name: str, registry: Any) -> type[TorchStrategy]:
    """The ``TorchStrategy`` subclass that strategy ``name`` trains with: its technique's
    ``torch_strategy``, taken from this machine's installed plugins (the job names the strategy only).

    A ConfigError when no installed strategy has that name or it names no ``TorchStrategy`` subclass.
    """
    try:
        technique = registry.get("strategy", name)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; install the plugin that provides strategy '{name}' on every machine of the "
                          f"job", "train.strategy") from None
    found = getattr(technique, "torch_strategy", None)
    if not (isinstance(found, type) and issubclass(found, TorchStrategy)):
        raise ConfigError(f"strategy '{name}' ({technique.__module__}) has no torch_strategy naming a "
                          f"scribbles.core.training.TorchStrategy subclass; subclass "
                          f"scribbles.core.training.LaunchedStrategy and set it", "train.strategy")
    return found


def strategy_params(name: str, chosen: Any, registry: Any) -> Any:
    """The params of strategy ``name`` as ``train.strategy`` gave them (``{name: ..., <params>}``, or just
    the name: its defaults), validated by the strategy technique's ``Params`` on this machine."""
    fields = {k: v for k, v in chosen.items() if k != "name"} if isinstance(chosen, dict) else {}
    return registry.get("strategy", name).Params(**fields)


def _tensors(raw: bytes | None) -> Any:
    """Tensors (a state dict, the data) from a job file; ``weights_only`` refuses anything that is code."""
    return torch.load(io.BytesIO(raw or b""), map_location="cpu", weights_only=True)


def _device(choice: str) -> torch.device:
    if choice != "cpu" and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _init_group(backend: str, timeout: timedelta) -> None:
    """The default process group, its store keys under a prefix of their own for each restart.

    The launcher's store outlives a restart; without the prefix a restarted worker can read the
    address a killed worker published and wait on it (seen as connect errors and stalls).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "True") == "True":
        store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    else:  # several machines: rank 0 serves the workers' store on its own address only
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        store = bound_store(host, port, timeout, world) if rank == 0 else \
            dist.TCPStore(host, port, world, is_master=False, timeout=timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    prefixed = dist.PrefixStore(f"scribbles/attempt-{attempt}/", store)
    dist.init_process_group(backend, store=prefixed, rank=rank, world_size=world, timeout=timeout)


def _record(job_dirs: Sequence[str], exc: BaseException) -> None:
    """Leave the error where the parent looks for it (one file per rank, on this machine)."""
    rank = os.environ.get("RANK", "?")
    for job_dir in job_dirs[:1]:
        path = Path(job_dir) / "errors" / f"{rank}.json"
        with contextlib.suppress(OSError):
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps({"rank": rank, "type": type(exc).__name__, "message": str(exc)[:2000],
                                        "traceback": traceback.format_exc()[-4000:]}))


def main(argv: Sequence[str] | None = None) -> None:
    """Worker entry point: ``python -m scribbles.core.training._distributed [JOB_DIR ...]`` under the launcher.

    Without JOB_DIR (a machine that joined with ``scribbles join``) the job comes over the wire.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("job_dirs", nargs="*")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints where a stuck worker is
    job_dirs = [str(Path(d).resolve()) for d in args.job_dirs]
    timeout, device_choice = args.timeout, args.device
    if job_dirs:
        train = json.loads((Path(job_dirs[0]) / "spec.json").read_text())["train"]
        timeout, device_choice = train["timeout"], train["device"]
        for job_dir in job_dirs:
            for folder in ("pids", "heartbeats"):
                (Path(job_dir) / folder).mkdir(exist_ok=True)
            (Path(job_dir) / "pids" / os.environ.get("RANK", "0")).write_text(str(os.getpid()))
    try:
        device = _device(device_choice)
        _init_group("nccl" if device.type == "cuda" else "gloo", timedelta(seconds=timeout))
        group = Group(job_dirs, device)
        for job_dir in group.job_dirs:
            run_job(Path(job_dir), group)
        dist.destroy_process_group()
    except BaseException as exc:
        _record(job_dirs, exc)
        raise


if __name__ == "__main__":
    main()
