# pragma version 0.4.3
# pragma evm-version cancun
"""
@title LivepeerToken (LPT)
@notice An ERC20 token with 18 decimals, the stake orchestrators and delegators bond. New tokens are minted by the
        Minter registered in the Controller (inflation rewards) and, on a development chain, by the Controller owner
        (to fund accounts); `burn` destroys the caller's own tokens. Same function signatures, events and ERC20
        revert strings as Livepeer's token.
"""

interface IController:
    def getContract(_id: bytes32) -> address: view
    def owner() -> address: view

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event Mint:
    to: indexed(address)
    amount: uint256

event Burn:
    burner: indexed(address)
    value: uint256

name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
controller: public(address)


@deploy
def __init__(_controller: address):
    self.controller = _controller
    self.name = "Livepeer Token"
    self.symbol = "LPT"
    self.decimals = 18


@internal
def _transfer(_from: address, _to: address, _amount: uint256):
    assert _from != empty(address), "ERC20: transfer from the zero address"
    assert _to != empty(address), "ERC20: transfer to the zero address"
    assert self.balanceOf[_from] >= _amount, "ERC20: transfer amount exceeds balance"
    self.balanceOf[_from] -= _amount
    self.balanceOf[_to] += _amount
    log Transfer(sender=_from, receiver=_to, value=_amount)


@external
def transfer(_to: address, _amount: uint256) -> bool:
    self._transfer(msg.sender, _to, _amount)
    return True


@external
def transferFrom(_from: address, _to: address, _amount: uint256) -> bool:
    allowed: uint256 = self.allowance[_from][msg.sender]
    assert allowed >= _amount, "ERC20: transfer amount exceeds allowance"
    if allowed != max_value(uint256):
        self.allowance[_from][msg.sender] = allowed - _amount
    self._transfer(_from, _to, _amount)
    return True


@external
def approve(_spender: address, _amount: uint256) -> bool:
    assert _spender != empty(address), "ERC20: approve to the zero address"
    self.allowance[msg.sender][_spender] = _amount
    log Approval(owner=msg.sender, spender=_spender, value=_amount)
    return True


@external
def mint(_to: address, _amount: uint256):
    """
    @notice Create `_amount` new tokens for `_to`. Only the Minter registered in the Controller, or the Controller
            owner (a development chain's faucet), may mint.
    """
    controller: IController = IController(self.controller)
    assert (
        msg.sender == staticcall controller.getContract(keccak256("Minter"))
        or msg.sender == staticcall controller.owner()
    ), "caller is not a minter"
    assert _to != empty(address), "ERC20: mint to the zero address"
    self.totalSupply += _amount
    self.balanceOf[_to] += _amount
    log Mint(to=_to, amount=_amount)
    log Transfer(sender=empty(address), receiver=_to, value=_amount)


@external
def burn(_amount: uint256):
    assert self.balanceOf[msg.sender] >= _amount, "ERC20: burn amount exceeds balance"
    self.balanceOf[msg.sender] -= _amount
    self.totalSupply -= _amount
    log Burn(burner=msg.sender, value=_amount)
    log Transfer(sender=msg.sender, receiver=empty(address), value=_amount)
