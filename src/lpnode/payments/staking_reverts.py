"""What an operator's transaction reverting means, in words, and what to do about it.

The keys are the revert strings of Livepeer's deployed contracts (BondingManager, RoundsManager, TicketBroker,
LivepeerToken's OpenZeppelin ERC20), which the project's dev-chain contracts repeat word for word.
"""

from __future__ import annotations

_EXPLAINED: dict[str, str] = {
    "current round is not initialized": "the current round has not been initialised yet, and the contracts take no "
    "bonding or reward until it is: run `lpnode chain initialize-round` (anyone may), then try again",
    "round already initialized": "this round is initialised already; nothing to do",
    "system is paused": "the Livepeer contracts are paused by governance; try again later",
    "caller has already called reward for the current round": "reward was already called in this round; the next "
    "call can be made once the next round starts (`lpnode chain status` says when)",
    "transcoder must be active": "only an orchestrator in this round's active set can call reward; `lpnode chain "
    "status` says why this account is not active",
    "caller must be bonded": "this account has no bonded LPT yet: a bond takes effect from the round after it "
    "was made (`lpnode chain status` shows the round), and without one, bond first with `lpnode chain bond AMOUNT`",
    "caller must be unbonded": "this account still has bonded LPT: `lpnode chain rebond LOCK` adds the lock to it",
    "unbond amount must be greater than 0": "give an amount above 0 to unbond",
    "amount is greater than bonded amount": "that is more than the bonded stake; `lpnode chain status` shows how "
    "much is bonded",
    "invalid unbonding lock ID": "no unbonding lock has that id (it may have been rebonded or withdrawn); `lpnode "
    "chain status` lists the locks",
    "withdraw round must be before or equal to the current round": "the unbonding period is not over yet; `lpnode "
    "chain status` shows the round each lock can be withdrawn from",
    "delegation amount must be greater than 0": "give an amount above 0 to bond",
    "registered transcoders can't delegate towards other addresses": "a registered orchestrator can only bond to "
    "itself; leave out --to",
    "transcoder must be registered": "set the reward cut and fee share only after bonding LPT to this account: "
    "`lpnode chain bond AMOUNT` first",
    "invalid rewardCut percentage": "the reward cut must be between 0 and 100 percent",
    "invalid feeShare percentage": "the fee share must be between 0 and 100 percent",
    "can't update transcoder params, current round is locked": "the last blocks of a round are locked against "
    "changes to reward cut and fee share; try again in the next round",
    "caller can't be active or must have already called reward for the current round": "an active orchestrator "
    "changes its reward cut and fee share only after calling reward this round: run `lpnode chain reward` first",
    "transcoder has not yet called reward for the current round": "the orchestrator is leaving the active set and "
    "must call reward in this round first: run `lpnode chain reward`",
    "insufficient fees to withdraw": "that is more than the fees earned; `lpnode chain status` shows the pending fees",
    "invalid recipient": "the fees need a recipient address",
    "ERC20: insufficient allowance": "the BondingManager may not take that much LPT: `lpnode chain bond` approves "
    "the amount first, so run it again",
    "ERC20: transfer amount exceeds allowance": "the BondingManager may not take that much LPT: `lpnode chain bond` "
    "approves the amount first, so run it again",
    "ERC20: transfer amount exceeds balance": "the account holds less LPT than that; `lpnode chain status` shows "
    "its LPT",
}


def explain_revert(reason: str) -> str:
    """``reason`` followed by what it means and the fix, when the reason is one the contracts are known to give;
    else the reason alone."""
    meaning = _EXPLAINED.get(reason.strip())
    return f"{reason} ({meaning})" if meaning else reason
