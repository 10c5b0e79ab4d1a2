"""Shared set-up for the plugin's own tests.

pytester's in-process runs restore ``sys.modules`` afterwards; torch cannot be
imported a second time in one process (nor can numpy's extension modules), so
they are imported once here, before any inner run, and stay (matplotlib as well).
"""

import numpy  # noqa: F401
import scipy.stats  # noqa: F401
import torch  # noqa: F401
import torch._dynamo  # noqa: F401 - entering a TorchDispatchMode imports it (work signature)

# matplotlib too, where installed: an inner run that drew the first plot would otherwise
# import it inside pytester's snapshot, and the next run's second copy of its classes
# fails its own isinstance checks ("Legend needs either Axes or FigureBase as parent").
try:
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import matplotlib.patches  # noqa: F401
    import matplotlib.text  # noqa: F401
    import matplotlib.ticker  # noqa: F401
except ImportError:
    pass

# The fake CUDA devices' fixture (tests/unit/gpu_fakes.py), for every test module.
from gpu_fakes import fake_gpu  # noqa: E402, F401
