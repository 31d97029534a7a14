"""The single-file trie format: round trips, memory mapping, foreign/truncated/corrupt files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.retrieval import Trie
from kexue.retrieval._storage import MAGIC, read_arrays, write_arrays

KEYS = [[5, 1, 2], [5, 1, 3], [5, 4], [7], [5, 1, 2], [8, 9, 9, 9, 1], [31, 32, 63]]
PREFIX_SIZE = 32


def same_answers(a: Trie, b: Trie, keys: list[list[int]], *, all_keys: bool = True) -> None:
    """Every public query gives identical results on both tries."""
    assert (a.num_nodes, a.num_keys, a.num_entries) == (b.num_nodes, b.num_keys, b.num_entries)
    assert (a.end_id, a.terminated, a.max_depth, a.vocab_size) == (
        b.end_id,
        b.terminated,
        b.max_depth,
        b.vocab_size,
    )
    assert a.nbytes == b.nbytes
    if all_keys:
        assert list(a) == list(b)
    for key in keys:
        assert list(a.keys(key[:1])) == list(b.keys(key[:1]))
    prefixes = [k[:i] for k in keys for i in range(len(k) + 1)] + [[*k, a.end_id] for k in keys]
    states = a.states_of(prefixes)
    assert torch.equal(states, b.states_of(prefixes))
    assert torch.equal(a.allowed_mask(states=states), b.allowed_mask(states=states))
    assert torch.equal(
        a.allowed_mask(states=states, packed=True), b.allowed_mask(states=states, packed=True)
    )
    assert all(
        torch.equal(x, y) for x, y in zip(a.children(states), b.children(states), strict=True)
    )
    tokens = torch.arange(a.vocab_size).repeat(len(prefixes) // a.vocab_size + 1)[: len(prefixes)]
    assert torch.equal(a.advance(states, tokens), b.advance(states, tokens))
    for key in keys:
        assert a.get(key) == b.get(key)
        assert a.next_tokens(key).tolist() == b.next_tokens(key).tolist()
        state = a.walk([*key, a.end_id])  # -1 for a hidden key in reference mode
        assert state == b.walk([*key, b.end_id])
        if state >= 0:
            assert a.key_of(state) == b.key_of(state)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Trie, Path]:
    trie = Trie.build(KEYS, [f"v{i}" for i in range(len(KEYS))], end_id=0)
    return trie, trie.save(tmp_path / "kb.trie")


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("terminated", [True, False])
def test_round_trip_gives_identical_answers(tmp_path: Path, mmap: bool, terminated: bool) -> None:
    keys = [[1, 9, 2, 9], [1, 9, 2, 9, 3], [4, 9, 5], [4, 9, 5], [6, 9, 31, 32]]
    trie = Trie.build(keys, end_id=9, terminated=terminated)
    path = trie.save(tmp_path / "t.trie")
    assert path == tmp_path / "t.trie"
    loaded = Trie.load(path, mmap=mmap)
    same_answers(trie, loaded, keys)
    assert loaded.get([4, 9, 5]) == [2, 3]  # insertion indices stored as int64
    assert loaded.terminated is terminated
    assert Trie.load(path, mmap=mmap, verify=True).get([1, 9, 2, 9]) == [0]


def test_mmap_load_is_zero_copy_and_never_writes_the_file(saved: tuple[Trie, Path]) -> None:
    trie, path = saved
    before = path.read_bytes()
    loaded = Trie.load(path)
    for name, array in loaded.arrays.items():
        base = array
        while isinstance(base, np.ndarray) and not isinstance(base, np.memmap):
            base = base.base  # type: ignore[assignment]
        assert isinstance(base, np.memmap), name
    copied = Trie.load(path, mmap=False)
    for array in copied.arrays.values():
        assert not isinstance(array.base, np.memmap)
    same_answers(trie, loaded, KEYS)
    loaded.arrays["edge_token"][0] = 99  # copy-on-write: the process sees it, the file does not
    del loaded
    assert path.read_bytes() == before
    assert trie.arrays["edge_token"][0] != 99


def test_layout_is_aligned_and_self_describing(saved: tuple[Trie, Path]) -> None:
    _, path = saved
    data = path.read_bytes()
    assert data[:16] == MAGIC
    version, header_length = struct.unpack_from("<II", data, 16)
    assert version == 1
    header = json.loads(data[PREFIX_SIZE : PREFIX_SIZE + header_length])
    assert header["kind"] == "kexue.retrieval.Trie"
    assert header["file_size"] == len(data)
    assert header["meta"]["values"] == "json"
    data_start = -(-(PREFIX_SIZE + header_length) // 64) * 64
    for name, entry in header["arrays"].items():
        assert entry["offset"] % 64 == 0, name
        assert entry["dtype"] in {"<i4", "<i8", "|u1"}
    edge = header["arrays"]["edge_token"]
    stored = np.frombuffer(data, "<i4", edge["shape"][0], data_start + edge["offset"])
    assert stored.tolist() == Trie.load(path).arrays["edge_token"].tolist()


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=6,
        ),
        min_size=1,
        max_size=12,
    )
)
def test_json_values_round_trip(
    tmp_path_factory: pytest.TempPathFactory, values: list[object]
) -> None:
    keys = [[i % 3 + 1, i % 2 + 1] for i in range(len(values))]  # duplicates included
    trie = Trie.build(keys, values, end_id=0)
    path = trie.save(tmp_path_factory.mktemp("json") / "v.trie")
    loaded = Trie.load(path, verify=True)
    for key in keys:
        assert loaded.get(key) == trie.get(key)
        assert loaded.get_first(key) == trie.get_first(key)
    again = loaded.save(path.with_name("again.trie"))  # re-saving a loaded trie
    assert Trie.load(again).get(keys[0]) == trie.get(keys[0])


def test_integer_values_are_stored_as_an_array(tmp_path: Path) -> None:
    trie = Trie.build([[1], [2], [1]], [10, -(2**40), 12], end_id=0)
    path = trie.save(tmp_path / "ints.trie")
    loaded = Trie.load(path)
    assert loaded.get([1]) == [10, 12]
    assert loaded.get([2]) == [-(2**40)]
    data = path.read_bytes()
    (header_length,) = struct.unpack_from("<I", data, 20)
    header = json.loads(data[PREFIX_SIZE : PREFIX_SIZE + header_length])
    assert header["meta"]["values"] == "int64"
    assert header["arrays"]["values_int64"]["dtype"] == "<i8"
    assert loaded.nbytes == trie.nbytes + 3 * 8  # the int64 values now count as an array


def test_unserialisable_values_cannot_be_saved(tmp_path: Path) -> None:
    trie = Trie.build([[1]], [object()], end_id=0)
    with pytest.raises(TypeError, match="JSON"):
        trie.save(tmp_path / "bad.trie")
    assert not (tmp_path / "bad.trie").exists()  # atomic: nothing half-written is left


def test_foreign_files_are_rejected(tmp_path: Path) -> None:
    np.savez(tmp_path / "arrays.npz", a=np.arange(3))
    (tmp_path / "text.trie").write_text("hello, I am not a trie\n" * 10)
    (tmp_path / "empty.trie").write_bytes(b"")
    for name in ("arrays.npz", "text.trie"):
        with pytest.raises(ValueError, match="not a kexue trie file"):
            Trie.load(tmp_path / name)
    with pytest.raises(ValueError, match="truncated"):
        Trie.load(tmp_path / "empty.trie")
    with pytest.raises(FileNotFoundError):
        Trie.load(tmp_path / "missing.trie")


def test_other_kinds_and_versions_are_rejected(tmp_path: Path) -> None:
    path = write_arrays(tmp_path / "x.bin", {"a": np.arange(4, dtype=np.int32)}, {}, kind="other")
    with pytest.raises(ValueError, match="holds a 'other'"):
        Trie.load(path)
    arrays, meta = read_arrays(path, kind="other", verify=True)
    assert arrays["a"].tolist() == [0, 1, 2, 3]
    assert meta == {}
    data = bytearray(path.read_bytes())
    data[16:20] = struct.pack("<I", 2)
    (tmp_path / "v2.bin").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="unsupported trie file format version 2"):
        Trie.load(tmp_path / "v2.bin")
    with pytest.raises(TypeError, match="int32, int64 and uint8"):
        write_arrays(tmp_path / "f.bin", {"f": np.zeros(2)}, {}, kind="other")


def test_truncated_files_are_rejected(saved: tuple[Trie, Path], tmp_path: Path) -> None:
    _, path = saved
    data = path.read_bytes()
    for cut in (8, 20, PREFIX_SIZE + 10, len(data) // 2, len(data) - 1):
        target = tmp_path / f"cut{cut}.trie"
        target.write_bytes(data[:cut])
        for mmap in (True, False):
            with pytest.raises(ValueError, match="truncated"):
                Trie.load(target, mmap=mmap)
    (tmp_path / "long.trie").write_bytes(data + b"\x00")
    with pytest.raises(ValueError, match="trailing bytes"):
        Trie.load(tmp_path / "long.trie")


def test_every_flipped_header_byte_is_detected(saved: tuple[Trie, Path], tmp_path: Path) -> None:
    _, path = saved
    data = path.read_bytes()
    (header_length,) = struct.unpack_from("<I", data, 20)
    target = tmp_path / "flipped.trie"
    for position in range(PREFIX_SIZE + header_length):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x10
        target.write_bytes(bytes(corrupt))
        with pytest.raises(ValueError, match=r"magic|version|checksum|truncated|corrupt"):
            Trie.load(target)


def test_verify_catches_a_flipped_array_byte(saved: tuple[Trie, Path], tmp_path: Path) -> None:
    _, path = saved
    data = path.read_bytes()
    (header_length,) = struct.unpack_from("<I", data, 20)
    header = json.loads(data[PREFIX_SIZE : PREFIX_SIZE + header_length])
    data_start = -(-(PREFIX_SIZE + header_length) // 64) * 64
    for name, entry in header["arrays"].items():
        corrupt = bytearray(data)
        corrupt[data_start + entry["offset"] + entry["nbytes"] // 2] ^= 0x01
        target = tmp_path / f"{name}.trie"
        target.write_bytes(bytes(corrupt))
        with pytest.raises(ValueError, match=f"array '{name}' checksum mismatch"):
            Trie.load(target, verify=True)
        Trie.load(target, verify=False)  # without verify the (cheap) load does not read arrays


def test_inconsistent_metadata_is_rejected(tmp_path: Path) -> None:
    trie = Trie.build(KEYS, end_id=0)
    arrays = trie.arrays
    meta = {
        "end_id": 0,
        "terminated": True,
        "num_nodes": trie.num_nodes + 1,  # disagrees with child_start
        "num_keys": trie.num_keys,
        "num_entries": trie.num_entries,
        "max_depth": trie.max_depth,
        "vocab_size": trie.vocab_size,
        "values": "index",
    }
    path = write_arrays(tmp_path / "bad.trie", arrays, meta, kind="kexue.retrieval.Trie")
    with pytest.raises(ValueError, match="array 'child_start' is"):
        Trie.load(path)
    del meta["end_id"]
    path = write_arrays(tmp_path / "bad2.trie", arrays, meta, kind="kexue.retrieval.Trie")
    with pytest.raises(ValueError, match="corrupt trie metadata"):
        Trie.load(path)


def test_large_trie_round_trip_is_fast_and_mapped(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(5, 16, 50_000)
    flat = rng.integers(1, 5_000, int(lengths.sum()))
    keys = np.split(flat, np.cumsum(lengths)[:-1])
    trie = Trie.build(keys, end_id=0)
    path = trie.save(tmp_path / "big.trie")
    assert path.stat().st_size < trie.nbytes + 4096
    loaded = Trie.load(path)
    probe = [keys[i].tolist() for i in (0, 777, 49_999)]
    same_answers(trie, loaded, probe, all_keys=False)
