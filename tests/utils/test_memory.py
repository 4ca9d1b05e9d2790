import pytest

from project.utils.memory import GrowthTrimmer, _glibc, resident_bytes

MB = 1 << 20


def _fragmented_heap(megabytes: int) -> list:
    """Allocates ``megabytes`` of 4 KB blocks from the C heap and frees all but one in 64: the freed
    pages lie between live blocks, where the heap cannot shrink by itself."""
    blocks = [bytearray(4096) for _ in range(megabytes * 256)]
    return blocks[::64]


@pytest.mark.skipif(resident_bytes() is None, reason="no /proc/self/statm")
def test_resident_bytes_follows_memory_touched():
    before = resident_bytes()
    buffer = bytearray(64 * MB)  # zero-filled: every page touched
    assert resident_bytes() - before >= 60 * MB
    del buffer


def test_trimmer_releases_only_past_its_growth_threshold():
    never = GrowthTrimmer(growth_bytes=1 << 50)
    always = GrowthTrimmer(growth_bytes=0)
    held, results = [], []
    for _ in range(3):
        held.append(bytearray(16 * MB))  # resident memory grows before each call
        results.append((never(), always()))
    assert [n for n, _ in results] == [False] * 3
    expected = resident_bytes() is not None
    assert [a for _, a in results] == [expected] * 3
    assert (never.releases, always.releases) == (0, 3 if expected else 0)


@pytest.mark.skipif(_glibc() is None or resident_bytes() is None, reason="needs glibc and /proc")
def test_trimmer_hands_freed_heap_pages_back_once_grown():
    trim = GrowthTrimmer(growth_bytes=64 * MB)
    assert not trim()
    kept = _fragmented_heap(256)
    grown = resident_bytes()
    assert trim(), "resident memory grew by about 256 MB, past the 64 MB threshold"
    assert grown - resident_bytes() > 128 * MB, "most of the freed 252 MB should have left the process"
    assert not trim(), "the baseline moves to the memory after the release"
    assert trim.releases == 1
    del kept
