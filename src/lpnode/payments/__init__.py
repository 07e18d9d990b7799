"""Livepeer's probabilistic micropayments: tickets, the sender (gateway), the recipient (orchestrator), balances,
the redemption queue, the chain client and keystore wallets.

One idea per module; import from the modules themselves. This package is a wire library: it knows no role.
Off-chain (the default) none of it runs.
"""
