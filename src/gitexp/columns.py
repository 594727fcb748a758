"""Arrow arrays from Python values and numpy buffers, without pandas.

``pa.array`` (and ``Array.to_numpy``) ask pyarrow's pandas shim whether pandas
is around, which *imports* pandas when it is installed (as it is in nearly
every ML environment): 0.3-0.45 s, paid by the first catalog write of every
process, every sorted listing, and at interpreter exit on the logging path
(see ``tracking._RefuseImports``). The arrays git-exp builds are of a few plain
types, so they are built here from buffers instead. A value of another type
than the array's (an ``exit_code`` that is text in a hand-made run.json, say)
takes the slow path, ``pa.array``, which converts or refuses it as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_INTS = {8: "int8", 16: "int16", 32: "int32", 64: "int64"}
_OFFSET_MAX = 2**31 - 1


class _Slow(Exception):
    """A value the fast path does not take: ``pa.array`` converts it (or refuses it)."""


def fixed(values: Any, type_: Any) -> Any:
    """An Arrow array of the fixed-width ``type_`` over a numpy array's bytes (no nulls)."""
    import numpy as np
    import pyarrow as pa

    dtype = np.float64 if pa.types.is_floating(type_) else _INTS[type_.bit_width]
    data = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(type_, len(data), [None, pa.py_buffer(data)])


def strings(names: Sequence[str]) -> Any:
    """An Arrow string array of ``names`` (no nulls), from buffers."""
    import pyarrow as pa

    return pa.Array.from_buffers(pa.string(), len(names), [None, *_string_buffers(names)])


def _string_buffers(texts: Sequence[str | None]) -> tuple[Any, Any]:
    """(offsets, data) buffers of a string array; None is an empty slot."""
    import numpy as np
    import pyarrow as pa

    try:
        encoded = [b"" if t is None else t.encode("utf-8") for t in texts]
    except (UnicodeEncodeError, AttributeError):
        raise _Slow from None
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
    if offsets[-1] > _OFFSET_MAX:
        raise _Slow
    return pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))


def _validity(values: Sequence[Any]) -> tuple[Any, int]:
    """(validity bitmap or None, null count) of ``values`` (None is null)."""
    import numpy as np
    import pyarrow as pa

    valid = np.fromiter((v is not None for v in values), np.bool_, len(values))
    nulls = len(values) - int(valid.sum())
    if not nulls:
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), nulls


def array(values: Sequence[Any], type_: Any) -> Any:
    """``values`` (None for null) as an Arrow array of ``type_``: what
    ``pa.array(values, type_)`` gives, built from buffers for booleans, 64-bit
    integers and floats, strings and lists of strings (the types of the catalog
    and of listings), without importing pandas."""
    import pyarrow as pa

    try:
        return _array(values, type_)
    except _Slow:
        pass
    return pa.array(list(values), type_)


def _array(values: Sequence[Any], type_: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    n = len(values)
    validity, nulls = _validity(values)
    if pa.types.is_boolean(type_):
        if any(v is not None and not isinstance(v, bool) for v in values):
            raise _Slow
        bits = np.fromiter((v is True for v in values), np.bool_, n)
        data = pa.py_buffer(np.packbits(bits, bitorder="little"))
        return pa.Array.from_buffers(type_, n, [validity, data], null_count=nulls)
    if pa.types.is_int64(type_) or pa.types.is_float64(type_):
        floating = pa.types.is_float64(type_)
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (float, int) if floating else int):
                raise _Slow
            if not floating and not -(2**63) <= v < 2**63:
                raise _Slow
        dtype = np.float64 if floating else np.int64
        data = np.fromiter((0 if v is None else v for v in values), dtype, n)
        return pa.Array.from_buffers(type_, n, [validity, pa.py_buffer(data)], null_count=nulls)
    if pa.types.is_string(type_):
        if any(v is not None and not isinstance(v, str) for v in values):
            raise _Slow
        offsets, data = _string_buffers(values)
        return pa.Array.from_buffers(type_, n, [validity, offsets, data], null_count=nulls)
    if pa.types.is_list(type_) and pa.types.is_string(type_.value_type):
        if any(v is not None and not isinstance(v, (list, tuple)) for v in values):
            raise _Slow
        flat = [s for v in values if v is not None for s in v]
        child = _array(flat, pa.string())
        if child.null_count:
            raise _Slow
        lengths = np.fromiter((0 if v is None else len(v) for v in values), np.int64, n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        buffers = [validity, pa.py_buffer(offsets.astype(np.int32))]
        return pa.Array.from_buffers(type_, n, buffers, null_count=nulls, children=[child])
    raise _Slow


def indices(positions: Sequence[int]) -> Any:
    """Row positions as an int64 array (for ``take``)."""
    import numpy as np
    import pyarrow as pa

    return fixed(np.fromiter(positions, np.int64, len(positions)), pa.int64())


def to_numpy(col: Any) -> Any:
    """The values of a fixed-width Arrow array (chunked or not) as a numpy array."""
    import numpy as np
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        return col.to_numpy(zero_copy_only=False)
    dtype = np.dtype(np.float64 if pa.types.is_floating(col.type) else _INTS[col.type.bit_width])
    buf = col.buffers()[1]
    if buf is None:
        return np.zeros(0, dtype)
    return np.frombuffer(buf, dtype, count=len(col), offset=col.offset * dtype.itemsize)


def empty_table(schema: Any) -> Any:
    """A table of no rows in ``schema`` (``Schema.empty_table`` imports pandas)."""
    import pyarrow as pa

    return pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


def text(value: str) -> Any:
    """A string scalar (a Python ``str`` given to a ``pyarrow.compute`` function
    goes through ``pa.scalar``, which imports pandas)."""
    return strings([value])[0]
