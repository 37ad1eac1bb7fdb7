"""Secret masking for the flows: see ``scribbles.core.redact`` (every layer uses the same rules)."""

from scribbles.core.redact import MASK, is_secret, mask_params, mask_text, mask_tree, mask_value, masked_fields

__all__ = ["MASK", "is_secret", "mask_params", "mask_text", "mask_tree", "mask_value", "masked_fields"]
