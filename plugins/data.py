"""Data sources: ``file`` (a local CSV or Parquet file) and ``dvc`` (a path in a DVC repo)."""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from scribbles.core import BadInput, Dataset, DataSource, Technique, Width, hookimpl
from scribbles.core.contracts import DataKind
from scribbles.core.data import check_image_names, check_sequence_names, dvc_remote_config, to_instants
from scribbles.core.yaml_reader import counted


class ColumnParams(BaseModel):
    """The column roles and the per-row shape shared by every data source."""

    model_config = ConfigDict(extra="forbid")

    target: str
    features: list[str] | None = Field(None, description="default: every column but target, group, time")
    group: str | None = None
    time: str | None = None
    kind: DataKind = "tabular"
    shape: list[Width] | None = Field(None, description="per-row shape: [steps, channels] or [c, h, w]",
                                      validate_default=True)
    sequence_id: str | None = Field(None, description="long format: the column naming each row's sequence")
    step: str | None = Field(None, description="long format: the column ordering the rows of a sequence")
    layout: Literal["time_major", "channel_major"] = Field(
        "time_major", description="sequence columns: every channel of step 0, then of step 1 (time_major: "
                                  "t00_x, t00_y, t01_x ...), or every step of channel 0 first (channel_major)")

    @field_validator("shape")
    @classmethod
    def _shape_fits_kind(cls, shape: list[int] | None, info: ValidationInfo) -> list[int] | None:
        kind = info.data.get("kind")
        wanted = {"sequence": 2, "image": 3}.get(str(kind))
        if wanted and (shape is None or len(shape) != wanted):
            hint = "[steps, channels], e.g. [32, 3]" if kind == "sequence" else \
                "[channels, height, width], e.g. [1, 8, 8]"
            raise ValueError(f"{kind} data needs {wanted} dimensions: {hint}")
        return shape


def read_table(raw: bytes, name: str) -> pd.DataFrame:
    """A DataFrame from CSV or Parquet bytes, chosen by the file name's suffix."""
    suffix = Path(name).suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".txt"):
        raise BadInput(f"data.path: {name} has the unsupported file type {suffix or '(none)'!r}; "
                       "use a .csv or .parquet file")
    if not raw:
        raise BadInput(f"data.path: {name} is empty; point data.path at a file with a header and rows")
    buffer = io.BytesIO(raw)
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(buffer)
        frame = pd.read_csv(buffer)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        kind = "Parquet" if suffix in (".parquet", ".pq") else "CSV"
        raise BadInput(f"data.path: cannot read {name} as {kind} ({type(exc).__name__}: {reason}); "
                       f"check that it is a valid {kind} file") from None
    _check_header(raw, name)
    return frame


def _check_header(raw: bytes, name: str) -> None:
    """BadInput when a CSV header names a column twice: pandas renames the second ``x1`` to ``x1.1``, so a
    config's ``x1`` silently meant the first and the file's second column trained under a name it lacks."""
    import csv
    from collections import Counter

    first = raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    header = next(csv.reader([first]), [])
    twice = [column for column, n in Counter(header).items() if n > 1]
    if twice:
        raise BadInput(f"data.path: {name} names the column {twice[0]!r} {Counter(header)[twice[0]]} times in its "
                       "header; give each column its own name")


