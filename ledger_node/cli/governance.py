"""``jointledger governance propose|approve|execute|list``: the consortium's M-of-N membership
governance from a member's own config (docs/governance.md, docs/contracts.md "Governance
semantics").

The member signs with the chain account of its node config: a platform's ``serve`` config or
the regulator's (told apart by its ``[regulator]`` table). Before sending, the command reads
the chain and refuses what the contract would refuse (not a voter, unknown proposal, already
executed or approved, too few approvals), so a refusal is one line saying what was found,
what was expected and what to try; a revert that still happens (a race with another voter)
is reported by its custom error name. Exit status: 0 done, 1 the chain refuses (or would),
2 unusable config, key files or options.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from web3 import Web3

from ledger_node.chain.adapter import LedgerChain, Member, Proposal, ProposalKind, Role
from ledger_node.cli.advice import (
    config_advice,
    config_kind,
    deployment_advice,
    unreachable_advice,
)
from ledger_node.cli.regulator_common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNUSABLE,
    CommandRefused,
    Echo,
    table,
)
from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    ChainError,
    ContractRevert,
    DeploymentError,
    InvalidConfig,
    InvalidKey,
)
from ledger_node.tls import NO_CLIENT_TLS, ClientTls

ROLE_NAMES: Final[dict[str, Role]] = {
    "platform": Role.PLATFORM, "regulator": Role.REGULATOR, "auditor": Role.AUDITOR}
"""The roles ``propose add --role`` takes, by the name docs and configs use."""

VOTING_ROLES: Final = (Role.PLATFORM, Role.REGULATOR)

_KIND_NAMES: Final[dict[ProposalKind, str]] = {
    ProposalKind.ADD_MEMBER: "add", ProposalKind.REMOVE_MEMBER: "remove",
    ProposalKind.ROTATE_KEY: "rotate", ProposalKind.CHANGE_THRESHOLD: "threshold",
    ProposalKind.REMOVE_RISK_DEVICE: "remove-risk-device"}

_REVERT_HINTS: Final[dict[str, str]] = {
    "Membership_AlreadyMember": "the address is an active member already (a removed member "
    "is re-admitted by a new add): check jointledger governance list and the member's "
    "address",
    "Membership_InvalidPublicKey": "give the member's SM2 public key PEM (NAME.sm2.pub.pem "
    "from jointledger keys new)",
    "Membership_NotActiveMember": "the account is not an active member: check the address",
    "Membership_NotVoter": "only active platforms and regulators vote: use a voter's config",
    "Governance_InvalidThreshold": "the action would leave fewer voters than the threshold: "
    "lower the threshold first (a threshold-change proposal)",
    "Governance_AlreadyApproved": "another approval is not needed from this member: ask "
    "another voter",
    "Governance_AlreadyExecuted": "nothing left to do: jointledger governance list shows it",
    "Governance_ThresholdNotReached": "more voters must approve first: jointledger "
    "governance approve ID with another voter's config",
    "Governance_UnknownProposal": "jointledger governance list shows the proposals",
}

Connect = Callable[[Path, str, str | None, ClientTls], tuple[LedgerChain, Any]]


def config_role(config: Path) -> str:
    """``"regulator"`` for a regulator's config (it has a ``[regulator]`` table), else
    ``"platform"``. An unreadable file is left to the config loaders to report."""
    return "regulator" if config_kind(config) == "regulator" else "platform"


def _member_chain(config: Path, role: str, rpc_url: str | None,
                  tls: ClientTls) -> tuple[LedgerChain, Any]:
    from ledger_node.cli.risk import member_chain

    return member_chain(config, role, rpc_url, tls)


@dataclass(frozen=True)
class ProposeRequest:
    """What ``governance propose`` was asked: ``what`` is add, remove or rotate; ``member``
    the new name (add) or the member's name or address (remove, rotate)."""

    what: str
    member: str
    role: str | None = None
    address: str | None = None
    public_key: Path | None = None


