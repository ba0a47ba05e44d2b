"""An ASCII character corpus, cut into fixed-length windows.

The corpus is a file of L ASCII bytes (values 1..127; 0 is reserved as the
padding token). It is read as a uint8 array c[0..L-1] and cut into
W = L // (T + 1) non-overlapping windows of T + 1 characters,

  window[w] = c[w * (T + 1) : (w + 1) * (T + 1)],  w = 0 .. W - 1,

the remainder L - W * (T + 1) being dropped. A window gives a model T inputs
window[:-1] and T next-character targets window[1:].
"""

import os

import numpy as np

VOCAB_SIZE = 128  # ASCII: token ids 0..127.
PAD = 0  # The padding token; a corpus may not contain it.


class CorpusError(ValueError):
  """A corpus that cannot be used; its str is one line naming the file."""

  def __init__(self, path: str, problem: str):
    self.path = path
    self.problem = problem
    message = f"{path}: {problem}"
    # One line whatever the path or problem holds.
    super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


def _describe_byte(data: np.ndarray, position: int) -> str:
  """Names the (possibly multi-byte UTF-8) character that starts at position.

  Returns e.g. "'é' (byte 0xc3)" where the bytes from position decode as
  UTF-8, else "'\\xff' (byte 0xff)".
  """
  value = int(data[position])
  chunk = data[position:position + 4].tobytes()
  shown = None
  for end in range(1, len(chunk) + 1):
    try:
      shown = repr(chunk[:end].decode("utf-8"))
      break
    except UnicodeDecodeError:
      continue
  if shown is None:
    shown = f"'\\x{value:02x}'"
  return f"{shown} (byte 0x{value:02x})"


def read_corpus(path: str) -> np.ndarray:
  """Reads the ASCII text file `path` as uint8 [L] character codes, 1 <= value <= 127.

  Checks, in this order: the file exists, it is not a directory, it is not
  empty, it holds no NUL byte (0 is the padding token), and every byte is
  ASCII (< 128). Each failure raises a CorpusError naming the file.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise CorpusError(path, "no such file")
  if os.path.isdir(path):
    raise CorpusError(path, "is a directory, not a text file")
  try:
    data = np.fromfile(path, dtype=np.uint8)  # [L]
  except OSError as e:
    raise CorpusError(path, f"cannot be read ({e.strerror or e})") from e
  if data.size == 0:
    raise CorpusError(path, "the file is empty")
  nul = data == PAD  # [L]
  if nul.any():
    position = int(np.argmax(nul))
    raise CorpusError(
        path,
        f"holds a NUL byte (0x00) at byte position {position}; "
        "a text corpus may not contain NUL, which is the padding token")
  non_ascii = data >= VOCAB_SIZE  # [L]
  if non_ascii.any():
    position = int(np.argmax(non_ascii))
    # Every byte before `position` is ASCII, so the character position and
    # the byte position are the same.
    raise CorpusError(
        path,
        f"is not ASCII: character {_describe_byte(data, position)} at "
        f"position {position} (0-based; {int(non_ascii.sum())} non-ASCII "
        "byte(s) in all)")
  return data


def make_windows(corpus: np.ndarray, *, sequence_length: int) -> np.ndarray:
  """Cuts a corpus into non-overlapping windows of sequence_length + 1 chars.

  W = L // (T + 1) and windows[w] = corpus[w * (T + 1) : (w + 1) * (T + 1)];
  the last L - W * (T + 1) characters are dropped. `corpus` is uint8 [L] and
  `sequence_length` T >= 1 the number of inputs (and targets) per window; the result is
  uint8 [W, T + 1] (W may be 0).
  """
  if sequence_length < 1:
    raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
  corpus = np.asarray(corpus, dtype=np.uint8)  # [L]
  width = sequence_length + 1
  num_windows = corpus.shape[0] // width
  return corpus[:num_windows * width].reshape(num_windows, width)  # [W, T+1]


def split_corpus(corpus: np.ndarray, *,
                 test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """Splits a corpus into a training head and a test tail.

  With N = round(L * test_fraction) test characters,
  train = corpus[:L - N] and test = corpus[L - N:], for `corpus` uint8 [L] and `test_fraction`
  in [0, 1) (e.g. 0.1 for the last 10%). Returns `(train uint8 [L - N], test uint8 [N])`.
  """
  if not 0.0 <= test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
  length = corpus.shape[0]
  num_test = int(round(length * test_fraction))
  return corpus[:length - num_test], corpus[length - num_test:]


def check_enough_windows(windows: np.ndarray, *, batch_size: int,
                         sequence_length: int, path: str,
                         what: str = "training",
                         minimum: int | None = None,
                         num_chars: int | None = None) -> None:
  """Raises a CorpusError if there are fewer than `minimum` windows.

  `windows` is [W, sequence_length + 1]; `batch_size` and `sequence_length` are the --batch_size
  and --sequence_length in use. `minimum` is the windows needed: `batch_size` when None (one full
  training batch), 1 for a test part that may be evaluated in a partial batch. For the message,
  `path` is the corpus file, `what` which part of the corpus (e.g. "training" or "test") and
  `num_chars` the characters in this part (when None, W * (sequence_length + 1), what the
  windows cover).
  """
  needed = batch_size if minimum is None else minimum
  have = int(windows.shape[0])
  if have >= needed:
    return
  width = sequence_length + 1
  if num_chars is None:
    num_chars = have * width
  verb = "is" if needed == 1 else "are"
  why = f" (--batch_size {batch_size})" if minimum is None else ""
  if minimum is None:        # a whole training batch: the batch size matters
    remedy = "use a smaller --batch_size or --sequence_length, or a longer corpus"
  elif what == "validation":  # the held-out tail of the training text
    remedy = "use a larger --validation_fraction, a longer corpus, or a smaller --sequence_length"
  else:                      # the test part: only its size and the window length matter
    remedy = ("use a larger --test_fraction, a longer --test_data, or a smaller "
              "--sequence_length")
  raise CorpusError(
      path,
      f"the {what} part has {num_chars} characters, which make {have} "
      f"window(s) of {width} characters (--sequence_length {sequence_length} "
      f"+ 1), but at least {needed} {verb} needed{why}, i.e. at least "
      f"{needed * width} characters; {remedy}")