def make_dataset(frame: pd.DataFrame, params: ColumnParams, version: str, source: str, rev: Any,
                 features: bool = True) -> Dataset:
    """Check the column roles against ``frame`` and wrap it as a Dataset.

    ``features=False`` checks target, group and time only and leaves the features out (``features`` is
    empty): a split reads no features, so a string id or an undeclared column must not stop it.
    """
    if params.sequence_id is not None:
        frame, params = to_wide(frame, params, source)
    roles = {"target": params.target, "group": params.group, "time": params.time}
    for role, column in roles.items():
        if column is not None and column not in frame.columns:
            header = str(frame.columns[0]) if len(frame.columns) == 1 else ""
            other = next((sep for sep in (";", "\t", "|") if sep in header), None)
            if other is not None:  # the whole header read as one column: not comma-separated
                shown = {"\t": "tabs"}.get(other, repr(other))
                raise BadInput(f"data.path: {source} is separated by {shown}, not commas (its header reads as one "
                               f"column); save it as comma-separated CSV, e.g. pandas.read_csv(path, "
                               f"sep={other!r}).to_csv(new_path, index=False), or as Parquet")
            raise BadInput(
                f"data.{role}: column {column!r} is not in {source}; columns: "
                f"{', '.join(map(str, frame.columns[:12]))}{' ...' if len(frame.columns) > 12 else ''}"
            )
    if frame.empty:
        raise BadInput(f"data.path: {source} has a header but no rows; point data.path at a file with data")
    if len(frame) < 2:
        raise BadInput(f"data.path: {source} has 1 row; cross-validation needs at least 2 (one to train on, "
                       "one to validate), so add rows")
    _check_roles(frame, params, source)
    if not features:
        return Dataset(frame=frame.reset_index(drop=True), target=params.target, features=[], group=params.group,
                       time=params.time, version=version, kind=params.kind, source=source, rev=rev)
    taken = {c for c in roles.values() if c}
    features = params.features or [c for c in frame.columns if c not in taken]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise BadInput(f"data.features: {', '.join(missing[:5])} not in {source}")
    # Text columns and missing values are the preprocessing's to handle (one_hot, impute): checked against
    # the configured steps before any work (``scribbles.core.data.check_steps``).
    if not features:
        raise BadInput(f"data.features: {source} has no feature columns besides target, group and time")
    # Text columns and missing values are for the preprocessing steps (one_hot, impute), checked against the
    # config before any work; an infinite number in a numeric column is no value any step can fix.
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c])]
    infinite = [c for c in numeric if np.isinf(frame[c].to_numpy(dtype=float)).any()]
    if infinite:
        raise BadInput(
            f"data.features: {', '.join(infinite[:5])} in {source} hold infinite values "
            f"(e.g. row {int(np.isinf(frame[infinite[0]].to_numpy(dtype=float)).argmax())}); "
            "replace or drop them first"
        )
    shape = tuple(params.shape) if params.shape else (len(features),)
    if math.prod(shape) != len(features):
        raise BadInput(shape_mismatch(shape, features, params.kind))
    if params.kind == "sequence" and len(shape) == 2:
        check_sequence_names(features, shape, params.layout)
        features = _time_major(features, shape, params.layout)
    elif params.kind == "image":
        check_image_names(features, shape)
    return Dataset(
        frame=frame.reset_index(drop=True),
        target=params.target,
        features=list(features),
        group=params.group,
        time=params.time,
        version=version,
        kind=params.kind,
        shape=shape,
        source=source,
        rev=rev,
    )


def shape_mismatch(shape: tuple[int, ...], features: list[str], kind: str) -> str:
    """The message for a ``data.shape`` whose product is not the feature count; a shape it suggests is one of
    ``kind`` ([steps, channels] for sequences, [channels, height, width] for images), never a flat one there.

    The first feature columns are named: an id column left among them (a subject with no ``data.group``)
    is the usual cause.
    """
    n, rest = len(features), shape[1:]
    shown = ", ".join(map(str, features[:3])) + (", ..." if n > 3 else "")
    head = f"data.shape: {list(shape)} holds {math.prod(shape)} values but there are {n} features ({shown})"
    per = math.prod(rest)
    if rest and n % per == 0:
        return f"{head}; give dimensions whose product is {n}, such as {[n // per, *rest]}, or list data.features"
    if not rest or kind == "tabular":
        return f"{head}; give dimensions whose product is {n}, such as [{n}], or list data.features"
    unit = f"{per} channels per step" if kind == "sequence" else \
        f"{per} values per channel ({' x '.join(map(str, rest))})"
    return (f"{head}, and {n} is not a multiple of the {unit}; "
            "list data.features, leaving out id columns (or give them their role: data.group, data.time)")


