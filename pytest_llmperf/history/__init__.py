"""History: every run appended to files a team keeps, its series over commits, their change
points and creep, a gate on them, and the ``history`` command that shows them.

``store`` (the files), ``series`` (a run's record; records as series), ``changes``
(steps and creep in one series), ``acks`` (acknowledged changes), ``recorder`` (the
plugin side: appending, the gate), ``page`` (the HTML trend plots), ``cli``.
"""
