"""Tests for sam_edge.data.text: reading, checking and windowing a corpus."""
import pathlib
import time

import numpy as np
import pytest

from sam_edge.data import text


def _write(tmp_path: pathlib.Path, data: bytes,
           name: str = "corpus.txt") -> str:
  path = tmp_path / name
  path.write_bytes(data)
  return str(path)


def _one_line_naming(error: text.CorpusError, path: str) -> str:
  message = str(error)
  assert "\n" not in message
  assert path in message
  return message


def test_reads_ascii(tmp_path):
  path = _write(tmp_path, b"hello\nworld\n")
  corpus = text.read_corpus(path)
  assert corpus.dtype == np.uint8
  assert corpus.shape == (12,)
  assert corpus.tobytes() == b"hello\nworld\n"


def test_missing_file(tmp_path):
  path = str(tmp_path / "nope.txt")
  with pytest.raises(text.CorpusError) as info:
    text.read_corpus(path)
  assert "no such file" in _one_line_naming(info.value, path)


def test_directory(tmp_path):
  path = str(tmp_path)
  with pytest.raises(text.CorpusError) as info:
    text.read_corpus(path)
  assert "directory" in _one_line_naming(info.value, path)


def test_empty_file(tmp_path):
  path = _write(tmp_path, b"")
  with pytest.raises(text.CorpusError) as info:
    text.read_corpus(path)
  assert "empty" in _one_line_naming(info.value, path)


def test_nul_byte_names_position(tmp_path):
  path = _write(tmp_path, b"abcd\x00ef\x00")
  with pytest.raises(text.CorpusError) as info:
    text.read_corpus(path)
  message = _one_line_naming(info.value, path)
  assert "NUL" in message
  assert "position 4" in message


def test_nul_is_checked_before_ascii(tmp_path):
  path = _write(tmp_path, b"a\xffb\x00")
  with pytest.raises(text.CorpusError) as info:
    text.read_corpus(path)
  assert "NUL" in str(info.value)


def test_non_ascii_names_character_and_position(tmp_path):
  path = _write(tmp_path, "abc\u00e9".encode("utf-8"))  # b"abc\xc3\xa9"
  with pytest.raises(text.CorpusError) as info:
    text.read_corpus(path)
  message = _one_line_naming(info.value, path)
  assert "ASCII" in message
  assert "'\u00e9'" in message
  assert "0xc3" in message
  assert "position 3" in message


def test_non_ascii_undecodable_byte(tmp_path):
  path = _write(tmp_path, b"x\n\xffyz")
  with pytest.raises(text.CorpusError) as info:
    text.read_corpus(path)
  message = _one_line_naming(info.value, path)
  assert "\\xff" in message
  assert "position 2" in message


def test_error_is_value_error():
  assert issubclass(text.CorpusError, ValueError)


def test_make_windows_shapes_and_content():
  corpus = np.arange(1, 24, dtype=np.uint8)  # [23]
  windows = text.make_windows(corpus, sequence_length=4)
  assert windows.dtype == np.uint8
  assert windows.shape == (4, 5)  # 23 // 5 = 4, 3 dropped.
  np.testing.assert_array_equal(windows[0], [1, 2, 3, 4, 5])
  np.testing.assert_array_equal(windows[3], [16, 17, 18, 19, 20])
  np.testing.assert_array_equal(windows.reshape(-1), corpus[:20])


def test_make_windows_too_short():
  windows = text.make_windows(np.ones(3, np.uint8), sequence_length=4)
  assert windows.shape == (0, 5)


def test_split_corpus():
  corpus = np.arange(100, dtype=np.uint8)
  train, test = text.split_corpus(corpus, test_fraction=0.1)
  assert train.shape == (90,) and test.shape == (10,)
  np.testing.assert_array_equal(test, corpus[90:])
  np.testing.assert_array_equal(np.concatenate([train, test]), corpus)
  train, test = text.split_corpus(corpus, test_fraction=0.0)
  assert train.shape == (100,) and test.shape == (0,)


def test_check_enough_windows_passes():
  windows = np.ones((8, 5), np.uint8)
  text.check_enough_windows(windows, batch_size=8, sequence_length=4,
                            path="c.txt")
  text.check_enough_windows(windows[:1], batch_size=8, sequence_length=4,
                            path="c.txt", what="test", minimum=1)


def test_check_enough_windows_message():
  windows = np.ones((3, 5), np.uint8)
  with pytest.raises(text.CorpusError) as info:
    text.check_enough_windows(windows, batch_size=8, sequence_length=4,
                              path="c.txt", num_chars=17)
  message = _one_line_naming(info.value, "c.txt")
  for part in ("--batch_size", "--sequence_length", "training", "17", " 3 ",
               "at least 8"):
    assert part in message, (part, message)


def test_check_enough_windows_test_part():
  windows = np.ones((0, 5), np.uint8)
  with pytest.raises(text.CorpusError) as info:
    text.check_enough_windows(windows, batch_size=8, sequence_length=4,
                              path="c.txt", what="test", minimum=1)
  message = _one_line_naming(info.value, "c.txt")
  assert "test part" in message
  assert "at least 1 is needed" in message
  # The batch size does not help a too-short test part; its size and the window length do.
  assert "--batch_size" not in message
  assert "--test_fraction" in message and "--test_data" in message
  assert "--sequence_length" in message


def test_check_enough_windows_validation_part():
  """A too-short validation part names --validation_fraction, not the test part's remedies."""
  with pytest.raises(text.CorpusError) as info:
    text.check_enough_windows(np.ones((0, 5), np.uint8), batch_size=8, sequence_length=4,
                              path="c.txt", what="validation", minimum=1)
  message = _one_line_naming(info.value, "c.txt")
  assert "validation part" in message and "--validation_fraction" in message
  assert "--test_fraction" not in message and "--test_data" not in message


def test_constants():
  assert text.VOCAB_SIZE == 128
  assert text.PAD == 0


def test_tinyshakespeare_fast(shared_data):
  path = str(shared_data / "tinyshakespeare.txt")
  start = time.perf_counter()
  corpus = text.read_corpus(path)
  train, test = text.split_corpus(corpus, test_fraction=0.1)
  windows = text.make_windows(train, sequence_length=64)
  elapsed = time.perf_counter() - start
  assert corpus.shape == (1_115_394,)
  assert int(corpus.max()) < 128 and int(corpus.min()) > 0
  assert test.shape[0] == round(1_115_394 * 0.1)
  assert windows.shape == (train.shape[0] // 65, 65)
  assert elapsed < 1.0, elapsed


def test_large_non_ascii_is_fast(tmp_path):
  data = b"a" * 1_000_000 + "\u00e9".encode("utf-8")
  path = _write(tmp_path, data)
  start = time.perf_counter()
  with pytest.raises(text.CorpusError) as info:
    text.read_corpus(path)
  assert time.perf_counter() - start < 1.0
  assert "position 1000000" in str(info.value)
