"""Everything a run needs besides its problem, as static settings (`cli.settings` builds them
from the flags)."""

import dataclasses
from typing import Optional

from sam_edge.curvature.measure import MeasureSettings
from sam_edge.optim.method import Method
from sam_edge.run.loop import LoopSettings
from sam_edge.run.monitor import MonitorSettings


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """One run: its method, measurements, loop, outputs and where it keeps its state.

  `outputs` maps each output flag (`eigs_curve_output`, `raw_data_output`, ...) to its path; a
  flag missing or empty is not written.
  """
  batch_size: int
  seed: int
  method: Method                    # the optimizer and SAM variant (`measure.method` is it too)
  measure: MeasureSettings
  loop: LoopSettings
  outputs: tuple[tuple[str, str], ...]
  title: str
  checkpoint_dir: Optional[str] = None
  resume: bool = False
  tensorboard_dir: Optional[str] = None
  num_devices: Optional[int] = None        # the first N devices (all by default)
  measure_examples: Optional[int] = None   # measure on the first N training examples
  task: str = ""                           # the entry point, for the parameters file
  init_params: Optional[str] = None        # start from this parameters file or run folder
  monitor: MonitorSettings = MonitorSettings()   # what evaluations drive (plateau, early stop)
  ema_decay: Optional[float] = None        # the weights' moving average (`optim.ema`); None: off
