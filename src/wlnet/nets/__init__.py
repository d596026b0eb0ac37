"""Nets that hold nets (NetChain, NetGraph, operators), their evaluation, initialization,
state objects and measurements."""
