# pragma version 0.4.3
# pragma evm-version cancun
"""
@title BondingManager
@notice Stake, the transcoder pool and earnings, with the external interface, events and revert strings of
        Livepeer's BondingManager for every function lpnode calls.

        - Bonding: `bond` moves LPT from the caller to the Minter and delegates it; bonding to yourself registers
          you as an orchestrator ("transcoder"). `unbond` starts an unbonding lock that `withdrawStake` pays out
          `unbondingPeriod` rounds later; `rebond`/`rebondFromUnbonded` put a lock's tokens back.
        - The pool: registered orchestrators sorted by total stake, largest first, at most `getTranscoderPoolMaxSize()`
          of them; a newcomer with more stake than the last one evicts it. The pool as it stands when a round is
          initialised is that round's active set: joining or leaving takes effect at the next round
          (`activationRound`/`deactivationRound`), and the round's total active stake is fixed then.
        - Earnings: Livepeer's cumulative earnings factors (LIP-36) per orchestrator and round. `reward` mints the
          orchestrator's share of the round's inflation once per round; `rewardCut` of it is the orchestrator's
          commission, the rest grows every delegator's stake in proportion. Fees credited by the TicketBroker are
          split by `feeShare` (the delegators' part) the same way. `pendingStake`/`pendingFees` show earnings not yet
          claimed; `claimEarnings`, and every bonding change, claim them.
        - Left out: slashing, the treasury cut, hints (accepted and ignored: the pool is searched from its head, which
          gives the same order), third-party bonding (`bondForWithHint`, `transferBond`) and the round lock.
        - Development only: `devSetActiveTranscoder` makes an address an active orchestrator at once, without tokens.
"""

interface IController:
    def getContract(_id: bytes32) -> address: view
    def paused() -> bool: view
    def owner() -> address: view

interface IRoundsManager:
    def currentRound() -> uint256: view
    def currentRoundInitialized() -> bool: view
    def currentRoundLocked() -> bool: view

interface IMinter:
    def createReward(_fracNum: uint256, _fracDenom: uint256) -> uint256: nonpayable
    def trustedTransferTokens(_to: address, _amount: uint256): nonpayable
    def trustedWithdrawETH(_to: address, _amount: uint256): nonpayable
    def currentMintableTokens() -> uint256: view

interface ILivepeerToken:
    def transferFrom(_from: address, _to: address, _amount: uint256) -> bool: nonpayable

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

struct UnbondingLock:
    amount: uint256
    withdrawRound: uint256

struct EarningsPool:
    totalStake: uint256
    transcoderRewardCut: uint256
    transcoderFeeShare: uint256
    cumulativeRewardFactor: uint256
    cumulativeFeeFactor: uint256

struct PoolNode:
    key: uint256
    nextId: address
    prevId: address

event TranscoderUpdate:
    transcoder: indexed(address)
    rewardCut: uint256
    feeShare: uint256

event TranscoderActivated:
    transcoder: indexed(address)
    activationRound: uint256

event TranscoderDeactivated:
    transcoder: indexed(address)
    deactivationRound: uint256

event Reward:
    transcoder: indexed(address)
    amount: uint256

event Bond:
    newDelegate: indexed(address)
    oldDelegate: indexed(address)
    delegator: indexed(address)
    additionalAmount: uint256
    bondedAmount: uint256

event Unbond:
    delegate: indexed(address)
    delegator: indexed(address)
    unbondingLockId: uint256
    amount: uint256
    withdrawRound: uint256

event Rebond:
    delegate: indexed(address)
    delegator: indexed(address)
    unbondingLockId: uint256
    amount: uint256

event WithdrawStake:
    delegator: indexed(address)
    unbondingLockId: uint256
    amount: uint256
    withdrawRound: uint256

event WithdrawFees:
    delegator: indexed(address)
    recipient: address
    amount: uint256

event EarningsClaimed:
    delegate: indexed(address)
    delegator: indexed(address)
    rewards: uint256
    fees: uint256
    startRound: uint256
    endRound: uint256

event ParameterUpdate:
    param: String[32]

MAX_FUTURE_ROUND: constant(uint256) = max_value(uint256)
# Reward cut and fee share are parts per million (MathUtils); earnings factors parts per 10**27 (PreciseMathUtils).
PERC_DIVISOR: constant(uint256) = 10**6
PRECISE_DIVISOR: constant(uint256) = 10**27
# The largest pool this contract can walk in one transaction (Livepeer's Arbitrum pool holds 100).
MAX_POOL_SIZE: constant(uint256) = 256

# DelegatorStatus
PENDING: constant(uint8) = 0
BONDED: constant(uint8) = 1
UNBONDED: constant(uint8) = 2

