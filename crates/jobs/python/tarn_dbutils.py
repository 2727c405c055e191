"""A small `dbutils` for tasks run by tarn: widgets, task values and notebook exit.

The executor points the TARN_* variables below at files of the task's own folder; what a task
sets is read back by the executor when the task's process ends.
"""

import json
import os


def _read(variable, default):
    path = os.environ.get(variable)
    if not path or not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class NotebookExit(Exception):
    """Raised by dbutils.notebook.exit; the notebook runner ends the notebook on it."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


class _Widgets:
    def __init__(self):
        self._defaults = {}

    def get(self, name):
        values = _read("TARN_WIDGETS", {})
        if name in values:
            return values[name]
        if name in self._defaults:
            return self._defaults[name]
        raise ValueError(f"No input widget named {name} is defined")

    def getArgument(self, name, default=None):
        try:
            return self.get(name)
        except ValueError:
            return default

    def text(self, name, default_value="", label=None):
        self._defaults[name] = default_value

    def dropdown(self, name, default_value, choices, label=None):
        self._defaults[name] = default_value

    def combobox(self, name, default_value, choices, label=None):
        self._defaults[name] = default_value

    def multiselect(self, name, default_value, choices, label=None):
        self._defaults[name] = default_value

    def remove(self, name):
        self._defaults.pop(name, None)

    def removeAll(self):
        self._defaults.clear()


class _TaskValues:
    def set(self, key, value):
        json.dumps(value)  # refuse what cannot travel as JSON, as Databricks does
        path = os.environ["TARN_TASK_VALUES"]
        values = _read("TARN_TASK_VALUES", {})
        values[key] = value
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(values, handle)
        os.replace(path + ".tmp", path)

    def get(self, taskKey, key, default=None, debugValue=None):
        if "TARN_UPSTREAM_VALUES" not in os.environ:
            if debugValue is None:
                raise TypeError("taskValues.get outside a job run needs debugValue")
            return debugValue
        values = _read("TARN_UPSTREAM_VALUES", {})
        if taskKey not in values:
            raise ValueError(f"Task {taskKey} is not an upstream task of this task")
        found = values[taskKey]
        if key in found:
            return found[key]
        if default is not None:
            return default
        raise ValueError(f"Task {taskKey} set no value '{key}'")


class _Jobs:
    def __init__(self):
        self.taskValues = _TaskValues()


class _Notebook:
    def exit(self, value):
        path = os.environ.get("TARN_TASK_RESULT")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(str(value))
        raise NotebookExit(value)


class DBUtils:
    def __init__(self):
        self.widgets = _Widgets()
        self.jobs = _Jobs()
        self.notebook = _Notebook()


dbutils = DBUtils()
