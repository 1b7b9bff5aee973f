"""Verdicts, never blocking the event loop: the backends' matchers on the CPU, the one
`validate`, and the killable worker processes every unbounded check runs in."""