controller: public(address)
unbondingPeriod: public(uint64)
currentRoundTotalActiveStake: public(uint256)
nextRoundTotalActiveStake: public(uint256)

transcoders: HashMap[address, Transcoder]
delegators: HashMap[address, Delegator]
unbondingLocks: HashMap[address, HashMap[uint256, UnbondingLock]]
earningsPools: HashMap[address, HashMap[uint256, EarningsPool]]

# The transcoder pool: a doubly linked list sorted by key (total stake), largest first.
poolNodes: HashMap[address, PoolNode]
poolHead: address
poolTail: address
poolSize: uint256
poolMaxSize: uint256


@deploy
def __init__(_controller: address):
    self.controller = _controller


# --- plumbing --------------------------------------------------------------------------------------------------


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
def _only_controller_owner():
    assert msg.sender == staticcall IController(self.controller).owner(), "caller must be Controller owner"


@internal
@view
def _current_round() -> uint256:
    return staticcall IRoundsManager(self._contract("RoundsManager")).currentRound()


@internal
@view
def _current_round_initialized():
    assert staticcall IRoundsManager(self._contract("RoundsManager")).currentRoundInitialized(), (
        "current round is not initialized"
    )


@internal
@pure
def _precise_perc_of(_amount: uint256, _num: uint256, _denom: uint256) -> uint256:
    return _amount * (_num * PRECISE_DIVISOR // _denom) // PRECISE_DIVISOR


# --- the sorted pool -------------------------------------------------------------------------------------------


@internal
@view
def _pool_contains(_id: address) -> bool:
    return self.poolNodes[_id].key > 0


@internal
def _pool_insert(_id: address, _key: uint256):
    assert self.poolSize < self.poolMaxSize, "transcoder pool is full"
    # Before the first node whose key is not larger: equal stakes keep newcomers ahead, as SortedDoublyLL does.
    prev: address = empty(address)
    nxt: address = self.poolHead
    for _: uint256 in range(MAX_POOL_SIZE):
        if nxt == empty(address) or _key >= self.poolNodes[nxt].key:
            break
        prev = nxt
        nxt = self.poolNodes[nxt].nextId
    self.poolNodes[_id] = PoolNode(key=_key, nextId=nxt, prevId=prev)
    if prev == empty(address):
        self.poolHead = _id
    else:
        self.poolNodes[prev].nextId = _id
    if nxt == empty(address):
        self.poolTail = _id
    else:
        self.poolNodes[nxt].prevId = _id
    self.poolSize += 1


@internal
def _pool_remove(_id: address):
    node: PoolNode = self.poolNodes[_id]
    if node.prevId == empty(address):
        self.poolHead = node.nextId
    else:
        self.poolNodes[node.prevId].nextId = node.nextId
    if node.nextId == empty(address):
        self.poolTail = node.prevId
    else:
        self.poolNodes[node.nextId].prevId = node.prevId
    self.poolNodes[_id] = empty(PoolNode)
    self.poolSize -= 1


@internal
def _pool_update_key(_id: address, _key: uint256):
    self._pool_remove(_id)
    if _key > 0:
        self._pool_insert(_id, _key)


# --- status ----------------------------------------------------------------------------------------------------


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


@internal
@view
def _delegator_status(_delegator: address) -> uint8:
    d: Delegator = self.delegators[_delegator]
    if d.bondedAmount == 0:
        return UNBONDED
    if d.startRound > self._current_round():
        return PENDING
    return BONDED


# --- earnings (LIP-36 cumulative factors) ----------------------------------------------------------------------


@internal
@view
def _latest_factors(_transcoder: address, _round: uint256) -> (uint256, uint256):
    # The factors of `_round`, or those of the last reward/fee round before it when `_round` has none.
    t: Transcoder = self.transcoders[_transcoder]
    crf: uint256 = self.earningsPools[_transcoder][_round].cumulativeRewardFactor
    cff: uint256 = self.earningsPools[_transcoder][_round].cumulativeFeeFactor
    if crf == 0 and t.lastRewardRound < _round:
        crf = self.earningsPools[_transcoder][t.lastRewardRound].cumulativeRewardFactor
    if cff == 0 and t.lastFeeRound < _round:
        cff = self.earningsPools[_transcoder][t.lastFeeRound].cumulativeFeeFactor
    return crf, cff


@internal
@view
def _pending_stake_and_fees(_delegator: address, _end_round: uint256) -> (uint256, uint256):
    d: Delegator = self.delegators[_delegator]
    stake: uint256 = d.bondedAmount
    fees: uint256 = d.fees
    if d.lastClaimRound + 1 <= _end_round:
        start_crf: uint256 = self.earningsPools[d.delegateAddress][d.lastClaimRound].cumulativeRewardFactor
        start_cff: uint256 = self.earningsPools[d.delegateAddress][d.lastClaimRound].cumulativeFeeFactor
        end_crf: uint256 = 0
        end_cff: uint256 = 0
        end_crf, end_cff = self._latest_factors(d.delegateAddress, _end_round)
        if start_crf == 0:
            start_crf = PRECISE_DIVISOR
        if end_crf == 0:
            end_crf = PRECISE_DIVISOR
        fees += self._precise_perc_of(stake, end_cff - start_cff, start_crf)
        stake = self._precise_perc_of(stake, end_crf, start_crf)
    if _delegator == d.delegateAddress:
        # An orchestrator's commission and the earnings of its unclaimed rewards are tracked on it directly.
        stake += self.transcoders[_delegator].cumulativeRewards
        fees += self.transcoders[_delegator].cumulativeFees
    return stake, fees


@internal
def _ensure_initialized_factors(_transcoder: address, _round: uint256):
    t: Transcoder = self.transcoders[_transcoder]
    if self.earningsPools[_transcoder][_round].cumulativeRewardFactor == 0 and t.lastRewardRound < _round:
        self.earningsPools[_transcoder][_round].cumulativeRewardFactor = self.earningsPools[_transcoder][
            t.lastRewardRound
        ].cumulativeRewardFactor
    if self.earningsPools[_transcoder][_round].cumulativeFeeFactor == 0 and t.lastFeeRound < _round:
        self.earningsPools[_transcoder][_round].cumulativeFeeFactor = self.earningsPools[_transcoder][
            t.lastFeeRound
        ].cumulativeFeeFactor


@internal
def _update_delegator_with_earnings(_delegator: address, _end_round: uint256, _last_claim_round: uint256):
    d: Delegator = self.delegators[_delegator]
    stake: uint256 = d.bondedAmount
    fees: uint256 = d.fees
    if d.delegateAddress != empty(address):
        stake, fees = self._pending_stake_and_fees(_delegator, _end_round)
        self._ensure_initialized_factors(d.delegateAddress, _end_round)
        if d.delegateAddress == _delegator:
            self.transcoders[_delegator].cumulativeFees = 0
            self.transcoders[_delegator].cumulativeRewards = 0
    log EarningsClaimed(
        delegate=d.delegateAddress,
        delegator=_delegator,
        rewards=stake - d.bondedAmount,
        fees=fees - d.fees,
        startRound=_last_claim_round + 1,
        endRound=_end_round,
    )
    self.delegators[_delegator].lastClaimRound = _end_round
    self.delegators[_delegator].bondedAmount = stake
    self.delegators[_delegator].fees = fees


@internal
def _auto_claim_earnings(_delegator: address):
    current: uint256 = self._current_round()
    last_claim: uint256 = self.delegators[_delegator].lastClaimRound
    if last_claim < current:
        self._update_delegator_with_earnings(_delegator, current, last_claim)


# --- stake and the active set ----------------------------------------------------------------------------------


@internal
def _try_to_join_active_set(_transcoder: address, _total_stake: uint256, _activation_round: uint256):
    if self.poolMaxSize == 0:
        return
    pending_total: uint256 = self.nextRoundTotalActiveStake
    if self.poolSize >= self.poolMaxSize:
        last: address = self.poolTail
        last_stake: uint256 = self.delegators[last].delegatedAmount
        if _total_stake <= last_stake:
            return
        self._pool_remove(last)
        self.transcoders[last].deactivationRound = _activation_round
        pending_total -= last_stake
        log TranscoderDeactivated(transcoder=last, deactivationRound=_activation_round)
    self._pool_insert(_transcoder, _total_stake)
    pending_total += _total_stake
    self.transcoders[_transcoder].lastActiveStakeUpdateRound = _activation_round
    self.transcoders[_transcoder].activationRound = _activation_round
    self.transcoders[_transcoder].deactivationRound = MAX_FUTURE_ROUND
    self.earningsPools[_transcoder][_activation_round].totalStake = _total_stake
    self.nextRoundTotalActiveStake = pending_total
    log TranscoderActivated(transcoder=_transcoder, activationRound=_activation_round)


@internal
def _resign_transcoder(_transcoder: address):
    self._pool_remove(_transcoder)
    self.nextRoundTotalActiveStake -= self.delegators[_transcoder].delegatedAmount
    deactivation: uint256 = self._current_round() + 1
    self.transcoders[_transcoder].deactivationRound = deactivation
    log TranscoderDeactivated(transcoder=_transcoder, deactivationRound=deactivation)


@internal
def _record_stake_change(_delegate: address, _curr_stake: uint256, _new_stake: uint256, _current: uint256):
    # The earnings pools of this round (stake before the change) and the next (stake after it).
    if self.transcoders[_delegate].lastActiveStakeUpdateRound < _current:
        self.earningsPools[_delegate][_current].totalStake = _curr_stake
    self.earningsPools[_delegate][_current + 1].totalStake = _new_stake
    self.transcoders[_delegate].lastActiveStakeUpdateRound = _current + 1


@internal
def _increase_total_stake(_delegate: address, _amount: uint256):
    curr_stake: uint256 = self.delegators[_delegate].delegatedAmount
    new_stake: uint256 = curr_stake + _amount
    current: uint256 = self._current_round()
    active_now: bool = self._is_active(_delegate, current)
    active_next: bool = self._pool_contains(_delegate)
    if active_next:
        self._pool_update_key(_delegate, new_stake)
        self.nextRoundTotalActiveStake += _amount
    elif self._is_registered(_delegate):
        self._try_to_join_active_set(_delegate, new_stake, current + 1)
    if active_now or active_next:
        self._record_stake_change(_delegate, curr_stake, new_stake, current)
    self.delegators[_delegate].delegatedAmount = new_stake


@internal
def _decrease_total_stake(_delegate: address, _amount: uint256):
    curr_stake: uint256 = self.delegators[_delegate].delegatedAmount
    new_stake: uint256 = curr_stake - _amount
    current: uint256 = self._current_round()
    active_now: bool = self._is_active(_delegate, current)
    active_next: bool = self._pool_contains(_delegate)
    if active_next:
        self._pool_update_key(_delegate, new_stake)
        self.nextRoundTotalActiveStake -= _amount
    if active_now or active_next:
        self._record_stake_change(_delegate, curr_stake, new_stake, current)
    self.delegators[_delegate].delegatedAmount = new_stake


@internal
@view
def _ensure_pending_deactivation_transcoder_called_reward(_transcoder: address):
    current: uint256 = self._current_round()
    t: Transcoder = self.transcoders[_transcoder]
    if self._is_active(_transcoder, current) and t.deactivationRound != MAX_FUTURE_ROUND:
        assert t.lastRewardRound == current, "transcoder has not yet called reward for the current round"


@internal
def _process_rebond(_delegator: address, _lock_id: uint256):
    lock: UnbondingLock = self.unbondingLocks[_delegator][_lock_id]
    assert lock.withdrawRound > 0, "invalid unbonding lock ID"
    self.delegators[_delegator].bondedAmount += lock.amount
    self.unbondingLocks[_delegator][_lock_id] = empty(UnbondingLock)
    delegate: address = self.delegators[_delegator].delegateAddress
    self._ensure_pending_deactivation_transcoder_called_reward(delegate)
    self._increase_total_stake(delegate, lock.amount)
    log Rebond(delegate=delegate, delegator=_delegator, unbondingLockId=_lock_id, amount=lock.amount)


# --- parameters ------------------------------------------------------------------------------------------------


@external
def setUnbondingPeriod(_unbondingPeriod: uint64):
    self._only_controller_owner()
    self.unbondingPeriod = _unbondingPeriod
    log ParameterUpdate(param="unbondingPeriod")


@external
def setNumActiveTranscoders(_numActiveTranscoders: uint256):
    self._only_controller_owner()
    assert _numActiveTranscoders > self.poolMaxSize, "new max size must be larger than the current one"
    assert _numActiveTranscoders <= MAX_POOL_SIZE, "at most 256 active transcoders"
    self.poolMaxSize = _numActiveTranscoders
    log ParameterUpdate(param="numActiveTranscoders")


# --- orchestrators and delegators ------------------------------------------------------------------------------


@internal
def _transcoder(_reward_cut: uint256, _fee_share: uint256):
    self._when_system_not_paused()
    self._current_round_initialized()
    assert not staticcall IRoundsManager(self._contract("RoundsManager")).currentRoundLocked(), (
        "can't update transcoder params, current round is locked"
    )
    assert _reward_cut <= PERC_DIVISOR, "invalid rewardCut percentage"
    assert _fee_share <= PERC_DIVISOR, "invalid feeShare percentage"
    assert self._is_registered(msg.sender), "transcoder must be registered"
    current: uint256 = self._current_round()
    assert not self._is_active(msg.sender, current) or self.transcoders[msg.sender].lastRewardRound == current, (
        "caller can't be active or must have already called reward for the current round"
    )
    self.transcoders[msg.sender].rewardCut = _reward_cut
    self.transcoders[msg.sender].feeShare = _fee_share
    if not self._pool_contains(msg.sender):
        self._try_to_join_active_set(msg.sender, self.delegators[msg.sender].delegatedAmount, current + 1)
    log TranscoderUpdate(transcoder=msg.sender, rewardCut=_reward_cut, feeShare=_fee_share)


@external
def transcoder(_rewardCut: uint256, _feeShare: uint256):
    """
    @notice Set the caller's reward cut and fee share (parts per million) and, if it is not in the pool, try to
            join it from the next round. The caller must be bonded to itself.
    """
    self._transcoder(_rewardCut, _feeShare)


@external
def transcoderWithHint(_rewardCut: uint256, _feeShare: uint256, _newPosPrev: address, _newPosNext: address):
    self._transcoder(_rewardCut, _feeShare)


@internal
def _bond(_amount: uint256, _owner: address, _to: address):
    self._when_system_not_paused()
    self._current_round_initialized()
    self._auto_claim_earnings(_owner)
    current: uint256 = self._current_round()
    delegation: uint256 = _amount
    current_delegate: address = self.delegators[_owner].delegateAddress
    current_bonded: uint256 = self.delegators[_owner].bondedAmount
    self._ensure_pending_deactivation_transcoder_called_reward(_to)
    status: uint8 = self._delegator_status(_owner)
    if status == UNBONDED:
        self.delegators[_owner].startRound = current + 1
    elif current_bonded > 0 and current_delegate != _to:
        assert not self._is_registered(_owner), "registered transcoders can't delegate towards other addresses"
        self.delegators[_owner].startRound = current + 1
        delegation += current_bonded
        self._decrease_total_stake(current_delegate, current_bonded)
    self._ensure_initialized_factors(_to, current)
    assert delegation > 0, "delegation amount must be greater than 0"
    self.delegators[_owner].delegateAddress = _to
    self.delegators[_owner].bondedAmount = current_bonded + _amount
    self._increase_total_stake(_to, delegation)
    if _amount > 0:
        extcall ILivepeerToken(self._contract("LivepeerToken")).transferFrom(
            msg.sender, self._contract("Minter"), _amount
        )
    log Bond(
        newDelegate=_to,
        oldDelegate=current_delegate,
        delegator=_owner,
        additionalAmount=_amount,
        bondedAmount=current_bonded + _amount,
    )


@external
def bond(_amount: uint256, _to: address):
    """
    @notice Bond `_amount` LPT (approved to this contract first) and delegate all the caller's stake to `_to`.
            Bonding to yourself registers you as an orchestrator.
    """
    self._bond(_amount, msg.sender, _to)


@external
def bondWithHint(
    _amount: uint256,
    _to: address,
    _oldDelegateNewPosPrev: address,
    _oldDelegateNewPosNext: address,
    _currDelegateNewPosPrev: address,
    _currDelegateNewPosNext: address,
):
    self._bond(_amount, msg.sender, _to)


@internal
def _unbond(_amount: uint256):
    self._when_system_not_paused()
    self._current_round_initialized()
    self._auto_claim_earnings(msg.sender)
    assert self._delegator_status(msg.sender) == BONDED, "caller must be bonded"
    assert _amount > 0, "unbond amount must be greater than 0"
    assert _amount <= self.delegators[msg.sender].bondedAmount, "amount is greater than bonded amount"
    current_delegate: address = self.delegators[msg.sender].delegateAddress
    withdraw_round: uint256 = self._current_round() + convert(self.unbondingPeriod, uint256)
    lock_id: uint256 = self.delegators[msg.sender].nextUnbondingLockId
    self.unbondingLocks[msg.sender][lock_id] = UnbondingLock(amount=_amount, withdrawRound=withdraw_round)
    self.delegators[msg.sender].nextUnbondingLockId = lock_id + 1
    self.delegators[msg.sender].bondedAmount -= _amount
    if self.delegators[msg.sender].bondedAmount == 0:
        self.delegators[msg.sender].delegateAddress = empty(address)
        self.delegators[msg.sender].startRound = 0
        if self._pool_contains(msg.sender):
            self._resign_transcoder(msg.sender)
    self._decrease_total_stake(current_delegate, _amount)
    log Unbond(
        delegate=current_delegate,
        delegator=msg.sender,
        unbondingLockId=lock_id,
        amount=_amount,
        withdrawRound=withdraw_round,
    )


@external
def unbond(_amount: uint256):
    """
    @notice Unbond `_amount` of the caller's stake into a new unbonding lock (id: the delegator's
            `nextUnbondingLockId` before the call), withdrawable after `unbondingPeriod` rounds. Unbonding
            everything takes an orchestrator out of the pool from the next round.
    """
    self._unbond(_amount)


@external
def unbondWithHint(_amount: uint256, _newPosPrev: address, _newPosNext: address):
    self._unbond(_amount)


@internal
def _rebond(_lock_id: uint256):
    self._when_system_not_paused()
    self._current_round_initialized()
    self._auto_claim_earnings(msg.sender)
    assert self._delegator_status(msg.sender) != UNBONDED, "caller must be bonded"
    self._process_rebond(msg.sender, _lock_id)


@external
def rebond(_unbondingLockId: uint256):
    self._rebond(_unbondingLockId)


@external
def rebondWithHint(_unbondingLockId: uint256, _newPosPrev: address, _newPosNext: address):
    self._rebond(_unbondingLockId)


@internal
def _rebond_from_unbonded(_to: address, _lock_id: uint256):
    self._when_system_not_paused()
    self._current_round_initialized()
    self._auto_claim_earnings(msg.sender)
    assert self._delegator_status(msg.sender) == UNBONDED, "caller must be unbonded"
    current: uint256 = self._current_round()
    self._ensure_initialized_factors(_to, current)
    self.delegators[msg.sender].startRound = current + 1
    self.delegators[msg.sender].delegateAddress = _to
    self._process_rebond(msg.sender, _lock_id)


@external
def rebondFromUnbonded(_to: address, _unbondingLockId: uint256):
    self._rebond_from_unbonded(_to, _unbondingLockId)


@external
def rebondFromUnbondedWithHint(_to: address, _unbondingLockId: uint256, _newPosPrev: address, _newPosNext: address):
    self._rebond_from_unbonded(_to, _unbondingLockId)


@external
def withdrawStake(_unbondingLockId: uint256):
    """
    @notice Pay out an unbonding lock whose withdraw round has come.
    """
    self._when_system_not_paused()
    self._current_round_initialized()
    lock: UnbondingLock = self.unbondingLocks[msg.sender][_unbondingLockId]
    assert lock.withdrawRound > 0, "invalid unbonding lock ID"
    assert lock.withdrawRound <= self._current_round(), "withdraw round must be before or equal to the current round"
    self.unbondingLocks[msg.sender][_unbondingLockId] = empty(UnbondingLock)
    extcall IMinter(self._contract("Minter")).trustedTransferTokens(msg.sender, lock.amount)
    log WithdrawStake(
        delegator=msg.sender, unbondingLockId=_unbondingLockId, amount=lock.amount, withdrawRound=lock.withdrawRound
    )


@external
def withdrawFees(_recipient: address, _amount: uint256):
    """
    @notice Claim the caller's earnings, then send `_amount` wei of its fees to `_recipient` (paid by the Minter).
    """
    self._when_system_not_paused()
    self._current_round_initialized()
    self._auto_claim_earnings(msg.sender)
    assert _recipient != empty(address), "invalid recipient"
    fees: uint256 = self.delegators[msg.sender].fees
    assert fees >= _amount, "insufficient fees to withdraw"
    self.delegators[msg.sender].fees = fees - _amount
    extcall IMinter(self._contract("Minter")).trustedWithdrawETH(_recipient, _amount)
    log WithdrawFees(delegator=msg.sender, recipient=_recipient, amount=_amount)


@external
def claimEarnings(_endRound: uint256):
    """
    @notice Move the caller's pending stake and fees into its bonded amount and fees (`_endRound` is ignored:
            earnings are always claimed through the current round, as in Livepeer's).
    """
    self._when_system_not_paused()
    self._current_round_initialized()
    self._auto_claim_earnings(msg.sender)


# --- rewards and fees ------------------------------------------------------------------------------------------


@internal
def _reward():
    self._when_system_not_paused()
    self._current_round_initialized()
    current: uint256 = self._current_round()
    assert self._is_active(msg.sender, current), "caller must be an active transcoder"
    t: Transcoder = self.transcoders[msg.sender]
    assert t.lastRewardRound != current, "caller has already called reward for the current round"
    self.earningsPools[msg.sender][current].transcoderRewardCut = t.rewardCut
    self.earningsPools[msg.sender][current].transcoderFeeShare = t.feeShare
    if t.lastActiveStakeUpdateRound < current:
        self.earningsPools[msg.sender][current].totalStake = self.earningsPools[msg.sender][
            t.lastActiveStakeUpdateRound
        ].totalStake
    pool: EarningsPool = self.earningsPools[msg.sender][current]
    rewards: uint256 = extcall IMinter(self._contract("Minter")).createReward(
        pool.totalStake, self.currentRoundTotalActiveStake
    )
    # Livepeer's updateTranscoderWithRewards.
    prev_crf: uint256 = self.earningsPools[msg.sender][t.lastRewardRound].cumulativeRewardFactor
    if prev_crf == 0:
        prev_crf = PRECISE_DIVISOR
    active_cumulative: uint256 = t.cumulativeRewards
    assert active_cumulative <= pool.totalStake  # an accounting error, as Livepeer asserts
    commission: uint256 = rewards * pool.transcoderRewardCut // PERC_DIVISOR
    delegators_rewards: uint256 = rewards - commission
    reward_stake_rewards: uint256 = 0
    if pool.totalStake > 0:
        reward_stake_rewards = self._precise_perc_of(delegators_rewards, active_cumulative, pool.totalStake)
        self.earningsPools[msg.sender][current].cumulativeRewardFactor = prev_crf + self._precise_perc_of(
            prev_crf, delegators_rewards, pool.totalStake
        )
    self.transcoders[msg.sender].activeCumulativeRewards = active_cumulative
    self.transcoders[msg.sender].cumulativeRewards = active_cumulative + reward_stake_rewards + commission
    self._increase_total_stake(msg.sender, rewards)
    self.transcoders[msg.sender].lastRewardRound = current
    log Reward(transcoder=msg.sender, amount=rewards)


@external
def reward():
    """
    @notice Mint the caller's share of this round's rewards: `currentMintableTokens * its stake / total active
            stake`. Once per round, by an active orchestrator.
    """
    self._reward()


@external
def rewardWithHint(_newPosPrev: address, _newPosNext: address):
    self._reward()


@external
def updateTranscoderWithFees(_transcoder: address, _fees: uint256, _round: uint256):
    """
    @notice Credit fees to an active orchestrator and its delegators (the TicketBroker only), in the current round.
    """
    self._when_system_not_paused()
    assert msg.sender == self._contract("TicketBroker"), "caller must be TicketBroker"
    current: uint256 = self._current_round()
    assert self._is_active(_transcoder, current), "transcoder must be active"
    t: Transcoder = self.transcoders[_transcoder]
    active_cumulative: uint256 = t.activeCumulativeRewards
    prev_crf: uint256 = 0
    prev_cff: uint256 = 0
    prev_crf, prev_cff = self._latest_factors(_transcoder, current - 1)
    if current > t.lastRewardRound:
        self.earningsPools[_transcoder][current].transcoderRewardCut = t.rewardCut
        self.earningsPools[_transcoder][current].transcoderFeeShare = t.feeShare
        if t.lastActiveStakeUpdateRound < current:
            self.earningsPools[_transcoder][current].totalStake = self.earningsPools[_transcoder][
                t.lastActiveStakeUpdateRound
            ].totalStake
        # reward() has not run this round: its cumulative rewards will become the active ones when it does.
        active_cumulative = t.cumulativeRewards
    pool: EarningsPool = self.earningsPools[_transcoder][current]
    if pool.totalStake == 0:
        # No stake to share fees by: everything is the orchestrator's.
        self.transcoders[_transcoder].cumulativeFees = t.cumulativeFees + _fees
        self.transcoders[_transcoder].lastFeeRound = current
        return
    if prev_crf == 0 and t.lastRewardRound == current:
        # Reward was called this round but not the last: estimate the last round's factor from this one's.
        rewards: uint256 = self._precise_perc_of(
            staticcall IMinter(self._contract("Minter")).currentMintableTokens(),
            pool.totalStake,
            self.currentRoundTotalActiveStake,
        )
        delegators_rewards: uint256 = rewards - rewards * pool.transcoderRewardCut // PERC_DIVISOR
        prev_crf = self._precise_perc_of(
            pool.cumulativeRewardFactor, pool.totalStake, delegators_rewards + pool.totalStake
        )
    assert active_cumulative <= pool.totalStake  # an accounting error, as Livepeer asserts
    delegators_fees: uint256 = _fees * pool.transcoderFeeShare // PERC_DIVISOR
    commission: uint256 = _fees - delegators_fees
    reward_stake_fees: uint256 = self._precise_perc_of(delegators_fees, active_cumulative, pool.totalStake)
    self.transcoders[_transcoder].cumulativeFees = t.cumulativeFees + reward_stake_fees + commission
    if prev_crf == 0:
        prev_crf = PRECISE_DIVISOR
    added: uint256 = self._precise_perc_of(prev_crf, delegators_fees, pool.totalStake)
    if pool.cumulativeFeeFactor == 0:
        self.earningsPools[_transcoder][current].cumulativeFeeFactor = prev_cff + added
    else:
        self.earningsPools[_transcoder][current].cumulativeFeeFactor = pool.cumulativeFeeFactor + added
    self.transcoders[_transcoder].lastFeeRound = current


@external
def setCurrentRoundTotalActiveStake():
    """
    @notice Fix this round's total active stake (the RoundsManager, at round initialisation).
    """
    assert msg.sender == self._contract("RoundsManager"), "caller must be RoundsManager"
    self.currentRoundTotalActiveStake = self.nextRoundTotalActiveStake


# --- development -----------------------------------------------------------------------------------------------


@external
def devSetActiveTranscoder(_transcoder: address, _stake: uint256):
    """
    @notice Development only: make `_transcoder` a registered orchestrator bonded to itself with `_stake` (no
            tokens move), in the pool and active from the current round, keeping all its rewards and fees
            (reward cut 100%, fee share 0). Only the Controller owner may call it.
    """
    self._only_controller_owner()
    assert _stake > 0, "stake must be greater than 0"
    current: uint256 = self._current_round()
    old_stake: uint256 = 0
    if self._pool_contains(_transcoder):
        old_stake = self.delegators[_transcoder].delegatedAmount
        self._pool_remove(_transcoder)
    self._pool_insert(_transcoder, _stake)
    self.nextRoundTotalActiveStake = self.nextRoundTotalActiveStake + _stake - old_stake
    self.currentRoundTotalActiveStake = self.currentRoundTotalActiveStake + _stake - old_stake
    d: Delegator = self.delegators[_transcoder]
    d.bondedAmount = _stake
    d.delegatedAmount = _stake
    d.delegateAddress = _transcoder
    d.startRound = current
    if d.lastClaimRound == 0:
        # As if bonded a round ago, so that this round's earnings are pending at once.
        d.lastClaimRound = current - 1
    self.delegators[_transcoder] = d
    self.earningsPools[_transcoder][current].totalStake = _stake
    self.transcoders[_transcoder].lastActiveStakeUpdateRound = current
    if not self._is_active(_transcoder, current):
        self.transcoders[_transcoder].activationRound = current
        self.transcoders[_transcoder].deactivationRound = MAX_FUTURE_ROUND
        self.transcoders[_transcoder].rewardCut = PERC_DIVISOR
        self.transcoders[_transcoder].feeShare = 0
        log TranscoderActivated(transcoder=_transcoder, activationRound=current)


# --- views -----------------------------------------------------------------------------------------------------


@view
@external
def pendingStake(_delegator: address, _endRound: uint256) -> uint256:
    """
    @notice The delegator's stake with its unclaimed rewards, through the current round (`_endRound` is ignored).
    """
    stake: uint256 = 0
    fees: uint256 = 0
    stake, fees = self._pending_stake_and_fees(_delegator, self._current_round())
    return stake


@view
@external
def pendingFees(_delegator: address, _endRound: uint256) -> uint256:
    """
    @notice The delegator's fees with its unclaimed ones, through the current round (`_endRound` is ignored).
    """
    stake: uint256 = 0
    fees: uint256 = 0
    stake, fees = self._pending_stake_and_fees(_delegator, self._current_round())
    return fees


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
def delegatorStatus(_delegator: address) -> uint8:
    # 0 Pending, 1 Bonded, 2 Unbonded (Livepeer's DelegatorStatus enum).
    return self._delegator_status(_delegator)


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
def getTranscoderEarningsPoolForRound(
    _transcoder: address, _round: uint256
) -> (uint256, uint256, uint256, uint256, uint256):
    pool: EarningsPool = self.earningsPools[_transcoder][_round]
    return (
        pool.totalStake,
        pool.transcoderRewardCut,
        pool.transcoderFeeShare,
        pool.cumulativeRewardFactor,
        pool.cumulativeFeeFactor,
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
def getDelegatorUnbondingLock(_delegator: address, _unbondingLockId: uint256) -> (uint256, uint256):
    lock: UnbondingLock = self.unbondingLocks[_delegator][_unbondingLockId]
    return (lock.amount, lock.withdrawRound)


@view
@external
def isValidUnbondingLock(_delegator: address, _unbondingLockId: uint256) -> bool:
    return self.unbondingLocks[_delegator][_unbondingLockId].withdrawRound > 0


@view
@external
def getTranscoderPoolMaxSize() -> uint256:
    return self.poolMaxSize


@view
@external
def getTranscoderPoolSize() -> uint256:
    return self.poolSize


@view
@external
def getFirstTranscoderInPool() -> address:
    return self.poolHead


@view
@external
def getNextTranscoderInPool(_transcoder: address) -> address:
    return self.poolNodes[_transcoder].nextId


@view
@external
def getTotalBonded() -> uint256:
    # Livepeer's: the total active stake of the current round.
    return self.currentRoundTotalActiveStake
