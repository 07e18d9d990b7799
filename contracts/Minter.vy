# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Minter
@notice Holds every wei of the senders' deposits and reserves and every bonded LPT, and mints each round's reward
        tokens. Only the BondingManager or the contract registered as "JobsManager" (the TicketBroker, as on
        Arbitrum One) may put ETH in or take it out; only the BondingManager moves LPT or creates rewards; only the
        RoundsManager starts a round's rewards.

        Inflation follows Livepeer's formula: at each round initialisation the per-round rate moves by
        `inflationChange` towards the target bonding rate (up when less than `targetBondingRate` of the supply is
        bonded, down otherwise, not below 0), then `currentMintableTokens = totalSupply * inflation / 10**9`.
        An orchestrator's reward is `currentMintableTokens * its stake / total active stake`.
"""

interface IController:
    def getContract(_id: bytes32) -> address: view
    def paused() -> bool: view
    def owner() -> address: view

interface ILivepeerToken:
    def totalSupply() -> uint256: view
    def mint(_to: address, _amount: uint256): nonpayable
    def burn(_amount: uint256): nonpayable
    def transfer(_to: address, _amount: uint256) -> bool: nonpayable

interface IBondingManager:
    def getTotalBonded() -> uint256: view

event SetCurrentRewardTokens:
    currentMintableTokens: uint256
    currentInflation: uint256

event ParameterUpdate:
    param: String[32]

# Inflation and bonding rates are parts per billion (Livepeer's Minter precision on Arbitrum).
INFLATION_DIVISOR: constant(uint256) = 10**9

controller: public(address)
inflation: public(uint256)
inflationChange: public(uint256)
targetBondingRate: public(uint256)
currentMintableTokens: public(uint256)
currentMintedTokens: public(uint256)


@deploy
def __init__(_controller: address, _inflation: uint256, _inflationChange: uint256, _targetBondingRate: uint256):
    assert _inflation <= INFLATION_DIVISOR, "_inflation is invalid percentage"
    assert _inflationChange <= INFLATION_DIVISOR, "_inflationChange is invalid percentage"
    assert _targetBondingRate <= INFLATION_DIVISOR, "_targetBondingRate is invalid percentage"
    self.controller = _controller
    self.inflation = _inflation
    self.inflationChange = _inflationChange
    self.targetBondingRate = _targetBondingRate


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
def _only_bonding_manager():
    assert msg.sender == self._contract("BondingManager"), "msg.sender not BondingManager"


@internal
@view
def _only_bonding_manager_or_jobs_manager():
    assert (
        msg.sender == self._contract("BondingManager") or msg.sender == self._contract("JobsManager")
    ), "msg.sender not BondingManager or JobsManager"


@internal
@view
def _token() -> ILivepeerToken:
    return ILivepeerToken(self._contract("LivepeerToken"))


@external
def setTargetBondingRate(_targetBondingRate: uint256):
    self._only_controller_owner()
    assert _targetBondingRate <= INFLATION_DIVISOR, "_targetBondingRate is invalid percentage"
    self.targetBondingRate = _targetBondingRate
    log ParameterUpdate(param="targetBondingRate")


@external
def setInflationChange(_inflationChange: uint256):
    self._only_controller_owner()
    assert _inflationChange <= INFLATION_DIVISOR, "_inflationChange is invalid percentage"
    self.inflationChange = _inflationChange
    log ParameterUpdate(param="inflationChange")


@external
def createReward(_fracNum: uint256, _fracDenom: uint256) -> uint256:
    """
    @notice Mint `currentMintableTokens * _fracNum / _fracDenom` to this contract and return the amount.
    """
    self._only_bonding_manager()
    self._when_system_not_paused()
    amount: uint256 = 0
    if _fracDenom > 0:
        amount = self.currentMintableTokens * _fracNum // _fracDenom
    self.currentMintedTokens += amount
    assert self.currentMintedTokens <= self.currentMintableTokens, "minted tokens cannot exceed mintable tokens"
    if amount > 0:
        extcall self._token().mint(self, amount)
    return amount


@external
def trustedTransferTokens(_to: address, _amount: uint256):
    self._only_bonding_manager()
    self._when_system_not_paused()
    extcall self._token().transfer(_to, _amount)


@external
def trustedBurnTokens(_amount: uint256):
    self._only_bonding_manager()
    self._when_system_not_paused()
    extcall self._token().burn(_amount)


@external
@payable
def depositETH() -> bool:
    self._only_bonding_manager_or_jobs_manager()
    return True


@external
def trustedWithdrawETH(_to: address, _amount: uint256):
    self._only_bonding_manager_or_jobs_manager()
    self._when_system_not_paused()
    send(_to, _amount)


@external
def setCurrentRewardTokens():
    """
    @notice Move the inflation rate one step towards the target bonding rate and set this round's mintable tokens.
    """
    assert msg.sender == self._contract("RoundsManager"), "msg.sender not RoundsManager"
    self._when_system_not_paused()
    supply: uint256 = staticcall self._token().totalSupply()
    bonding_rate: uint256 = 0
    if supply > 0:
        bonded: uint256 = staticcall IBondingManager(self._contract("BondingManager")).getTotalBonded()
        bonding_rate = bonded * INFLATION_DIVISOR // supply
    if bonding_rate < self.targetBondingRate:
        self.inflation += self.inflationChange
    elif bonding_rate > self.targetBondingRate:
        if self.inflationChange > self.inflation:
            self.inflation = 0
        else:
            self.inflation -= self.inflationChange
    self.currentMintableTokens = supply * self.inflation // INFLATION_DIVISOR
    self.currentMintedTokens = 0
    log SetCurrentRewardTokens(currentMintableTokens=self.currentMintableTokens, currentInflation=self.inflation)


@view
@external
def getController() -> address:
    return self.controller
