"""One JSON codec for attribute values: numpy scalars and arrays, tuples, dicts, non-finite floats.

``decode_value(json.loads(json.dumps(encode_value(v, where))))`` gives back ``v`` with its
exact type: ``np.float32(1.5)`` stays a float32 scalar, a tuple stays a tuple, ``nan`` and
``inf`` survive, a datetime64 array keeps its unit. Plain JSON values are stored as
themselves, so records stay readable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.errors import FormatError, UnsupportedObjectError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["decode_mapping", "decode_value", "encode_mapping", "encode_value"]


def encode_value(value: Any, where: str, *, hint: str = "") -> Any:
    """JSON form of ``value`` that :func:`decode_value` turns back into the same value and type.

    Parameters
    ----------
    value : object
        ``None``, bool, str, int, float, numpy scalar or array (numbers, datetimes,
        strings), tuple, list, or a dict with string keys of those.
    where : str
        What the value is (``"attribute 'units' of variable 't2m'"``), for the error message.
    hint : str, optional
        A sentence appended to the error message, e.g. which format stores anything.

    Raises
    ------
    UnsupportedObjectError
        For any other type, naming ``where``.

    Examples
    --------
    >>> import numpy as np
    >>> encode_value((1, float("nan")), "x")
    {'tuple': [1, {'float': 'nan'}]}
    >>> decode_value(encode_value(np.float32(1.5), "x"))
    np.float32(1.5)
    """
    import numpy as np

    if value is None or isinstance(value, bool | str):
        return str(value) if isinstance(value, np.str_) else value
    if isinstance(value, int) and not isinstance(value, np.generic):
        return value
    if isinstance(value, float) and not isinstance(value, np.generic):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, np.generic):
        return {"scalar": _encode_array(np.asarray(value), where, hint)}
    if isinstance(value, np.ndarray):
        return {"ndarray": _encode_array(value, where, hint)}
    if isinstance(value, tuple):
        return {"tuple": [encode_value(v, where, hint=hint) for v in value]}
    if isinstance(value, list):
        return [encode_value(v, where, hint=hint) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode_value(v, where, hint=hint) for k, v in value.items()}}
    raise UnsupportedObjectError(
        f"{where} is a {type(value).__name__}, which cannot be recorded; store numbers, strings, "
        f"lists, dicts or numpy values. {hint}".rstrip()
    )


def decode_value(value: Any) -> Any:
    """Inverse of :func:`encode_value`.

    Raises
    ------
    FormatError
        For a mapping that :func:`encode_value` cannot have written.
    """
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if not isinstance(value, Mapping):
        return value
    if "float" in value:
        return float(value["float"])
    if "scalar" in value:
        return _decode_array(value["scalar"])[()]
    if "ndarray" in value:
        return _decode_array(value["ndarray"])
    if "tuple" in value:
        return tuple(decode_value(v) for v in value["tuple"])
    if "dict" in value:
        return {k: decode_value(v) for k, v in value["dict"].items()}
    raise FormatError(f"unrecognised encoded value: {value!r}")


def encode_mapping(mapping: Mapping[str, Any], where: str, *, hint: str = "") -> dict[str, Any]:
    """:func:`encode_value` applied to each value of ``mapping`` (``where`` names the mapping)."""
    return {str(k): encode_value(v, f"{k!r} of {where}", hint=hint) for k, v in mapping.items()}


def decode_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`decode_value` applied to each value of ``mapping``."""
    return {key: decode_value(value) for key, value in mapping.items()}


def _encode_array(values: Any, where: str, hint: str) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(values)
    kind = values.dtype.kind
    out: dict[str, Any] = {"dtype": values.dtype.str, "shape": list(values.shape)}
    flat = values.ravel()
    if kind in "biu":
        out["data"] = flat.tolist()
    elif kind == "f":
        out["data"] = [v if math.isfinite(v) else {"float": repr(v)} for v in flat.tolist()]
    elif kind in "mM":
        out["data"] = flat.view("int64").tolist()
    elif kind == "U" or (kind == "O" and all(isinstance(v, str) for v in flat.tolist())):
        out["data"] = flat.tolist()
    else:
        raise UnsupportedObjectError(
            f"{where} holds {values.dtype} values, which cannot be recorded. {hint}".rstrip()
        )
    return out


def _decode_array(encoded: Mapping[str, Any]) -> np.ndarray:
    import numpy as np

    dtype = np.dtype(encoded["dtype"])
    shape = tuple(encoded["shape"])
    data = encoded["data"]
    if dtype.kind == "f":
        data = [float(v["float"]) if isinstance(v, Mapping) else v for v in data]
    if dtype.kind in "mM":
        return np.array(data, dtype="int64").view(dtype).reshape(shape)
    if dtype.kind == "O":
        array = np.empty(len(data), dtype=object)
        array[:] = data
        return array.reshape(shape)
    return np.array(data, dtype=dtype).reshape(shape)
