// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IJointLedger} from "./IJointLedger.sol";

/**
 * @title Membership
 * @notice Stores the consortium's members and the M-of-N approval threshold, and provides the
 * role checks every write uses.
 * @dev Voters are active platforms and regulators; auditors are read-only members. The
 * threshold is kept within 1..active voters by every change. Members are never deleted:
 * removal clears `active`, so history (names, keys) stays readable.
 */
abstract contract Membership is IJointLedger {
    uint256 private constant _PUBLIC_KEY_LENGTH = 64;

    mapping(address account => Member) private _members;
    address[] private _memberList;
    uint256 private _activeVoters;
    uint256 private _threshold;

    /// @dev Reverts with `Membership_NotActiveMember` or `Membership_NotVoter`.
    modifier onlyVoter() {
        _checkVoter(msg.sender);
        _;
    }

    /// @dev Reverts with `Membership_NotPlatform` unless the caller is an active platform.
    modifier onlyPlatform() {
        _checkRole(msg.sender, Role.Platform);
        _;
    }

    /// @dev Reverts with `Membership_NotRegulator` unless the caller is an active regulator.
    modifier onlyRegulator() {
        _checkRole(msg.sender, Role.Regulator);
        _;
    }

    /// @dev Admits `initialMembers` and sets `initialThreshold` (1..number of voters).
    constructor(InitialMember[] memory initialMembers, uint256 initialThreshold) {
        for (uint256 i = 0; i < initialMembers.length; ++i) {
            InitialMember memory m = initialMembers[i];
            _addMember(m.account, m.role, m.name, m.publicKey);
        }
        _setThreshold(initialThreshold);
    }

    /// @inheritdoc IJointLedger
    function member(address account) external view returns (Member memory) {
        return _members[account];
    }

    /// @inheritdoc IJointLedger
    function members() external view returns (address[] memory) {
        return _memberList;
    }

    /// @inheritdoc IJointLedger
    function threshold() external view returns (uint256) {
        return _threshold;
    }

    /// @inheritdoc IJointLedger
    function activeVoterCount() external view returns (uint256) {
        return _activeVoters;
    }

    /// @dev The current threshold, for governance.
    function _currentThreshold() internal view returns (uint256) {
        return _threshold;
    }

    /// @dev Whether `account` is an active member of any role.
    function _isActive(address account) internal view returns (bool) {
        return _members[account].active;
    }

    /// @dev Whether `account` is an active platform or regulator.
    function _isVoter(address account) internal view returns (bool) {
        Member storage m = _members[account];
        return m.active && _isVoterRole(m.role);
    }

    /// @dev Reverts unless `account` is an active voter.
    function _checkVoter(address account) internal view {
        Member storage m = _members[account];
        if (!m.active) revert Membership_NotActiveMember(account);
        if (!_isVoterRole(m.role)) revert Membership_NotVoter(account);
    }

    /// @dev Reverts with the role's error unless `account` is active with `role`.
    function _checkRole(address account, Role role) internal view {
        Member storage m = _members[account];
        if (!m.active || m.role != role) {
            if (role == Role.Regulator) revert Membership_NotRegulator(account);
            revert Membership_NotPlatform(account);
        }
    }

    /// @dev Whether `account` is active with `role`.
    function _hasRole(address account, Role role) internal view returns (bool) {
        Member storage m = _members[account];
        return m.active && m.role == role;
    }

    /// @dev Reverts unless (`account`, `role`, `name`, `publicKey`) may be admitted now.
    function _validateNewMember(
        address account,
        Role role,
        string memory name,
        bytes memory publicKey
    ) internal view {
        if (account == address(0)) revert Membership_InvalidAccount(account);
        if (_members[account].active) revert Membership_AlreadyMember(account);
        if (role == Role.None) revert Membership_InvalidRole();
        if (bytes(name).length == 0) revert Membership_EmptyName();
        _validatePublicKey(publicKey);
    }

    /// @dev Reverts unless `publicKey` has the length of a raw SM2 point.
    function _validatePublicKey(bytes memory publicKey) internal pure {
        if (publicKey.length != _PUBLIC_KEY_LENGTH) {
            revert Membership_InvalidPublicKey(publicKey.length);
        }
    }

    /// @dev Reverts unless `account` is an active member that may be removed now: removing a
    /// voter must leave at least `threshold` voters.
    function _validateRemoval(address account) internal view {
        Member storage m = _members[account];
        if (!m.active) revert Membership_NotActiveMember(account);
        if (_isVoterRole(m.role) && _activeVoters - 1 < _threshold) {
            revert Governance_InvalidThreshold(_threshold, _activeVoters - 1);
        }
    }

    /// @dev Reverts unless `newThreshold` is within 1..active voters.
    function _validateThreshold(uint256 newThreshold) internal view {
        if (newThreshold == 0 || newThreshold > _activeVoters) {
            revert Governance_InvalidThreshold(newThreshold, _activeVoters);
        }
    }

    /// @dev Admits (or re-admits a removed) member. Emits `MemberAdded`.
    function _addMember(address account, Role role, string memory name, bytes memory publicKey)
        internal
    {
        _validateNewMember(account, role, name, publicKey);
        Member storage m = _members[account];
        if (m.role == Role.None) _memberList.push(account);
        m.role = role;
        m.active = true;
        m.name = name;
        m.publicKey = publicKey;
        if (_isVoterRole(role)) ++_activeVoters;
        emit MemberAdded(account, role, name, publicKey);
    }

    /// @dev Deactivates a member. Emits `MemberRemoved`.
    function _removeMember(address account) internal {
        _validateRemoval(account);
        Member storage m = _members[account];
        m.active = false;
        if (_isVoterRole(m.role)) --_activeVoters;
        emit MemberRemoved(account);
    }

    /// @dev Replaces an active member's SM2 key. Emits `KeyRotated`.
    function _rotateKey(address account, bytes memory newKey) internal {
        Member storage m = _members[account];
        if (!m.active) revert Membership_NotActiveMember(account);
        _validatePublicKey(newKey);
        bytes memory oldKey = m.publicKey;
        m.publicKey = newKey;
        emit KeyRotated(account, oldKey, newKey);
    }

    /// @dev Sets the threshold. Emits `ThresholdChanged`.
    function _setThreshold(uint256 newThreshold) internal {
        _validateThreshold(newThreshold);
        uint256 oldThreshold = _threshold;
        _threshold = newThreshold;
        emit ThresholdChanged(oldThreshold, newThreshold);
    }

    function _isVoterRole(Role role) private pure returns (bool) {
        return role == Role.Platform || role == Role.Regulator;
    }
}
