"""TicketLens: one import namespace for the whole distribution.

The installed wheel holds a single top-level package, ``ticketlens``, with the layers as subpackages:
``ticketlens.flows`` (Prefect flows), ``ticketlens.tasks`` (Prefect tasks), ``ticketlens.models`` (Prefect-free
ML and analysis), ``ticketlens.adapters`` (Prefect-free I/O: helpdesk, warehouse, tracking, settings),
``ticketlens.services`` (long-running services) and ``ticketlens.helpdesk_sim`` (the Zendesk simulator).

Why one namespace: a registered model pickles the classes it was built from, so their module paths are part of
the model. Under a generic top-level name such as ``models`` a model collides with any other ``models`` package
imported in the loading process; under ``ticketlens.models`` it does not.

In a checkout the layers stay where a newcomer looks for them, at the top level (``flows/``, ``tasks/``,
``models/`` ...), and this package extends its search path to the checkout root, so ``ticketlens.models`` is
``<checkout>/models``. The wheel maps the same directories under ``ticketlens/`` (``pyproject.toml``,
``[tool.hatch.build.targets.wheel.sources]``), where nothing needs extending. Always import through
``ticketlens.``: importing a layer by its bare name (``import models``) would load a second copy of it.
"""

from pathlib import Path as _Path

_CHECKOUT = _Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "models" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))
