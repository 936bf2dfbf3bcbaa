"""Read a GGUF file's key/value metadata (architecture, size label, quantization, chat template) without llama.cpp.

Only the header is read; arrays (the vocabulary) are skipped, so listing models stays cheap and never loads one.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

Scalar = int | float | bool | str

_MAGIC = b"GGUF"
_MAX_KEYS = 1 << 20
_MAX_STRING = 16 << 20  # a chat template or license can be long; a garbage length must not allocate gigabytes
_FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

# llama.cpp's LLAMA_FTYPE_* numbers (general.file_type) as Ollama names them in `quantization_level`.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS",
    20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
}


class GGUFError(ValueError):
    """Not a GGUF file, or a truncated/corrupt header."""


def read_metadata(path: str | Path) -> dict[str, Scalar]:
    with open(path, "rb") as f:
        return parse_metadata(f)


def parse_metadata(f: BinaryIO) -> dict[str, Scalar]:
    if f.read(4) != _MAGIC:
        raise GGUFError("not a GGUF file (bad magic)")
    version = _unpack(f, "<I")
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    _unpack(f, "<Q")  # tensor count
    count = _unpack(f, "<Q")
    if count > _MAX_KEYS:
        raise GGUFError(f"implausible metadata key count {count}")
    meta: dict[str, Scalar] = {}
    for _ in range(count):
        key = _string(f)
        kind = _unpack(f, "<I")
        if kind == _ARRAY:
            _skip_array(f)
        else:
            meta[key] = _value(f, kind)
    return meta


def _value(f: BinaryIO, kind: int) -> Scalar:
    if kind == _STRING:
        return _string(f)
    fmt = _FIXED.get(kind)
    if fmt is None:
        raise GGUFError(f"unknown GGUF value type {kind}")
    value: Scalar = _unpack(f, fmt)
    return value


def _skip_array(f: BinaryIO) -> None:
    kind = _unpack(f, "<I")
    n = _unpack(f, "<Q")
    if kind == _STRING:
        for _ in range(n):
            f.seek(_length(f), 1)
    elif kind in _FIXED:
        f.seek(n * struct.calcsize(_FIXED[kind]), 1)
    else:
        raise GGUFError(f"unsupported GGUF array element type {kind}")


def _length(f: BinaryIO) -> int:
    n = int(_unpack(f, "<Q"))
    if n > _MAX_STRING:
        raise GGUFError(f"implausible string length {n}")
    return n


def _string(f: BinaryIO) -> str:
    n = _length(f)
    raw = f.read(n)
    if len(raw) != n:
        raise GGUFError("truncated GGUF header")
    return raw.decode("utf-8", errors="replace")


def _unpack(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize(fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise GGUFError("truncated GGUF header")
    value: int = struct.unpack(fmt, raw)[0]
    return value
