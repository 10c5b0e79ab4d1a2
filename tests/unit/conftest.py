"""Shared set-up for the plugin's own tests.

pytester's in-process runs restore ``sys.modules`` afterwards; torch cannot be
imported a second time in one process (nor can numpy's extension modules), so
they are imported once here, before any inner run, and stay.
"""

import numpy  # noqa: F401
import scipy.stats  # noqa: F401
import torch  # noqa: F401
import torch._dynamo  # noqa: F401 - entering a TorchDispatchMode imports it (work signature)