def to_wide(frame: pd.DataFrame, params: ColumnParams, source: str) -> tuple[pd.DataFrame, ColumnParams]:
    """Long-format sequences (one row per sequence and step, a column per channel) as one row per sequence.

    Rows are ordered by ``step`` within each ``sequence_id``; every sequence needs the same number of steps.
    Target, group and time must hold one value per sequence (the time kept is its first step's). The
    channels are ``features`` (default: every other numeric column); the wide columns are time-major,
    ``t000_<channel>``, and the params come back with ``kind: sequence`` and ``shape: [steps, channels]``.
    """
    sid, step = params.sequence_id, params.step
    for field, column in (("sequence_id", sid), ("step", step)):
        if column is None or column not in frame.columns:
            raise BadInput(f"data.{field}: {column!r} is not a column of {source}; long-format data need both "
                           "data.sequence_id and data.step")
    roles = {c for c in (sid, step, params.target, params.group, params.time) if c}
    channels = params.features or [c for c in frame.columns
                                   if c not in roles and pd.api.types.is_numeric_dtype(frame[c])]
    ordered = frame.sort_values([sid, step], kind="stable")
    lengths = ordered.groupby(sid, sort=False).size()
    if lengths.nunique() != 1:
        raise BadInput(f"data.step: sequences in {source} have {int(lengths.min())} to {int(lengths.max())} rows "
                       f"(e.g. {str(lengths.idxmin())!r}); every sequence needs the same number of steps, each once")
    steps = int(lengths.iloc[0])
    if params.shape is not None and list(params.shape) != [steps, len(channels)]:
        raise BadInput(f"data.shape: {list(params.shape)} but the long-format data hold {steps} steps of "
                       f"{len(channels)} channels ({', '.join(channels[:5])}); set shape: [{steps}, {len(channels)}] "
                       "or leave it out")
    per_sequence = [c for c in (params.target, params.group, params.time) if c]
    constant = [c for c in (params.target, params.group) if c]  # the time varies: its first step is kept
    varying = [c for c in constant if (ordered.groupby(sid, sort=False)[c].nunique(dropna=False) > 1).any()]
    if varying:
        raise BadInput(f"data.{'target' if varying[0] == params.target else 'group'}: column {varying[0]!r} changes "
                       f"within a sequence in {source}; it must hold one value per {sid}")
    first = ordered.groupby(sid, sort=False)[per_sequence].first()
    values = ordered[channels].to_numpy().reshape(len(first), steps, len(channels))
    wide = pd.DataFrame(values.reshape(len(first), -1),
                        columns=[f"t{t:03d}_{c}" for t in range(steps) for c in channels], index=first.index)
    wide = pd.concat([first, wide], axis=1).reset_index(drop=True)
    update = {"kind": "sequence", "shape": [steps, len(channels)], "features": None, "sequence_id": None,
              "step": None, "layout": "time_major"}
    return wide, params.model_copy(update=update)


def _time_major(features: list[str], shape: tuple[int, ...], layout: str) -> list[str]:
    """Sequence features in the order the model reads them, (steps, channels) row-major: every channel of a
    step together. ``channel_major`` columns are reordered (their names were checked against it first,
    ``check_sequence_names``)."""
    steps, channels = shape
    if layout == "channel_major":
        return [features[c * steps + t] for t in range(steps) for c in range(channels)]
    return features


def _check_roles(frame: pd.DataFrame, params: ColumnParams, source: str) -> None:
    """Targets without gaps and time stamps that parse; each problem names the field and a row."""
    missing = frame[params.target].isna().to_numpy()
    if missing.any():
        raise BadInput(
            f"data.target: column {params.target!r} in {source} has {counted(int(missing.sum()), 'missing value')} "
            f"(e.g. row {int(missing.argmax())}); drop those rows or fill them"
        )
    if params.group is not None:
        holes = frame[params.group].isna().to_numpy()
        if holes.any():
            raise BadInput(
                f"data.group: column {params.group!r} in {source} has {counted(int(holes.sum()), 'missing value')} "
                f"(e.g. row {int(holes.argmax())}); every row needs a group: fill them or drop those rows"
            )
    if params.time is not None:
        parsed = to_instants(frame[params.time], f"column {params.time!r} in {source}")
        gaps = parsed.isna().to_numpy()
        if gaps.any():
            raise BadInput(
                f"data.time: column {params.time!r} in {source} has {int(gaps.sum())} missing timestamps "
                f"(e.g. row {int(gaps.argmax())}); drop those rows or fill them"
            )


