"""The gateway: the public AI API, discovery and selection of orchestrators, forwarding, result hosting."""
