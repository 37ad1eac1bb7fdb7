"""The experiment config: YAML in, validated pydantic models out, every mistake a ConfigError.

Only ``data`` and ``split`` are required; everything else has a default that works.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .errors import ConfigError
from .yaml_reader import clip, read_text, safe_load

#: The largest seed every consumer takes: numpy's RandomState wants 0 <= seed < 2**32 (torch takes 2**64).
SEED_MAX = 2**32 - 1
#: A seed numpy and torch both accept; an error names the field before any work instead of deep in a fold.
Seed = Annotated[int, Field(ge=0, le=SEED_MAX, description="seed, 0 to 2**32 - 1")]
#: A layer width, a channel count or a shape dimension: at least 1.
Width = Annotated[int, Field(ge=1)]
#: Integers beyond int64 fit no numpy or torch array; a config never needs one.
INT_LIMIT = 2**63
#: The one list of config fields (dotted paths; a section covers its keys) that change how a run is carried
#: out or labelled, never what a fold learns: the fold cache leaves them out of its key and a retried
#: training job finds its checkpoint when only they differ. ``train.device`` is not here: CPU and CUDA
#: draw different random numbers (dropout, shuffling), so they learn different weights.
OPERATIONAL_FIELDS = (
    "experiment", "tracking", "plugins", "data.allow_dirty", "data.rev", "train.timeout",
    "train.parallel_folds", "train.dask_address", "train.checkpoint_dir", "train.restarts",
    "train.rdzv_endpoint", "train.threads",
)


def is_operational(path: str) -> bool:
    """True when the dotted config path ``path`` (``train.timeout``) is, or lies under, an operational field."""
    return any(path == field or path.startswith(field + ".") for field in OPERATIONAL_FIELDS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_truth_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        problem = info.field_name and truth_for_a_number(value, cls.model_fields[info.field_name].annotation)
        if problem:
            raise ValueError(problem)
        return value


def truth_for_a_number(value: Any, annotation: Any) -> str | None:
    """What is wrong with ``value`` for a field of type ``annotation`` when it is true or false and the field
    takes a number (``int``, ``float``, optional or in a union) but no bool; else None. pydantic reads true
    as 1 there: `--set train.epochs=true` trained one epoch without a word."""
    if not isinstance(value, bool):
        return None
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    if bool in options or not any(option in (int, float) for option in options):
        return None
    return f"Input should be a number, not {str(value).lower()}"


class EarlyStoppingConfig(_Strict):
    """Stop a fold's training when its validation loss stops improving
    (see ``scribbles.core.training.early_stopping``)."""

    metric: Literal["valid_loss", "train_loss"] = Field(
        "valid_loss", description="the per-epoch loss watched (lower is better)")
    patience: int = Field(3, ge=1, description="epochs without an improvement before training stops")
    min_delta: float = Field(0.0, ge=0, description="an improvement is a drop of more than this")
    restore_best: bool = Field(False, description="the fold's final weights (and metrics) are the best epoch's")


class TrainConfig(_Strict):
    """How to train: the strategy and the options every torch strategy honours."""

    strategy: str | dict[str, Any] | None = Field(
        None, description="single, ddp, zero, fsdp, sklearn, or {name: ..., <its params>}; default by model")
    workers: int = Field(1, ge=1, description="worker processes on each machine")
    nodes: int = Field(1, ge=1, description="machines; the others run `scribbles join HOST:PORT`")
    rdzv_endpoint: str | None = Field(None, description="HOST:PORT of this machine's rendezvous when nodes > 1")
    restarts: int = Field(2, ge=0, description="times the launcher restarts failed workers from the checkpoint")
    checkpoint_dir: str = Field(".scribbles/checkpoints", description="per-epoch checkpoints, removed when done")
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1, description="global batch: W workers take batch_size / W each")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    activation_checkpointing: Literal[False, "full", "selective"] = Field(
        False,
        description="recompute activations in backward: true or 'full' (a checkpointed block keeps only its "
        "input), 'selective' (also keeps attention and contracting matmul outputs), false",
    )
    activation_checkpointing_share: float | None = Field(
        None, gt=0, le=1, description="share of the blocks checkpointed, from the first; the last never is; "
        "default 0.75 for full, 1 for selective",
    )
    grad_accumulation: int = Field(1, ge=1)
    seed: Seed = 0
    timeout: float = Field(1800.0, gt=0, description="seconds before a stalled worker fails the run")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        None, ge=1, description="CPU threads per worker; default 1 (why: core/training/_training.py, cpu_threads)"
    )
    parallel_folds: int = Field(1, ge=1, description="folds trained at once, each in a process of its own")
    dask_address: str | None = Field(
        None, description="a Dask scheduler (tcp://HOST:PORT) whose workers train the folds, across machines"
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="{metric, patience, min_delta, restore_best}: stop a fold when it stops improving")


    @field_validator("activation_checkpointing", mode="before")
    @classmethod
    def _checkpointing_policy(cls, value: Any) -> Any:
        # true is the default policy; anything else gets one message naming every choice.
        if value is True:
            return "full"
        if value is False or value in ("selective", "full"):
            return value
        raise ValueError("must be true, false, 'selective' or 'full'")


#: What a config that names no loss or metrics gets, per task.
DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse"}
DEFAULT_METRICS: dict[str, list[str]] = {"classification": ["accuracy"], "regression": ["rmse", "mae", "r2"]}


#: Where a technique may be given by its bare name (``split: kfold``) as well as by its section
#: (``split: {name: kfold, n_splits: 3}``): dotted path (``*`` for a list's items) -> (family, an example).
NAMED_PATHS: dict[str, tuple[str, str]] = {
    "split": ("splitter", "kfold"), "model": ("model", "mlp"), "loss": ("loss", "cross_entropy"),
    "tracking": ("tracker", "mlflow"), "tracking.*": ("tracker", "mlflow"),
    "preprocess.*": ("preprocess", "standard"), "evaluate.metrics.*": ("metric", "accuracy"),
    "evaluate.tta.transforms.*": ("tta", "hflip"),
}


def takes_a_name(path: str) -> bool:
    """True when the dotted config path ``path`` (``split``, ``evaluate.tta.transforms.0``) takes a bare name."""
    return ".".join("*" if part.isdigit() else part for part in path.split(".")) in NAMED_PATHS


def _named(value: Any) -> Any:
    """A technique given by its bare name (``hflip``) as the section it stands for (``{name: hflip}``)."""
    return {"name": value} if isinstance(value, str) else value


def _name_or_section(path: str, many: bool = False) -> str:
    """How to give the technique at ``path``: "give a model name (model: mlp) or a section (...)"."""
    family, example = NAMED_PATHS[path]
    if path.endswith(".*"):
        return f"give a {family} name ({example}) or a section ({{name: {example}, ...}})"
    more = ", or a list of them" if many else ""
    return f"give a {family} name ({path}: {example}) or a section ({path}: {{name: {example}, ...}}){more}"


def _technique_item(path: str, expand: bool) -> BeforeValidator:
    """A list item that is a technique's name or section (anything else: one message naming the fix);
    ``expand`` turns a bare name into its section."""
    def check(value: Any) -> Any:
        if isinstance(value, str):
            return _named(value) if expand else value
        if isinstance(value, dict):
            return value
        raise ValueError(_name_or_section(path))
    return BeforeValidator(check)


def _one_or_list(items: str) -> BeforeValidator:
    """A list of techniques (``items``: their ``NAMED_PATHS`` entry, ``evaluate.metrics.*``), where one name
    or section stands for a list of one (``metrics: accuracy``); anything else is one message naming the fix."""
    def check(value: Any) -> Any:
        if value is None or isinstance(value, list):
            return value
        if isinstance(value, str | dict):
            return [value]
        family, example = NAMED_PATHS[items]
        path = items.removesuffix(".*").rsplit(".", 1)[-1]
        raise ValueError(f"give a list of {family} names or sections ({path}: [{example}, ...]), or one")
    return BeforeValidator(check)


class TTAConfig(_Strict):
    """Test-time augmentation: transforms (each expands into views), how views merge, how they run."""

    transforms: Annotated[list[Annotated[dict[str, Any], _technique_item("evaluate.tta.transforms.*", expand=True)]],
                          _one_or_list("evaluate.tta.transforms.*")] = Field(default_factory=list)
    merge: Literal["mean", "median", "gmean", "max", "beta"] = "mean"
    beta: float = Field(0.25, ge=0, le=1, description="merge beta: weight of the plain view (fastai's)")
    mode: Literal["auto", "batched", "loop"] = Field(
        "auto", description="views stacked in one forward pass, one pass per view, or the faster measured"
    )
    chunk: int | None = Field(None, ge=1, description="rows per block; default 4 x train.batch_size")


class EvaluateConfig(_Strict):
    """Evaluation: optional TTA and the metrics to report."""

    tta: TTAConfig | None = None
    #: Default: accuracy (classification) or rmse (regression).
    metrics: Annotated[
        list[Annotated[str | dict[str, Any], _technique_item("evaluate.metrics.*", expand=False)]] | None,
        _one_or_list("evaluate.metrics.*")] = None


class PluginsConfig(_Strict):
    """Which installed plugin distributions to keep out of this run."""

    deny: list[str] = Field(default_factory=list)


class RandomRange(_Strict):
    """A range to draw a random-sweep value from: uniform, log-uniform, or integers."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


