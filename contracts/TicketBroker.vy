# pragma version 0.4.3
# pragma evm-version cancun
"""
@title TicketBroker
@notice Senders' deposits and reserves, and the redemption of winning probabilistic micropayment tickets, with
        Livepeer's TicketBroker external interface, checks (in the same order) and revert strings. The ETH is
        held by the Minter; a redeemed ticket's value is credited to its recipient as fees in the
        BondingManager (`updateTranscoderWithFees`), which the recipient withdraws with `withdrawFees`. When a
        face value exceeds the deposit, the rest comes from the reserve, at most `reserve / poolSize` per active
        recipient per round.
"""

interface IController:
    def getContract(_id: bytes32) -> address: view
    def paused() -> bool: view
    def owner() -> address: view

interface IRoundsManager:
    def currentRound() -> uint256: view
    def currentRoundInitialized() -> bool: view
    def blockHashForRound(_round: uint256) -> bytes32: view

interface IBondingManager:
    def isActiveTranscoder(_transcoder: address) -> bool: view
    def getTranscoderPoolSize() -> uint256: view
    def updateTranscoderWithFees(_transcoder: address, _fees: uint256, _round: uint256): nonpayable

interface IMinter:
    def depositETH() -> bool: payable
    def trustedWithdrawETH(_to: address, _amount: uint256): nonpayable

struct Ticket:
    recipient: address
    sender: address
    faceValue: uint256
    winProb: uint256
    senderNonce: uint256
    recipientRandHash: bytes32
    auxData: Bytes[MAX_AUX]

struct Sender:
    deposit: uint256
    withdrawRound: uint256

struct ReserveInfo:
    fundsRemaining: uint256
    claimedInCurrentRound: uint256

event DepositFunded:
    sender: indexed(address)
    amount: uint256

event ReserveFunded:
    reserveHolder: indexed(address)
    amount: uint256

event ReserveClaimed:
    reserveHolder: indexed(address)
    claimant: address
    amount: uint256

event WinningTicketRedeemed:
    sender: indexed(address)
    recipient: indexed(address)
    faceValue: uint256
    winProb: uint256
    senderNonce: uint256
    recipientRand: uint256
    auxData: Bytes[MAX_AUX]

event WinningTicketTransfer:
    sender: indexed(address)
    recipient: indexed(address)
    amount: uint256

event Unlock:
    sender: indexed(address)
    startRound: uint256
    endRound: uint256

event UnlockCancelled:
    sender: indexed(address)

event Withdrawal:
    sender: indexed(address)
    deposit: uint256
    reserve: uint256

event ParameterUpdate:
    param: String[32]

# Longer byte strings than the chain accepts still decode, so that the length checks answer in words.
MAX_AUX: constant(uint256) = 256
MAX_SIG: constant(uint256) = 256
MAX_BATCH: constant(uint256) = 64
# secp256k1 n / 2: a signature with a larger S is the malleated twin of a valid one.
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
REDEEM_SIGNATURE: constant(String[100]) = "redeemWinningTicket((address,address,uint256,uint256,uint256,bytes32,bytes),bytes,uint256)"

controller: public(address)
unlockPeriod: public(uint256)
ticketValidityPeriod: public(uint256)
usedTickets: public(HashMap[bytes32, bool])
senders: HashMap[address, Sender]
reserveFunds: HashMap[address, uint256]
claimedForRound: HashMap[address, HashMap[uint256, uint256]]
claimedByAddress: HashMap[address, HashMap[uint256, HashMap[address, uint256]]]


@deploy
def __init__(_controller: address):
    self.controller = _controller


# --- helpers -------------------------------------------------------------------------------------------------


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
def _is_unlock_in_progress(_sender: address) -> bool:
    return self.senders[_sender].withdrawRound > 0


@internal
@view
def _is_locked(_sender: address) -> bool:
    withdraw_round: uint256 = self.senders[_sender].withdrawRound
    return withdraw_round == 0 or self._current_round() < withdraw_round


@internal
def _cancel_unlock(_sender: address):
    assert self._is_unlock_in_progress(_sender), "no unlock request in progress"
    self.senders[_sender].withdrawRound = 0
    log UnlockCancelled(sender=_sender)


