# pragma version 0.4.3
# pragma evm-version cancun
"""
@title ServiceRegistry
@notice Where each orchestrator publishes the URI gateways reach it at.
"""

interface IController:
    def paused() -> bool: view

event ServiceURIUpdate:
    addr: indexed(address)
    serviceURI: String[1024]

controller: public(address)
serviceURIs: HashMap[address, String[1024]]


@deploy
def __init__(_controller: address):
    self.controller = _controller


@external
def setServiceURI(_serviceURI: String[1024]):
    assert not staticcall IController(self.controller).paused(), "system is paused"
    self.serviceURIs[msg.sender] = _serviceURI
    log ServiceURIUpdate(addr=msg.sender, serviceURI=_serviceURI)


@view
@external
def getServiceURI(_addr: address) -> String[1024]:
    return self.serviceURIs[_addr]
