"""The executor's parts, one module per kind of action, behind ``alpha.daemon.executor.Executor``.

* ``context``: what every part shares (fuses, journal, metrics, clock, config, client ids,
  the unhedged notional) and the results (``ActionResult``, ``LegProgress``);
* ``orders``: one order's lifecycle (client id journalled before sending, submit, unknown
  outcomes resolved by asking the venue, the order streams);
* ``hedges``: two-leg hedges and single legs, sliced, balanced or unwound;
* ``capital``: ``TopUpMargin``, ``Transfer``, ``Supply``, ``Withdraw`` and cash ``Borrow``/``Repay``;
* ``synthetic``: synthetic shorts (borrow and sell, buy back and repay) and their restart recovery;
* ``roles``: the ``StepRole`` journal rows of a synthetic short carry, which recovery reads;
* ``probes``: the capability probes of fuses, in one place until a typed registry replaces them.
"""
