"""A pytest plugin for ``make mutate`` (``-p tests.mutation_preload`` in pyproject.toml's [tool.mutmut]).

mutmut runs each mutant's tests in a process forked from one that has already collected the
tests. goodfit imports scikit-learn and SciPy inside the functions that use them, so each
forked process would import them again at the first call (seconds on a busy machine):
imported by this plugin, they are imported once, before the fork, and inherited.
"""

import scipy.optimize  # noqa: F401
import scipy.stats  # noqa: F401
import sklearn.metrics  # noqa: F401
import sklearn.model_selection  # noqa: F401
