"""The name transformers gives a decoder's key/value cache, on either side of its rename.

transformers 5.24 renamed ``past_key_values`` (the argument of every decoder, decoder layer
and mask builder, and the field of their outputs) to ``cache``, and accepts the old name
with a warning until 5.40. Machines keep older 5.x releases (images that ship torch with
their own transformers), so the package asks the installed release which name it declares
instead of requiring the newest.
"""

import dataclasses

from transformers.modeling_outputs import BaseModelOutputWithPast

CACHE_ARGUMENT = (
    "cache"
    if "cache" in {field.name for field in dataclasses.fields(BaseModelOutputWithPast)}
    else "past_key_values"
)


def cache_argument(cache: object) -> dict[str, object]:
    """Return keyword arguments passing ``cache`` to a decoder, layer or mask builder."""
    return {CACHE_ARGUMENT: cache}


def output_cache(output: object) -> object:
    """Return the key/value cache a decoder returned in ``output``."""
    return getattr(output, CACHE_ARGUMENT)
