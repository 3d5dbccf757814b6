"""The README's drop-in example runs with both modules and gives the same losses."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
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
