"""A once-for-all neural architecture search framework.

Train one weight-sharing supernet over a cell-based search space, search it per target device,
and export the chosen subnet as a plain PyTorch model.
"""
from nas.errors import NASError
from nas.export import load_subnet
from nas.space import Arch, SearchSpace
from nas.supernet import Supernet, build_subnet

__all__ = ["Arch", "NASError", "SearchSpace", "Supernet", "build_subnet", "load_subnet"]
__version__ = "0.1.0"
