"""The remote signer (``lpnode signer``): it holds a payer's Ethereum key and deposit and signs ticket payments
for gateways and apps that have none, wire-compatible with go-livepeer's ``-remoteSigner``.

Modules: :mod:`~lpnode.signer.command` (flags and start-up refusals), :mod:`~lpnode.signer.server` (running it),
:mod:`~lpnode.signer.routes` (HTTP routes and error answers), :mod:`~lpnode.signer.request` (reading a payment
request), :mod:`~lpnode.signer.payment` (minting a payment), :mod:`~lpnode.signer.state` (the signed state),
:mod:`~lpnode.signer.ceilings` (price ceilings), :mod:`~lpnode.signer.webhook` (the auth webhook),
:mod:`~lpnode.signer.discovery` and :mod:`~lpnode.signer.orch_info` (``/discover-orchestrators``). The wire
shapes clients share are in :mod:`lpnode.protocol.remote_signer`.
"""
