"""`scribbles serve`: the experiment flow as a Prefect deployment served from this process, on a schedule.

Works with no Prefect server configured (a temporary one lives as long as this process) and with
``PREFECT_API_URL``. A run still going when the next one is due is skipped (``overlap="skip"``: the new
run is cancelled) or queued (``"queue"``: it waits for the running one); runs never overlap, because
the deployment's concurrency limit is 1.
"""

from __future__ import annotations

from typing import Any

from scribbles.core import ExperimentConfig

from .prefect_env import configure_prefect

OVERLAP = ("skip", "queue")


def serve(config: ExperimentConfig, *, cron: str | None, interval: float | None, overlap: str = "skip",
          allow_dirty: bool = False, name: str | None = None, promote: str | None = None) -> None:
    """Serve the experiment on ``cron`` or every ``interval`` seconds until stopped (Ctrl-C, SIGTERM).

    With ``promote``, each run takes that registry alias when significantly better than its holder.
    """
    configure_prefect()
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from .config_ref import stashed
    from .experiment import experiment_flow

    if not PREFECT_API_URL.value():
        # Prefect's temporary server has no scheduler: run a real one for as long as this serves.
        from .prefect_server import local_server

        with local_server() as url, temporary_settings(updates={PREFECT_API_URL: url}):
            print(f"Prefect server on {url.removesuffix('/api')} (the Prefect UI shows the schedule and the runs)",
                  flush=True)
            serve(config, cron=cron, interval=interval, overlap=overlap, allow_dirty=allow_dirty, name=name,
                  promote=promote)
        return
    strategy = ConcurrencyLimitStrategy.CANCEL_NEW if overlap == "skip" else ConcurrencyLimitStrategy.ENQUEUE
    deployment = name or f"{config.experiment}"
    # The deployment's parameters live in Prefect's database: a masked config and a reference to a file
    # only this user reads, removed when serving stops.
    with stashed(config.model_dump(mode="json")) as safe:
        parameters: dict[str, Any] = {
            "config": safe,
            "allow_dirty": allow_dirty,
            "tags": {"schedule": deployment},
            **({"promote": promote} if promote else {}),
        }
        experiment_flow.serve(
            name=deployment,
            cron=cron,
            interval=interval,
            parameters=parameters,
            global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=strategy),
            enforce_parameter_schema=False,
            pause_on_shutdown=False,
            print_starting_message=False,
            # Each run starts `scribbles.flows.experiment:experiment_flow` by module, wherever scribbles is.
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