class _Governance:
    """One run of a governance action as the member whose chain client is ``chain``."""

    def __init__(self, chain: LedgerChain, config: Path, echo: Echo, as_json: bool) -> None:
        self.chain = chain
        self.config = config
        self.echo = echo
        self.as_json = as_json
        self.members = chain.members()
        self.me = chain.address
        self.names = {m.address: m.name for m in self.members}

    # ------------------------------------------------------------------ reading

    def who(self, address: str) -> str:
        """A member's name, or the address of a non-member."""
        return self.names.get(Web3.to_checksum_address(address), address)

    def describe(self, proposal: Proposal) -> str:
        """What ``proposal`` does, in words."""
        if proposal.kind is ProposalKind.ADD_MEMBER:
            return (f"add {proposal.role.name.lower()} {proposal.name!r} "
                    f"{proposal.account}")
        if proposal.kind is ProposalKind.REMOVE_MEMBER:
            return f"remove {self.who(proposal.account)} {proposal.account}"
        if proposal.kind is ProposalKind.ROTATE_KEY:
            return (f"rotate {self.who(proposal.account)}'s SM2 key to "
                    f"{proposal.public_key.hex()[:16]}…")
        if proposal.kind is ProposalKind.CHANGE_THRESHOLD:
            return f"change the threshold to {proposal.new_threshold}"
        return (f"remove risk-list entry {proposal.risk_entry.hex()[:16]}… "
                f"(added by {self.who(proposal.account)})")

    def state(self, proposal: Proposal, threshold: int) -> str:
        """executed, ready (enough approvals, not executed: ``execute`` it) or open."""
        if proposal.executed:
            return "executed"
        return "ready" if proposal.approvals >= threshold else "open"

    def as_document(self, proposal: Proposal, threshold: int) -> dict[str, Any]:
        """``proposal`` as JSON for ``--json``."""
        return {
            "id": proposal.id, "kind": _KIND_NAMES[proposal.kind],
            "description": self.describe(proposal), "proposer": proposal.proposer,
            "account": proposal.account,
            "name": proposal.name if proposal.kind is ProposalKind.ADD_MEMBER
            else self.names.get(proposal.account),
            "role": proposal.role.name.lower() if proposal.kind is ProposalKind.ADD_MEMBER
            else None,
            "public_key": proposal.public_key.hex() or None,
            "new_threshold": proposal.new_threshold or None,
            "approvers": list(proposal.approvers), "approvals": proposal.approvals,
            "threshold": threshold, "executed": proposal.executed,
            "state": self.state(proposal, threshold)}

    # ------------------------------------------------------------------ checks

    def require_voter(self) -> Member:
        """This config's member record if it is an active voter; else refuse."""
        mine = self.chain.member(self.me)
        if mine.role is Role.NONE:
            found = "is not a member"
        elif not mine.active:
            found = f"is {mine.name!r}, a removed {mine.role.name.lower()}"
        elif mine.role not in VOTING_ROLES:
            found = f"is {mine.name!r}, an auditor"
        else:
            return mine
        raise CommandRefused(
            f"the account {self.me} of {self.config} {found}; expected an active platform "
            "or regulator (only voters propose, approve and execute): try the config of a "
            "voting member", EXIT_REFUSED)

    def existing(self, proposal_id: int) -> Proposal:
        """Proposal ``proposal_id``; refuse an id the chain does not have."""
        count = self.chain.proposal_count()
        if not 1 <= proposal_id <= count:
            held = f"proposals 1..{count}" if count else "no proposals"
            raise CommandRefused(
                f"no proposal {proposal_id}: the chain has {held}; try jointledger "
                f"governance list --config {self.config}", EXIT_REFUSED)
        return self.chain.proposal(proposal_id)

    def open_proposal(self, proposal_id: int, action: str) -> Proposal:
        """Proposal ``proposal_id`` if it is not executed yet; else refuse."""
        proposal = self.existing(proposal_id)
        if proposal.executed:
            raise CommandRefused(
                f"proposal {proposal_id} ({self.describe(proposal)}) was already executed; "
                f"expected an open proposal to {action}: nothing left to do (jointledger "
                f"governance list --config {self.config} shows them)", EXIT_REFUSED)
        return proposal

    def member_named(self, reference: str) -> Member:
        """The member whose name or address is ``reference``; unknown ones are refused."""
        if Web3.is_address(reference):
            address = Web3.to_checksum_address(reference)
            found = [m for m in self.members if m.address == address]
        else:
            found = [m for m in self.members if m.name == reference]
        if len(found) != 1:
            known = ", ".join(f"{m.name} ({m.address})" for m in self.members)
            what = "no member" if not found else f"{len(found)} members"
            raise CommandRefused(
                f"{what} named {reference!r} on chain; expected the name or address of one "
                f"of: {known}", EXIT_UNUSABLE)
        return found[0]

    # ------------------------------------------------------------------ reporting

    def outcome(self, proposal_id: int, done: str) -> int:
        """Print where proposal ``proposal_id`` stands after ``done`` (what was sent)."""
        proposal = self.chain.proposal(proposal_id)
        threshold = self.chain.threshold()
        if self.as_json:
            self.echo(json.dumps(self.as_document(proposal, threshold), indent=2))
            return EXIT_OK
        self.echo(f"{done}: proposal {proposal_id}, {self.describe(proposal)}")
        if proposal.executed:
            self.echo(f"executed with {proposal.approvals} of {threshold} approvals: the "
                      "change is in force on chain now")
        else:
            missing = threshold - proposal.approvals
            self.echo(f"{proposal.approvals} of {threshold} approvals; it executes at the "
                      f"approval that reaches {threshold}"
                      + (f" ({missing} more): jointledger governance approve {proposal_id} "
                         "--config <another voter's config>" if missing > 0 else
                         f": jointledger governance execute {proposal_id}"))
        return EXIT_OK

    # ------------------------------------------------------------------ actions

    def propose(self, request: ProposeRequest) -> int:
        """Send the proposal ``request`` describes; print its id and state."""
        self.require_voter()
        if request.what == "add":
            if request.role is None or request.address is None or request.public_key is None:
                raise CommandRefused("governance propose add NAME needs --role, --address "
                                     "and --public-key PEM")
            if not Web3.is_address(request.address):
                raise CommandRefused(f"--address {request.address!r} is not a chain address; "
                                     "expected 0x and 40 hex digits (jointledger keys new "
                                     "prints it)")
            key = _public_key(request.public_key)
            proposal_id, _ = self.chain.propose_add_member(
                Web3.to_checksum_address(request.address), ROLE_NAMES[request.role],
                request.member, key)
            return self.outcome(proposal_id, "proposed")
        member = self.member_named(request.member)
        if not member.active:
            raise CommandRefused(
                f"member {member.name!r} ({member.address}) is already removed; expected an "
                "active member (a removed member comes back with governance propose add)",
                EXIT_REFUSED)
        if request.what == "remove":
            proposal_id, _ = self.chain.propose_remove_member(member.address)
        else:
            if request.public_key is None:
                raise CommandRefused("governance propose rotate MEMBER needs --public-key PEM")
            key = _public_key(request.public_key)
            if key == member.public_key:
                raise CommandRefused(
                    f"{request.public_key} holds {member.name}'s current SM2 key; expected a "
                    "new key (jointledger keys new makes one)")
            proposal_id, _ = self.chain.propose_rotate_key(member.address, key)
        return self.outcome(proposal_id, "proposed")

    def approve(self, proposal_id: int) -> int:
        """Approve ``proposal_id`` (which executes it if that reaches the threshold)."""
        self.require_voter()
        proposal = self.open_proposal(proposal_id, "approve")
        if self.me in proposal.approvers:
            raise CommandRefused(
                f"proposal {proposal_id} is already approved by this member "
                f"({self.who(self.me)}); expected a voter that has not approved it: ask "
                "another voter to run jointledger governance approve", EXIT_REFUSED)
        self.chain.approve(proposal_id)
        return self.outcome(proposal_id, "approved")

    def execute(self, proposal_id: int) -> int:
        """Execute ``proposal_id`` whose approvals reach the threshold in force."""
        self.require_voter()
        proposal = self.open_proposal(proposal_id, "execute")
        threshold = self.chain.threshold()
        if proposal.approvals < threshold:
            raise CommandRefused(
                f"proposal {proposal_id} has {proposal.approvals} of {threshold} approvals "
                f"needed; expected at least {threshold}: another voter runs jointledger "
                f"governance approve {proposal_id} (which executes it at {threshold})",
                EXIT_REFUSED)
        self.chain.execute(proposal_id)
        return self.outcome(proposal_id, "executed")

    def listing(self) -> int:
        """Every proposal with its approvals against the threshold."""
        threshold = self.chain.threshold()
        proposals = [self.chain.proposal(i) for i in range(1, self.chain.proposal_count() + 1)]
        if self.as_json:
            self.echo(json.dumps({"threshold": threshold, "voters":
                                  self.chain.active_voter_count(), "proposals": [
                                      self.as_document(p, threshold) for p in proposals]},
                                 indent=2))
            return EXIT_OK
        rows = [[p.id, self.describe(p), self.who(p.proposer), f"{p.approvals}/{threshold}",
                 self.state(p, threshold), ", ".join(self.who(a) for a in p.approvers)]
                for p in proposals]
        for line in table(["id", "proposal", "proposer", "approvals", "state", "approved by"],
                          rows, right=(0, 3)):
            self.echo(line)
        self.echo(f"{len(proposals)} proposal(s); threshold {threshold} of "
                  f"{self.chain.active_voter_count()} voters")
        return EXIT_OK


