"""feedgate.mail: applies the feed manager's observables to messages.

The layers, each its own module (design.md "Mail"):

- :mod:`feedgate.mail.model` — the vocabulary every other layer speaks: the parts of a message a
  rule can name, what the inspector offers to match (:class:`Offer`), a match and a verdict.
- :mod:`feedgate.mail.inspect` — reads an RFC 5322 message and lists its offers.
- :mod:`feedgate.mail.matcher` — an immutable in-memory snapshot of the enforced observables.
- :mod:`feedgate.mail.policy` — the verdict: exceptions, the false-positive gate
  (:mod:`~feedgate.mail.gate`), ordered rules (:mod:`~feedgate.mail.rules`) and their actions;
  :mod:`feedgate.mail.policy_store` keeps rules, exceptions and the match log in the database.
- :mod:`feedgate.mail.scanner` — inspector, matcher and policy wired once: one message in, one
  verdict out, for ``feedgate scan`` and the gateway alike.
"""
