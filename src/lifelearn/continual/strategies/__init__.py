"""Continual strategies by name (one file each) and the plug-ins composable with them.

A configuration lists one or more strategies ({name: hyper-parameters}); their hooks run
in the order given and their extra loss terms add up (e.g. lwf + l2 = PredKD + L2 of
Smith et al. 2023). `refresh` (refresh.py) is a plug-in composable with any of them.
"""
from __future__ import annotations

from lifelearn.continual.refresh import Refresh
from lifelearn.continual.strategies.derpp import DERpp
from lifelearn.continual.strategies.er import ER
from lifelearn.continual.strategies.ewc import EWC
from lifelearn.continual.strategies.featkd import FeatKD
from lifelearn.continual.strategies.finetune import Finetune
from lifelearn.continual.strategies.joint import Joint
from lifelearn.continual.strategies.l2 import L2
from lifelearn.continual.strategies.lwf import LwF
from lifelearn.continual.strategies.lwf_mc import LwFMC
from lifelearn.continual.strategies.single_task import SingleTask
from lifelearn.continual.strategies.synthetic_er import SyntheticER
from lifelearn.continual.strategies.uer import UER

STRATEGIES = {cls.name: cls for cls in (Finetune, Joint, SingleTask, L2, EWC, LwF, LwFMC, FeatKD, ER, DERpp, UER,
                                           SyntheticER)}


def strategy_names() -> list[str]:
    return sorted(STRATEGIES)


def build_plugins(strategies: dict, refresh: bool = False, refresh_params: dict | None = None) -> list:
    """Instances of the named strategies (hyper-parameters as keyword arguments), then
    the refresh plug-in when `refresh` is true."""
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; allowed: {', '.join(strategy_names())}")
    plugins = [STRATEGIES[name](**(params or {})) for name, params in strategies.items()]
    if refresh:
        plugins.append(Refresh(**(refresh_params or {})))
    return plugins