def _public_key(path: Path) -> bytes:
    """The raw 64-byte SM2 public key (x||y, as registered on chain) of a PEM file."""
    try:
        return gmcrypto.public_key_from_pem(path.read_bytes()).raw
    except OSError as exc:
        raise CommandRefused(f"cannot read --public-key {path}: {exc.strerror}") from None
    except (InvalidKey, ValueError) as exc:
        raise CommandRefused(f"--public-key {path} is not an SM2 public key PEM ({exc}); "
                             "expected NAME.sm2.pub.pem from jointledger keys new") from None


def _revert_line(exc: ContractRevert) -> str:
    """One line for a revert: the custom error, its arguments and what to try."""
    hint = _REVERT_HINTS.get(exc.name, "check the proposal with jointledger governance list")
    found = f"{exc.name}{exc.error_args!r}" if exc.error_args else exc.name
    return f"the contract refused it with {found}; {hint}"


def run_governance(action: str, *, config: Path, rpc_url: str | None = None,
                   proposal_id: int | None = None, request: ProposeRequest | None = None,
                   as_json: bool = False, tls: ClientTls = NO_CLIENT_TLS,
                   echo: Echo = print, warn: Echo | None = None,
                   connect: Connect = _member_chain) -> int:
    """Run ``propose`` (with ``request``), ``approve``/``execute`` (with ``proposal_id``) or
    ``list``; return the exit status (module docstring). Refusals go to ``warn`` (default
    standard error) as one line."""
    import sys

    def report(text: str) -> None:
        (warn or (lambda line: print(line, file=sys.stderr)))(
            f"jointledger governance {action}: {text}")

    try:
        chain, _ = connect(config, config_role(config), rpc_url, tls)
        run = _Governance(chain, config, echo, as_json)
        if action == "propose":
            assert request is not None, "propose needs a request"
            return run.propose(request)
        if action == "list":
            return run.listing()
        if proposal_id is None:
            raise CommandRefused(f"governance {action} needs the proposal ID")
        return run.approve(proposal_id) if action == "approve" else run.execute(proposal_id)
    except CommandRefused as exc:
        report(str(exc))
        return exc.exit_status
    except InvalidConfig as exc:
        report(config_advice(config, str(exc), "member"))
        return EXIT_UNUSABLE
    except ContractRevert as exc:
        report(_revert_line(exc))
        return EXIT_REFUSED
    except DeploymentError as exc:
        report(deployment_advice(str(exc)))
        return EXIT_UNUSABLE
    except ChainError as exc:
        report(unreachable_advice("the chain", rpc_url or "the config's [chain] rpc_url",
                                  str(exc), url_hint="correct [chain] rpc_url (or --rpc-url)"))
        return EXIT_REFUSED

