"""Generated C passes QEMU's own scripts/checkpatch.pl with no error and no warning."""

import subprocess

import pytest

from conftest import REPO
from test_golden import CASES
from generator.main import generate


@pytest.fixture(scope="module")
def checkpatch():
    from tabvm.qemu_source import prepared_tree
    from tabvm.recipe import load_recipe
    return prepared_tree(load_recipe()) / "scripts" / "checkpatch.pl"


@pytest.mark.parametrize("case", sorted(CASES))
def test_checkpatch_clean(case, checkpatch, tmp_path):
    # the OpenSL ES API headers are copied, not generated: an API's own style
    sources = [o for o in generate(CASES[case]())
               if o.path.endswith((".c", ".h")) and not o.copied]
    assert sources
    for o in sources:
        f = tmp_path / o.path.replace("/", "_")
        f.write_text(o.text)
        proc = subprocess.run(["perl", str(checkpatch), "--no-tree", "--file", str(f)],
                              capture_output=True, text=True)
        assert "total: 0 errors, 0 warnings" in proc.stdout, f"{o.path}:\n{proc.stdout}"
