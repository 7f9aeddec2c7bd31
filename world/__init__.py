"""The synthetic transaction world: a development and demo tool, never imported by production.

Its public face is :mod:`world.synth` (``WorldSpec``, ``generate``, ``world_end``); the rooms
behind it hold, in the order they build on each other: :mod:`world.numeric` (small helpers),
:mod:`world.seasons` (calendar, seasonality, timestamps, macro path), :mod:`world.population`
(merchants, consumers, traits, onboarding), :mod:`world.risk` (risk at issue and the constants
that drive it), :mod:`world.writer` (Parquet writing in the contract's tables),
:mod:`world.loans` (applications, loans, schedules, repayment) and :mod:`world.activity` (a
month of transactions).
"""