@internal
def _process_deposit(_sender: address, _amount: uint256):
    self.senders[_sender].deposit += _amount
    if self._is_unlock_in_progress(_sender):
        self._cancel_unlock(_sender)
    log DepositFunded(sender=_sender, amount=_amount)


@internal
def _process_reserve(_sender: address, _amount: uint256):
    self.reserveFunds[_sender] += _amount
    log ReserveFunded(reserveHolder=_sender, amount=_amount)
    if self._is_unlock_in_progress(_sender):
        self._cancel_unlock(_sender)


@internal
def _process_funding(_amount: uint256):
    extcall IMinter(self._contract("Minter")).depositETH(value=_amount)


@internal
@view
def _claimable_reserve(_holder: address, _claimant: address) -> uint256:
    bonding_manager: address = self._contract("BondingManager")
    if not staticcall IBondingManager(bonding_manager).isActiveTranscoder(_claimant):
        return 0
    pool_size: uint256 = staticcall IBondingManager(bonding_manager).getTranscoderPoolSize()
    if pool_size == 0:
        return 0
    current: uint256 = self._current_round()
    # What every active recipient may claim this round is fixed at the round's start: remaining + claimed.
    total: uint256 = self.reserveFunds[_holder] + self.claimedForRound[_holder][current]
    return total // pool_size - self.claimedByAddress[_holder][current][_claimant]


@internal
def _claim_from_reserve(_holder: address, _claimant: address, _amount: uint256) -> uint256:
    claimable: uint256 = self._claimable_reserve(_holder, _claimant)
    claim: uint256 = min(_amount, claimable)
    if claim > 0:
        current: uint256 = self._current_round()
        self.claimedForRound[_holder][current] += claim
        self.claimedByAddress[_holder][current][_claimant] += claim
        self.reserveFunds[_holder] -= claim
        log ReserveClaimed(reserveHolder=_holder, claimant=_claimant, amount=claim)
    return claim


@internal
@pure
def _ticket_hash(_ticket: Ticket) -> bytes32:
    return keccak256(
        concat(
            convert(_ticket.recipient, bytes20),
            convert(_ticket.sender, bytes20),
            convert(_ticket.faceValue, bytes32),
            convert(_ticket.winProb, bytes32),
            convert(_ticket.senderNonce, bytes32),
            _ticket.recipientRandHash,
            _ticket.auxData,
        )
    )


@internal
@view
def _require_valid_aux_data(_aux: Bytes[MAX_AUX]) -> uint256:
    assert len(_aux) == 64, "invalid length for ticket auxData: must be 64 bytes"
    creation_round: uint256 = extract32(_aux, 0, output_type=uint256)
    creation_round_block_hash: bytes32 = extract32(_aux, 32)
    rounds_manager: address = self._contract("RoundsManager")
    block_hash: bytes32 = staticcall IRoundsManager(rounds_manager).blockHashForRound(creation_round)
    assert block_hash != empty(bytes32), "ticket creationRound does not have a block hash"
    assert creation_round_block_hash == block_hash, "ticket creationRoundBlockHash invalid for creationRound"
    current: uint256 = staticcall IRoundsManager(rounds_manager).currentRound()
    assert creation_round + self.ticketValidityPeriod > current, "ticket is expired"
    return creation_round


@internal
@pure
def _recover(_hash: bytes32, _sig: Bytes[MAX_SIG]) -> address:
    # OpenZeppelin 4.4.1 ECDSA.recover, which the deployed TicketBroker was built with: low S, V in {27, 28}.
    r: uint256 = extract32(_sig, 0, output_type=uint256)
    s: uint256 = extract32(_sig, 32, output_type=uint256)
    v: uint256 = convert(slice(_sig, 64, 1), uint256)
    assert s <= HALF_N, "ECDSA: invalid signature 's' value"
    assert v == 27 or v == 28, "ECDSA: invalid signature 'v' value"
    signer: address = ecrecover(_hash, v, r, s)
    assert signer != empty(address), "ECDSA: invalid signature"
    return signer