class FileSource(DataSource):
    """A local CSV or Parquet file; its version is the md5 of its bytes."""

    name = "file"

    class Params(ColumnParams):
        path: str

    def load(self) -> Dataset:
        return self._load(features=True)

    def load_roles(self) -> Dataset:
        return self._load(features=False)

    def _load(self, features: bool) -> Dataset:
        path = Path(self.params.path)
        if path.is_dir():
            raise BadInput(f"data.path: {path} is a folder; point data.path at a .csv or .parquet file")
        if path.exists() and not path.is_file():  # /dev/zero never ends, a FIFO blocks: neither is read
            raise BadInput(f"data.path: {path} is not a regular file (a device, pipe or socket); point data.path "
                           "at a .csv or .parquet file")
        if not path.is_file():
            raise BadInput(f"data.path: {path} does not exist (paths resolve against {Path.cwd()})")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"data.path: cannot read {path}: {exc.strerror or exc}") from None
        version = hashlib.md5(raw).hexdigest()
        return make_dataset(read_table(raw, path.name), self.params, version, str(path), None, features)

    @classmethod
    def example_params(cls, workdir: Path, dataset: Dataset) -> dict[str, Any]:
        """Fields for a dry run (``scribbles plugins check``): ``dataset`` written as a CSV in ``workdir``."""
        path = workdir / "example.csv"
        dataset.frame.to_csv(path, index=False)
        return {"path": str(path), "target": dataset.target, "group": dataset.group, "time": dataset.time}


def _dvc_root_above(folder: Path) -> Path | None:
    """The DVC repo (a folder holding ``.dvc``) that ``folder`` lies in below its root; None when ``folder``
    is a repo's root or in none."""
    folder = folder.resolve()
    if (folder / ".dvc").is_dir():
        return None
    return next((parent for parent in folder.parents if (parent / ".dvc").is_dir()), None)


