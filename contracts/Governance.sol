// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IJointLedger} from "./IJointLedger.sol";
import {RiskDevices} from "./RiskDevices.sol";

/**
 * @title Governance
 * @notice M-of-N proposals that add or remove members, rotate keys, change the threshold and
 * remove risk-device entries.
 * @dev Semantics, in one place:
 * - only active voters propose, approve and execute; proposing counts as approving;
 * - approvals are counted when a proposal is approved or executed, against the threshold in
 *   force at that moment, and only approvers that are still active voters count;
 * - a proposal executes automatically on the approval that makes the count reach the
 *   threshold; one that reaches it without a new approval (because the threshold was
 *   lowered) is executed with `execute`;
 * - a threshold change does not touch open proposals; it only changes what they need next;
 * - the action is validated when proposing and again when executing; if it became invalid
 *   (member already removed, threshold no longer reachable) the executing call reverts;
 * - removing a platform or regulator, or rotating one's key, closes the risk list's current
 *   key epoch to additions (the member, or whoever holds its old SM2 key, can read it).
 */
abstract contract Governance is RiskDevices {
    struct _StoredProposal {
        ProposalKind kind;
        Role role;
        bool executed;
        address proposer;
        address account;
        uint256 newThreshold;
        string name;
        bytes publicKey;
        address[] approvers;
        bytes32 riskEntry;
    }

    mapping(uint256 id => _StoredProposal) private _proposals;
    mapping(uint256 id => mapping(address voter => bool)) private _approved;
    uint256 private _proposalCount;

    /// @inheritdoc IJointLedger
    function proposeAddMember(
        address account,
        Role role,
        string calldata name,
        bytes calldata publicKey
    )
        external
        onlyVoter
        returns (uint256 id)
    {
        _validateNewMember(account, role, name, publicKey);
        _StoredProposal storage p;
        (id, p) = _newProposal(ProposalKind.AddMember, account);
        p.role = role;
        p.name = name;
        p.publicKey = publicKey;
        _approveAndMaybeExecute(id);
    }

    /// @inheritdoc IJointLedger
    function proposeRemoveMember(address account) external onlyVoter returns (uint256 id) {
        _validateRemoval(account);
        (id,) = _newProposal(ProposalKind.RemoveMember, account);
        _approveAndMaybeExecute(id);
    }

    /// @inheritdoc IJointLedger
    function proposeRotateKey(address account, bytes calldata newKey)
        external
        onlyVoter
        returns (uint256 id)
    {
        if (!_isActive(account)) revert Membership_NotActiveMember(account);
        _validatePublicKey(newKey);
        _StoredProposal storage p;
        (id, p) = _newProposal(ProposalKind.RotateKey, account);
        p.publicKey = newKey;
        _approveAndMaybeExecute(id);
    }

    /// @inheritdoc IJointLedger
    function proposeThresholdChange(uint256 newThreshold) external onlyVoter returns (uint256 id) {
        _validateThreshold(newThreshold);
        _StoredProposal storage p;
        (id, p) = _newProposal(ProposalKind.ChangeThreshold, address(0));
        p.newThreshold = newThreshold;
        _approveAndMaybeExecute(id);
    }

    /// @inheritdoc IJointLedger
    function proposeRemoveRiskDevice(bytes32 entry) external onlyVoter returns (uint256 id) {
        address adder = _riskDeviceAdder(entry);
        _StoredProposal storage p;
        (id, p) = _newProposal(ProposalKind.RemoveRiskDevice, adder);
        p.riskEntry = entry;
        _approveAndMaybeExecute(id);
    }

    /// @inheritdoc IJointLedger
    function approve(uint256 id) external onlyVoter {
        _openProposal(id);
        if (_approved[id][msg.sender]) revert Governance_AlreadyApproved(id, msg.sender);
        _approveAndMaybeExecute(id);
    }

    /// @inheritdoc IJointLedger
    function execute(uint256 id) external onlyVoter {
        _openProposal(id);
        uint256 approvals = _validApprovals(id);
        uint256 needed = _currentThreshold();
        if (approvals < needed) revert Governance_ThresholdNotReached(id, approvals, needed);
        _execute(id, approvals);
    }

    /// @inheritdoc IJointLedger
    function proposal(uint256 id) external view returns (Proposal memory) {
        if (id == 0 || id > _proposalCount) revert Governance_UnknownProposal(id);
        _StoredProposal storage p = _proposals[id];
        return Proposal({
            kind: p.kind,
            proposer: p.proposer,
            account: p.account,
            role: p.role,
            name: p.name,
            publicKey: p.publicKey,
            newThreshold: p.newThreshold,
            approvers: p.approvers,
            approvals: _validApprovals(id),
            executed: p.executed,
            riskEntry: p.riskEntry
        });
    }

    /// @inheritdoc IJointLedger
    function proposalCount() external view returns (uint256) {
        return _proposalCount;
    }

    function _newProposal(ProposalKind kind, address account)
        private
        returns (uint256 id, _StoredProposal storage p)
    {
        id = ++_proposalCount;
        p = _proposals[id];
        p.kind = kind;
        p.proposer = msg.sender;
        p.account = account;
        emit ProposalCreated(id, kind, msg.sender, account);
    }

    /// @dev Returns proposal `id`, reverting if it does not exist or already executed.
    function _openProposal(uint256 id) private view returns (_StoredProposal storage p) {
        if (id == 0 || id > _proposalCount) revert Governance_UnknownProposal(id);
        p = _proposals[id];
        if (p.executed) revert Governance_AlreadyExecuted(id);
    }

    /// @dev Records the caller's approval and executes once the threshold is reached.
    function _approveAndMaybeExecute(uint256 id) private {
        _approved[id][msg.sender] = true;
        _proposals[id].approvers.push(msg.sender);
        emit ProposalApproved(id, msg.sender);
        uint256 approvals = _validApprovals(id);
        if (approvals >= _currentThreshold()) _execute(id, approvals);
    }

    /// @dev The number of approvers of `id` that are active voters now.
    function _validApprovals(uint256 id) private view returns (uint256 count) {
        address[] storage approvers = _proposals[id].approvers;
        for (uint256 i = 0; i < approvers.length; ++i) {
            if (_isVoter(approvers[i])) ++count;
        }
    }

    /// @dev Marks `id` executed, then applies its action (which re-validates it).
    function _execute(uint256 id, uint256 approvals) private {
        _StoredProposal storage p = _proposals[id];
        p.executed = true;
        emit ProposalExecuted(id, msg.sender, approvals);
        if (p.kind == ProposalKind.AddMember) {
            _addMember(p.account, p.role, p.name, p.publicKey);
        } else if (p.kind == ProposalKind.RemoveMember) {
            bool keyHolder = _isVoter(p.account);
            _removeMember(p.account);
            if (keyHolder) _closeListEpoch();
        } else if (p.kind == ProposalKind.RotateKey) {
            _rotateKey(p.account, p.publicKey);
            if (_isVoter(p.account)) _closeListEpoch();
        } else if (p.kind == ProposalKind.ChangeThreshold) {
            _setThreshold(p.newThreshold);
        } else {
            _removeRiskDevice(p.riskEntry, id);
        }
    }
}
