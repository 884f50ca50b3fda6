"""The core: sessions, the ordered release, records, sizes, errors, the sampler.

Sits on the probes; the census sits beside it. Public names are re-exported by
:mod:`vramguard`; the modules here are private.
"""