class DvcSource(DataSource):
    """A file in a DVC repo, optionally at a git rev, read through DVC; its version is DVC's md5."""

    name = "dvc"

    class Params(ColumnParams):
        path: str
        rev: str | None = None
        repo: str | None = Field(None, description="repo path or URL; default: the working directory")
        allow_dirty: bool = Field(
            False, description="read a workspace file that differs from DVC's record; its version is then its own md5"
        )

    def _missing(self, path: str, repo: str) -> str:
        """Why ``path`` is not in the DVC repo at ``repo``, and the fix: run from the project's root (scribbles
        run from a subfolder, or from outside any repo), or build or pull the data."""
        if not self.params.repo:
            root = _dvc_root_above(Path.cwd())
            if root is not None:
                return (f"data.path: {path} is not in the current folder {repo}; a config's paths start where "
                        f"scribbles runs: run it from the project's root, {root}")
            if not (Path.cwd() / ".dvc").is_dir():
                return (f"data.path: {path}: the current folder {repo} is not a DVC repository; run scribbles from "
                        "your project's root (where `dvc init` was run), or set data.repo")
        rev = f" at rev {self.params.rev}" if self.params.rev else ""
        return (f"data.path: {path} is not in the DVC repo at {repo}{rev}; build it (`scribbles data build`) or "
                "`dvc pull`")

    def _read(self) -> tuple[bytes, str, str]:
        """The file's bytes, the md5 DVC records for it, and the md5 of the bytes read."""
        from dvc.api import DVCFileSystem  # imported here: the training core runs without dvc
        from dvc.scm import SCMError

        repo = self.params.repo or str(Path.cwd())
        path = self.params.path
        try:
            fs = DVCFileSystem(repo, rev=self.params.rev, config=dvc_remote_config())
        except Exception as exc:
            raise BadInput(f"data.repo: {repo} is not a DVC repository ({exc}); run `dvc init`") from None
        try:
            info = fs.info(path)
        except SCMError as exc:  # an unknown rev (RevError), a repo without git, or a remote that cannot be cloned
            remote = "://" in repo or repo.startswith("git@")
            if remote and type(exc).__name__ != "RevError":
                raise BadInput(f"data.repo: cannot read {path} from {repo} ({type(exc).__name__}: {exc}); check the "
                               "URL, the network and your access") from None
            raise BadInput(f"data.rev: {exc} in {repo}; give a commit, branch or tag that exists "
                           "(`git log --oneline`), or drop data.rev to read the workspace") from None
        except FileNotFoundError:
            outside = "://" not in repo and Path(path).is_absolute() and \
                not Path(path).resolve().is_relative_to(Path(repo).resolve())
            if outside:
                raise BadInput(f"data.path: {path} is outside the DVC repo at {repo}; move it into the repo and "
                               "`dvc add` it, or read it without DVC: data.name: file") from None
            raise BadInput(self._missing(path, repo)) from None
        except Exception as exc:  # a remote repo that cannot be cloned (unreachable, no access)
            raise BadInput(f"data.repo: cannot read {path} from {repo} ({type(exc).__name__}: {exc}); "
                           f"check the URL, the network and your access, or use a local repo") from None
        if info.get("type") == "directory":
            raise BadInput(f"data.path: {path} is a folder in the DVC repo; point data.path at a file in it")
        recorded = dvc_md5(info)
        if not recorded:
            raise BadInput(f"data.path: {path} is not tracked by DVC; `dvc add` it, or use data name 'file'")
        try:
            with fs.open(path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:  # missing from the cache, unreadable: DVC's own words, one line
            raise BadInput(f"data.path: cannot read {path} through DVC ({' '.join(str(exc).split())[:160]}); "
                           "run `dvc pull` or `dvc checkout`") from None
        return raw, recorded, hashlib.md5(raw).hexdigest()

    def verify(self) -> str:
        """The data version a run will record; BadInput when the file differs from DVC's record.

        Called before any work so that a run never records a version its data do not have.
        """
        _, recorded, actual = self._read()
        return self._version(recorded, actual)

    def _version(self, recorded: str, actual: str) -> str:
        if actual == recorded:
            return recorded
        if self.params.allow_dirty and self.params.rev is None:
            return actual  # the truth about the bytes read; the run is tagged scribbles.allow_dirty
        path = self.params.path
        # The workspace file changed since DVC recorded it: tagging the run with the recorded md5
        # would misstate which data trained it.
        pointer = dvc_pointer(Path(self.params.repo or Path.cwd()), path)
        raise BadInput(
            f"data.path: {path} (md5 {actual}) differs from what {pointer or 'DVC'} records ({recorded}); "
            f"restore it with `dvc checkout --relink --force {pointer or path}`, record the new data with "
            f"`dvc add {pointer.removesuffix('.dvc') if pointer else path}` (and commit the .dvc file), "
            "or run anyway with `--allow-dirty` (the run is tagged scribbles.allow_dirty)"
        )

    def load(self) -> Dataset:
        return self._load(features=True)

    def load_roles(self) -> Dataset:
        return self._load(features=False)

    def _load(self, features: bool) -> Dataset:
        raw, recorded, actual = self._read()
        version = self._version(recorded, actual)
        return make_dataset(read_table(raw, self.params.path), self.params, version, self.params.path,
                            self.params.rev, features)

    @classmethod
    def example_params(cls, workdir: Path, dataset: Dataset) -> dict[str, Any]:
        """Fields for a dry run: ``dataset`` as a CSV tracked by a fresh DVC repo (no git) in ``workdir``."""
        from dvc.repo import Repo

        dataset.frame.to_csv(workdir / "example.csv", index=False)
        logger = logging.getLogger("dvc")
        level = logger.level
        logger.setLevel(logging.WARNING)  # DVC logs "Initialized DVC repository." at INFO
        try:
            repo = Repo.init(str(workdir), no_scm=True)
            try:
                repo.add("example.csv")
            finally:
                repo.close()
        finally:
            logger.setLevel(level)
        return {"path": "example.csv", "repo": str(workdir), "target": dataset.target,
                "group": dataset.group, "time": dataset.time}


def dvc_pointer(repo: Path, path: str) -> str:
    """The ``.dvc`` file that tracks ``path`` (the file's own or a parent folder's), relative to ``repo``."""
    candidate = Path(path)
    for tracked in (candidate, *candidate.parents):
        if str(tracked) in ("", "."):
            break
        pointer = tracked.with_name(tracked.name + ".dvc")
        if (repo / pointer).is_file():
            return str(pointer)
    return ""


def dvc_md5(info: dict[str, Any]) -> str:
    """The md5 DVC records for an entry of ``DVCFileSystem.info``, or '' when DVC does not track it."""
    dvc_info = info.get("dvc_info") or {}
    meta_md5 = dvc_info.get("md5")
    if meta_md5:
        return str(meta_md5)
    entry = dvc_info.get("entry")
    hash_info = getattr(entry, "hash_info", None)
    if hash_info is not None and hash_info.value:
        return str(hash_info.value)
    return str(info.get("md5") or "")


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [FileSource, DvcSource]
