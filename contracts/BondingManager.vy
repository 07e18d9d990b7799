# pragma version 0.4.3
# pragma evm-version cancun
"""
@title BondingManager (the subset lpnode calls)
@notice Which orchestrators are active, their stake, and the fees winning tickets earn them. Bonding, rewards
        and delegator share splits are not part of this subset: an orchestrator is made active with a stake by
        the Controller owner (`devSetActiveTranscoder`), is its own only delegator, and so earns every fee
        credited to it. Fees are paid out by `withdrawFees` through the Minter, which holds the ETH.
"""

interface IController:
    def getContract(_id: bytes32) -> address: view
    def paused() -> bool: view
    def owner() -> address: view

interface IRoundsManager:
    def currentRound() -> uint256: view

interface IMinter:
    def trustedWithdrawETH(_to: address, _amount: uint256): nonpayable

struct Transcoder:
    lastRewardRound: uint256
    rewardCut: uint256
    feeShare: uint256
    lastActiveStakeUpdateRound: uint256
    activationRound: uint256
    deactivationRound: uint256
    activeCumulativeRewards: uint256
    cumulativeRewards: uint256
    cumulativeFees: uint256
    lastFeeRound: uint256

struct Delegator:
    bondedAmount: uint256
    fees: uint256
    delegateAddress: address
    delegatedAmount: uint256
    startRound: uint256
    lastClaimRound: uint256
    nextUnbondingLockId: uint256

event TranscoderActivated:
    transcoder: indexed(address)
    activationRound: uint256

event WithdrawFees:
    delegator: indexed(address)
    recipient: address
    amount: uint256

MAX_ROUND: constant(uint256) = max_value(uint256)

controller: public(address)
transcoders: HashMap[address, Transcoder]
delegators: HashMap[address, Delegator]
# The pool as a singly linked list, in the order orchestrators were made active.
poolFirst: address
poolLast: address
poolNext: HashMap[address, address]
inPool: HashMap[address, bool]
poolSize: uint256


@deploy
def __init__(_controller: address):
    self.controller = _controller


@internal
@view
def _contract(name: String[32]) -> address:
    return staticcall IController(self.controller).getContract(keccak256(name))


@internal
@view
def _when_system_not_paused():
    assert not staticcall IController(self.controller).paused(), "system is paused"


@internal
@view
def _current_round() -> uint256:
    return staticcall IRoundsManager(self._contract("RoundsManager")).currentRound()


@internal
@view
def _is_registered(_transcoder: address) -> bool:
    d: Delegator = self.delegators[_transcoder]
    return d.delegateAddress == _transcoder and d.bondedAmount > 0


@internal
@view
def _is_active(_transcoder: address, _round: uint256) -> bool:
    t: Transcoder = self.transcoders[_transcoder]
    return t.activationRound <= _round and _round < t.deactivationRound


@external
def devSetActiveTranscoder(_transcoder: address, _stake: uint256):
    """
    @notice Development only: make `_transcoder` a registered, active orchestrator with `_stake`, bonded to
            itself, from the current round on. Only the Controller owner may call it.
    """
    assert msg.sender == staticcall IController(self.controller).owner(), "caller must be Controller owner"
    assert _stake > 0, "stake must be greater than 0"
    current: uint256 = self._current_round()
    d: Delegator = self.delegators[_transcoder]
    d.bondedAmount = _stake
    d.delegatedAmount = _stake
    d.delegateAddress = _transcoder
    if d.startRound == 0:
        d.startRound = current
    d.lastClaimRound = current
    self.delegators[_transcoder] = d
    t: Transcoder = self.transcoders[_transcoder]
    if not self._is_active(_transcoder, current):
        t.activationRound = current
        t.deactivationRound = MAX_ROUND
        t.lastActiveStakeUpdateRound = current
        t.feeShare = 1000000
        self.transcoders[_transcoder] = t
        log TranscoderActivated(transcoder=_transcoder, activationRound=current)
    if not self.inPool[_transcoder]:
        self.inPool[_transcoder] = True
        if self.poolFirst == empty(address):
            self.poolFirst = _transcoder
        else:
            self.poolNext[self.poolLast] = _transcoder
        self.poolLast = _transcoder
        self.poolSize += 1


@external
def updateTranscoderWithFees(_transcoder: address, _fees: uint256, _round: uint256):
    self._when_system_not_paused()
    assert msg.sender == self._contract("TicketBroker"), "caller must be TicketBroker"
    assert self._is_registered(_transcoder), "transcoder must be registered"
    self.delegators[_transcoder].fees += _fees
    t: Transcoder = self.transcoders[_transcoder]
    t.cumulativeFees += _fees
    t.lastFeeRound = self._current_round()
    self.transcoders[_transcoder] = t


@external
def withdrawFees(_recipient: address, _amount: uint256):
    self._when_system_not_paused()
    assert self.delegators[msg.sender].fees >= _amount, "insufficient fees to withdraw"
    self.delegators[msg.sender].fees -= _amount
    extcall IMinter(self._contract("Minter")).trustedWithdrawETH(_recipient, _amount)
    log WithdrawFees(delegator=msg.sender, recipient=_recipient, amount=_amount)


@view
@external
def pendingFees(_delegator: address, _endRound: uint256) -> uint256:
    return self.delegators[_delegator].fees


@view
@external
def pendingStake(_delegator: address, _endRound: uint256) -> uint256:
    return self.delegators[_delegator].bondedAmount


@view
@external
def isActiveTranscoder(_transcoder: address) -> bool:
    return self._is_active(_transcoder, self._current_round())


@view
@external
def isRegisteredTranscoder(_transcoder: address) -> bool:
    return self._is_registered(_transcoder)


@view
@external
def transcoderStatus(_transcoder: address) -> uint8:
    # 0 NotRegistered, 1 Registered (Livepeer's TranscoderStatus enum).
    if self._is_registered(_transcoder):
        return 1
    return 0


@view
@external
def transcoderTotalStake(_transcoder: address) -> uint256:
    return self.delegators[_transcoder].delegatedAmount


@view
@external
def getTranscoder(
    _transcoder: address,
) -> (uint256, uint256, uint256, uint256, uint256, uint256, uint256, uint256, uint256, uint256):
    # Ten values rather than a struct, as Livepeer's ABI has it (the encoding is the same either way).
    t: Transcoder = self.transcoders[_transcoder]
    return (
        t.lastRewardRound,
        t.rewardCut,
        t.feeShare,
        t.lastActiveStakeUpdateRound,
        t.activationRound,
        t.deactivationRound,
        t.activeCumulativeRewards,
        t.cumulativeRewards,
        t.cumulativeFees,
        t.lastFeeRound,
    )


@view
@external
def getDelegator(_delegator: address) -> (uint256, uint256, address, uint256, uint256, uint256, uint256):
    d: Delegator = self.delegators[_delegator]
    return (
        d.bondedAmount, d.fees, d.delegateAddress, d.delegatedAmount, d.startRound, d.lastClaimRound, d.nextUnbondingLockId
    )


@view
@external
def getTranscoderPoolSize() -> uint256:
    return self.poolSize


@view
@external
def getFirstTranscoderInPool() -> address:
    return self.poolFirst


@view
@external
def getNextTranscoderInPool(_transcoder: address) -> address:
    return self.poolNext[_transcoder]
