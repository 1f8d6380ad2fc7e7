"""meshplane benchmarks (not tests): ``python -m bench [compile|fanout|memory|convergence|serialization]``.

See ``bench/__main__.py`` for the options and ``bench/README.md`` for what each measures.
"""
