# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Minter (the ETH part)
@notice Holds every wei of the senders' deposits and reserves. Only the BondingManager or the contract registered
        as "JobsManager" (the TicketBroker, as on Arbitrum One) may put ETH in or take it out. Token minting
        (inflation rewards) is not part of this subset.
"""

interface IController:
    def getContract(_id: bytes32) -> address: view
    def paused() -> bool: view
    def owner() -> address: view

controller: public(address)


@deploy
def __init__(_controller: address):
    self.controller = _controller


@internal
@view
def _contract(name: String[32]) -> address:
    return staticcall IController(self.controller).getContract(keccak256(name))


@internal
@view
def _only_bonding_manager_or_jobs_manager():
    assert (
        msg.sender == self._contract("BondingManager") or msg.sender == self._contract("JobsManager")
    ), "msg.sender not BondingManager or JobsManager"


@external
@payable
def depositETH() -> bool:
    self._only_bonding_manager_or_jobs_manager()
    return True


@external
def trustedWithdrawETH(_to: address, _amount: uint256):
    self._only_bonding_manager_or_jobs_manager()
    assert not staticcall IController(self.controller).paused(), "system is paused"
    send(_to, _amount)
