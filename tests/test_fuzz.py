"""A fixed sample of the fuzz campaign (tests/fuzzing.py) in CI: random bad input to every entry
point, each case in a subprocess with a timeout, must end in a finite result or the promised
error naming the argument or file. ``tools/fuzz.py`` runs the long campaigns."""

import fuzzing

# Seeds from 0: the long campaigns start at 1 000 000, so CI and campaigns never repeat a case.
SAMPLE = {"rasterize": 16, "knn": 8, "ply": 12, "checkpoint": 12, "dataset": 12, "densify": 4, "cli": 2}


def test_fuzz_sample_finds_nothing():
    results = fuzzing.run_cases(fuzzing.sample_cases(SAMPLE), timeout=120.0, jobs=2)
    assert len(results) == sum(SAMPLE.values())
    problems = [f"{r.family} {r.seed}: {r.status}: {r.detail}" for r in results if r.status not in ("ok", "refused")]
    assert not problems, "re-run one with `python tests/fuzzing.py --case FAMILY SEED`:\n" + "\n".join(problems)
    # The sample must reach both outcomes, or its mutations have stopped testing anything.
    assert {r.status for r in results} == {"ok", "refused"}
