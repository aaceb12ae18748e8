"""The run folder, below every layer that writes or reads one: atomic file writes and what a run writes
(``files``), and reading a finished run back (``folder``). Training, methods, inference and the hub all use it."""

from .files import RUN_OUTPUTS, RUN_RESULTS, replace_dir, write_json
from .folder import RunFolder, read_run_folder

__all__ = ["RUN_OUTPUTS", "RUN_RESULTS", "RunFolder", "read_run_folder", "replace_dir", "write_json"]
