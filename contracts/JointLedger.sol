// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Checkpoints} from "./Checkpoints.sol";
import {DirectCommitments} from "./DirectCommitments.sol";
import {Disclosures} from "./Disclosures.sol";
import {Governance} from "./Governance.sol";
import {Membership} from "./Membership.sol";
import {RiskDevices} from "./RiskDevices.sol";

/**
 * @title JointLedger
 * @notice The one deployed contract of the joint ledger: consortium membership and M-of-N
 * governance, per-log Merkle checkpoints, direct commitments, the disclosure trail and the
 * shared risk-device list.
 * @dev Pure composition; every behaviour lives in the abstract components, every error and
 * event in `IJointLedger`.
 */
contract JointLedger is RiskDevices, Governance, Checkpoints, DirectCommitments, Disclosures {
    /**
     * @notice Deploys the ledger with its founding members and approval threshold.
     * @dev Requirements: every member is valid (non-zero distinct address, role not `None`,
     * non-empty name, 64-byte SM2 key); 1 <= `initialThreshold` <= number of voters.
     * Emits `MemberAdded` per member, then `ThresholdChanged(0, initialThreshold)`.
     */
    constructor(InitialMember[] memory initialMembers, uint256 initialThreshold)
        Membership(initialMembers, initialThreshold)
    {}
}
