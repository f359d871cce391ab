"""bigmodel_lib: the helper library of *Foundations of Large Models*.

Every public name says, in its docstring, which chapter of the book teaches it.
The notebooks build each piece from its formula first, check it against
PyTorch, and only then import the library's version.
"""

__version__ = "0.1.0"

from bigmodel_lib.devices import environment_report, get_device

__all__ = ["__version__", "environment_report", "get_device"]
