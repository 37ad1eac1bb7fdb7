"""What workers send each other: bytes and JSON in uint8 tensors, never pickled objects.

``torch.distributed``'s ``*_object`` collectives unpickle what any rank sends, so a rogue rank could run
code on every other; these helpers carry bytes (and JSON, which decodes to plain data) instead. Before
any job data moves, ``prove_membership`` makes every rank show that it holds the shared job token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ScribblesError

#: The most bytes one rank may announce in a JSON gather (job folder lists, a few KB in practice).
MAX_JSON_BYTES = 1 << 20
NONCE_BYTES, MAC_BYTES = 16, 32


class NotAMember(ScribblesError):
    """A rank of the process group did not prove that it holds the job token."""


def _bytes_tensor(data: bytes, device: torch.device) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device) if data else \
        torch.empty(0, dtype=torch.uint8, device=device)


def broadcast_bytes(data: bytes | None, src: int, device: torch.device) -> bytes | None:
    """``data`` of rank ``src`` on every rank (``None`` stays ``None``)."""
    header = torch.tensor([0 if data is None else 1, len(data or b"")], dtype=torch.int64, device=device)
    dist.broadcast(header, src=src)
    present, size = (int(v) for v in header.tolist())
    if not present:
        return None
    payload = _bytes_tensor(data or b"", device) if dist.get_rank() == src else \
        torch.empty(size, dtype=torch.uint8, device=device)
    if size:
        dist.broadcast(payload, src=src)
    return payload.cpu().numpy().tobytes()


def all_gather_bytes(data: bytes, device: torch.device, limit: int = MAX_JSON_BYTES) -> list[bytes]:
    """Every rank's ``data``, in rank order; a rank announcing more than ``limit`` bytes fails the call."""
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64, device=device))
    lengths = [int(s.item()) for s in sizes]
    if max(lengths) > limit or min(lengths) < 0:
        raise NotAMember(f"a rank announced {max(lengths)} bytes, more than the {limit} a message may have")
    width = max(max(lengths), 1)
    padded = torch.zeros(width, dtype=torch.uint8, device=device)
    padded[: len(data)] = _bytes_tensor(data, device)
    parts = [torch.empty(width, dtype=torch.uint8, device=device) for _ in range(world)]
    dist.all_gather(parts, padded)
    return [part[:n].cpu().numpy().tobytes() for part, n in zip(parts, lengths, strict=True)]


def all_gather_json(value: Any, device: torch.device) -> list[Any]:
    """Every rank's JSON-able ``value``, decoded to plain data (lists, dicts, strings, numbers)."""
    return [json.loads(raw) for raw in all_gather_bytes(json.dumps(value).encode(), device)]


def _mac(token: bytes, rank: int, nonces: list[bytes]) -> bytes:
    return hmac.new(token, b"scribbles-job\0" + str(rank).encode() + b"\0" + b"".join(nonces),
                    hashlib.sha256).digest()


def prove_membership(token: bytes, device: torch.device) -> None:
    """Every rank proves it holds ``token`` (an HMAC over fresh nonces of all ranks, bound to its rank);
    raises ``NotAMember`` on every honest rank when any rank fails, before anything else is exchanged.
    The token itself never crosses the wire."""
    rank = dist.get_rank()
    nonces = all_gather_bytes(os.urandom(NONCE_BYTES), device, NONCE_BYTES)
    macs = all_gather_bytes(_mac(token, rank, nonces), device, MAC_BYTES)
    strangers = [r for r, mac in enumerate(macs) if not hmac.compare_digest(mac, _mac(token, r, nonces))]
    if strangers:
        raise NotAMember(
            f"rank(s) {', '.join(map(str, strangers))} did not prove the job token: a machine without the same "
            f"SCRIBBLES_JOB_TOKEN joined the rendezvous; the job is refused")
