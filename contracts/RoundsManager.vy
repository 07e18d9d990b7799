# pragma version 0.4.3
# pragma evm-version cancun
"""
@title RoundsManager
@notice Rounds of `roundLength` blocks. A round must be initialised (`initializeRound`) before tickets can be
        redeemed in it; initialising stores the hash of the block before it, which tickets of that round carry
        in their auxData, fixes the round's total active stake (BondingManager) and sets the round's mintable
        reward tokens (Minter). A new round length takes effect at the next initialised round, as in Livepeer's.
"""

interface IController:
    def getContract(_id: bytes32) -> address: view
    def paused() -> bool: view
    def owner() -> address: view

interface IBondingManager:
    def setCurrentRoundTotalActiveStake(): nonpayable

interface IMinter:
    def setCurrentRewardTokens(): nonpayable

event NewRound:
    round: indexed(uint256)
    blockHash: bytes32

event ParameterUpdate:
    param: String[32]

controller: public(address)
roundLength: public(uint256)
roundLockAmount: public(uint256)
lastInitializedRound: public(uint256)
lastRoundLengthUpdateRound: public(uint256)
lastRoundLengthUpdateStartBlock: public(uint256)
pendingRoundLength: uint256
_blockHashForRound: HashMap[uint256, bytes32]


@deploy
def __init__(_controller: address, _roundLength: uint256):
    assert _roundLength > 0, "round length cannot be 0"
    self.controller = _controller
    self.roundLength = _roundLength
    self.lastRoundLengthUpdateRound = block.number // _roundLength
    self.lastRoundLengthUpdateStartBlock = self.lastRoundLengthUpdateRound * _roundLength


@internal
@view
def _only_controller_owner():
    assert msg.sender == staticcall IController(self.controller).owner(), "caller must be Controller owner"


@internal
@view
def _current_round() -> uint256:
    return self.lastRoundLengthUpdateRound + (block.number - self.lastRoundLengthUpdateStartBlock) // self.roundLength


@internal
@view
def _current_round_start_block() -> uint256:
    return self.lastRoundLengthUpdateStartBlock + (self._current_round() - self.lastRoundLengthUpdateRound) * self.roundLength


@internal
@view
def _block_hash(_block: uint256) -> bytes32:
    assert _block < block.number, "can only retrieve past block hashes"
    assert block.number < 256 or _block >= block.number - 256, "can only retrieve hashes for last 256 blocks"
    return blockhash(_block)


@external
def setRoundLength(_roundLength: uint256):
    self._only_controller_owner()
    assert _roundLength > 0, "round length cannot be 0"
    self.pendingRoundLength = _roundLength
    log ParameterUpdate(param="roundLength")


@external
def initializeRound():
    assert not staticcall IController(self.controller).paused(), "system is paused"
    curr_round: uint256 = self._current_round()
    assert self.lastInitializedRound < curr_round, "round already initialized"
    self.lastInitializedRound = curr_round
    block_hash: bytes32 = self._block_hash(block.number - 1)
    self._blockHashForRound[curr_round] = block_hash
    controller: IController = IController(self.controller)
    extcall IBondingManager(staticcall controller.getContract(keccak256("BondingManager"))).setCurrentRoundTotalActiveStake()
    extcall IMinter(staticcall controller.getContract(keccak256("Minter"))).setCurrentRewardTokens()
    if self.pendingRoundLength != 0 and self.pendingRoundLength != self.roundLength:
        self.lastRoundLengthUpdateStartBlock = self._current_round_start_block()
        self.lastRoundLengthUpdateRound = curr_round
        self.roundLength = self.pendingRoundLength
    log NewRound(round=curr_round, blockHash=block_hash)


@view
@external
def blockNum() -> uint256:
    return block.number


@view
@external
def blockHash(_block: uint256) -> bytes32:
    return self._block_hash(_block)


@view
@external
def blockHashForRound(_round: uint256) -> bytes32:
    return self._blockHashForRound[_round]


@view
@external
def currentRound() -> uint256:
    return self._current_round()


@view
@external
def currentRoundStartBlock() -> uint256:
    return self._current_round_start_block()


@view
@external
def currentRoundInitialized() -> bool:
    return self.lastInitializedRound == self._current_round()


@view
@external
def currentRoundLocked() -> bool:
    # No lock period in this subset (roundLockAmount is 0): a round is never locked.
    return False
