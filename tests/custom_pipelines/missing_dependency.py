"""A pipeline module that imports a package which is not installed."""

import lpnode_no_such_dependency  # type: ignore[import-not-found]  # noqa: F401
