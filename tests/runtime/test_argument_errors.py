"""import_class finds a class by its dotted path, also where the package does not expose the module as an attribute."""

import torch

from runtime.argument_errors import import_class


def test_a_class_of_a_module_its_package_does_not_expose_is_found():
    assert not hasattr(torch.optim, "adam")  # torch removes the submodule's name: an attribute walk stops here
    assert import_class("torch.optim.adam.Adam") is torch.optim.Adam  # the class path an optimizer's checkpoint records


def test_no_class_is_none():
    assert import_class("torch.optim.adam.nothing_here") is None
    assert import_class("no_such_module.Thing") is None
    assert import_class("torch.optim.adam.adam") is None  # a function, not a class
    assert import_class(None) is None and import_class("Adam") is None
