"""Runs a python_wheel_task: the entry point `entry_point` of the installed package
`package_name` (any group of its metadata), or else the function of that name in the package,
with the task's parameters as sys.argv."""

import importlib
import sys
from importlib import metadata


def entry(package, name):
    try:
        distribution = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None:
        for point in distribution.entry_points:
            if point.name == name:
                return point.load()
    module = importlib.import_module(package.replace("-", "_"))
    function = getattr(module, name, None)
    if function is None:
        raise SystemExit(f"Package {package} has no entry point or function named {name}")
    return function


if __name__ == "__main__":
    package, name = sys.argv[1], sys.argv[2]
    sys.argv = [name] + sys.argv[3:]
    result = entry(package, name)()
    if isinstance(result, int):
        sys.exit(result)