@internal
@pure
def _is_valid_ticket_sig(_sender: address, _sig: Bytes[MAX_SIG], _ticket_hash: bytes32) -> bool:
    assert len(_sig) == 65, "INVALID_SIGNATURE_LENGTH"
    eth_hash: bytes32 = keccak256(concat(b"\x19Ethereum Signed Message:\n32", _ticket_hash))
    signer: address = self._recover(eth_hash, _sig)
    return signer != empty(address) and signer == _sender


@internal
@pure
def _is_winning(_sig: Bytes[MAX_SIG], _rand: uint256, _win_prob: uint256) -> bool:
    return convert(keccak256(concat(_sig, convert(_rand, bytes32))), uint256) < _win_prob


@internal
def _redeem(_ticket: Ticket, _sig: Bytes[MAX_SIG], _rand: uint256):
    self._when_system_not_paused()
    assert staticcall IRoundsManager(self._contract("RoundsManager")).currentRoundInitialized(), (
        "current round is not initialized"
    )
    ticket_hash: bytes32 = self._ticket_hash(_ticket)

    assert _ticket.recipient != empty(address), "ticket recipient is null address"
    assert _ticket.sender != empty(address), "ticket sender is null address"
    creation_round: uint256 = self._require_valid_aux_data(_ticket.auxData)
    assert keccak256(convert(_rand, bytes32)) == _ticket.recipientRandHash, (
        "recipientRand does not match recipientRandHash"
    )
    assert not self.usedTickets[ticket_hash], "ticket is used"
    assert self._is_valid_ticket_sig(_ticket.sender, _sig, ticket_hash), "invalid signature over ticket hash"
    assert self._is_winning(_sig, _rand, _ticket.winProb), "ticket did not win"

    assert self._is_locked(_ticket.sender), "sender is unlocked"
    deposit: uint256 = self.senders[_ticket.sender].deposit
    assert deposit > 0 or self.reserveFunds[_ticket.sender] > 0, "sender deposit and reserve are zero"

    self.usedTickets[ticket_hash] = True
    amount: uint256 = 0
    if _ticket.faceValue > deposit:
        amount = deposit + self._claim_from_reserve(_ticket.sender, _ticket.recipient, _ticket.faceValue - deposit)
        self.senders[_ticket.sender].deposit = 0
    else:
        amount = _ticket.faceValue
        self.senders[_ticket.sender].deposit = deposit - _ticket.faceValue

    if amount > 0:
        extcall IBondingManager(self._contract("BondingManager")).updateTranscoderWithFees(
            _ticket.recipient, amount, creation_round
        )
        log WinningTicketTransfer(sender=_ticket.sender, recipient=_ticket.recipient, amount=amount)

    log WinningTicketRedeemed(
        sender=_ticket.sender,
        recipient=_ticket.recipient,
        faceValue=_ticket.faceValue,
        winProb=_ticket.winProb,
        senderNonce=_ticket.senderNonce,
        recipientRand=_rand,
        auxData=_ticket.auxData,
    )


# --- funding -------------------------------------------------------------------------------------------------


@external
@payable
def fundDeposit():
    self._when_system_not_paused()
    self._process_deposit(msg.sender, msg.value)
    self._process_funding(msg.value)


@external
@payable
def fundReserve():
    self._when_system_not_paused()
    self._process_reserve(msg.sender, msg.value)
    self._process_funding(msg.value)


@internal
def _fund_deposit_and_reserve_for(_addr: address, _deposit: uint256, _reserve: uint256, _value: uint256):
    self._when_system_not_paused()
    assert _value == _deposit + _reserve, "msg.value does not equal sum of deposit amount and reserve amount"
    self._process_deposit(_addr, _deposit)
    self._process_reserve(_addr, _reserve)
    self._process_funding(_value)


@external
@payable
def fundDepositAndReserve(_depositAmount: uint256, _reserveAmount: uint256):
    self._fund_deposit_and_reserve_for(msg.sender, _depositAmount, _reserveAmount, msg.value)


@external
@payable
def fundDepositAndReserveFor(_addr: address, _depositAmount: uint256, _reserveAmount: uint256):
    self._fund_deposit_and_reserve_for(_addr, _depositAmount, _reserveAmount, msg.value)


# --- redemption ----------------------------------------------------------------------------------------------


