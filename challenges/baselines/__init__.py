"""Baselines every leaderboard can show: trivial, classical and (where torch is installed) CNN
methods trained on a phase's public train split (docs/baselines.md).

:mod:`challenges.baselines.registry` holds the interface, :mod:`challenges.baselines.data`
builds a phase's :class:`~challenges.baselines.registry.PhaseData`, and
:mod:`challenges.services.baselines` submits what the baselines predict.
"""
