"""The README's drop-in example runs with both modules and gives the same losses."""
import re

import numpy as np

from conftest import source_file

README = source_file("README.md")
IMPORT_LINE = "import fastlstm as lstm            # or: from fastlstm import reference as lstm"


def example_source():
    text = README.read_text()
    match = re.search(r"```python\n(import numpy as np\n.*?)```", text, re.S)
    assert match and IMPORT_LINE in match.group(1)
    return match.group(1).replace("range(300)", "range(20)").replace("print(", "result = (")


def run(import_line):
    namespace = {}
    exec(example_source().replace(IMPORT_LINE, import_line), namespace)
    return namespace["result"][1]


def test_readme_example_is_a_drop_in():
    fast = run("import fastlstm as lstm")
    reference = run("from fastlstm import reference as lstm")
    assert np.isfinite(fast)
    np.testing.assert_allclose(fast, reference, rtol=1e-9)


def test_drop_in_example_script():
    import subprocess
    import sys

    script = README.parent / "examples" / "drop_in.py"
    done = subprocess.run([sys.executable, str(script), "--steps", "5"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    gap = float(done.stdout.split("largest loss difference ")[1].split(";")[0])
    assert gap < 1e-10
