# The one version number: pyproject.toml reads it (tool.setuptools.dynamic), `livelearn --version` prints it.
__version__ = "0.2.0"
