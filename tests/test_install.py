"""What an installed fastlstm shows about itself, and what an unbuilt source tree says."""
import importlib.util
import pathlib
import shutil
import sys

import pytest

import fastlstm


def import_copy(package, name):
    """Import the package directory `package` under the module name `name`."""
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.mark.parametrize("in_source_tree", [True, False], ids=["source-tree", "installed"])
def test_unbuilt_package_says_what_to_do(tmp_path, in_source_tree):
    package = tmp_path / "unbuilt"
    shutil.copytree(pathlib.Path(fastlstm.__file__).parent, package,
                    ignore=shutil.ignore_patterns("_core.*", "__pycache__"))
    if in_source_tree:
        (tmp_path / "setup.py").touch()
    with pytest.raises(ImportError) as error:
        import_copy(package, "unbuilt")
    message = str(error.value)
    assert "C extension" in message and str(package) in message
    if in_source_tree:
        assert "source tree" in message and "pip install -e ." in message
        assert "another directory" in message
    else:
        assert "reinstall" in message


def test_version_is_the_same_everywhere(capsys):
    from importlib.metadata import version

    from fastlstm import _config
    from fastlstm.__main__ import main

    assert version("fastlstm") == fastlstm.__version__  # pyproject.toml reads fastlstm/_version.py
    assert _config.config()["version"] == fastlstm.__version__
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"fastlstm {fastlstm.__version__}\n"
