"""fetch(): cache and mirror hits without network, checksums, and the offline message.

No test reaches the network: the URLs are unreachable (port 9 on localhost), or a server on localhost that
the test itself runs.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path
from typing import Iterator

import pooch
import pytest

from dlcli.data.download import cache_dir, fetch, file_sha256, local_copy
from dlcli.errors import DataError

UNREACHABLE = "http://127.0.0.1:9/nothing.gz"
CONTENT = b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x00\x09"  # a 3-label IDX file
CONTENT_SHA256 = hashlib.sha256(CONTENT).hexdigest()


def _write_gz(path: Path, content: bytes = CONTENT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content))
    return path


def test_mirror_hit_is_used_in_place_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     isolated_data_env: Path) -> None:
    mirrored = _write_gz(tmp_path / "mirror" / "toy" / "labels.gz")
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(tmp_path / "mirror"))
    assert fetch("toy", "labels.gz", UNREACHABLE, CONTENT_SHA256, verify="decompressed") == mirrored
    assert not (isolated_data_env / "toy" / "labels.gz").exists()
    assert local_copy("toy", "labels.gz") == mirrored


def test_flat_mirror_layout_is_found_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirrored = _write_gz(tmp_path / "mirror" / "labels.gz")
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(tmp_path / "mirror"))
    assert fetch("toy", "labels.gz", UNREACHABLE, CONTENT_SHA256, verify="decompressed") == mirrored


def test_cache_hit_is_used_and_wins_over_the_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    isolated_data_env: Path) -> None:
    cached = _write_gz(isolated_data_env / "toy" / "labels.gz")
    _write_gz(tmp_path / "mirror" / "toy" / "labels.gz", b"other bytes")  # would fail its checksum
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(tmp_path / "mirror"))
    assert cache_dir() == isolated_data_env
    assert fetch("toy", "labels.gz", UNREACHABLE, file_sha256(cached), verify="file") == cached


def test_checksum_mismatch_names_the_file_and_both_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirrored = _write_gz(tmp_path / "mirror" / "toy" / "labels.gz", b"tampered")
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(DataError) as info:
        fetch("toy", "labels.gz", UNREACHABLE, CONTENT_SHA256, verify="decompressed")
    message = str(info.value)
    assert str(mirrored) in message and CONTENT_SHA256 in message
    assert hashlib.sha256(b"tampered").hexdigest() in message and "decompressed" in message
    assert info.value.exit_code == 3


def test_file_checksum_mismatch_in_the_cache_says_to_delete_it(isolated_data_env: Path) -> None:
    cached = _write_gz(isolated_data_env / "toy" / "labels.gz")
    with pytest.raises(DataError) as info:
        fetch("toy", "labels.gz", UNREACHABLE, "0" * 64, verify="file")
    assert str(cached) in str(info.value) and file_sha256(cached) in str(info.value)
    assert "delete it" in str(info.value)


def test_decompressed_check_of_a_file_that_is_not_gzip_is_a_data_error(isolated_data_env: Path) -> None:
    cached = isolated_data_env / "toy" / "labels.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(CONTENT)
    with pytest.raises(DataError, match="not a readable gzip file"):
        fetch("toy", "labels.gz", UNREACHABLE, CONTENT_SHA256, verify="decompressed")


def test_offline_without_cache_or_mirror_explains_how_to_provide_the_file(isolated_data_env: Path) -> None:
    with pytest.raises(DataError) as info:
        fetch("toy", "nothing.gz", UNREACHABLE, CONTENT_SHA256, verify="decompressed")
    message = str(info.value)
    assert "nothing.gz" in message and UNREACHABLE in message and "'toy'" in message
    assert "DLCLI_DATASETS_MIRROR" in message and str(isolated_data_env / "toy") in message
    assert info.value.exit_code == 3
    assert not (isolated_data_env / "toy" / "nothing.gz").exists()


def test_offline_message_names_a_mirror_that_lacks_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(DataError) as info:
        fetch("toy", "nothing.gz", UNREACHABLE, CONTENT_SHA256, verify="file")
    assert f"now {tmp_path / 'mirror'}, which holds no nothing.gz" in str(info.value)


@pytest.fixture()
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on localhost serving a folder: the download path, without the network."""
    served = tmp_path / "served"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served
    finally:
        server.shutdown()
        server.server_close()


def test_download_lands_in_the_cache_and_is_then_a_cache_hit(local_server: tuple[str, Path],
                                                             isolated_data_env: Path) -> None:
    base, served = local_server
    source = _write_gz(served / "labels.gz")
    level = pooch.get_logger().level
    path = fetch("toy", "labels.gz", base + "labels.gz", file_sha256(source), verify="file")
    assert path == isolated_data_env / "toy" / "labels.gz" and path.read_bytes() == source.read_bytes()
    assert pooch.get_logger().level == level
    source.unlink()  # the server has nothing now: a second fetch must come from the cache
    assert fetch("toy", "labels.gz", base + "labels.gz", file_sha256(path), verify="file") == path


def test_downloaded_file_with_a_wrong_checksum_is_refused_and_deleted(local_server: tuple[str, Path],
                                                                      isolated_data_env: Path) -> None:
    base, served = local_server
    _write_gz(served / "labels.gz", b"not what was promised")
    with pytest.raises(DataError, match="does not match the known hash"):
        fetch("toy", "labels.gz", base + "labels.gz", CONTENT_SHA256, verify="file")
    with pytest.raises(DataError) as info:
        fetch("toy", "labels.gz", base + "labels.gz", CONTENT_SHA256, verify="decompressed")
    assert CONTENT_SHA256 in str(info.value) and hashlib.sha256(b"not what was promised").hexdigest() in str(info.value)
    assert not (isolated_data_env / "toy" / "labels.gz").exists()


def test_http_error_is_a_data_error_with_the_offline_hint(local_server: tuple[str, Path]) -> None:
    base, _ = local_server
    with pytest.raises(DataError) as info:
        fetch("toy", "absent.gz", base + "absent.gz", CONTENT_SHA256)
    assert "404" in str(info.value) and "DLCLI_DATASETS_MIRROR" in str(info.value)
