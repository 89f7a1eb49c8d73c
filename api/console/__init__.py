"""The operator and auditor console: server-rendered pages at `/console` over the same container.

Sign-in takes an API key once and keeps a server-side session (`session.py`); pages read the
ledger, the read models and the adapters' stores (`views.py`); the ATS chart is an inline SVG
drawn from the event history (`chart.py`). Assets ship in the package: nothing is fetched.
"""
