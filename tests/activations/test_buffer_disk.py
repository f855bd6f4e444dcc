"""An activation buffer on a disk without room for it: a clear error before any row is written, no file left."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from saelab.activations import buffer
from saelab.errors import FileAccessError
from saelab.train.source import tensor_reader


def test_a_buffer_the_disk_cannot_hold_is_refused_before_a_row_is_written(tmp_path, monkeypatch):
    acts = {"x": torch.randn(8, 4, 16)}
    read = tensor_reader(acts, torch.ones(8, 4, dtype=torch.bool))
    reserved = []

    def full(fd, offset, length):
        reserved.append(length)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(buffer.os, "posix_fallocate", full)
    with pytest.raises(FileAccessError, match=r"activation buffer: .*x\.npy needs 0\.00 GiB and the disk has .* free; "
                                              r"free some space"):
        buffer.write_buffer(tmp_path / "b", read, 0, 8, {}, ctx_len=4, progress=False)
    assert reserved and reserved[0] >= 8 * 4 * 16 * 4  # the whole memory map, at once
    assert not (tmp_path / "b" / "x.npy").exists() and not (tmp_path / "b" / "cfg.json").exists()
    monkeypatch.undo()
    buf = buffer.write_buffer(tmp_path / "b", read, 0, 8, {}, ctx_len=4, progress=False)  # with room: as before
    torch.testing.assert_close(buf.rows("x", torch.arange(buf.n_rows)), acts["x"].reshape(-1, 16))
