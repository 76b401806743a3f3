"""Run one fuzz target under atheris (coverage-guided, libFuzzer): ``python -m fuzz.run TARGET [libFuzzer flags]``.

    python -m fuzz.run meta -max_total_time=600          ten minutes on the .meta reader
    python -m fuzz.run rest -runs=20000 -seed=1          a fixed number of inputs, reproducibly

Targets: sstable, bundle, meta, rest (see fuzz/targets.py). The seed corpus in fuzz/seeds/TARGET is
read, and new interesting inputs go to a scratch corpus (``-corpus DIR`` to keep them). An input that
escapes its target with an error the parser does not document stops the run with exit code 1 and is
written as ``crash-*`` under ``-artifact_prefix`` (default ``fuzz/crashes/TARGET/``): commit it, and
the regression tests in tests/fuzz/ replay it from then on.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    import atheris

    from fuzz import targets as fuzz_targets

    args = list(sys.argv[1:] if argv is None else argv)
    names = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    if len(names) != 1 or names[0] not in fuzz_targets.NAMES:
        sys.exit(f"usage: python -m fuzz.run {{{','.join(fuzz_targets.NAMES)}}} [libFuzzer flags]\n\n{__doc__}")
    name = names[0]
    corpus = next((f.split("=", 1)[1] for f in flags if f.startswith("-corpus=")), None)
    flags = [f for f in flags if not f.startswith("-corpus=")]
    if corpus is None:
        corpus = tempfile.mkdtemp(prefix=f"freezeflow-fuzz-{name}-corpus-")
    Path(corpus).mkdir(parents=True, exist_ok=True)
    if not any(f.startswith("-artifact_prefix=") for f in flags):
        crashes = fuzz_targets.CRASHES / name
        crashes.mkdir(parents=True, exist_ok=True)
        flags.append(f"-artifact_prefix={crashes}/")
    with atheris.instrument_imports(include=list(fuzz_targets.INSTRUMENTED[name])):
        target = fuzz_targets.targets()[name]
        fuzz_targets.check_one(target, b"")  # imports every module the target uses, instrumented
    seeds = fuzz_targets.SEEDS / name

    def one_input(data: bytes) -> None:
        fuzz_targets.check_one(target, data)

    # libFuzzer writes new inputs into the first corpus folder and only reads the others.
    atheris.Setup([sys.argv[0], *flags, corpus, str(seeds)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
