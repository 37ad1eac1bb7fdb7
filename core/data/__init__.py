"""Data: the leakage guard every fold passes, column coding for splitters, targets, preprocessing, fold inputs.

``guarded_folds`` / ``check_folds`` run the leakage guard; ``column_codes``, ``group_codes``, ``class_codes`` and
``read_times`` code the columns splitters read; ``check_sequence_names`` / ``check_image_names`` hold
``data.shape`` to what the column names number; ``check_target`` / ``constant_features`` catch targets and
features that cannot teach; ``fit`` / ``check_steps`` the per-fold preprocessing; ``fold_inputs`` a fold's model
inputs; ``with_repeats`` repeated cross-validation. Implementation modules (``_guard.py``, ...) are private;
names are imported on first use (PEP 562), so importing this package imports no numpy or pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._columns import (
        class_codes,
        column_codes,
        factorize,
        group_codes,
        parse_span,
        read_times,
        shared_codes,
        to_instants,
    )
    from ._data_remote import dvc_remote_config
    from ._fixed_width import fixed_width_rows, hashed_codes, packed_codes, varying_bits
    from ._fold_inputs import PipelineModel, fold_inputs, served, targets
    from ._guard import check_fold, check_folds, fold_report, guarded_folds
    from ._names import check_image_names, check_sequence_names, name_cycle
    from ._preprocessing import DEFAULT_STEPS, Fitted, check_steps, column_maps, fit
    from ._repeats import Repeated, with_repeats
    from ._targets import check_target, constant_features, fold_warnings

#: Name -> the private module that defines it.
_EXPORTS: dict[str, str] = {
    "check_image_names": "_names",
    "check_sequence_names": "_names",
    "name_cycle": "_names",
    "DEFAULT_STEPS": "_preprocessing",
    "Fitted": "_preprocessing",
    "PipelineModel": "_fold_inputs",
    "Repeated": "_repeats",
    "check_fold": "_guard",
    "check_folds": "_guard",
    "check_steps": "_preprocessing",
    "check_target": "_targets",
    "fold_warnings": "_targets",
    "class_codes": "_columns",
    "column_codes": "_columns",
    "column_maps": "_preprocessing",
    "constant_features": "_targets",
    "dvc_remote_config": "_data_remote",
    "factorize": "_columns",
    "fit": "_preprocessing",
    "fixed_width_rows": "_fixed_width",
    "fold_inputs": "_fold_inputs",
    "fold_report": "_guard",
    "group_codes": "_columns",
    "guarded_folds": "_guard",
    "hashed_codes": "_fixed_width",
    "packed_codes": "_fixed_width",
    "parse_span": "_columns",
    "read_times": "_columns",
    "served": "_fold_inputs",
    "shared_codes": "_columns",
    "targets": "_fold_inputs",
    "to_instants": "_columns",
    "varying_bits": "_fixed_width",
    "with_repeats": "_repeats",
}
#: Name -> a private module exported whole, as a namespace of functions.
_NAMESPACES: dict[str, str] = {}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _NAMESPACES)

__all__ = [
    "DEFAULT_STEPS",
    "Fitted",
    "PipelineModel",
    "Repeated",
    "check_fold",
    "check_folds",
    "check_image_names",
    "check_sequence_names",
    "check_steps",
    "check_target",
    "fold_warnings",
    "class_codes",
    "column_codes",
    "column_maps",
    "constant_features",
    "dvc_remote_config",
    "factorize",
    "fit",
    "fixed_width_rows",
    "fold_inputs",
    "fold_report",
    "group_codes",
    "guarded_folds",
    "hashed_codes",
    "name_cycle",
    "packed_codes",
    "parse_span",
    "read_times",
    "served",
    "shared_codes",
    "targets",
    "to_instants",
    "varying_bits",
    "with_repeats",
]
