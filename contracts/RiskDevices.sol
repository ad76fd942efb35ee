// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IJointLedger} from "./IJointLedger.sol";
import {Membership} from "./Membership.sol";

/**
 * @title RiskDevices
 * @notice The consortium's shared risk-device list (共享风险设备黑名单库): members list devices
 * as keyed hashes under a list key that regulators deliver to every platform and regulator,
 * SM2-encrypted to each one's registered key, so outsiders cannot test a device.
 * @dev Keys come in epochs. A regulator opens epoch e+1 by delivering a fresh key ring (the
 * keys of epochs 1..e+1) to the key holders; new entries must be made under the current
 * epoch's key while it is open. Governance closes the current epoch when a key holder is
 * removed or rotates its key (see `Governance`), so no entry is ever made under a key that a
 * former member, or a retired SM2 key, can read. Old entries stay valid under their epoch.
 * One storage slot per entry: adder (20 bytes), reason (1), epoch (4), block (7).
 */
abstract contract RiskDevices is Membership {
    uint8 private constant _MAX_REASON = 6;

    struct _Entry {
        address adder;
        uint8 reason;
        uint32 epoch;
        uint56 blockNumber;
    }

    mapping(bytes32 entry => _Entry) private _entries;
    mapping(uint32 epoch => mapping(address account => bytes)) private _listKeys;
    uint256 private _entryCount;
    uint32 private _epoch;
    bool private _epochOpen;

    /// @inheritdoc IJointLedger
    function setListKeys(uint32 epoch, address[] calldata accounts, bytes[] calldata ciphertexts)
        external
        onlyRegulator
    {
        if (accounts.length != ciphertexts.length) {
            revert RiskList_LengthMismatch(accounts.length, ciphertexts.length);
        }
        if (epoch == _epoch + 1) {
            _epoch = epoch;
            _epochOpen = true;
            emit ListEpochOpened(epoch, msg.sender);
        } else if (epoch != _epoch || epoch == 0) {
            revert RiskList_WrongEpoch(epoch, _epoch);
        }
        for (uint256 i = 0; i < accounts.length; ++i) {
            address account = accounts[i];
            if (!_isVoter(account)) revert RiskList_NotKeyHolder(account);
            if (ciphertexts[i].length == 0) revert RiskList_EmptyCiphertext(account);
            bytes storage slot = _listKeys[epoch][account];
            if (slot.length != 0) revert RiskList_KeyAlreadySet(epoch, account);
            _listKeys[epoch][account] = ciphertexts[i];
            emit ListKeySet(epoch, account, msg.sender);
        }
    }

    /// @inheritdoc IJointLedger
    function listEpoch() external view returns (uint32) {
        return _epoch;
    }

    /// @inheritdoc IJointLedger
    function listEpochOpen() external view returns (bool) {
        return _epochOpen;
    }

    /// @inheritdoc IJointLedger
    function listKey(address account, uint32 epoch) external view returns (bytes memory) {
        return _listKeys[epoch][account];
    }

    /// @inheritdoc IJointLedger
    function addRiskDevice(bytes32 entry, uint32 epoch, uint8 reason) external onlyVoter {
        _checkAddEpoch(epoch);
        _addRiskDevice(entry, epoch, reason);
    }

    /// @inheritdoc IJointLedger
    function addRiskDevices(bytes32[] calldata entries, uint32 epoch, uint8[] calldata reasons)
        external
        onlyVoter
    {
        if (entries.length != reasons.length) {
            revert RiskList_LengthMismatch(entries.length, reasons.length);
        }
        _checkAddEpoch(epoch);
        for (uint256 i = 0; i < entries.length; ++i) {
            _addRiskDevice(entries[i], epoch, reasons[i]);
        }
    }

    /// @inheritdoc IJointLedger
    function removeRiskDevice(bytes32 entry) external onlyVoter {
        address adder = _riskDeviceAdder(entry);
        if (adder != msg.sender) revert RiskList_NotAdder(entry, adder, msg.sender);
        _removeRiskDevice(entry, 0);
    }

    /// @inheritdoc IJointLedger
    function isRiskDeviceListed(bytes32 entry) external view returns (bool) {
        return _entries[entry].adder != address(0);
    }

    /// @inheritdoc IJointLedger
    function riskDevice(bytes32 entry) external view returns (RiskDevice memory) {
        _Entry storage e = _entries[entry];
        if (e.adder == address(0)) revert RiskList_NotListed(entry);
        return RiskDevice({
            adder: e.adder, reason: e.reason, epoch: e.epoch, blockNumber: e.blockNumber
        });
    }

    /// @inheritdoc IJointLedger
    function riskDeviceCount() external view returns (uint256) {
        return _entryCount;
    }

    /// @dev The member that listed `entry`; reverts `RiskList_NotListed` if it is not listed.
    function _riskDeviceAdder(bytes32 entry) internal view returns (address adder) {
        adder = _entries[entry].adder;
        if (adder == address(0)) revert RiskList_NotListed(entry);
    }

    /// @dev Deletes `entry` (re-checking that it is listed). Emits `RiskDeviceRemoved`.
    function _removeRiskDevice(bytes32 entry, uint256 proposalId) internal {
        address adder = _riskDeviceAdder(entry);
        delete _entries[entry];
        --_entryCount;
        emit RiskDeviceRemoved(entry, adder, msg.sender, proposalId);
    }

    /// @dev Closes the current epoch to additions, if one is open. Emits `ListEpochClosed`.
    function _closeListEpoch() internal {
        if (_epochOpen) {
            _epochOpen = false;
            emit ListEpochClosed(_epoch);
        }
    }

    /// @dev Reverts unless `epoch` is the current epoch and open.
    function _checkAddEpoch(uint32 epoch) private view {
        if (epoch != _epoch || epoch == 0) revert RiskList_WrongEpoch(epoch, _epoch);
        if (!_epochOpen) revert RiskList_EpochClosed(epoch);
    }

    /// @dev Stores one entry. Emits `RiskDeviceAdded`.
    function _addRiskDevice(bytes32 entry, uint32 epoch, uint8 reason) private {
        if (reason == 0 || reason > _MAX_REASON) revert RiskList_UnknownReason(reason);
        _Entry storage e = _entries[entry];
        if (e.adder != address(0)) revert RiskList_AlreadyListed(entry);
        e.adder = msg.sender;
        e.reason = reason;
        e.epoch = epoch;
        e.blockNumber = uint56(block.number);
        ++_entryCount;
        emit RiskDeviceAdded(entry, msg.sender, reason, epoch);
    }
}
