"""A head's pyfunc logged as MLflow "models from code" rather than as a cloudpickled object.

MLflow 3 warns on every ``log_model`` that is handed a Python object ("Passing a Python object as
`python_model` causes it to be serialized using CloudPickle ..."), and recommends models from code:
a small Python file that builds the model and hands it to ``mlflow.models.set_model``. A head's
``PythonModel`` holds nothing of its own until ``load_context`` rebuilds it from the artifacts (the
``PyfuncBundle`` contract), so that file is two imports and one call; the class is imported from
the ``triad`` package the model carries (``code_paths``), as cloudpickle's reference to it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FILE_NAME = "model_code.py"


def as_model_code(python_model: Any, work_dir: Path) -> Any:
    """The ``python_model`` to hand ``mlflow.pyfunc.log_model``: the path of a file under ``work_dir``
    that builds a fresh instance of ``python_model``'s class, or ``python_model`` itself where a fresh
    instance would not be the same model (an object that holds state of its own, a class defined
    inside a function): that one is pickled, as before."""
    cls = type(python_model)
    if vars(python_model) or "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
        return python_model
    path = Path(work_dir) / FILE_NAME
    path.write_text(
        f'"""The served model: {cls.__qualname__} from {cls.__module__} (written by triad.model_code)."""\n\n'
        "from mlflow.models import set_model\n\n"
        f"from {cls.__module__} import {cls.__qualname__}\n\n"
        f"set_model({cls.__qualname__}())\n"
    )
    return str(path)
