"""asyncloop's benchmark suite in the repository (not shipped: the wheel holds only `asyncloop`).

The benchmark's code is the private package `asyncloop._bench`, run by ``asyncloop bench``
(``make bench``), so an installed wheel has the command too. Here:

- ``RESULTS.md``: the published figures, with the commands that reproduce them;
- ``reliability.py``: the 10,000-message fault scenario (``python -m bench.reliability``),
  public names of `asyncloop` and `asyncloop.testing` only;
- ``micro/``: pytest-benchmark microbenchmarks (``make micro``), tests of the library's
  internals rather than part of the installed benchmark.
"""
