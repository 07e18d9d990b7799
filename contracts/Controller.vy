# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Controller
@notice The registry every other contract finds its peers in: contract id (keccak256 of the name) to address,
        plus the protocol-wide pause switch. Same external interface as Livepeer's Controller; it starts paused,
        as Livepeer's does, and the deployer unpauses it once the contracts are registered.
"""

struct ContractInfo:
    contractAddress: address
    gitCommitHash: bytes20

event SetContractInfo:
    id: bytes32
    contractAddress: address
    gitCommitHash: bytes20

event Pause:
    pass

event Unpause:
    pass

event OwnershipTransferred:
    previousOwner: indexed(address)
    newOwner: indexed(address)

owner: public(address)
paused: public(bool)
registry: HashMap[bytes32, ContractInfo]


@deploy
def __init__():
    self.owner = msg.sender
    self.paused = True


@internal
def _only_owner():
    assert msg.sender == self.owner


@external
def setContractInfo(_id: bytes32, _contractAddress: address, _gitCommitHash: bytes20):
    self._only_owner()
    self.registry[_id] = ContractInfo(contractAddress=_contractAddress, gitCommitHash=_gitCommitHash)
    log SetContractInfo(id=_id, contractAddress=_contractAddress, gitCommitHash=_gitCommitHash)


@view
@external
def getContract(_id: bytes32) -> address:
    return self.registry[_id].contractAddress


@view
@external
def getContractInfo(_id: bytes32) -> (address, bytes20):
    info: ContractInfo = self.registry[_id]
    return (info.contractAddress, info.gitCommitHash)


@external
def pause():
    self._only_owner()
    assert not self.paused
    self.paused = True
    log Pause()


@external
def unpause():
    self._only_owner()
    assert self.paused
    self.paused = False
    log Unpause()


@external
def transferOwnership(_newOwner: address):
    self._only_owner()
    assert _newOwner != empty(address)
    log OwnershipTransferred(previousOwner=self.owner, newOwner=_newOwner)
    self.owner = _newOwner