class OptunaConfig(_Strict):
    """An Optuna study as the sweep's search engine (see flows/search.py)."""

    sampler: Literal["tpe", "random", "grid", "cmaes"] = "tpe"
    trials: int | None = Field(None, ge=1, description="trials in the study; default the grid's size for grid")
    seed: Seed = 0
    pruner: Literal["median", "hyperband", "wilcoxon", "none"] = "none"
    startup_trials: int = Field(2, ge=0, description="trials finished before the median pruner prunes")
    warmup_steps: int = Field(0, ge=0, description="steps (fold * epochs + epoch) a trial runs before the median "
                              "pruner may prune it")
    storage: str | None = Field(None, description="an Optuna storage URL; default $SCRIBBLES_STUDY_STORAGE, "
                                "else a journal file beside the MLflow store")


class SweepConfig(_Strict):
    """Trials of one experiment: a grid over dotted config paths, random draws, or an Optuna study."""

    grid: dict[str, list[Any]] | None = None
    random: dict[str, list[Any] | RandomRange] | None = None
    optuna: OptunaConfig | None = None
    #: The space an Optuna study samples: dotted path -> choices (a list) or a range, as ``random``.
    space: dict[str, list[Any] | RandomRange] | None = None
    parallel: int = Field(1, ge=1, description="Optuna trials run at once, each in a process of its own")
    trials: int | None = Field(None, ge=1, description="random draws (random sweeps only)")
    seed: Seed = 0
    rank_by: str | None = Field(None, description="metric ranking the trials; default the first metric")