@external
def redeemWinningTicket(_ticket: Ticket, _sig: Bytes[MAX_SIG], _recipientRand: uint256):
    self._redeem(_ticket, _sig, _recipientRand)


@external
def batchRedeemWinningTickets(
    _tickets: DynArray[Ticket, MAX_BATCH],
    _sigs: DynArray[Bytes[MAX_SIG], MAX_BATCH],
    _recipientRands: DynArray[uint256, MAX_BATCH],
):
    self._when_system_not_paused()
    assert staticcall IRoundsManager(self._contract("RoundsManager")).currentRoundInitialized(), (
        "current round is not initialized"
    )
    for i: uint256 in range(len(_tickets), bound=MAX_BATCH):
        # Each ticket in its own call, so that one failing ticket does not undo the others.
        redeemed: bool = raw_call(
            self,
            abi_encode(_tickets[i], _sigs[i], _recipientRands[i], method_id=method_id(REDEEM_SIGNATURE)),
            revert_on_failure=False,
        )


# --- unlocking and withdrawing -------------------------------------------------------------------------------


@external
def unlock():
    self._when_system_not_paused()
    assert self.senders[msg.sender].deposit > 0 or self.reserveFunds[msg.sender] > 0, (
        "sender deposit and reserve are zero"
    )
    assert not self._is_unlock_in_progress(msg.sender), "unlock already initiated"
    current: uint256 = self._current_round()
    self.senders[msg.sender].withdrawRound = current + self.unlockPeriod
    log Unlock(sender=msg.sender, startRound=current, endRound=current + self.unlockPeriod)


@external
def cancelUnlock():
    self._when_system_not_paused()
    self._cancel_unlock(msg.sender)


@external
def withdraw():
    self._when_system_not_paused()
    deposit: uint256 = self.senders[msg.sender].deposit
    reserve: uint256 = self.reserveFunds[msg.sender]
    assert deposit > 0 or reserve > 0, "sender deposit and reserve are zero"
    assert self._is_unlock_in_progress(msg.sender), "no unlock request in progress"
    assert not self._is_locked(msg.sender), "account is locked"
    self.senders[msg.sender].deposit = 0
    self.reserveFunds[msg.sender] = 0
    extcall IMinter(self._contract("Minter")).trustedWithdrawETH(msg.sender, deposit + reserve)
    log Withdrawal(sender=msg.sender, deposit=deposit, reserve=reserve)


# --- parameters (Controller owner) ---------------------------------------------------------------------------


@external
def setUnlockPeriod(_unlockPeriod: uint256):
    self._only_controller_owner()
    self.unlockPeriod = _unlockPeriod
    log ParameterUpdate(param="unlockPeriod")


@external
def setTicketValidityPeriod(_ticketValidityPeriod: uint256):
    self._only_controller_owner()
    assert _ticketValidityPeriod > 0, "ticketValidityPeriod must be greater than 0"
    self.ticketValidityPeriod = _ticketValidityPeriod
    log ParameterUpdate(param="ticketValidityPeriod")


# --- views ---------------------------------------------------------------------------------------------------


@view
@external
def getTicketHash(_ticket: Ticket) -> bytes32:
    return self._ticket_hash(_ticket)


@view
@external
def getSenderInfo(_sender: address) -> (Sender, ReserveInfo):
    return (
        self.senders[_sender],
        ReserveInfo(
            fundsRemaining=self.reserveFunds[_sender],
            claimedInCurrentRound=self.claimedForRound[_sender][self._current_round()],
        ),
    )


@view
@external
def getReserveInfo(_reserveHolder: address) -> ReserveInfo:
    return ReserveInfo(
        fundsRemaining=self.reserveFunds[_reserveHolder],
        claimedInCurrentRound=self.claimedForRound[_reserveHolder][self._current_round()],
    )


@view
@external
def claimableReserve(_reserveHolder: address, _claimant: address) -> uint256:
    return self._claimable_reserve(_reserveHolder, _claimant)


@view
@external
def claimedReserve(_reserveHolder: address, _claimant: address) -> uint256:
    return self.claimedByAddress[_reserveHolder][self._current_round()][_claimant]


@view
@external
def isUnlockInProgress(_sender: address) -> bool:
    return self._is_unlock_in_progress(_sender)
