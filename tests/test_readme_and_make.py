"""What the README and the Makefile tell a new user to run does what they say."""

from __future__ import annotations

import re

import pytest

from semedit.perception import faces
from semedit.perception.photos import read_photo
from tests.helpers import REPO_ROOT


def _section(title: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    return text[start: text.index("\n## ", start + 3)]


def test_first_run_on_real_photos_reuses_the_run_of_the_first_command():
    block = re.search(r"```bash\n(.*?)```", _section("First run on real photos"), re.S).group(1)
    trains = [line for line in block.splitlines() if "make train-hair" in line]
    # Only if no hair run exists yet: the README's first command has usually made one already.
    assert trains and all(line.split("make train-hair")[0].rstrip().endswith("||") for line in trains)


def test_make_eval_inversion_runs_on_two_real_faces():
    line = next(x for x in (REPO_ROOT / "Makefile").read_text().splitlines()
                if x.strip().startswith("$(SEMEDIT) eval-inversion"))
    inputs = re.search(r"\$\(or \$\(FACES\),([^)]*)\)", line).group(1).split()
    assert inputs == ["skimage:astronaut", "matplotlib:grace_hopper"]
    if not faces.environment_allows_dlib():
        pytest.skip("dlib models are a dependency of semedit (make install)")
    for photo in inputs:  # both are faces dlib finds (a cat fell back to a centre crop)
        assert faces.align_photo(read_photo(photo), 64, source=photo)
