"""durable.write_out: the write-out before a stop waits for the flush at most its limit."""

from __future__ import annotations

import threading
import time

from scripts.store import durable


def test_write_out_waits_at_most_its_limit_and_flushes_each_filesystem_once(tmp_path, monkeypatch):
    flushed, release = [], threading.Event()

    def slow(path):
        flushed.append(path)
        release.wait(10)  # a filesystem others keep busy

    monkeypatch.setattr(durable, "sync_filesystem", slow)
    start = time.monotonic()
    durable.write_out([tmp_path, tmp_path / ".", tmp_path / "gone"], 0.3)
    took = time.monotonic() - start
    release.set()
    time.sleep(0.2)  # the rest of the paths, handled once the first flush returned
    assert 0.3 <= took < 2, took
    assert flushed == [tmp_path]  # one filesystem: flushed once; a path gone is skipped

