"""`--dataset=imagenet2012` without any download: its spec against TFDS's own builder (from the
code), the two archives `--manual_dir` must hold, and its refusal by the in-memory path (even
with a prepared copy, here mocked) in one line naming the streaming pipeline's flag."""

import pytest
import tensorflow_datasets as tfds

import image_classification as ic
from sam_edge import errors
from sam_edge.cli import flags as cli_flags
from sam_edge.data import image_specs, images
from tests.helpers import mocked_tfds

ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
REFUSAL = ("--dataset=imagenet2012 cannot be read into memory (1,281,167 training images of "
           "varying sizes): it needs the streaming input pipeline, --data_pipeline=stream")


def test_the_spec_is_tfds_imagenet2012():
  spec = image_specs.SPECS["imagenet2012"]
  builder = tfds.builder("imagenet2012")                  # features and version from the code
  assert spec.num_classes == builder.info.features["label"].num_classes == 1000
  assert spec.image_shape == builder.info.features["image"].shape == (None, None, 3)
  assert spec.version == str(builder.version) == "5.1.0"
  assert (spec.train_size, spec.test_size) == (1_281_167, 50_000)   # the TFDS catalogue's
  # TFDS's test split has no labels: the labelled validation split is the test set.
  assert spec.test_split == tfds.Split.VALIDATION
  assert spec.manual_files == ARCHIVES == image_specs.expected_manual_files("imagenet2012")
  assert all(name in builder.MANUAL_DOWNLOAD_INSTRUCTIONS for name in ARCHIVES)
  assert spec.streaming_only and image_specs.in_memory_problem("imagenet2012") == REFUSAL
  assert [image_specs.in_memory_problem(n) for n in ("cifar10", "nosuch")] == [None, None]


def test_the_in_memory_path_refuses_it_even_when_prepared(tmp_path):
  """Refused before TFDS reads anything or the decoded arrays are written beside its files."""
  with mocked_tfds("imagenet2012", tmp_path) as data_dir:
    before = sorted(data_dir.rglob("*"))
    with pytest.raises(errors.InputError) as e:
      images.load_image_dataset("imagenet2012", batch_size=8, data_dir=str(data_dir))
  assert str(e.value) == REFUSAL
  assert sorted(data_dir.rglob("*")) == before


@pytest.mark.parametrize("present, missing", [
    ((), ARCHIVES), (ARCHIVES[:1], ARCHIVES[1:]), (ARCHIVES, ())])
def test_manual_dir_must_hold_both_archives(present, missing, tmp_path):
  """Checked before anything is read: the archives in --manual_dir, and with
  --data_pipeline=memory the in-memory refusal (the default, auto, streams it)."""
  for name in present:
    (tmp_path / name).write_bytes(b"")
  lacking = [f"--manual_dir={tmp_path} lacks the imagenet2012 files {', '.join(missing)}"]
  for pipeline, refused in (("auto", []), ("memory", [REFUSAL])):
    f = ic.flag_values()
    f(["prog", "--dataset=imagenet2012", "--nn_architecture=ResNet50", "--batch_size=4096",
       f"--manual_dir={tmp_path}", f"--data_pipeline={pipeline}"])
    assert sorted(ic.problems(f)) == sorted([*refused, *(lacking if missing else [])])
    assert ic.TASK.train_examples(cli_flags.flag_values(f)) == 1_281_167