class ExperimentConfig(_Strict):
    """A whole experiment. Technique sections are ``{name: ..., <its own fields>}``."""

    experiment: str | None = None
    #: What the target is: classes to tell apart, or a number to predict.
    task: Literal["classification", "regression"] = "classification"
    data: dict[str, Any]
    split: dict[str, Any]
    #: Steps fitted on each fold's train rows, in order; None: per-column standard scaling; []: none.
    preprocess: Annotated[list[Annotated[dict[str, Any] | str, _technique_item("preprocess.*", expand=False)]] | None,
                          _one_or_list("preprocess.*")] = None
    model: dict[str, Any] = Field(default_factory=lambda: {"name": "mlp"})
    #: Default: cross_entropy (classification) or mse (regression).
    loss: dict[str, Any] | None = None
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tracking: list[Annotated[dict[str, Any], _technique_item("tracking.*", expand=True)]] = Field(
        default_factory=lambda: [{"name": "mlflow"}])
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    sweep: SweepConfig | None = None

    @field_validator("data", mode="before")
    @classmethod
    def _data_section(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        raise ValueError("give a section: data: {name: file, path: FILE.csv, target: COLUMN, ...}")

    @field_validator("split", "model", "loss", mode="before")
    @classmethod
    def _bare_name(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str | dict) or (value is None and info.field_name == "loss"):
            return _named(value)
        raise ValueError(_name_or_section(str(info.field_name)))

    @field_validator("data", "split", "model", "loss")
    @classmethod
    def _has_name(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if value is not None and "name" not in value:
            family, example = NAMED_PATHS.get(str(info.field_name), ("data source", "file"))
            raise ValueError(f"needs a 'name' (the {family} to use), e.g. {info.field_name}: "
                             f"{{name: {example}, ...}}")
        return value

    @field_validator("tracking", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, list):
            return value
        if isinstance(value, dict | str):
            return [value]
        raise ValueError(_name_or_section("tracking", many=True))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or a ConfigError naming the file and the problem (reading is bounded)."""
    path = Path(path)
    raw = safe_load(read_text(path), str(path))
    if raw is None:
        raise ConfigError(f"{path} is empty; a config needs at least data: and split: sections")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path} must hold a mapping (data:, split:, ...), not {type(raw).__name__}"
        )
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; values are parsed as YAML (``3``, ``true``, ``[1, 2]``)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {clip(item)} must look like key.path=value, e.g. train.epochs=3")
        try:
            value = safe_load(text, f"--set {key.strip()}") if text.strip() else ""
        except ConfigError as exc:
            if "not valid YAML" not in str(exc):
                raise
            value = text  # `--set data.path=a: b` means the text itself
        set_path(raw, key.strip(), value, f"--set {key}: ")
    return raw


def set_path(tree: dict[str, Any], path: str, value: Any, prefix: str = "") -> None:
    """Set the dotted ``path`` (``train.lr``) in ``tree`` to ``value``, in place.

    Missing sections are made; a number picks a list's item (``evaluate.tta.transforms.0.shifts``); a
    technique given by its bare name (``split: kfold``) becomes its section (``{name: kfold}``) when a field
    below it is set (``split.n_splits``). Anything else in the way is a ConfigError naming it; ``prefix``
    starts its message (``--set split.n_splits: ``).
    """
    parts = _path_keys(path.split("."))
    node: Any = tree
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                above = ".".join(parts[:depth])
                count = f"{len(node)} item{'s' * (len(node) != 1)}"
                fix = f"pick one by its index, 0 to {len(node) - 1}" if node else "set the whole list"
                raise _in_the_way(f"{prefix}{above} is a list of {count}, so {part!r} names none; {fix}", above)
            part = int(part)
        elif depth + 1 < len(parts) and node.get(part) is None:
            node[part] = {}
        if depth + 1 == len(parts):
            node[part] = value
            return
        if isinstance(node[part], str) and (takes_a_name(where) or where == "train.strategy"):
            node[part] = {"name": node[part]}  # train.strategy too: `--set train.strategy.reduce=sum`
        if not isinstance(node[part], dict | list):
            raise _in_the_way(f"{prefix}{where} is {clip(node[part])}, not a section; set {where} itself", where)
        node = node[part]


#: Sections whose keys are themselves dotted config paths: a sweep's ``{train.lr: [...]}``.
PATH_KEYED = (("sweep", "grid"), ("sweep", "random"), ("sweep", "space"))


def _path_keys(parts: list[str]) -> list[str]:
    """``parts`` with the dotted key below a path-keyed section joined into one: ``sweep.space.train.lr``
    sets the key ``train.lr`` of ``sweep.space``, and ``sweep.space.train.lr.low`` that range's ``low``
    (a range's own fields are never part of a config path)."""
    for section in PATH_KEYED:
        if tuple(parts[: len(section)]) == section and len(parts) > len(section):
            rest = parts[len(section):]
            field = rest[-1] if len(rest) > 2 and rest[-1] in RandomRange.model_fields else None
            key = rest[:-1] if field else rest
            return [*section, ".".join(key), *([field] if field else [])]
    return parts


def _in_the_way(message: str, where: str) -> ConfigError:
    """A ConfigError whose ``field`` is ``where`` and whose message (which names it already) has no prefix."""
    error = ConfigError(message)
    error.field = where
    return error


def parse_config(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a raw mapping; the error names every bad field by its dotted path."""
    _refuse_unusable_numbers(raw, source)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(err) for err in exc.errors())) from None
    return config


def _refuse_unusable_numbers(node: Any, source: str, path: str = "") -> None:
    """ConfigError for any number no field can use: inf or nan (``.inf``, ``.nan``) or an int beyond int64.

    Checked for the whole tree at once, technique sections included, because a plugin's float field
    would accept ``.inf`` and fail only mid-training (a NaN loss), after Prefect and MLflow started.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            _refuse_unusable_numbers(value, source, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _refuse_unusable_numbers(value, source, f"{path}.{index}" if path else str(index))
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{source}: {path}: {node} is not a finite number; give a finite value")
    elif isinstance(node, int) and not isinstance(node, bool) and abs(node) >= INT_LIMIT:
        raise ConfigError(f"{source}: {path}: {clip(node)} is too large; integers must be below 2**63")


def _describe(err: Any) -> str:
    path = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        section = path.rsplit(".", 1)[0] if "." in path else "the top level"
        fields = _known_fields(path)
        return f"{path}: unknown field in {section}; known fields: {fields}{closest(path.rsplit('.', 1)[-1], fields)}"
    if err["type"] == "missing":
        return f"{path}: required"
    if err["type"] == "model_type":  # a section given as a number or a list, say (`evaluate.tta: 3`)
        return f"{path}: give a section with fields of {_known_fields(path + '.*')} (got {clip(err.get('input'))})"
    return f"{path}: {error_text(err)} (got {clip(err.get('input'))})"


def error_text(err: Any) -> str:
    """A pydantic error's message without pydantic's "Value error, " (our validators' own words); a single
    value where a list goes says how to write the list."""
    text = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if err.get("type") == "list_type" and isinstance(err.get("input"), str | int | float) and \
            not isinstance(err.get("input"), bool):
        text += f"; write a list, like [{err['input']}]"
    return text


def closest(name: str, known: str | list[str]) -> str:
    """"; did you mean 'model'?" for the known name closest to ``name``, or ''."""
    options = known.split(", ") if isinstance(known, str) else known
    match = difflib.get_close_matches(name, options, n=1)
    return f"; did you mean '{match[0]}'?" if match else ""


def _known_fields(path: str) -> str:
    model: type[BaseModel] = ExperimentConfig
    for part in path.split(".")[:-1]:
        if part not in model.model_fields:  # inside a free-form mapping (sweep.random.<path>, say)
            continue
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for arg in list(candidates):
            candidates.extend(getattr(arg, "__args__", ()))
        found = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if found is None:
            continue
        model = found
    return ", ".join(model.model_fields)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment config; ``experiment`` defaults to the file's stem."""
    raw = read_yaml(path)
    if "model" not in raw:
        # `--set model.hidden=[8]` refines the default model instead of replacing it with a nameless one.
        raw["model"] = ExperimentConfig.model_fields["model"].default_factory()  # type: ignore[misc]
    raw = apply_overrides(raw, overrides)
    loss = raw.get("loss") if isinstance(raw, dict) else None
    if isinstance(loss, dict) and "name" not in loss:  # `--set loss.label_smoothing=0.1` refines the default
        raw["loss"] = {"name": DEFAULT_LOSS.get(str(raw.get("task", "classification")), "cross_entropy"), **loss}
    config = parse_config(raw, str(path))
    if not config.experiment:
        config.experiment = Path(path).stem
    return config
