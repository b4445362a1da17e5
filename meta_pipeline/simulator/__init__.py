"""A local stand-in for the Meta Marketing (Graph) API: deterministic data, real limits, faults.

A product feature (demo, tests, trying configurations offline). Pipeline code
never imports it; clients only see a base URL.

    with run_simulator(SimulatorConfig(seed=7, accounts=3)) as sim:
        sim.base_url  # "http://127.0.0.1:<port>", paths are /v25.0/...
"""

from .faults import FAULTS, PROFILES
from .server import Simulator, SimulatorConfig, run_simulator
from .world import Account, World

__all__ = [
    "FAULTS",
    "PROFILES",
    "Account",
    "Simulator",
    "SimulatorConfig",
    "World",
    "run_simulator",
]
