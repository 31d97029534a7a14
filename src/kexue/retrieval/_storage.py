"""A single-file, memory-mappable container for flat integer arrays (spec 04 §2.3, §2.4).

The trie is persisted in its own format — not pickle (spec 04 §6 pitfall 10), not ``.npz`` (a zip
archive cannot be memory-mapped without extracting it) — so that a large knowledge base loads in
milliseconds and shares its pages between processes:

=========  ======  ==========================================================================
offset     size    content
=========  ======  ==========================================================================
0          16      magic ``b"\\x89kexue-trie\\r\\n\\x1a\\n\\x00"`` (a text-mode transfer or a
                   foreign file fails here)
16         4       format version, uint32 little-endian
20         4       header length ``H`` in bytes, uint32 little-endian
24         4       CRC32 of bytes ``0:24`` followed by the header (so every byte before the
                   data is covered)
28         4       reserved, must be zero
32         H       header: UTF-8 JSON object ``{"kind", "file_size", "meta", "arrays"}``
…          …       zero padding to a multiple of 64 bytes: the data section starts here
data       …       each array little-endian, C order, at a 64-byte aligned offset relative to
                   the data section; ``arrays[name] = {"dtype", "shape", "offset", "nbytes",
                   "crc32"}``
=========  ======  ==========================================================================

:func:`read_arrays` checks the magic, the version, the header checksum, the recorded file size
(truncation) and every array's bounds before touching array data; ``verify=True`` also checks
each array's CRC32 (reads every page). All failures raise ValueError saying what is wrong.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kexue.utils import atomic_open

__all__ = ["FORMAT_VERSION", "MAGIC", "read_arrays", "write_arrays"]

MAGIC = b"\x89kexue-trie\r\n\x1a\n\x00"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<16sIII4x")  # magic, version, header length, header CRC, reserved
_ALIGN = 64
_DTYPES = frozenset({"<i4", "<i8", "|u1"})
_MAX_HEADER = 1 << 26  # 64 MiB of JSON header is certainly not a trie header


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _prefix_crc(prefix_without_crc: bytes, header: bytes) -> int:
    return zlib.crc32(header, zlib.crc32(prefix_without_crc)) & 0xFFFFFFFF


def _little_endian(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and not _native_little()):
        array = array.astype(array.dtype.newbyteorder("<"))
    return array


def _native_little() -> bool:
    return bool(np.little_endian)


def write_arrays(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    *,
    kind: str,
) -> Path:
    """Write ``arrays`` (int32/int64/uint8, any shape) and the JSON-able ``meta`` to one file.

    The write is atomic (:func:`kexue.utils.atomic_open`): a reader sees the old file or the new
    one, never a half-written file. Returns the path.
    """
    prepared: dict[str, np.ndarray] = {}
    entries: dict[str, dict[str, Any]] = {}
    offset = 0
    for name, array in arrays.items():
        little = _little_endian(np.asarray(array))
        dtype = little.dtype.str
        if dtype not in _DTYPES:
            raise TypeError(
                f"array {name!r} has dtype {little.dtype}; the trie file stores int32, int64 "
                "and uint8 arrays only"
            )
        prepared[name] = little
        entries[name] = {
            "dtype": dtype,
            "shape": [int(n) for n in little.shape],
            "offset": offset,
            "nbytes": int(little.nbytes),
            "crc32": zlib.crc32(little.data.cast("B")) & 0xFFFFFFFF,
        }
        offset = _align(offset + little.nbytes)
    document = {"kind": kind, "file_size": 0, "meta": dict(meta), "arrays": entries}
    # The file size depends on the header length, which depends on the file size's digits:
    # iterate to the fixed point (two rounds at most in practice).
    header = b""
    for _ in range(4):
        header = json.dumps(document, allow_nan=False, separators=(",", ":")).encode("utf-8")
        data_start = _align(_PREFIX.size + len(header))
        size = data_start + (
            max(e["offset"] + e["nbytes"] for e in entries.values()) if entries else 0
        )
        if document["file_size"] == size:
            break
        document["file_size"] = size
    else:  # pragma: no cover - the digits of the size cannot keep growing
        raise RuntimeError("could not lay out the trie file header")
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), 0)
    crc = _prefix_crc(head[:24], header)
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), crc)
    with atomic_open(path, "wb") as handle:
        handle.write(head)
        handle.write(header)
        position = _PREFIX.size + len(header)
        for name, array in prepared.items():
            target = data_start + entries[name]["offset"]
            handle.write(b"\x00" * (target - position))
            handle.write(array.data.cast("B"))
            position = target + array.nbytes
    return Path(path)


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def read_arrays(
    path: str | os.PathLike[str], *, kind: str, mmap: bool = True, verify: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`write_arrays`; return ``(arrays, meta)``.

    ``mmap=True`` maps the file copy-on-write (``numpy.memmap`` mode ``"c"``): arrays are
    zero-copy views whose pages are read on first access and shared with the page cache; the file
    itself is never modified. ``mmap=False`` reads the file into memory. ``verify=True`` checks
    every array's CRC32. Raises ValueError for a foreign, truncated, corrupt or newer file.
    """
    file = Path(path)
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(_PREFIX.size)
        if head[: len(MAGIC)] != MAGIC:
            if len(head) < len(MAGIC) and MAGIC.startswith(head):
                raise _fail(file, f"truncated: {size} bytes is shorter than the trie file magic")
            raise _fail(
                file, "not a kexue trie file (bad magic bytes); save one with Trie.save(path)"
            )
        if len(head) < _PREFIX.size:
            raise _fail(file, f"truncated: {size} bytes, the fixed header alone is {_PREFIX.size}")
        _, version, header_length, crc = _PREFIX.unpack(head)
        if head[28:32] != bytes(4):
            raise _fail(file, "corrupt fixed header (reserved bytes are not zero)")
        if version != FORMAT_VERSION:
            raise _fail(
                file,
                f"unsupported trie file format version {version} (this kexue reads version "
                f"{FORMAT_VERSION}); rebuild the trie or upgrade kexue",
            )
        if header_length > min(size - _PREFIX.size, _MAX_HEADER):
            raise _fail(
                file,
                f"truncated or corrupt: the header claims {header_length} bytes but the file "
                f"has {size} bytes",
            )
        header = handle.read(header_length)
    if _prefix_crc(head[:24], header) != crc:
        raise _fail(file, "header checksum mismatch: the file is corrupt; save the trie again")
    try:
        document = json.loads(header.decode("utf-8"))
        arrays_doc = document["arrays"]
        meta = document["meta"]
        expected_size = int(document["file_size"])
        found_kind = document["kind"]
    except (ValueError, KeyError, TypeError) as error:  # checksum collision: practically never
        raise _fail(file, f"corrupt header ({error})") from error
    if found_kind != kind:
        raise _fail(file, f"holds a {found_kind!r}, expected a {kind!r}")
    if size < expected_size:
        raise _fail(
            file, f"truncated: {size} bytes, the header says {expected_size}; copy or save again"
        )
    if size > expected_size:
        raise _fail(file, f"corrupt: {size - expected_size} unexpected trailing bytes")
    data_start = _align(_PREFIX.size + header_length)
    if not isinstance(arrays_doc, dict) or not isinstance(meta, dict):
        raise _fail(file, "corrupt header (arrays/meta are not objects)")
    layout: dict[str, tuple[np.dtype[Any], tuple[int, ...], int, int, int]] = {}
    for name, entry in arrays_doc.items():
        try:
            dtype_str = entry["dtype"]
            shape = tuple(int(n) for n in entry["shape"])
            offset = int(entry["offset"])
            nbytes = int(entry["nbytes"])
            array_crc = int(entry["crc32"])
        except (KeyError, TypeError, ValueError) as error:
            raise _fail(file, f"corrupt header entry for array {name!r} ({error})") from error
        if dtype_str not in _DTYPES:
            raise _fail(file, f"array {name!r} has unsupported dtype {dtype_str!r}")
        dtype = np.dtype(dtype_str)
        if any(n < 0 for n in shape) or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != (
            nbytes
        ):
            raise _fail(file, f"array {name!r}: shape {shape} does not match {nbytes} bytes")
        if offset < 0 or offset % _ALIGN or data_start + offset + nbytes > size:
            raise _fail(file, f"array {name!r} lies outside the file (truncated or corrupt)")
        layout[name] = (dtype, shape, offset, nbytes, array_crc)

    if mmap and size > data_start:
        buffer: np.ndarray = np.memmap(file, dtype=np.uint8, mode="c")
    else:
        with open(file, "rb") as handle:
            buffer = np.frombuffer(bytearray(handle.read()), dtype=np.uint8)
        if buffer.size != size:
            raise _fail(file, "truncated while reading (the file changed on disk)")
    arrays: dict[str, np.ndarray] = {}
    for name, (dtype, shape, offset, nbytes, array_crc) in layout.items():
        start = data_start + offset
        raw = buffer[start : start + nbytes]
        if verify and zlib.crc32(raw.data) & 0xFFFFFFFF != array_crc:
            raise _fail(file, f"array {name!r} checksum mismatch: the file is corrupt")
        # a plain ndarray view (its base chain still ends in the memmap): indexing the memmap
        # subclass costs microseconds per call in numpy's __array_finalize__
        arrays[name] = raw.view(dtype).reshape(shape).view(np.ndarray)
    return arrays, meta
