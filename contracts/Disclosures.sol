// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IJointLedger} from "./IJointLedger.sol";
import {Membership} from "./Membership.sol";

/**
 * @title Disclosures
 * @notice The on-chain trace of every regulator access: a regulator's request that a platform
 * open a commitment for a case, and the platform's answer (a digest; the encrypted opening
 * itself travels off chain).
 */
abstract contract Disclosures is Membership {
    mapping(uint256 requestId => DisclosureRequest) private _requests;
    uint256 private _requestCount;

    /// @inheritdoc IJointLedger
    function requestDisclosure(address platform, bytes32 commitment, bytes32 caseId)
        external
        onlyRegulator
        returns (uint256 requestId)
    {
        if (!_hasRole(platform, Role.Platform)) revert Disclosure_TargetNotPlatform(platform);
        requestId = ++_requestCount;
        DisclosureRequest storage r = _requests[requestId];
        r.regulator = msg.sender;
        r.requestedBlock = uint64(block.number);
        r.platform = platform;
        r.commitment = commitment;
        r.caseId = caseId;
        emit DisclosureRequested(requestId, msg.sender, platform, commitment, caseId);
    }

    /// @inheritdoc IJointLedger
    function fulfilDisclosure(uint256 requestId, bytes32 responseDigest) external onlyPlatform {
        if (requestId == 0 || requestId > _requestCount) {
            revert Disclosure_UnknownRequest(requestId);
        }
        DisclosureRequest storage r = _requests[requestId];
        if (r.platform != msg.sender) {
            revert Disclosure_NotAddressee(requestId, r.platform, msg.sender);
        }
        if (r.fulfilled) revert Disclosure_AlreadyFulfilled(requestId);
        r.fulfilled = true;
        r.fulfilledBlock = uint64(block.number);
        r.responseDigest = responseDigest;
        emit DisclosureFulfilled(requestId, msg.sender, responseDigest);
    }

    /// @inheritdoc IJointLedger
    function disclosureRequest(uint256 requestId) external view returns (DisclosureRequest memory) {
        if (requestId == 0 || requestId > _requestCount) {
            revert Disclosure_UnknownRequest(requestId);
        }
        return _requests[requestId];
    }

    /// @inheritdoc IJointLedger
    function disclosureRequestCount() external view returns (uint256) {
        return _requestCount;
    }
}
